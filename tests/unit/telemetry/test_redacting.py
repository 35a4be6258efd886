"""telemetry/redacting.py: the HTTP instrumentation's spans never hold a raw query or message.

The real FastAPI instrumentation is given the redacting provider and hook, as
``runtime/asgi.py`` does, over an SDK provider whose spans are kept in memory: everything a span
holds (name, attributes, events, status) is searched for the raw values, including what a span
processor sees when the span starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

# Imported for its effect, as in a service: the stable HTTP conventions (url.query) are emitted.
import infertrail.runtime.asgi  # noqa: F401
from infertrail.telemetry import conventions as c
from infertrail.telemetry.redacting import RedactingSpan, RedactingTracerProvider, query_hook
from infertrail.telemetry.redaction import REDACTED, QueryRedaction

RAW = "applicant-7Q4ZK9"  # the raw subject id the requests carry


class StartAttributes(SpanProcessor):
    """Keeps what every span holds when it starts (a sampler or processor could export it)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_start(self, span: Span, parent_context: object = None) -> None:
        self.seen.append(json.dumps(dict(span.attributes or {})))


@dataclass
class Traced:
    client: TestClient
    exporter: InMemorySpanExporter
    starts: StartAttributes
    provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def server(self) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.kind is SpanKind.SERVER]
        return span

    def everything(self) -> str:
        return "\n".join([s.to_json() for s in self.spans()] + self.starts.seen)


def make_app(provider: TracerProvider) -> FastAPI:
    app = FastAPI()
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


@pytest.fixture
def traced() -> Iterator[Traced]:
    exporter, starts = InMemorySpanExporter(), StartAttributes()
    provider = TracerProvider()
    provider.add_span_processor(starts)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app(provider)
    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=query_hook(QueryRedaction(frozenset({"model"}))),
        tracer_provider=RedactingTracerProvider(provider),
        exclude_spans=["receive", "send"],
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Traced(client, exporter, starts, provider)
    FastAPIInstrumentor.uninstrument_app(app)


def test_query_values_are_redacted_allow_listed_ones_kept(traced: Traced) -> None:
    r = traced.client.get("/v1/outcomes/performance", params={"subject_id": RAW, "model": "x"})
    assert r.status_code == 200
    server = traced.server()
    assert server.attributes is not None
    assert server.attributes[c.URL_QUERY] == "subject_id=REDACTED&model=x"
    assert server.attributes["http.route"] == "/v1/outcomes/performance"
    assert RAW not in traced.everything()
    # The span still parents the app's own spans: the wrapper hands out the SDK span's context.
    (child,) = [s for s in traced.spans() if s.name == "child"]
    assert child.parent is not None and child.parent.span_id == server.context.span_id


def test_the_allow_list_is_off_on_the_audit_routes(traced: Traced) -> None:
    traced.client.get("/v1/audit/records", params={"subject_id": RAW, "model": "x"})
    attributes = traced.server().attributes or {}
    assert attributes[c.URL_QUERY] == "subject_id=REDACTED&model=REDACTED"
    assert RAW not in traced.everything()


def test_creation_attributes_never_hold_the_raw_query(traced: Traced) -> None:
    traced.client.get("/v1/outcomes/performance", params={"subject_id": RAW})
    assert traced.starts.seen and all(RAW not in seen for seen in traced.starts.seen)
    assert any(f'"{c.URL_QUERY}": "{REDACTED}"' in seen for seen in traced.starts.seen)


def test_an_exception_escaping_the_app_keeps_its_type_not_its_message(traced: Traced) -> None:
    assert traced.client.get("/fails", params={"subject_id": RAW}).status_code == 500
    server = traced.server()
    assert server.status.status_code is StatusCode.ERROR
    # Set with the exception, then replaced by the 500's status (no description).
    assert server.status.description in ("LookupError: REDACTED", None)
    events = [e for e in server.events if e.name == c.EVENT_NAME_EXCEPTION]
    assert events, "the exception was not recorded"
    for event in events:
        attributes = event.attributes or {}
        assert attributes[c.EXCEPTION_TYPE] == "LookupError"
        assert attributes[c.EXCEPTION_MESSAGE] == REDACTED
        assert "in fails" in str(attributes[c.EXCEPTION_STACKTRACE])
    assert RAW not in traced.everything()


def test_the_apps_own_calls_on_the_current_span_are_redacted(traced: Traced) -> None:
    r = traced.client.get("/noted", params={"subject_id": RAW})
    assert r.json() == {"wrapped": True}
    server = traced.server()
    assert (server.attributes or {})[c.URL_QUERY] == "subject_id=REDACTED"
    assert server.status.description == REDACTED
    assert RAW not in traced.everything()


def test_background_task_spans_are_redacted_too(traced: Traced) -> None:
    traced.client.get("/later", params={"subject_id": RAW})
    tasks = [s for s in traced.spans() if s.name.startswith("BackgroundTask")]
    assert tasks and tasks[0].status.status_code is StatusCode.ERROR
    assert RAW not in traced.everything()


def test_before_the_hook_every_query_shows_redacted_whole() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RedactingTracerProvider(provider).get_tracer("t")
    url = f"http://h/v1/x?subject_id={RAW}"
    span = tracer.start_span("s", attributes={c.URL_QUERY: RAW, c.HTTP_URL: url})
    span.set_attribute(c.HTTP_TARGET, f"/v1/x?subject_id={RAW}")
    span.end()
    (recorded,) = exporter.get_finished_spans()
    assert dict(recorded.attributes or {}) == {
        c.URL_QUERY: REDACTED,
        c.HTTP_URL: "http://h/v1/x?REDACTED",
        c.HTTP_TARGET: "/v1/x?REDACTED",
    }


def test_a_span_used_as_a_context_manager_records_redacted() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RedactingTracerProvider(provider).get_tracer("t")
    with pytest.raises(KeyError), tracer.start_span("s", attributes={c.URL_QUERY: RAW}):
        raise KeyError(RAW)
    (span,) = exporter.get_finished_spans()
    assert span.status.description == "KeyError: REDACTED"
    assert [e.name for e in span.events] == [c.EVENT_NAME_EXCEPTION]
    assert RAW not in span.to_json()


DUP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from infertrail.telemetry.redacting import RedactingTracerProvider, query_hook
    from infertrail.telemetry.redaction import QueryRedaction

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/v1/audit/records")
    def records(subject_id: str) -> dict:
        return {}

    FastAPIInstrumentor.instrument_app(
        app, server_request_hook=query_hook(QueryRedaction()),
        tracer_provider=RedactingTracerProvider(provider),
    )
    with TestClient(app) as client:
        client.get("/v1/audit/records", params={"subject_id": sys.argv[1]})
    print(json.dumps([json.loads(s.to_json()) for s in exporter.get_finished_spans()]))
    """
)


@pytest.mark.parametrize("mode", ["http/dup", "http", ""])
def test_every_semconv_mode_redacts_every_attribute_carrying_the_query(mode: str) -> None:
    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": mode, "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", DUP_SCRIPT, RAW],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    assert RAW not in out.stdout + out.stderr
    spans = json.loads(out.stdout)
    attributes = next(s["attributes"] for s in spans if s["kind"] == "SpanKind.SERVER")
    if mode in ("http/dup", ""):  # the old conventions: the URL (and the target, in some versions)
        assert attributes["http.url"].endswith("/v1/audit/records?subject_id=REDACTED")
        assert attributes["http.target"] in (
            "/v1/audit/records",
            "/v1/audit/records?subject_id=REDACTED",
        )
    if mode in ("http/dup", "http"):
        assert attributes[c.URL_QUERY] == "subject_id=REDACTED"
