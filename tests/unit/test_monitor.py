"""Monitor as a library: any predict function, with or without a web framework."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.monitor import Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry.readback import iter_exemplars, iter_logs, iter_spans
from infertrail.telemetry.setup import Telemetry, make_sampler

MODEL = ModelInfo("toy", "0.1", "cd" * 32)


@pytest.fixture
def monitor(settings: Settings) -> Iterator[Monitor]:
    m = Monitor(settings)
    yield m
    m.shutdown()


def test_observe_records_a_span_log_and_metrics(monitor: Monitor, settings: Settings) -> None:
    with monitor.observe(MODEL, [1.0, 2.0, 3.0], subject="u1", endpoint="batch") as ev:
        ev.label, ev.score, ev.confidence = "yes", 0.8, 0.8
    monitor.flush()
    spans = [s for s in iter_spans(settings.telemetry_dir) if s.name == c.SPAN_NAME_INFERENCE]
    assert len(spans) == 1
    assert spans[0].trace_id == ev.trace_id_hex
    assert spans[0].attributes[c.INPUT_SIZE] == 3
    assert spans[0].attributes[c.ENDPOINT] == "batch"
    logs = list(iter_logs(settings.telemetry_dir))
    assert [r["trace_id"] for r in logs] == [ev.trace_id_hex]
    assert "u1" not in str(logs)  # the raw subject id never reaches telemetry
    assert any(e.trace_id == ev.trace_id_hex for e in iter_exemplars(settings.telemetry_dir))


def test_decorator_form(monitor: Monitor, settings: Settings) -> None:
    @monitor.instrument(MODEL, output=lambda p: ("even" if p % 2 == 0 else "odd", None, 1.0))
    def predict(x: int) -> int:
        return x * 2

    assert predict(21) == 42
    monitor.flush()
    spans = [s for s in iter_spans(settings.telemetry_dir) if s.name == c.SPAN_NAME_INFERENCE]
    assert spans[0].attributes[c.PREDICTION_LABEL] == "even"
    assert spans[0].attributes[c.ENDPOINT] == "predict"


def test_exceptions_propagate_and_are_recorded_as_errors(
    monitor: Monitor, settings: Settings
) -> None:
    secret = "-".join(("alice", "example.com"))  # a value, not in the stack's source lines
    with pytest.raises(KeyError, match=secret), monitor.observe(MODEL, "x"):
        raise KeyError(secret)  # the caller still gets the whole exception
    monitor.flush()
    span = next(s for s in iter_spans(settings.telemetry_dir) if s.name == c.SPAN_NAME_INFERENCE)
    assert span.status == "STATUS_CODE_ERROR"
    assert span.attributes[c.ERROR_TYPE] == "KeyError"
    log = next(iter_logs(settings.telemetry_dir))
    assert log["severity"] == "ERROR"
    assert (log["body"]["error_type"], log["body"]["error"]) == ("KeyError", "REDACTED")
    # the message can carry the input: telemetry keeps the type and the frames only
    for path in settings.telemetry_dir.iterdir():
        assert secret not in path.read_text(), path


def test_inference_span_is_a_child_of_the_callers_span(
    monitor: Monitor, settings: Settings
) -> None:
    tracer = monitor.telemetry.tracer
    with tracer.start_as_current_span("handler") as parent, monitor.observe(MODEL, "x") as ev:
        pass
    monitor.flush()
    spans = {s.name: s for s in iter_spans(settings.telemetry_dir)}
    assert (
        spans[c.SPAN_NAME_INFERENCE].parent_span_id == f"{parent.get_span_context().span_id:016x}"
    )
    assert ev.trace_id == parent.get_span_context().trace_id


def test_request_thread_sinks_run_before_observe_returns(monitor: Monitor) -> None:
    seen: list[InferenceEvent] = []
    monitor.add_sink(seen.append, on_request_thread=True)
    with monitor.observe(MODEL, "x") as ev:
        ev.label = "a"
    assert seen == [ev]


def test_background_sink_failure_is_counted_and_does_not_stop_the_worker(
    monitor: Monitor,
) -> None:
    seen: list[str] = []

    def flaky(ev: InferenceEvent) -> None:
        if ev.label == "boom":
            raise RuntimeError("sink failed")
        seen.append(ev.label or "")

    monitor.add_sink(flaky)
    for label in ("a", "boom", "b"):
        with monitor.observe(MODEL, "x") as ev:
            ev.label = label
    monitor.flush()
    assert seen == ["a", "b"]
    assert monitor.sink_errors == 1


def test_full_queue_drops_telemetry_and_counts_it(settings: Settings) -> None:
    m = Monitor(settings, queue_max=2)
    gate = threading.Event()
    m.add_sink(lambda _ev: gate.wait(5))  # hold the worker so the queue fills up
    try:
        for _ in range(10):
            with m.observe(MODEL, "x"):
                pass
        assert m.dropped_events >= 7
    finally:
        gate.set()
        m.shutdown()


class _BrokenExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        raise ConnectionError("collector down")

    def shutdown(self) -> None:
        return None


def test_exporter_outage_is_counted_never_raised(settings: Settings) -> None:
    t = Telemetry(settings, span_exporters=[_BrokenExporter()])
    m = Monitor(settings, telemetry=t)
    try:
        with m.observe(MODEL, "x") as ev:
            ev.label = "ok"
        m.flush()
        assert t.failures.counts[("traces", "custom")] >= 1
    finally:
        m.shutdown()
        t.shutdown()  # passed in: its owner stops it, not the Monitor


def test_unknown_sampler_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown traces sampler 'sometimes'"):
        make_sampler("sometimes", 1.0)


def test_always_off_sampler_records_metrics_without_exemplars(settings: Settings) -> None:
    s = settings.model_copy(update={"traces_sampler": "always_off"})
    m = Monitor(s)
    try:
        with m.observe(MODEL, "x") as ev:
            ev.confidence = 0.9
        m.flush()
        assert not ev.sampled
        assert list(iter_spans(s.telemetry_dir)) == []
        assert list(iter_exemplars(s.telemetry_dir)) == []
    finally:
        m.shutdown()


def test_events_reach_background_sinks_in_batches_and_flush_events_waits(
    settings: Settings,
) -> None:
    m = Monitor(settings, batch_window_s=60.0)  # no batch would end without a flush
    seen: list[str] = []
    m.add_sink(lambda ev: seen.append(ev.request_id))
    try:
        ids = []
        for _ in range(5):
            with m.observe(MODEL, "x") as ev:
                ev.label = "a"
            ids.append(ev.request_id)
        assert seen == []  # still gathering
        assert m.flush_events(5.0)  # cuts the 60 s window short
        assert seen == ids
    finally:
        m.shutdown()


@pytest.mark.parametrize("window", [0.0, 0.001])
def test_every_event_is_handled_whatever_the_window(settings: Settings, window: float) -> None:
    m = Monitor(settings, batch_window_s=window)
    seen: list[InferenceEvent] = []
    m.add_sink(seen.append)
    try:
        for i in range(50):
            with m.observe(MODEL, "x") as ev:
                ev.label = str(i)
        m.flush()
        assert [e.label for e in seen] == [str(i) for i in range(50)]
    finally:
        m.shutdown()


@pytest.mark.parametrize(("queue_max", "window"), [(0, 0.02), (10, -1.0), (10, float("nan"))])
def test_bad_queue_settings_are_refused(settings: Settings, queue_max: int, window: float) -> None:
    with pytest.raises(ValueError, match="queue_max must be >= 1 and batch_window_s >= 0"):
        Monitor(settings, queue_max=queue_max, batch_window_s=window)


def test_exemplars_are_on_the_duration_histogram(monitor: Monitor, settings: Settings) -> None:
    with monitor.observe(MODEL, "abc") as ev:
        ev.label, ev.confidence = "yes", 0.9
    monitor.flush()
    exemplars = [e for e in iter_exemplars(settings.telemetry_dir) if e.trace_id == ev.trace_id_hex]
    assert {e.metric for e in exemplars} == {c.METRIC_DURATION}
    assert exemplars[0].span_id == ev.span_id_hex
