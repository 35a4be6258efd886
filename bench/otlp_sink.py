"""An OTLP/HTTP receiver for the benchmarks: it counts what it is sent and keeps nothing else.

bench/http_load.py starts it as its own process, points the OTLP exporters of the variants under
load at it, and reads ``GET /counts`` once the servers have flushed, so that "no telemetry was
lost at the measured load" is checked rather than assumed. Per service (the resource's
``service.name``) it counts spans by name, log records, and for each histogram its cumulative
count (summed over the data points of one export; the largest seen is kept, which is the latest
one: cumulative counts never decrease, and the threaded server may handle two exports out of
order). ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` take the OTLP/HTTP binary
encoding (protobuf), plain, gzip or deflate as ``Content-Encoding`` says, and answer 200 with an
empty ``Export*ServiceResponse``; JSON bodies are refused (415).

:func:`count_files` takes the same counts from infertrail's OTLP/JSON telemetry files, for the
variants that export there instead.

    .venv/bin/python bench/otlp_sink.py --port 4318
    curl -s http://127.0.0.1:4318/counts
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import signal
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

PROTOBUF = "application/x-protobuf"
SERVICE_NAME = "service.name"
UNKNOWN_SERVICE = "unknown_service"  # what the SDK names a service that set no name
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "identity": lambda body: body,
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
}


@dataclass
class ServiceCounts:
    """What one service exported: spans by name, log records, histogram counts by name."""

    spans: Counter[str] = field(default_factory=Counter)
    log_records: int = 0
    histogram_counts: dict[str, int] = field(default_factory=dict)

    def add_histograms(self, counts: dict[str, int]) -> None:
        """Keep, per histogram, the largest cumulative count seen (the latest one)."""
        for name, n in counts.items():
            self.histogram_counts[name] = max(n, self.histogram_counts.get(name, 0))

    def merge(self, other: ServiceCounts) -> None:
        """Add ``other``'s spans and log records; histograms as :meth:`add_histograms`."""
        self.spans.update(other.spans)
        self.log_records += other.log_records
        self.add_histograms(other.histogram_counts)

    def as_json(self) -> dict[str, Any]:
        """The JSON form ``GET /counts`` answers with, one per service."""
        return {
            "spans": dict(self.spans),
            "log_records": self.log_records,
            "histogram_counts": self.histogram_counts,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ServiceCounts:
        """The counts of one service from :meth:`as_json`'s form."""
        return cls(Counter(obj["spans"]), obj["log_records"], dict(obj["histogram_counts"]))


class Tally:
    """Counts per service, added to by concurrent request handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.services: dict[str, ServiceCounts] = {}

    def add(self, service: str, counts: ServiceCounts) -> None:
        """Merge the counts of one resource's share of an export."""
        with self._lock:
            self.services.setdefault(service, ServiceCounts()).merge(counts)

    def as_json(self) -> dict[str, Any]:
        """Every service's counts, by service name."""
        with self._lock:
            return {name: c.as_json() for name, c in self.services.items()}


# -- the OTLP protobuf messages, one ServiceCounts per resource ---------------------------------


def _service_of(resource: Resource) -> str:
    for kv in resource.attributes:
        if kv.key == SERVICE_NAME:
            return kv.value.string_value
    return UNKNOWN_SERVICE


def traces_pb(request: ExportTraceServiceRequest) -> Iterator[tuple[str, ServiceCounts]]:
    """(service, its spans by name) of each resource in an OTLP traces request."""
    for rs in request.resource_spans:
        names = Counter(span.name for ss in rs.scope_spans for span in ss.spans)
        yield _service_of(rs.resource), ServiceCounts(spans=names)


def logs_pb(request: ExportLogsServiceRequest) -> Iterator[tuple[str, ServiceCounts]]:
    """(service, its number of log records) of each resource in an OTLP logs request."""
    for rl in request.resource_logs:
        n = sum(len(sl.log_records) for sl in rl.scope_logs)
        yield _service_of(rl.resource), ServiceCounts(log_records=n)


def metrics_pb(request: ExportMetricsServiceRequest) -> Iterator[tuple[str, ServiceCounts]]:
    """(service, each histogram's count summed over its data points) of each resource."""
    for rm in request.resource_metrics:
        counts: Counter[str] = Counter()
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.WhichOneof("data") == "histogram":
                    counts[metric.name] += sum(dp.count for dp in metric.histogram.data_points)
        yield _service_of(rm.resource), ServiceCounts(histogram_counts=dict(counts))


# -- the same from OTLP/JSON (lowerCamelCase keys, 64-bit integers as strings) -------------------


def _service_of_json(resource: dict[str, Any]) -> str:
    for kv in resource.get("attributes", ()):
        if kv["key"] == SERVICE_NAME:
            return str(kv["value"].get("stringValue", UNKNOWN_SERVICE))
    return UNKNOWN_SERVICE


def traces_json(request: dict[str, Any]) -> Iterator[tuple[str, ServiceCounts]]:
    """As :func:`traces_pb`, for one OTLP/JSON ``ExportTraceServiceRequest``."""
    for rs in request.get("resourceSpans", ()):
        spans = (s for ss in rs.get("scopeSpans", ()) for s in ss.get("spans", ()))
        names = Counter(s["name"] for s in spans)
        yield _service_of_json(rs.get("resource", {})), ServiceCounts(spans=names)


def logs_json(request: dict[str, Any]) -> Iterator[tuple[str, ServiceCounts]]:
    """As :func:`logs_pb`, for one OTLP/JSON ``ExportLogsServiceRequest``."""
    for rl in request.get("resourceLogs", ()):
        n = sum(len(sl.get("logRecords", ())) for sl in rl.get("scopeLogs", ()))
        yield _service_of_json(rl.get("resource", {})), ServiceCounts(log_records=n)


def metrics_json(request: dict[str, Any]) -> Iterator[tuple[str, ServiceCounts]]:
    """As :func:`metrics_pb`, for one OTLP/JSON ``ExportMetricsServiceRequest``."""
    for rm in request.get("resourceMetrics", ()):
        counts: Counter[str] = Counter()
        for sm in rm.get("scopeMetrics", ()):
            for metric in sm.get("metrics", ()):
                if "histogram" in metric:
                    points = metric["histogram"].get("dataPoints", ())
                    counts[metric["name"]] += sum(int(dp.get("count", 0)) for dp in points)
        yield _service_of_json(rm.get("resource", {})), ServiceCounts(histogram_counts=dict(counts))


# infertrail's files under <data_dir>/telemetry (docs/conventions.md, "Files"): one OTLP/JSON
# request per line; rotated ones are <stem>.<UTC time>.jsonl (docs/retention.md).
FILE_STREAMS: dict[str, Callable[[dict[str, Any]], Iterable[tuple[str, ServiceCounts]]]] = {
    "traces": traces_json,
    "logs": logs_json,
    "metrics": metrics_json,
}


def count_files(telemetry_dir: Path) -> ServiceCounts:
    """Everything in a telemetry directory's OTLP/JSON files (rotated ones included), counted
    as the sink counts it, all services together; empty when nothing was written."""
    total = ServiceCounts()
    for stem, walk in FILE_STREAMS.items():
        for path in [*telemetry_dir.glob(f"{stem}.*.jsonl"), telemetry_dir / f"{stem}.jsonl"]:
            if not path.exists():
                continue
            with path.open("rb") as f:
                for line in f:
                    for _, counts in walk(orjson.loads(line)):
                        total.merge(counts)
    return total


# -- the HTTP receiver ---------------------------------------------------------------------------


class Route(NamedTuple):
    """How one OTLP/HTTP path is decoded and counted."""

    request: type[Message]
    response: type[Message]
    walk: Callable[[Any], Iterable[tuple[str, ServiceCounts]]]


ROUTES = {
    "/v1/traces": Route(ExportTraceServiceRequest, ExportTraceServiceResponse, traces_pb),
    "/v1/metrics": Route(ExportMetricsServiceRequest, ExportMetricsServiceResponse, metrics_pb),
    "/v1/logs": Route(ExportLogsServiceRequest, ExportLogsServiceResponse, logs_pb),
}


class SinkServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the :class:`Tally` its handlers add to."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, SinkHandler)
        self.tally = Tally()


class SinkHandler(BaseHTTPRequestHandler):
    """OTLP/HTTP export requests in, counted; ``GET /counts`` out."""

    protocol_version = "HTTP/1.1"  # keep-alive: the exporters reuse their connection
    server: SinkServer

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True  # the body's end is unknown: the stream is unusable
            self._reply(411, b"Content-Length required (chunked bodies are not supported)")
            return
        body = self.rfile.read(int(length))
        route = ROUTES.get(self.path)
        if route is None:
            self._reply(404, f"no route {self.path}; valid: {', '.join(ROUTES)}".encode())
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != PROTOBUF:
            self._reply(415, f"Content-Type {content_type!r}: only {PROTOBUF}".encode())
            return
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        decode = DECODERS.get(encoding)
        if decode is None:
            self._reply(
                415, f"Content-Encoding {encoding!r}; valid: {', '.join(DECODERS)}".encode()
            )
            return
        request = route.request()
        try:
            request.ParseFromString(decode(body))
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            self._reply(400, f"undecodable {encoding} {route.request.__name__}: {exc}".encode())
            return
        for service, counts in route.walk(request):
            self.server.tally.add(service, counts)
        self._reply(200, route.response().SerializeToString(), PROTOBUF)

    def do_GET(self) -> None:
        if self.path != "/counts":
            self._reply(404, f"no route {self.path}; GET /counts".encode())
            return
        self._reply(200, json.dumps(self.server.tally.as_json()).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Not logged: a line per export would cost the sink more than counting does."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=4318, help="port (OTLP/HTTP's is 4318)")
    opts = parser.parse_args(argv)
    # SIGTERM ends it as SIGINT does: through KeyboardInterrupt out of serve_forever.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with SinkServer((opts.host, opts.port)) as server:
        print(f"otlp sink listening on http://{opts.host}:{opts.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print(json.dumps(server.tally.as_json()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
