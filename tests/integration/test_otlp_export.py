"""OTLP export to a real receiver (Arize Phoenix), read back through its REST API.

Phoenix ingests traces only. Given as the base endpoint for every signal, it also shows the other
half of the contract: the metrics and logs it rejects are counted as export failures and never
reach a request. Given as the traces endpoint alone (over OTLP/HTTP or gRPC), it gets the traces
and no metric or log request is made at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

from .conftest import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    assert_loopback_only,
    clean_env,
    free_port,
    isolated_environment,
    listening_addresses,
    poll,
    process_launcher,
    serving,
    settings_for,
    wait_http_ok,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHOENIX_PYTHON = REPO_ROOT / ".venv-phoenix" / "bin" / "python"
PHOENIX_LAUNCHER = Path(__file__).with_name("phoenix_local.py")
HTTP_SPAN_NAME = "POST /v1/sentiment"
TEXTS = (
    "Great phone, the battery lasts for days and the screen is gorgeous.",
    "Terrible service, the food was cold and the waiter was rude.",
    "It works as described, nothing more.",
    "I would not buy this again: it broke after one week.",
    "Absolutely loved the acting and the soundtrack.",
)


@dataclass
class Phoenix:
    process: ManagedProcess
    base_url: str
    grpc_port: int

    def spans(self, trace_ids: list[str]) -> list[dict[str, Any]] | None:
        """Spans of these traces in the default project (None while it does not exist yet)."""
        params = httpx.QueryParams({"trace_id": trace_ids, "limit": 1000})
        r = httpx.get(f"{self.base_url}/v1/projects/default/spans", params=params, timeout=5.0)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data: list[dict[str, Any]] = r.json()["data"]
        return data


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """Phoenix on loopback-only ports with a fresh database; stopped after the module."""
    if not PHOENIX_PYTHON.exists():
        pytest.fail(f"{PHOENIX_PYTHON} is missing: run scripts/test-services.sh", pytrace=False)
    work = tmp_path_factory.mktemp("phoenix")
    http_port, grpc_port = free_port(), free_port()
    env = clean_env(
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        PHOENIX_WORKING_DIR=str(work / "data"),
        PHOENIX_HOST=LOOPBACK,
        PHOENIX_PORT=str(http_port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        # We only need OTLP ingestion and the REST API: switch off the unauthenticated extras
        # (LLM assistant with a server-side bash tool, code sandboxes, MCP server).
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
        PHOENIX_AGENTS_DISABLE_BASH="true",
        PHOENIX_ALLOWED_SANDBOX_PROVIDERS="NONE",
        PHOENIX_ENABLE_MCP_SERVER="false",
        # Its migrations log every SQL statement: keep the log readable for failure messages.
        PHOENIX_LOG_MIGRATIONS="false",
    )
    base = f"http://{LOOPBACK}:{http_port}"
    with process_launcher(work / "logs") as launcher:
        proc = launcher.start("phoenix", [PHOENIX_PYTHON, PHOENIX_LAUNCHER], env=env, cwd=work)
        # ~8 s on a fresh database on an idle machine; generous because CI shares 2 cores.
        wait_http_ok(f"{base}/healthz", timeout_s=120, process=proc, what="Phoenix /healthz")
        poll(
            lambda: listening_addresses(grpc_port) or None,
            timeout_s=10,
            process=proc,
            what=f"Phoenix gRPC listener on {grpc_port}",
        )
        assert_loopback_only(http_port, proc)
        assert_loopback_only(grpc_port, proc)
        yield Phoenix(proc, base, grpc_port)


@dataclass
class TracedRun:
    """What the service answered, and the export failures counted, in a run against Phoenix."""

    responses: list[httpx.Response]
    failures_after_first_flush: dict[tuple[str, str], int]
    failures_at_end: dict[tuple[str, str], int]


@pytest.fixture(scope="module")
def traced_run(
    phoenix: Phoenix, trained_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> TracedRun:
    """Serve with OTLP to Phoenix; send requests before and after exports have failed."""
    scratch = tmp_path_factory.mktemp("traced-run")
    with isolated_environment(scratch):
        settings = settings_for(
            scratch / "data", otlp_endpoint=phoenix.base_url, metric_export_interval_ms=500
        )
        with serving(settings, trained_models) as svc, svc.client() as client:
            responses = [client.post("/v1/sentiment", json={"text": t}) for t in TEXTS]
            svc.services.monitor.flush()
            first = dict(svc.services.monitor.telemetry.failures.counts)
            # Exports have now failed at least once (asserted below): the service must not care.
            responses += [client.post("/v1/sentiment", json={"text": t}) for t in TEXTS]
            svc.services.monitor.flush()
            end = dict(svc.services.monitor.telemetry.failures.counts)
    return TracedRun(responses, first, end)


def test_every_request_is_answered_while_metrics_and_logs_exports_fail(
    traced_run: TracedRun,
) -> None:
    assert [r.status_code for r in traced_run.responses] == [200] * 2 * len(TEXTS)
    first, end = traced_run.failures_after_first_flush, traced_run.failures_at_end
    # Phoenix has no /v1/metrics or /v1/logs: every such export fails and is counted.
    assert first.get(("metrics", "otlp"), 0) > 0, first
    assert first.get(("logs", "otlp"), 0) > 0, first
    assert end[("metrics", "otlp")] > first[("metrics", "otlp")], end
    assert end[("logs", "otlp")] > first[("logs", "otlp")], end
    # ... while the trace exports to the same endpoint, and every file export, succeed.
    assert end.get(("traces", "otlp"), 0) == 0, end
    assert not {k: n for k, n in end.items() if k[1] != "otlp"}, end


def test_request_traces_are_read_back_from_phoenix(phoenix: Phoenix, traced_run: TracedRun) -> None:
    bodies = [r.json() for r in traced_run.responses]
    trace_ids = [b["trace_id"] for b in bodies]
    assert len(set(trace_ids)) == len(bodies), "each request must have its own trace"

    def all_arrived() -> list[dict[str, Any]] | None:
        spans = phoenix.spans(trace_ids)
        # Phoenix inserts in the background: wait for both spans of every trace.
        return spans if spans is not None and len(spans) >= 2 * len(trace_ids) else None

    spans = poll(all_arrived, timeout_s=30, process=phoenix.process, what="spans in Phoenix")
    by_trace: dict[str, dict[str, dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], {})[span["name"]] = span

    for response, body in zip(traced_run.responses, bodies, strict=True):
        tid = body["trace_id"]
        assert set(by_trace[tid]) == {HTTP_SPAN_NAME, c.SPAN_NAME_INFERENCE}, by_trace[tid]
        http_span = by_trace[tid][HTTP_SPAN_NAME]
        inference = by_trace[tid][c.SPAN_NAME_INFERENCE]

        # One trace per request, the inference nested directly under the HTTP server span.
        assert http_span["parent_id"] is None
        assert inference["parent_id"] == http_span["context"]["span_id"]
        assert http_span["attributes"]["http.response.status_code"] == 200
        assert http_span["attributes"][c.REQUEST_ID] == body["request_id"]

        attrs = inference["attributes"]
        model = body["model"]
        assert attrs[c.MODEL_NAME] == model["name"] == "sentiment"
        assert attrs[c.MODEL_VERSION] == model["version"]
        assert attrs[c.MODEL_SHA256] == model["sha256"]
        assert len(model["sha256"]) == 64
        assert attrs[c.REQUEST_ID] == body["request_id"] == response.headers["x-request-id"]
        assert attrs[c.PREDICTION_LABEL] == body["label"]
        assert math.isclose(attrs[c.PREDICTION_CONFIDENCE], body["confidence"])
        assert math.isclose(attrs[c.PREDICTION_SCORE], body["score"])


def test_closed_otlp_endpoint_is_counted_never_raised(
    trained_models: Path, tmp_path: Path, isolated_env: None
) -> None:
    # A port taken from the OS and released: nothing listens, connections are refused.
    endpoint = f"http://{LOOPBACK}:{free_port()}"
    settings = settings_for(
        tmp_path / "data", otlp_endpoint=endpoint, metric_export_interval_ms=200
    )
    with serving(settings, trained_models) as svc, svc.client() as client:
        failures = svc.services.monitor.telemetry.failures
        before = [client.post("/v1/sentiment", json={"text": t}) for t in TEXTS]

        def all_signals_failed() -> dict[tuple[str, str], int] | None:
            counts = dict(failures.counts)
            wanted = [("traces", "otlp"), ("metrics", "otlp"), ("logs", "otlp")]
            return counts if all(counts.get(k, 0) > 0 for k in wanted) else None

        # The exporter retries a refused connection with backoff for up to its 5 s timeout.
        counts = poll(all_signals_failed, timeout_s=30, what="OTLP failures to be counted")
        after = [client.post("/v1/sentiment", json={"text": t}) for t in TEXTS]
        trace_ids = {r.json()["trace_id"] for r in before + after}

    assert [r.status_code for r in before + after] == [200] * 2 * len(TEXTS)
    assert not {k: n for k, n in counts.items() if k[1] != "otlp"}, counts
    # The file exporters are unaffected: every request's trace was written locally.
    written = (settings.telemetry_dir / "traces.jsonl").read_text()
    assert all(tid in written for tid in trace_ids)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_traces_only_endpoint_reaches_phoenix_and_nothing_else_is_sent(
    phoenix: Phoenix, tmp_path: Path, isolated_env: None, protocol: str
) -> None:
    grpc_url = f"http://{LOOPBACK}:{phoenix.grpc_port}"
    endpoint = f"{phoenix.base_url}/v1/traces" if protocol == "http/protobuf" else grpc_url
    settings = settings_for(
        tmp_path / "data",
        telemetry_files=False,
        otlp_traces_endpoint=endpoint,
        otlp_traces_protocol=protocol,
        metric_export_interval_ms=100,
    )
    telemetry = Telemetry(settings)
    model = f"phoenix-{protocol}"
    trace_ids = []
    for i in range(3):
        with telemetry.tracer.start_as_current_span(c.SPAN_NAME_INFERENCE) as span:
            span.set_attributes({c.MODEL_NAME: model, c.PREDICTION_SCORE: i / 10})
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
            telemetry.instruments.duration.record(0.01, ((c.MODEL_NAME, model),))
            telemetry.logger.emit(body={"event": "inference", "model": model})
    time.sleep(0.5)  # several metric intervals: a configured metrics exporter would have run
    assert telemetry.force_flush(10_000)
    assert telemetry.shutdown(timeout_s=10)

    # Only traces had an OTLP exporter, and Phoenix accepted every export (no 405 for metrics
    # or logs: those requests were never made).
    assert set(telemetry.otlp_targets) == {"traces"}
    assert telemetry.otlp_targets["traces"].protocol == protocol
    assert telemetry.failures.counts == {}

    def arrived() -> list[dict[str, Any]] | None:
        spans = phoenix.spans(trace_ids)
        return spans if spans is not None and len(spans) >= len(trace_ids) else None

    spans = poll(arrived, timeout_s=30, process=phoenix.process, what=f"{protocol} spans")
    assert sorted(s["context"]["trace_id"] for s in spans) == sorted(trace_ids)
    assert {s["name"] for s in spans} == {c.SPAN_NAME_INFERENCE}
    assert {s["attributes"][c.MODEL_NAME] for s in spans} == {model}
    assert sorted(s["attributes"][c.PREDICTION_SCORE] for s in spans) == [0.0, 0.1, 0.2]
