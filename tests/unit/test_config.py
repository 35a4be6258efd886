from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infertrail.audit.checkpoint import Checkpoint, NoteSigner
from infertrail.config import Settings, default_audit_origin


def test_defaults_work_on_a_laptop(clean_env: None) -> None:
    s = Settings()
    assert s.data_dir == Path(".infertrail")
    assert s.telemetry_files is True
    assert s.otlp_endpoint is None
    assert s.telemetry_dir == Path(".infertrail/telemetry")


def test_environment_overrides(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", "/tmp/x")
    monkeypatch.setenv("INFERTRAIL_MAX_TEXT_CHARS", "50")
    s = Settings()
    assert s.data_dir == Path("/tmp/x")
    assert s.max_text_chars == 50


def test_standard_otel_variables_are_honoured(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "credit-api")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    s = Settings()
    assert s.service_name == "credit-api"
    assert s.otlp_endpoint == "http://127.0.0.1:4318"
    assert (s.traces_sampler, s.traces_sampler_arg) == ("traceidratio", 0.25)


def test_infertrail_variable_beats_otel_variable(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")
    monkeypatch.setenv("INFERTRAIL_SERVICE_NAME", "from-infertrail")
    assert Settings().service_name == "from-infertrail"


def test_toml_file(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "infertrail.toml").write_text('team = "risk"\nport = 9000\n')
    s = Settings()
    assert (s.team, s.port) == ("risk", 9000)
    monkeypatch.setenv("INFERTRAIL_PORT", "9100")
    assert Settings().port == 9100


def test_missing_named_config_file_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERTRAIL_CONFIG", "/nonexistent/infertrail.toml")
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/infertrail\.toml"):
        Settings()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("port", 0, "port"),
        ("otlp_endpoint", "localhost:4318", "must start with http"),
        ("max_text_chars", 0, "max_text_chars"),
        ("unknown_knob", 1, "unknown_knob"),
    ],
)
def test_bad_values_name_the_field(clean_env: None, field: str, value: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Settings(**{field: value})


# -- OTLP per signal ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otlp_traces_endpoint", "http://t:4318/v1/traces"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "otlp_metrics_endpoint", "https://m/custom"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "otlp_logs_endpoint", "http://l:4318/"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "otlp_traces_protocol", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "otlp_metrics_protocol", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "otlp_logs_protocol", "grpc"),
    ],
)
def test_standard_otlp_signal_variables_feed_their_setting(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, field: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    # Signal endpoints are used as they are: not even a trailing slash is removed.
    assert getattr(Settings(), field) == value
    monkeypatch.setenv(f"INFERTRAIL_{field.upper()}", value.replace("grpc", "http/protobuf"))
    assert getattr(Settings(), field) == value.replace("grpc", "http/protobuf")


def test_otlp_defaults_export_nothing_over_otlp(clean_env: None) -> None:
    s = Settings()
    assert (s.otlp_traces_endpoint, s.otlp_metrics_endpoint, s.otlp_logs_endpoint) == (None,) * 3
    assert s.otlp_protocol == "http/protobuf"
    assert (s.otlp_traces_protocol, s.otlp_metrics_protocol, s.otlp_logs_protocol) == (None,) * 3


def test_empty_otlp_variables_count_as_unset(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
    monkeypatch.setenv("INFERTRAIL_OTLP_METRICS_ENDPOINT", "")
    monkeypatch.setenv("INFERTRAIL_OTLP_PROTOCOL", "")
    monkeypatch.setenv("INFERTRAIL_OTLP_LOGS_PROTOCOL", "")
    s = Settings()
    assert (s.otlp_traces_endpoint, s.otlp_metrics_endpoint) == (None, None)
    assert (s.otlp_protocol, s.otlp_logs_protocol) == ("http/protobuf", None)


@pytest.mark.parametrize(
    "variable",
    [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "INFERTRAIL_OTLP_PROTOCOL",
        "INFERTRAIL_OTLP_LOGS_PROTOCOL",
    ],
)
def test_http_json_is_rejected_naming_the_variable_and_the_valid_values(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http/json")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert variable in message
    assert "http/json" in message
    assert "Python SDK does not support" in message
    assert "'grpc' or 'http/protobuf'" in message


def test_unknown_protocol_names_the_valid_values(clean_env: None) -> None:
    with pytest.raises(ValidationError, match=r"must be 'grpc' or 'http/protobuf', got 'GRPC'"):
        Settings(otlp_traces_protocol="GRPC")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("otlp_traces_endpoint", "127.0.0.1:4318", "must start with http:// or https://"),
        ("otlp_metrics_endpoint", "ftp://m:4318", "must start with http:// or https://"),
        ("otlp_logs_endpoint", "http://:4318/v1/logs", "name a host"),
        ("otlp_endpoint", "http://c:43x8", "not a valid URL"),
        ("otlp_endpoint", "http://c:4318/?tenant=a", "must not have a query or fragment"),
        ("otlp_traces_endpoint", "http://c:4318/v1/traces#x", "must not have a query"),
    ],
)
def test_bad_otlp_endpoints_are_named(clean_env: None, field: str, value: str, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle) as caught:
        Settings(**{field: value})
    assert f"OTEL_EXPORTER_{field.upper()}" in str(caught.value)


def test_grpc_endpoint_with_a_path_is_refused(clean_env: None) -> None:
    # Most often an OTLP/HTTP URL given the wrong protocol: the gRPC exporter would drop the path
    # and send gRPC to the HTTP port.
    with pytest.raises(ValidationError, match=r"otlp_traces_endpoint .* without a path"):
        Settings(otlp_traces_endpoint="http://c:4318/v1/traces", otlp_protocol="grpc")
    with pytest.raises(ValidationError, match=r"otlp_endpoint .*got path '/otlp'"):
        Settings(otlp_endpoint="http://c:4317/otlp", otlp_logs_protocol="grpc")
    # A bare host:port, with or without the root path, is what gRPC takes.
    Settings(otlp_endpoint="http://c:4317/", otlp_protocol="grpc")


# -- global providers ----------------------------------------------------------------------------
def test_set_global_providers_defaults_on_and_reads_its_variable(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().set_global_providers is True
    monkeypatch.setenv("INFERTRAIL_SET_GLOBAL_PROVIDERS", "false")
    assert Settings().set_global_providers is False


# -- audit origin --------------------------------------------------------------------------------
def test_audit_origin_derives_from_the_service_name(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().audit_origin == "infertrail.local/infertrail-demo"
    assert Settings(service_name="credit-api").audit_origin == "infertrail.local/credit-api"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud.v2")
    assert Settings().audit_origin == "infertrail.local/fraud.v2"
    # Empty counts as unset, as for the OTEL_* variables.
    monkeypatch.setenv("INFERTRAIL_AUDIT_ORIGIN", "")
    assert Settings().audit_origin == "infertrail.local/fraud.v2"


def test_explicit_audit_origin_wins(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(service_name="credit-api", audit_origin="audit.example.com/credit")
    assert s.audit_origin == "audit.example.com/credit"
    monkeypatch.setenv("INFERTRAIL_AUDIT_ORIGIN", "audit.example.com/env")
    assert Settings(service_name="x").audit_origin == "audit.example.com/env"


def test_service_names_that_are_not_url_safe_are_percent_encoded(clean_env: None) -> None:
    s = Settings(service_name="Credit API+EU/ü")
    assert s.audit_origin == "infertrail.local/Credit%20API%2BEU%2F%C3%BC"
    NoteSigner.generate(s.audit_origin)  # the origin also names the signing key
    Checkpoint(s.audit_origin, 0, bytes(32))


@pytest.mark.parametrize("origin", ["audit log/x", "a+b", "tab\there", "new\nline", "x\ud800"])
def test_invalid_explicit_audit_origin_is_a_clear_error(clean_env: None, origin: str) -> None:
    with pytest.raises(ValidationError, match="audit_origin must be a C2SP log origin"):
        Settings(audit_origin=origin)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=()), min_size=1))
def test_every_service_name_gives_a_valid_origin(name: str) -> None:
    origin = default_audit_origin(name)
    NoteSigner.generate(origin)
    Checkpoint(origin, 0, bytes(32))
    assert unquote(origin.removeprefix("infertrail.local/"), errors="surrogatepass") == name


@given(st.text(min_size=1), st.text(min_size=1))
def test_distinct_service_names_give_distinct_origins(a: str, b: str) -> None:
    assume(a != b)
    assert default_audit_origin(a) != default_audit_origin(b)
