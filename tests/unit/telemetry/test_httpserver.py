"""telemetry/httpserver.py: the lean HTTP server span and duration, against the instrumentation.

The same FastAPI app is served once under ``FastAPIInstrumentor`` (``receive``/``send`` spans
off, the probe paths excluded) and once under :class:`HttpServerTelemetry`, each over its own
SDK tracer provider (spans kept in memory) and meter provider: the exported server spans (the
instrumentation's with their query and exception messages redacted afterwards, as the middleware
redacts them) and the duration histograms must agree. The redaction of what a request carries
is tested against the middleware, and the rest drives it as a plain ASGI app.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request, WebSocket
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from infertrail.runtime.asgi import _turn_off_native_telemetry
from infertrail.telemetry import conventions as c
from infertrail.telemetry.httpserver import HttpServerTelemetry, MetricAttributes
from infertrail.telemetry.redacting import RedactingSpan
from infertrail.telemetry.redaction import REDACTED, QueryRedaction

RAW = "applicant-7Q4ZK9"  # the raw subject id the requests carry
EXCLUDED = "healthz,readyz,livez,metrics"  # runtime/asgi.py's DEFAULT_EXCLUDED_URLS
KEEP = frozenset({"model"})
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
DURATION = c.METRIC_HTTP_SERVER_DURATION

Message = dict[str, Any]


@pytest.fixture
def stable_http_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference emits the stable HTTP conventions, as the middleware always does.

    The instrumentation reads ``OTEL_SEMCONV_STABILITY_OPT_IN`` once per process, and an earlier
    test (the GenAI ones) may have made it read another value: set the variable and make it
    read it again; both are restored afterwards.
    """
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as stability,
    )

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})


def quiet(app: FastAPI) -> FastAPI:
    """``app`` without FastAPI's native telemetry, as ``instrument()`` leaves an app: it traces
    through the global providers, which an earlier test may have set, and its server span,
    current around ours, would make ours an INTERNAL child."""
    _turn_off_native_telemetry(app)
    return app


class StartAttributes(SpanProcessor):
    """Keeps what every span holds when it starts (a sampler or processor could export it)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_start(self, span: Span, parent_context: object = None) -> None:
        self.seen.append(json.dumps(dict(span.attributes or {})))


@dataclass
class Telemetry:
    """One SDK tracer provider and meter provider, their output kept in memory."""

    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    starts: StartAttributes = field(default_factory=StartAttributes)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    sampled: bool = True
    durations: list[tuple[float, MetricAttributes, SpanContext]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.provider = TracerProvider() if self.sampled else TracerProvider(sampler=ALWAYS_OFF)
        self.provider.add_span_processor(self.starts)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meters = MeterProvider(metric_readers=[self.reader])
        self._histogram = self.meters.get_meter("test").create_histogram(DURATION, unit="s")

    def record_duration(
        self, seconds: float, attributes: MetricAttributes, span_context: SpanContext
    ) -> None:
        """What the lead's batched histogram gets, here recorded into an SDK histogram."""
        self.durations.append((seconds, attributes, span_context))
        parent = trace.set_span_in_context(NonRecordingSpan(span_context))
        self._histogram.record(seconds, dict(attributes), context=parent)

    def middleware(self, app: Any, excluded: str = EXCLUDED) -> HttpServerTelemetry:
        return HttpServerTelemetry(
            app,
            tracer=self.provider.get_tracer("infertrail.http"),
            record_duration=self.record_duration,
            redaction=QueryRedaction(KEEP),
            excluded_paths=excluded.split(","),
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        """Forget the spans and measurements so far (for property tests, one per example)."""
        self.exporter.clear()
        self.starts.seen.clear()
        self.durations.clear()

    def servers(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind is SpanKind.SERVER]

    def server(self) -> ReadableSpan:
        (span,) = self.servers()
        return span

    def everything(self) -> str:
        return "\n".join([s.to_json() for s in self.spans()] + self.starts.seen)

    def histogram(self) -> Counter[frozenset[tuple[str, Any]]]:
        """Count of measurements per attribute set of the duration histogram."""
        counts: Counter[frozenset[tuple[str, Any]]] = Counter()
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != DURATION:
                        continue
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        counts[frozenset(point.attributes.items())] += point.count
        return counts


class Body(BaseModel):
    x: int


def make_app(user_tracer: trace.Tracer, static: Path) -> FastAPI:
    """Routes with path parameters, included routers, a mount, errors and a WebSocket."""
    app = quiet(FastAPI())

    @app.get("/items/{item_id}")
    def item(item_id: int, model: str = "", subject_id: str = "") -> dict[str, int]:
        with user_tracer.start_as_current_span("sync child"):
            return {"id": item_id}

    @app.get("/async/{name}")
    async def named(name: str) -> dict[str, str]:
        with user_tracer.start_as_current_span("async child"):
            return {"name": name}

    @app.post("/items")
    def create(body: Body) -> dict[str, int]:
        return {"x": body.x}

    @app.get("/fails")
    def fails(subject_id: str) -> None:
        raise LookupError(f"no decisions for {subject_id}")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    inner = APIRouter(prefix="/inner")

    @inner.get("/x/{a}")
    def nested(a: int) -> dict[str, int]:
        return {"a": a}

    outer = APIRouter()
    outer.include_router(inner, prefix="/mid/{tenant}")
    app.include_router(outer, prefix="/v1")

    sub = quiet(FastAPI())

    @sub.get("/s/{key}")
    def mounted(key: str) -> dict[str, str]:
        return {"key": key}

    app.mount("/sub", sub)
    (static / "a.txt").write_text("static")
    app.mount("/static", StaticFiles(directory=static))
    return app


# (method, url, headers, json body) of every request the differential test sends
REQUESTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", f"/items/3?model=m1&subject_id={RAW}", {"traceparent": PARENT}, None),
    ("GET", "/items/3", {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}, None),
    ("GET", "/items/3/", {}, None),  # a redirect to /items/3 (not followed)
    ("GET", "/items/not-a-number", {}, None),  # 422
    ("GET", "/async/alice", {}, None),
    ("POST", "/items", {}, {"x": "not a number"}),  # 422
    ("POST", "/items", {}, {"x": 1}),
    ("GET", f"/fails?subject_id={RAW}", {}, None),  # 500
    ("GET", "/nope", {}, None),  # 404
    ("FOO", "/items/3", {}, None),  # 405, an unknown method
    ("POST", "/items/3", {}, None),  # 405, a partial match
    ("GET", "/v1/mid/7/inner/x/3", {}, None),
    ("GET", "/sub/s/k1", {}, None),
    ("GET", "/static/a.txt", {}, None),
    ("GET", "/healthz", {}, None),  # excluded
    ("GET", "/metrics?x=1", {}, None),  # excluded (and 404)
]


def drive(app: FastAPI) -> list[int]:
    statuses = []
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        for method, url, headers, body in REQUESTS:
            statuses.append(client.request(method, url, headers=headers, json=body).status_code)
        with client.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "hello"
    return statuses


def instrumented_by_opentelemetry(telemetry: Telemetry, static: Path) -> FastAPI:
    app = make_app(telemetry.provider.get_tracer("the-app"), static)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.provider,
        meter_provider=telemetry.meters,
        excluded_urls=EXCLUDED,
        exclude_spans=["receive", "send"],
    )
    return app


def instrumented_by_us(telemetry: Telemetry, static: Path, placement: str) -> FastAPI:
    app = make_app(telemetry.provider.get_tracer("the-app"), static)
    if placement == "middleware":  # inside Starlette's ServerErrorMiddleware
        app.add_middleware(
            HttpServerTelemetry,
            tracer=telemetry.provider.get_tracer("infertrail.http"),
            record_duration=telemetry.record_duration,
            redaction=QueryRedaction(KEEP),
            excluded_paths=EXCLUDED.split(","),
        )
    else:  # outermost, where the FastAPI instrumentation puts itself
        build = app.build_middleware_stack
        app.build_middleware_stack = lambda: telemetry.middleware(build())  # type: ignore[method-assign]
    return app


def redacted(reference: dict[str, Any]) -> dict[str, Any]:
    """A view of the instrumentation's span with its query and messages redacted as ours are."""
    attributes = dict(reference["attributes"])
    if c.URL_QUERY in attributes:
        path, query = attributes["url.path"], attributes[c.URL_QUERY]
        attributes[c.URL_QUERY] = QueryRedaction(KEEP)(path, query)
    events = [
        (name, {**event, c.EXCEPTION_MESSAGE: REDACTED} if c.EXCEPTION_MESSAGE in event else event)
        for name, event in reference["events"]
    ]
    return {**reference, "attributes": attributes, "events": events}


def view(span: ReadableSpan, spans: list[ReadableSpan]) -> dict[str, Any]:
    """What must agree of a server span: all but ids, timings and the exception's frames."""
    events = []
    for event in span.events:
        attributes = dict(event.attributes or {})
        assert "Traceback" in str(attributes.pop(c.EXCEPTION_STACKTRACE))
        events.append((event.name, attributes))
    children = [s.name for s in spans if s.parent and s.parent.span_id == span.context.span_id]
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent.span_id if span.parent else None,
        "trace": span.context.trace_id if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code,
        "events": events,
        "children": sorted(children),
    }


@pytest.mark.parametrize("placement", ["middleware", "outermost"])
@pytest.mark.usefixtures("stable_http_reference")
def test_the_same_spans_and_histogram_as_the_fastapi_instrumentation(
    placement: str, tmp_path: Path
) -> None:
    theirs, ours = Telemetry(), Telemetry()
    reference = instrumented_by_opentelemetry(theirs, tmp_path)
    try:
        their_statuses = drive(reference)
    finally:
        FastAPIInstrumentor.uninstrument_app(reference)
    our_statuses = drive(instrumented_by_us(ours, tmp_path, placement))
    assert our_statuses == their_statuses
    assert their_statuses[:8] == [200, 200, 307, 422, 200, 422, 200, 500]
    assert their_statuses[8:] == [404, 405, 405, 200, 200, 200, 200, 404]

    # The instrumentation traces WebSockets too; this middleware passes them through.
    their_servers = [
        s for s in theirs.servers() if s.attributes and s.attributes["url.path"] != "/ws"
    ]
    assert len(their_servers) == len(REQUESTS) - 2  # the two excluded requests: no span
    expected = [redacted(view(s, theirs.spans())) for s in their_servers]
    actual = [view(s, ours.spans()) for s in ours.servers()]
    assert actual == expected

    # Spot checks of what was compared: the remote parent, the route of each kind of route.
    first = expected[0]
    assert first["parent"] == 0xB7AD6B7169203331
    assert first["trace"] == 0x0AF7651916CD43DD8448EB211C80319C
    assert first["attributes"][c.URL_QUERY] == "model=m1&subject_id=REDACTED"
    assert first["children"] == ["sync child"]
    assert expected[1]["attributes"]["user_agent.synthetic.type"] == "bot"
    assert expected[4]["children"] == ["async child"]
    names = [v["name"] for v in expected]
    assert names[:3] == ["GET /items/{item_id}", "GET /items/{item_id}", "GET"]
    assert names[8:] == [
        "GET",
        "HTTP /items/{item_id}",
        "POST /items/{item_id}",
        "GET /v1/mid/{tenant}/inner/x/{a}",
        "GET /sub",
        "GET /static",
    ]

    # The one deliberate difference: after an exception the status keeps its type, not its message.
    descriptions = {s.status.description for s in ours.servers()}
    assert descriptions == {None, "LookupError: REDACTED"}
    assert RAW not in ours.everything()

    their_histogram = theirs.histogram()  # the instrumentation measures no WebSocket either
    assert ours.histogram() == their_histogram
    assert sum(their_histogram.values()) == len(REQUESTS) - 2


# -- redaction (test_redacting.py, re-expressed) ------------------------------------------------


def make_redaction_app(provider: TracerProvider) -> FastAPI:
    app = quiet(FastAPI())
    inner = provider.get_tracer("the-app")

    @app.get("/v1/outcomes/performance")
    def performance(model: str = "", subject_id: str = "") -> dict[str, str]:
        with inner.start_as_current_span("child"):
            return {"model": model}

    @app.get("/v1/audit/records")
    def records(model: str = "", subject_id: str = "") -> dict[str, str]:
        return {"model": model}

    @app.get("/fails")
    def fails(subject_id: str) -> None:
        raise LookupError(f"no decisions for {subject_id}")

    @app.get("/noted")
    def noted(request: Request, subject_id: str) -> dict[str, bool]:
        span = trace.get_current_span()
        span.record_exception(ValueError(f"bad subject {subject_id}"))
        span.set_attribute(c.URL_QUERY, f"subject_id={subject_id}")
        span.set_status(StatusCode.ERROR, f"subject {subject_id} unknown")
        return {"wrapped": isinstance(span, RedactingSpan)}

    @app.get("/later")
    def later(tasks: BackgroundTasks, subject_id: str) -> dict[str, str]:
        def task() -> None:
            raise RuntimeError(f"task failed for {subject_id}")

        tasks.add_task(task)
        return {}

    return app


@dataclass
class Traced:
    client: TestClient
    telemetry: Telemetry


@pytest.fixture
def traced() -> Iterator[Traced]:
    telemetry = Telemetry()
    app = make_redaction_app(telemetry.provider)
    app.add_middleware(
        HttpServerTelemetry,
        tracer=telemetry.provider.get_tracer("infertrail.http"),
        record_duration=telemetry.record_duration,
        redaction=QueryRedaction(KEEP),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Traced(client, telemetry)


def test_query_values_are_redacted_allow_listed_ones_kept(traced: Traced) -> None:
    r = traced.client.get("/v1/outcomes/performance", params={"subject_id": RAW, "model": "x"})
    assert r.status_code == 200
    server = traced.telemetry.server()
    assert server.attributes is not None
    assert server.attributes[c.URL_QUERY] == "subject_id=REDACTED&model=x"
    assert server.attributes[c.HTTP_ROUTE] == "/v1/outcomes/performance"
    assert RAW not in traced.telemetry.everything()
    (child,) = [s for s in traced.telemetry.spans() if s.name == "child"]
    assert child.parent is not None and child.parent.span_id == server.context.span_id


def test_the_allow_list_is_off_on_the_audit_routes(traced: Traced) -> None:
    traced.client.get("/v1/audit/records", params={"subject_id": RAW, "model": "x"})
    attributes = traced.telemetry.server().attributes or {}
    assert attributes[c.URL_QUERY] == "subject_id=REDACTED&model=REDACTED"
    assert RAW not in traced.telemetry.everything()


def test_creation_attributes_hold_the_redacted_query_never_the_raw_one(traced: Traced) -> None:
    traced.client.get("/v1/outcomes/performance", params={"subject_id": RAW})
    seen = traced.telemetry.starts.seen
    assert seen and all(RAW not in s for s in seen)
    assert any(f'"{c.URL_QUERY}": "subject_id={REDACTED}"' in s for s in seen)


def test_an_exception_escaping_the_app_keeps_its_type_not_its_message(traced: Traced) -> None:
    assert traced.client.get("/fails", params={"subject_id": RAW}).status_code == 500
    server = traced.telemetry.server()
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "LookupError: REDACTED"
    (event,) = server.events
    attributes = event.attributes or {}
    assert event.name == c.EVENT_NAME_EXCEPTION
    assert attributes[c.EXCEPTION_TYPE] == "LookupError"
    assert attributes[c.EXCEPTION_MESSAGE] == REDACTED
    assert "in fails" in str(attributes[c.EXCEPTION_STACKTRACE])
    assert (server.attributes or {})[c.ERROR_TYPE] == "500"
    assert RAW not in traced.telemetry.everything()


def test_the_apps_own_calls_on_the_current_span_are_redacted(traced: Traced) -> None:
    r = traced.client.get("/noted", params={"subject_id": RAW})
    assert r.json() == {"wrapped": True}
    server = traced.telemetry.server()
    assert (server.attributes or {})[c.URL_QUERY] == "subject_id=REDACTED"
    assert server.status.description == REDACTED
    assert [e.name for e in server.events] == [c.EVENT_NAME_EXCEPTION]
    assert RAW not in traced.telemetry.everything()


def test_a_background_task_failing_after_the_response_is_recorded_redacted(
    traced: Traced,
) -> None:
    assert traced.client.get("/later", params={"subject_id": RAW}).status_code == 200
    server = traced.telemetry.server()
    attributes = server.attributes or {}
    assert attributes[c.HTTP_RESPONSE_STATUS_CODE] == 200
    assert attributes[c.ERROR_TYPE] == "RuntimeError"
    assert server.status.description == "RuntimeError: REDACTED"
    assert RAW not in traced.telemetry.everything()


# -- the middleware as a plain ASGI app -----------------------------------------------------------


def http_scope(
    path: str = "/",
    query: bytes = b"",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers or [(b"host", b"localhost:8000"), (b"user-agent", b"curl/8")],
        "client": ("10.0.0.7", 51234),
        "server": ("127.0.0.1", 8000),
    }


def call(app: Any, scope: dict[str, Any]) -> list[Message]:
    """Run one ASGI call to the end; the messages the app sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def answering(status: int, then: Callable[[], None] | None = None) -> Any:
    """A bare ASGI app answering ``status`` (and then calling ``then``)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        if then is not None:
            then()

    return app


def test_a_bare_asgi_app_gets_the_attributes_and_a_span_named_by_method() -> None:
    telemetry = Telemetry()
    call(telemetry.middleware(answering(201)), http_scope("/things/9", b"a=1", method="POST"))
    server = telemetry.server()
    assert server.name == "POST"  # no router: no route template
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "server.address": "127.0.0.1:8000",  # as the instrumentation: the socket, with its port
        "server.port": 8000,
        "network.protocol.version": "1.1",
        "url.path": "/things/9",
        "url.query": "a=REDACTED",
        "user_agent.original": "curl/8",
        "client.address": "10.0.0.7",
        "client.port": 51234,
        "http.response.status_code": 201,
    }
    assert server.parent is None and server.status.status_code is StatusCode.UNSET
    ((seconds, attributes, context),) = telemetry.durations
    assert 0 < seconds < 5 and context == server.context
    assert dict(attributes) == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "http.response.status_code": 201,
        "network.protocol.version": "1.1",
    }


def test_equal_requests_share_one_attribute_tuple() -> None:
    telemetry = Telemetry()
    app = telemetry.middleware(answering(200))
    call(app, http_scope("/a"))
    call(app, http_scope("/b"))
    (_, first, _), (_, second, _) = telemetry.durations
    assert first is second


def test_an_exception_before_any_response_is_a_500() -> None:
    telemetry = Telemetry()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise KeyError(RAW)

    with pytest.raises(KeyError):
        call(telemetry.middleware(app), http_scope())
    server = telemetry.server()
    attributes = server.attributes or {}
    assert attributes[c.HTTP_RESPONSE_STATUS_CODE] == 500
    assert attributes[c.ERROR_TYPE] == "500"
    assert server.status.description == "KeyError: REDACTED"
    assert dict(telemetry.durations[0][1])[c.ERROR_TYPE] == "500"
    assert RAW not in telemetry.everything()


def test_an_exception_after_a_response_started_is_named_by_its_type() -> None:
    telemetry = Telemetry()

    def fail() -> None:
        raise ValueError(RAW)

    with pytest.raises(ValueError):
        call(telemetry.middleware(answering(200, fail)), http_scope())
    attributes = telemetry.server().attributes or {}
    assert attributes[c.HTTP_RESPONSE_STATUS_CODE] == 200
    assert attributes[c.ERROR_TYPE] == "ValueError"
    assert dict(telemetry.durations[0][1])[c.ERROR_TYPE] == "ValueError"
    assert RAW not in telemetry.everything()


def test_a_5xx_answer_is_an_error_without_description() -> None:
    telemetry = Telemetry()
    call(telemetry.middleware(answering(503)), http_scope())
    server = telemetry.server()
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description is None
    assert (server.attributes or {})[c.ERROR_TYPE] == "503"


@pytest.mark.parametrize(
    "traceparent",
    [
        b"garbage",
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
    ],
)
def test_a_malformed_traceparent_is_ignored(traceparent: bytes) -> None:
    telemetry = Telemetry()
    call(telemetry.middleware(answering(200)), http_scope(headers=[(b"traceparent", traceparent)]))
    server = telemetry.server()
    assert server.parent is None
    assert server.context.trace_id not in (0, 0x0AF7651916CD43DD8448EB211C80319C)


def test_a_traceparent_makes_the_span_a_child_of_the_remote_parent() -> None:
    telemetry = Telemetry()
    headers = [(b"user-agent", b"x"), (b"traceparent", PARENT.encode())]
    call(telemetry.middleware(answering(200)), http_scope(headers=headers))
    server = telemetry.server()
    assert server.parent is not None and server.parent.is_remote
    assert server.parent.span_id == 0xB7AD6B7169203331
    assert server.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_the_parent_context_carries_the_requests_baggage_to_the_app() -> None:
    telemetry = Telemetry()
    seen: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(baggage.get_baggage("tenant"))
        await answering(200)(scope, receive, send)

    headers = [(b"traceparent", PARENT.encode()), (b"baggage", b"tenant=acme")]
    call(telemetry.middleware(app), http_scope(headers=headers))
    assert seen == ["acme"]


def test_a_given_propagator_reads_only_its_own_headers() -> None:
    telemetry = Telemetry()
    seen: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(baggage.get_baggage("tenant"))
        await answering(200)(scope, receive, send)

    middleware = HttpServerTelemetry(
        app,
        tracer=telemetry.provider.get_tracer("t"),
        record_duration=telemetry.record_duration,
        redaction=QueryRedaction(),
        propagator=W3CBaggagePropagator(),
    )
    headers = [(b"traceparent", PARENT.encode()), (b"baggage", b"tenant=acme")]
    call(middleware, http_scope(headers=headers))
    assert seen == ["acme"]
    assert telemetry.server().parent is None  # traceparent is not this propagator's


def test_inside_another_span_the_span_is_an_internal_child_of_it() -> None:
    telemetry = Telemetry()
    app = telemetry.middleware(answering(200))
    headers = [(b"traceparent", PARENT.encode())]  # not used: a span is current
    with telemetry.provider.get_tracer("outer").start_as_current_span("outer") as outer:
        call(app, http_scope(headers=headers))
    (inner,) = [s for s in telemetry.spans() if s.name == "GET"]
    assert inner.kind is SpanKind.INTERNAL
    assert inner.parent is not None and inner.parent.span_id == outer.get_span_context().span_id


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez", "/metrics", "/v1/metrics/x"])
def test_excluded_paths_get_no_span_and_no_measurement(path: str) -> None:
    telemetry = Telemetry()
    app = telemetry.middleware(answering(200))
    assert call(app, http_scope(path))[0]["status"] == 200
    assert telemetry.spans() == [] and telemetry.durations == []
    call(app, http_scope("/health"))  # not excluded
    assert len(telemetry.spans()) == 1


def test_excluded_paths_must_be_patterns() -> None:
    telemetry = Telemetry()
    with pytest.raises(TypeError, match="collection of patterns"):
        HttpServerTelemetry(
            answering(200),
            tracer=telemetry.provider.get_tracer("t"),
            record_duration=telemetry.record_duration,
            redaction=QueryRedaction(),
            excluded_paths="healthz,metrics",
        )
    with pytest.raises(ValueError, match=r"'\(unclosed' is not a regular expression"):
        telemetry.middleware(answering(200), excluded="healthz,(unclosed")


def test_an_empty_excluded_entry_excludes_nothing() -> None:
    telemetry = Telemetry()
    call(telemetry.middleware(answering(200), excluded="healthz,,"), http_scope("/x"))
    assert len(telemetry.spans()) == 1


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
def test_other_traffic_passes_through_untouched(kind: str) -> None:
    telemetry = Telemetry()
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        return None

    scope = {"type": kind, "path": "/ws"}
    asyncio.run(telemetry.middleware(app)(scope, receive, send))
    assert seen == [(scope, receive, send)]
    assert telemetry.spans() == [] and telemetry.durations == []


def test_a_websocket_route_works_through_the_middleware(tmp_path: Path) -> None:
    telemetry = Telemetry()
    app = make_app(telemetry.provider.get_tracer("the-app"), tmp_path)
    app.add_middleware(
        HttpServerTelemetry,
        tracer=telemetry.provider.get_tracer("infertrail.http"),
        record_duration=telemetry.record_duration,
        redaction=QueryRedaction(),
    )
    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "hello"
    assert telemetry.spans() == [] and telemetry.durations == []


def test_an_unsampled_request_is_measured_and_the_app_gets_the_plain_span() -> None:
    telemetry = Telemetry(sampled=False)
    current: list[trace.Span] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        current.append(trace.get_current_span())
        await answering(200)(scope, receive, send)

    call(telemetry.middleware(app), http_scope(query=RAW.encode()))
    assert telemetry.spans() == []
    (span,) = current
    assert not isinstance(span, RedactingSpan) and not span.is_recording()
    ((_, attributes, context),) = telemetry.durations
    assert context == span.get_span_context() and not context.trace_flags.sampled
    assert dict(attributes)[c.HTTP_RESPONSE_STATUS_CODE] == 200


def test_routes_added_after_the_first_request_get_their_template() -> None:
    telemetry = Telemetry()

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/a/{n}", ok)])
    app.add_middleware(
        HttpServerTelemetry,
        tracer=telemetry.provider.get_tracer("t"),
        record_duration=telemetry.record_duration,
        redaction=QueryRedaction(),
    )
    with TestClient(app) as client:
        client.get("/a/1")
        app.router.routes.append(Route("/b/{n}", ok))
        client.get("/b/2")
    assert [s.name for s in telemetry.servers()] == ["GET /a/{n}", "GET /b/{n}"]


def test_an_unknown_method_is_named_http_and_keeps_its_original() -> None:
    telemetry = Telemetry()
    call(telemetry.middleware(answering(405)), http_scope(method="get"))
    server = telemetry.server()
    assert server.name == "GET"
    assert (server.attributes or {})["http.request.method_original"] == "get"
    telemetry = Telemetry()
    call(telemetry.middleware(answering(405)), http_scope(method="BREW"))
    server = telemetry.server()
    assert server.name == "HTTP"
    attributes = server.attributes or {}
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "BREW"


# -- property: whatever the query, only allow-listed values are ever exported -------------------

SHARED = Telemetry()  # one provider for every example
NAMES = st.sampled_from(["model", "subject_id", "q", "from", "1234", "a b", "model%20", "x.y"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(st.tuples(NAMES, st.text(min_size=0, max_size=12)), max_size=6),
    private=st.booleans(),
)
def test_no_query_value_but_an_allow_listed_one_is_exported(
    pairs: list[tuple[str, str]], private: bool
) -> None:
    telemetry = SHARED
    telemetry.clear()
    secrets = [(name, f"SECRET{i}Z{value}") for i, (name, value) in enumerate(pairs)]
    raw = urlencode(secrets).encode()
    path = "/v1/audit/records" if private else "/v1/outcomes"
    call(telemetry.middleware(answering(200)), http_scope(path, raw))
    server = telemetry.server()
    expected = QueryRedaction(KEEP)(path, raw)
    assert (server.attributes or {}).get(c.URL_QUERY) == (expected if raw else None)
    exported = telemetry.everything()
    for i, (name, _) in enumerate(secrets):
        if private or name not in KEEP:
            assert f"SECRET{i}Z" not in exported


@settings(max_examples=60, deadline=None)
@given(query=st.binary(max_size=40))
def test_any_query_bytes_are_shown_as_the_redaction_says(query: bytes) -> None:
    telemetry = SHARED
    telemetry.clear()
    call(telemetry.middleware(answering(200)), http_scope("/v1/outcomes", query))
    attributes = telemetry.server().attributes or {}
    if query:
        assert attributes[c.URL_QUERY] == QueryRedaction(KEEP)("/v1/outcomes", query)
    else:
        assert c.URL_QUERY not in attributes
