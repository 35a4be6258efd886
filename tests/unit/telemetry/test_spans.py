"""telemetry/spans.py: compact spans behave as SDK spans to the API and to the exporters."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redaction import REDACTED
from infertrail.telemetry.spans import MAX_ATTRIBUTES, CompactSpan, CompactTracer, SpanPump

SCOPE = InstrumentationScope("infertrail", "1.0")


@dataclass
class Traced:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    pump: SpanPump
    tracer: CompactTracer

    def spans(self) -> list[ReadableSpan]:
        self.pump.pump()
        return list(self.exporter.get_finished_spans())


def traced_with(sampler: sampling.Sampler) -> Traced:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc"}), sampler=sampler, shutdown_on_exit=False
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pump = SpanPump(provider, SCOPE, interval_s=3600)
    return Traced(provider, exporter, pump, CompactTracer(pump, sampler))


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = traced_with(sampling.ParentBased(sampling.ALWAYS_ON))
    yield t
    t.pump.close()
    t.provider.shutdown()


def test_a_span_reaches_the_exporters_as_the_sdk_would_build_it(traced: Traced) -> None:
    span = traced.tracer.start_span("predict", kind=SpanKind.SERVER, attributes={"a": 1})
    span.set_attribute("b", "x")
    span.set_attributes({"c": 1.5, "d": True})
    span.add_event("step", {"n": 2})
    span.set_status(StatusCode.ERROR, "ValueError")
    span.end()
    assert traced.exporter.get_finished_spans() == ()  # nothing built on the request thread
    (done,) = traced.spans()
    assert done.name == "predict"
    assert done.kind is SpanKind.SERVER
    assert dict(done.attributes or {}) == {"a": 1, "b": "x", "c": 1.5, "d": True}
    assert [e.name for e in done.events] == ["step"]
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "ValueError"
    assert done.resource.attributes["service.name"] == "svc"
    assert done.instrumentation_scope == SCOPE
    assert done.start_time is not None and done.end_time is not None
    assert done.start_time <= done.end_time
    assert done.parent is None


def test_sdk_spans_started_inside_nest_under_a_compact_span(traced: Traced) -> None:
    sdk_tracer = traced.provider.get_tracer("the-app")
    with (
        traced.tracer.start_as_current_span("outer") as outer,
        sdk_tracer.start_as_current_span("user") as user,
    ):
        traced.tracer.start_span("inner").end()
    by_name = {s.name: s for s in traced.spans()}
    outer_ctx = outer.get_span_context()
    assert by_name["user"].parent is not None
    assert by_name["user"].parent.span_id == outer_ctx.span_id
    assert by_name["user"].context.trace_id == outer_ctx.trace_id
    assert by_name["inner"].parent is not None
    assert by_name["inner"].parent.span_id == user.get_span_context().span_id


def test_a_remote_parent_from_traceparent_is_kept(traced: Traced) -> None:
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    ctx = TraceContextTextMapPropagator().extract(carrier)
    traced.tracer.start_span("server", context=ctx, kind=SpanKind.SERVER).end()
    (done,) = traced.spans()
    assert done.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert done.parent is not None and done.parent.is_remote
    assert done.parent.span_id == 0xB7AD6B7169203331


def test_an_unsampled_parent_gives_a_non_recording_span(traced: Traced) -> None:
    parent = SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    span = traced.tracer.start_span("child", context=ctx)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 1
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert traced.spans() == []


@pytest.mark.parametrize(
    ("sampler", "exported"),
    [
        (sampling.ALWAYS_ON, 1),
        (sampling.ALWAYS_OFF, 0),
        (sampling.ParentBased(sampling.ALWAYS_OFF), 0),
        (sampling.TraceIdRatioBased(1.0), 1),
        (sampling.TraceIdRatioBased(0.0), 0),
    ],
)
def test_the_providers_sampler_decides(sampler: sampling.Sampler, exported: int) -> None:
    t = traced_with(sampler)
    t.tracer.start_span("s").end()
    assert len(t.spans()) == exported
    t.pump.close()


def test_a_ratio_sampler_keeps_about_its_share() -> None:
    t = traced_with(sampling.TraceIdRatioBased(0.25))
    for _ in range(4000):
        t.tracer.start_span("s").end()
    assert 800 < len(t.spans()) < 1200
    t.pump.close()


def test_ending_twice_exports_once_and_late_changes_are_ignored(traced: Traced) -> None:
    span = traced.tracer.start_span("s")
    span.end()
    span.end()
    span.set_attribute("late", 1)
    span.add_event("late")
    span.update_name("renamed")
    assert not span.is_recording()
    (done,) = traced.spans()
    assert done.name == "s"
    assert "late" not in (done.attributes or {})
    assert done.events == ()


def test_status_follows_the_api_rules(traced: Traced) -> None:
    span = traced.tracer.start_span("s")
    span.set_status(StatusCode.OK, "ignored description")
    span.set_status(StatusCode.ERROR, "too late: OK is final")
    span.end()
    other = traced.tracer.start_span("t")
    other.set_status(Status(StatusCode.ERROR, "boom"))
    other.set_status(StatusCode.UNSET)
    other.end()
    by_name = {s.name: s for s in traced.spans()}
    assert by_name["s"].status.status_code is StatusCode.OK
    assert by_name["s"].status.description is None
    assert by_name["t"].status.status_code is StatusCode.ERROR
    assert by_name["t"].status.description == "boom"


def test_an_escaping_exception_keeps_its_type_and_frames_not_its_message(traced: Traced) -> None:
    subject = "-".join(["alice", "example.com"])  # not in the source the frames quote
    with pytest.raises(KeyError), traced.tracer.start_as_current_span("s"):
        raise KeyError(subject)
    (done,) = traced.spans()
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == f"KeyError: {REDACTED}"
    (event,) = done.events
    attrs = dict(event.attributes or {})
    assert event.name == c.EVENT_NAME_EXCEPTION
    assert attrs[c.EXCEPTION_TYPE] == "KeyError"
    assert attrs[c.EXCEPTION_MESSAGE] == REDACTED
    assert subject not in done.to_json()


def test_invalid_attribute_values_are_dropped_sequences_kept(traced: Traced) -> None:
    span = traced.tracer.start_span("s")
    span.set_attribute("seq", [1, 2, 3])
    span.set_attribute("none", None)  # type: ignore[arg-type]
    span.end()
    (done,) = traced.spans()
    assert (done.attributes or {})["seq"] == (1, 2, 3)
    assert "none" not in (done.attributes or {})


def test_attributes_are_bounded_like_the_sdks_default(traced: Traced) -> None:
    span = traced.tracer.start_span("s")
    for i in range(MAX_ATTRIBUTES + 10):
        span.set_attribute(f"k{i}", i)
    span.set_attribute("k0", "replaced")  # an existing key may still change
    span.end()
    (done,) = traced.spans()
    assert len(done.attributes or {}) == MAX_ATTRIBUTES
    assert (done.attributes or {})["k0"] == "replaced"


def test_a_source_is_derived_into_attributes_set_ones_win(traced: Traced) -> None:
    traced.pump.derive = lambda source: {"from.source": source, "both": "derived"}
    span = traced.tracer.start_span("s")
    assert isinstance(span, CompactSpan)
    span.set_attribute("both", "set")
    span.source = "event-1"
    span.end()
    (done,) = traced.spans()
    assert dict(done.attributes or {}) == {"from.source": "event-1", "both": "set"}


def test_a_full_queue_drops_and_counts(traced: Traced) -> None:
    small = SpanPump(traced.provider, SCOPE, interval_s=3600, max_queue=3)
    tracer = CompactTracer(small, sampling.ALWAYS_ON)
    for _ in range(5):
        tracer.start_span("s").end()
    assert small.dropped == 2
    assert small.pump() == 3
    small.close()


def test_the_pump_thread_hands_spans_on_by_itself() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pump = SpanPump(provider, SCOPE, interval_s=0.01)
    CompactTracer(pump, sampling.ALWAYS_ON).start_span("s").end()
    deadline = time.monotonic() + 10
    while not exporter.get_finished_spans() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]
    pump.close()


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=30))
def test_every_ended_sampled_span_is_exported_once(plan: list[tuple[str, bool]]) -> None:
    t = traced_with(sampling.ALWAYS_ON)
    for name, twice in plan:
        span = t.tracer.start_span(name)
        span.end()
        if twice:
            span.end()
    assert sorted(s.name for s in t.spans()) == sorted(name for name, _ in plan)
    t.pump.close()


def test_a_forked_child_pumps_its_own_spans(traced: Traced, tmp_path: Path) -> None:
    traced.tracer.start_span("before-fork").end()
    pid = os.fork()
    if pid == 0:  # the child: its queue starts empty, its spans are its own
        code = 1
        try:
            traced.tracer.start_span("in-child").end()
            names = [s.name for s in traced.spans()]
            (tmp_path / "child").write_text(",".join(names))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert (tmp_path / "child").read_text() == "in-child"
    assert [s.name for s in traced.spans()] == ["before-fork"]


def test_the_providers_flush_and_shutdown_hand_the_queued_spans_on_first() -> None:
    """Whoever flushes the provider (not only Telemetry) gets the compact spans exported."""
    provider = TracerProvider(shutdown_on_exit=False)
    pump = SpanPump(provider, SCOPE, interval_s=3600)  # first, as Telemetry makes it
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000))
    tracer = CompactTracer(pump, sampling.ALWAYS_ON)
    tracer.start_span("flushed").end()
    assert provider.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["flushed"]
    tracer.start_span("at-shutdown").end()
    provider.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["flushed", "at-shutdown"]
