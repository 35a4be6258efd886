from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from infertrail.config import Settings


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
