"""Per-signal OTLP endpoints and protocols, resolved as the OpenTelemetry exporter spec says."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infertrail.config import Settings
from infertrail.otlp import PROTOCOLS, SIGNALS, OtlpTarget, resolve_otlp

HTTP = "http/protobuf"


def _targets(**values: Any) -> dict[str, OtlpTarget]:
    return dict(resolve_otlp(Settings(**values)))


def test_no_endpoint_means_no_otlp_at_all(clean_env: None) -> None:
    assert _targets() == {}
    assert _targets(otlp_protocol="grpc", otlp_traces_protocol=HTTP) == {}


# The examples of the spec's "Endpoint URLs for OTLP/HTTP" section.
def test_base_endpoint_gets_each_signal_path_appended(clean_env: None) -> None:
    assert _targets(otlp_endpoint="http://collector:4318") == {
        "traces": OtlpTarget("http://collector:4318/v1/traces", HTTP),
        "metrics": OtlpTarget("http://collector:4318/v1/metrics", HTTP),
        "logs": OtlpTarget("http://collector:4318/v1/logs", HTTP),
    }


def test_base_endpoint_path_is_kept_before_the_signal_path(clean_env: None) -> None:
    targets = _targets(otlp_endpoint="https://collector:4318/mycollector/")
    assert targets["traces"] == OtlpTarget("https://collector:4318/mycollector/v1/traces", HTTP)


@pytest.mark.parametrize(
    "endpoint",
    ["http://collector:4318/v1/traces", "http://collector:4318/", "http://collector:4318/x/y"],
)
def test_signal_endpoint_is_used_as_it_is(clean_env: None, endpoint: str) -> None:
    assert _targets(otlp_traces_endpoint=endpoint) == {"traces": OtlpTarget(endpoint, HTTP)}


def test_signal_endpoint_wins_over_the_base_for_that_signal_only(clean_env: None) -> None:
    targets = _targets(
        otlp_endpoint="http://base:4318", otlp_metrics_endpoint="http://metrics:9090/otlp"
    )
    assert targets == {
        "traces": OtlpTarget("http://base:4318/v1/traces", HTTP),
        "metrics": OtlpTarget("http://metrics:9090/otlp", HTTP),
        "logs": OtlpTarget("http://base:4318/v1/logs", HTTP),
    }


def test_traces_only_backend(clean_env: None) -> None:
    # Phoenix, Jaeger, Tempo: only traces go out; metrics and logs are not exported over OTLP.
    assert _targets(otlp_traces_endpoint="http://phoenix:6006/v1/traces") == {
        "traces": OtlpTarget("http://phoenix:6006/v1/traces", HTTP)
    }


def test_grpc_uses_the_base_endpoint_unchanged(clean_env: None) -> None:
    targets = _targets(otlp_endpoint="http://collector:4317", otlp_protocol="grpc")
    assert set(targets.values()) == {OtlpTarget("http://collector:4317", "grpc")}


def test_signal_protocol_wins_over_the_general_one(clean_env: None) -> None:
    targets = _targets(
        otlp_endpoint="http://collector:4317",
        otlp_protocol="grpc",
        otlp_logs_protocol=HTTP,
        otlp_logs_endpoint="http://collector:4318/v1/logs",
    )
    assert targets["traces"] == OtlpTarget("http://collector:4317", "grpc")
    assert targets["logs"] == OtlpTarget("http://collector:4318/v1/logs", HTTP)
    # A signal's protocol alone changes how the base endpoint is used for it.
    targets = _targets(otlp_endpoint="http://collector:4318", otlp_traces_protocol="grpc")
    assert targets["traces"] == OtlpTarget("http://collector:4318", "grpc")
    assert targets["metrics"] == OtlpTarget("http://collector:4318/v1/metrics", HTTP)


_hosts = st.sampled_from(["collector", "127.0.0.1", "[::1]", "otel.example.com"])
_ports = st.one_of(st.none(), st.integers(1, 65535))
_segments = st.lists(st.from_regex(r"[a-z0-9_~.-]{1,8}", fullmatch=True), max_size=3)


@st.composite
def _urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    port = draw(_ports)
    path = "/".join(draw(_segments))
    slash = draw(st.sampled_from(["", "/"]))
    netloc = draw(_hosts) + ("" if port is None else f":{port}")
    return f"{scheme}://{netloc}" + (f"/{path}" if path else "") + slash


_endpoints = st.one_of(st.none(), _urls())
_protocols = st.one_of(st.none(), st.sampled_from(PROTOCOLS))


# The clean_env fixture only clears OTEL_*/INFERTRAIL_* variables; no example changes them.
@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=_endpoints,
    own=st.fixed_dictionaries({s: _endpoints for s in SIGNALS}),
    general=st.sampled_from(PROTOCOLS),
    own_protocol=st.fixed_dictionaries({s: _protocols for s in SIGNALS}),
)
def test_resolution_follows_the_spec(
    clean_env: None,
    base: str | None,
    own: dict[str, str | None],
    general: str,
    own_protocol: dict[str, str | None],
) -> None:
    values: dict[str, Any] = {"otlp_endpoint": base, "otlp_protocol": general}
    for signal in SIGNALS:
        values[f"otlp_{signal}_endpoint"] = own[signal]
        values[f"otlp_{signal}_protocol"] = own_protocol[signal]
    protocol = {s: own_protocol[s] or general for s in SIGNALS}
    used = {s: own[s] or base for s in SIGNALS}
    grpc_with_path = any(
        used[s] is not None
        and protocol[s] == "grpc"
        and urlsplit(used[s] or "").path not in ("", "/")
        for s in SIGNALS
    )
    if grpc_with_path:
        with pytest.raises(ValidationError, match="without a path"):
            Settings(**values)
        return

    targets = resolve_otlp(Settings(**values))

    assert set(targets) == {s for s in SIGNALS if used[s] is not None}
    for signal, target in targets.items():
        assert target.protocol == protocol[signal]
        own_endpoint = own[signal]
        if own_endpoint is not None:
            assert target.endpoint == own_endpoint
            continue
        assert base is not None
        if target.protocol == "grpc":
            assert target.endpoint == base.rstrip("/")
        else:
            got, given_base = urlsplit(target.endpoint), urlsplit(base)
            assert (got.scheme, got.netloc) == (given_base.scheme, given_base.netloc)
            assert got.path == given_base.path.rstrip("/") + f"/v1/{signal}"
