"""CPU per request of the HTTP server telemetry: none, the FastAPI instrumentation, infertrail's.

Drives one FastAPI app (``GET /v1/items/{item_id}?model=m&subject_id=s``, an async endpoint,
behind ``--routes`` other routes, as a real service has) directly as an ASGI app in one event
loop, no network, under each variant:

- ``bare``: no HTTP telemetry;
- ``fastapi-instrumentor``: ``FastAPIInstrumentor`` over the same SDK providers, tuned as
  infertrail tuned it when it used the instrumentation (receive/send spans off, the probe paths
  excluded), its spans not redacted and all its metrics recorded (infertrail's redacting tracer
  provider and duration-only meter provider are gone with that path);
- ``httpserver, sdk histogram``: :class:`~infertrail.telemetry.httpserver.HttpServerTelemetry`
  recording the duration into the same SDK histogram (with the span as exemplar);
- ``httpserver, list``: the same, its duration appended to a list (what a batched histogram
  costs on the request path, roughly).

Spans go through one SDK ``BatchSpanProcessor`` to an exporter that drops them. CPU is the
process's (every thread, the batch worker's too) per request; each round runs every variant once
in a rotating order, and the table shows medians over rounds (the first round is a warm-up).
It also times :class:`~infertrail.telemetry.redacting.RedactingSpan` (wrapping a span, and one
call through it), which the middleware hands to the app as its current span.

    .venv/bin/python bench/http_middleware.py            # 9 rounds of 3,000 requests
    .venv/bin/python bench/http_middleware.py --quick    # 4 rounds of 800
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

# The instrumentation's stable HTTP conventions, which infertrail's layer always emits.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext

from infertrail.runtime.asgi import DEFAULT_EXCLUDED_URLS
from infertrail.telemetry import conventions as c
from infertrail.telemetry.httpserver import HttpServerTelemetry, MetricAttributes
from infertrail.telemetry.redacting import RedactingSpan
from infertrail.telemetry.redaction import QueryRedaction
from machine import cpu_model

Message = dict[str, Any]
ASGI = Callable[[Message, Any, Any], Any]
KEEP = frozenset({"model"})


class Dropping(SpanExporter):
    """Counts the spans it is given and keeps none (the exporter is not what is measured)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def make_app(routes: int) -> FastAPI:
    app = FastAPI()
    for k in range(routes):  # matched before the target, as a service's other routes are

        @app.get(f"/v1/other{k}/{{thing}}")
        async def other(thing: str) -> dict[str, str]:
            return {"thing": thing}

    @app.get("/v1/items/{item_id}")
    async def item(item_id: int, model: str = "") -> dict[str, Any]:
        return {"id": item_id, "model": model}

    return app


def scope() -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/items/42",
        "raw_path": b"/v1/items/42",
        "root_path": "",
        "query_string": b"model=m1&subject_id=applicant-7Q4ZK9",
        "headers": [
            (b"host", b"localhost:8000"),
            (b"user-agent", b"wrk/4.2"),
            (b"accept", b"*/*"),
            (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ],
        "client": ("127.0.0.1", 51234),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    if message["type"] == "http.response.start" and message["status"] != 200:
        raise RuntimeError(f"the app answered {message['status']}")


async def serve(app: ASGI, n: int) -> None:
    for _ in range(n):
        await app(scope(), _receive, _send)


def variants(routes: int, provider: TracerProvider) -> dict[str, ASGI]:
    """Each variant's ASGI app, over the one tracer provider."""
    bare = make_app(routes)

    instrumented = make_app(routes)
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    FastAPIInstrumentor.instrument_app(
        instrumented,
        tracer_provider=provider,
        meter_provider=meters,
        excluded_urls=DEFAULT_EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )

    ours_meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    histogram = ours_meters.get_meter("bench").create_histogram(
        c.METRIC_HTTP_SERVER_DURATION, unit="s"
    )

    def into_histogram(seconds: float, attributes: MetricAttributes, ctx: SpanContext) -> None:
        parent = trace.set_span_in_context(NonRecordingSpan(ctx))
        histogram.record(seconds, dict(attributes), context=parent)

    kept: list[tuple[float, MetricAttributes, SpanContext]] = []

    def into_list(seconds: float, attributes: MetricAttributes, ctx: SpanContext) -> None:
        kept.append((seconds, attributes, ctx))
        if len(kept) > 10_000:
            kept.clear()

    def ours(record: Callable[[float, MetricAttributes, SpanContext], None]) -> FastAPI:
        app = make_app(routes)
        app.add_middleware(
            HttpServerTelemetry,
            tracer=provider.get_tracer("infertrail.http"),
            record_duration=record,
            redaction=QueryRedaction(KEEP),
            excluded_paths=DEFAULT_EXCLUDED_URLS.split(","),
        )
        return app

    return {
        "bare": bare,
        "fastapi-instrumentor": instrumented,
        "httpserver, sdk histogram": ours(into_histogram),
        "httpserver, list": ours(into_list),
    }


def redacting_span_us(provider: TracerProvider) -> tuple[float, float]:
    """Microseconds to wrap a span (and show its query), and per call through the wrapper."""
    span = provider.get_tracer("bench").start_span("s")

    def wrap() -> None:
        RedactingSpan(span).show_query("model=m1&subject_id=REDACTED")

    wrapped = RedactingSpan(span)

    def through() -> None:
        wrapped.get_span_context()

    def direct() -> None:
        span.get_span_context()

    n = 100_000
    wrap_us = min(timeit.repeat(wrap, number=n, repeat=5)) / n * 1e6
    through_s = min(timeit.repeat(through, number=n, repeat=5))
    direct_s = min(timeit.repeat(direct, number=n, repeat=5))
    extra_us = (through_s - direct_s) / n * 1e6
    span.end()
    return wrap_us, extra_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 rounds of 800 requests")
    parser.add_argument("--requests", type=int, default=3000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (plus a warm-up)")
    parser.add_argument("--routes", type=int, default=20, help="routes before the target")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 800, 4

    print(f"# HTTP server telemetry, CPU per request ({dt.date.today()}, {cpu_model()})")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "fastapi",
            "starlette",
            "opentelemetry-sdk",
            "opentelemetry-instrumentation-fastapi",
        )
    )
    print(
        f"{versions}; {args.routes} other routes; {args.requests} requests x {args.rounds} rounds"
    )

    exporter = Dropping()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    apps = variants(args.routes, provider)
    names = list(apps)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    loop = asyncio.new_event_loop()
    for round_ in range(args.rounds + 1):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:  # each variant in each position in turn
            provider.force_flush()
            c0, w0 = time.process_time(), time.perf_counter()
            loop.run_until_complete(serve(apps[name], args.requests))
            provider.force_flush()  # the batch worker's CPU for these spans counts here
            c1, w1 = time.process_time(), time.perf_counter()
            if round_:  # the first round warms up
                cpu[name].append((c1 - c0) / args.requests * 1e6)
                wall[name].append((w1 - w0) / args.requests * 1e6)
    loop.close()
    exported = exporter.count
    wrap_us, extra_us = redacting_span_us(provider)
    provider.shutdown()

    bare_cpu = statistics.median(cpu["bare"])
    print()
    print(
        "| variant | CPU us/request | added CPU us | wall us/request | CPU min..max over rounds |"
    )
    print("|---|---|---|---|---|")
    for name in names:
        med = statistics.median(cpu[name])
        added = "-" if name == "bare" else f"{med - bare_cpu:.1f}"
        spread = f"{min(cpu[name]):.1f}..{max(cpu[name]):.1f}"
        print(f"| {name} | {med:.1f} | {added} | {statistics.median(wall[name]):.1f} | {spread} |")
    print()
    print(f"RedactingSpan: {wrap_us:.2f} us to wrap a span and show its query, ", end="")
    print(f"{extra_us:.2f} us added per call through it")
    expected = 3 * args.requests * (args.rounds + 1)
    print(f"spans exported: {exported} (expected {expected})")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
