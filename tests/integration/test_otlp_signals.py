"""Each signal goes to its own OTLP endpoint over its own protocol, and a signal without an
endpoint is not sent at all.

The receivers are small but real: an HTTP server and a gRPC server (the OTLP collector services
from ``opentelemetry-proto``) that decode every request into the OTLP protobuf messages and keep
it, so the tests see exactly which requests were made, on which path or service, with what.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from infertrail.config import Settings
from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

from .conftest import LOOPBACK

pytestmark = pytest.mark.integration

TRACES = trace_service_pb2.ExportTraceServiceRequest
METRICS = metrics_service_pb2.ExportMetricsServiceRequest
LOGS = logs_service_pb2.ExportLogsServiceRequest
_RESPONSES: dict[type[Message], type[Message]] = {
    TRACES: trace_service_pb2.ExportTraceServiceResponse,
    METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    LOGS: logs_service_pb2.ExportLogsServiceResponse,
}


@dataclass
class Received:
    """Requests a receiver got: (path or gRPC service, decoded request), in arrival order."""

    requests: list[tuple[str, Message]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, where: str, message: Message) -> None:
        with self.lock:
            self.requests.append((where, message))

    def places(self) -> set[str]:
        with self.lock:
            return {where for where, _ in self.requests}

    def of(self, kind: type[Message]) -> list[Any]:
        with self.lock:
            return [m for _, m in self.requests if isinstance(m, kind)]


class OtlpHttpReceiver:
    """OTLP/HTTP (protobuf) on loopback; ``routes`` maps each path to the request it decodes.

    Any other path answers 404 and is recorded under its path with an empty trace request.
    """

    def __init__(self, routes: dict[str, type[Message]]) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                kind = routes.get(self.path)
                if kind is None or self.headers["Content-Type"] != "application/x-protobuf":
                    received.add(self.path, TRACES())
                    self.send_error(404 if kind is None else 415)
                    return
                received.add(self.path, kind.FromString(body))
                reply = _RESPONSES[kind]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # the test reads self.received, not the access log

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class OtlpGrpcReceiver:
    """The three OTLP gRPC collector services on loopback, recording each Export call."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                received.add("TraceService", request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                received.add("MetricsService", request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                received.add("LogsService", request)
                return logs_service_pb2.ExportLogsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._server)
        port = self._server.add_insecure_port(f"{LOOPBACK}:0")
        self.url = f"http://{LOOPBACK}:{port}"
        self._server.start()

    def close(self) -> None:
        self._server.stop(grace=None).wait(10)


@pytest.fixture
def http_receiver() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver(
        {"/v1/traces": TRACES, "/v1/metrics": METRICS, "/v1/logs": LOGS, "/custom/m": METRICS}
    )
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    receiver = OtlpGrpcReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _run(settings: Settings) -> Telemetry:
    """Emit every signal, long enough for several metric intervals, then flush and stop."""
    telemetry = Telemetry(settings)
    for i in range(3):
        with telemetry.tracer.start_as_current_span(c.SPAN_NAME_INFERENCE) as span:
            span.set_attribute("test.index", i)
            telemetry.instruments.duration.record(0.01 * (i + 1), (("model", "m"),))
            telemetry.logger.emit(body={"event": "inference", "index": i})
    time.sleep(0.5)  # metric_export_interval_ms=100: a configured metrics export would run
    assert telemetry.force_flush(10_000)
    assert telemetry.shutdown(timeout_s=10)
    return telemetry


def _settings(tmp_path: Path, **otlp: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        telemetry_files=False,
        metric_export_interval_ms=100,
        traces_sampler="always_on",
        **otlp,
    )


def _span_names(requests: list[Any]) -> list[str]:
    return [
        span.name
        for request in requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def _metric_names(requests: list[Any]) -> set[str]:
    return {
        metric.name
        for request in requests
        for resource_metrics in request.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


def _log_count(requests: list[Any]) -> int:
    return sum(
        len(scope_logs.log_records)
        for request in requests
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
    )


def _service_name(request: Any) -> str:
    resource = request.resource_spans[0].resource
    return next(a.value.string_value for a in resource.attributes if a.key == "service.name")


def test_traces_only_endpoint_over_http_sends_no_metric_or_log_request(
    tmp_path: Path, http_receiver: OtlpHttpReceiver
) -> None:
    telemetry = _run(_settings(tmp_path, otlp_traces_endpoint=f"{http_receiver.url}/v1/traces"))

    assert http_receiver.received.places() == {"/v1/traces"}
    traces = http_receiver.received.of(TRACES)
    assert _span_names(traces) == [c.SPAN_NAME_INFERENCE] * 3
    assert _service_name(traces[0]) == telemetry.settings.service_name
    assert telemetry.failures.counts == {}
    assert set(telemetry.otlp_targets) == {"traces"}


def test_traces_only_endpoint_over_grpc_calls_only_the_trace_service(
    tmp_path: Path, grpc_receiver: OtlpGrpcReceiver
) -> None:
    telemetry = _run(
        _settings(tmp_path, otlp_traces_endpoint=grpc_receiver.url, otlp_traces_protocol="grpc")
    )

    assert grpc_receiver.received.places() == {"TraceService"}
    assert _span_names(grpc_receiver.received.of(TRACES)) == [c.SPAN_NAME_INFERENCE] * 3
    assert telemetry.failures.counts == {}


def test_each_signal_goes_to_its_own_endpoint_and_protocol(
    tmp_path: Path, http_receiver: OtlpHttpReceiver, grpc_receiver: OtlpGrpcReceiver
) -> None:
    telemetry = _run(
        _settings(
            tmp_path,
            # logs: the base endpoint, over HTTP, path appended
            otlp_endpoint=http_receiver.url,
            # traces: their own endpoint, over gRPC
            otlp_traces_endpoint=grpc_receiver.url,
            otlp_traces_protocol="grpc",
            # metrics: their own endpoint, used as it is
            otlp_metrics_endpoint=f"{http_receiver.url}/custom/m",
        )
    )

    assert grpc_receiver.received.places() == {"TraceService"}
    assert http_receiver.received.places() == {"/custom/m", "/v1/logs"}
    assert _span_names(grpc_receiver.received.of(TRACES)) == [c.SPAN_NAME_INFERENCE] * 3
    assert c.METRIC_DURATION in _metric_names(http_receiver.received.of(METRICS))
    assert _log_count(http_receiver.received.of(LOGS)) == 3
    assert telemetry.failures.counts == {}


def test_grpc_base_endpoint_sends_every_signal(
    tmp_path: Path, grpc_receiver: OtlpGrpcReceiver
) -> None:
    telemetry = _run(_settings(tmp_path, otlp_endpoint=grpc_receiver.url, otlp_protocol="grpc"))

    assert grpc_receiver.received.places() == {"TraceService", "MetricsService", "LogsService"}
    assert _span_names(grpc_receiver.received.of(TRACES)) == [c.SPAN_NAME_INFERENCE] * 3
    assert c.METRIC_DURATION in _metric_names(grpc_receiver.received.of(METRICS))
    assert _log_count(grpc_receiver.received.of(LOGS)) == 3
    assert telemetry.failures.counts == {}
