"""The public instrumentation point: ``Monitor.observe`` wraps one inference.

On the request thread it does the minimum: open and close the inference span, fill the
:class:`InferenceEvent`, run the synchronous sinks (the audit append, which must apply
backpressure rather than drop) and enqueue the event. A background worker derives the metric
points and the log record from the event; telemetry may be dropped when that queue is full, and
every drop is counted.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import Observation
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from infertrail.config import Settings
from infertrail.events import (
    InferenceEvent,
    ModelInfo,
    log_record,
    metric_attributes,
    new_request_id,
    span_attributes,
)
from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

_log = logging.getLogger("infertrail.monitor")

EventSink = Callable[[InferenceEvent], None]
P = ParamSpec("P")
R = TypeVar("R")

_STOP = object()


class Monitor:
    """Instruments inferences: traces, metrics, logs and sinks (audit, drift) from one event."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        telemetry: Telemetry | None = None,
        queue_max: int = 10_000,
    ) -> None:
        self.settings = settings or Settings()
        self.settings.ensure_dirs()
        self.telemetry = telemetry or Telemetry(self.settings)
        self._tracer = self.telemetry.tracer
        self._sync_sinks: list[EventSink] = []
        self._async_sinks: list[EventSink] = [self._record_metrics, self._emit_log]
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self.dropped_events = 0
        self.sink_errors = 0
        self._worker = threading.Thread(target=self._run, name="infertrail-events", daemon=True)
        self._worker.start()
        self._closed = False
        self.telemetry.meter.create_observable_counter(
            "infertrail.telemetry.dropped",
            callbacks=[lambda _o: [_observation(self.dropped_events)]],
            unit="{event}",
            description="Inference events whose metrics/logs were dropped: queue full.",
        )

    # -- sinks -----------------------------------------------------------------------------
    def add_sink(self, sink: EventSink, *, on_request_thread: bool = False) -> None:
        """Register a consumer of every event; request-thread sinks may apply backpressure."""
        (self._sync_sinks if on_request_thread else self._async_sinks).append(sink)

    # -- the hot path ----------------------------------------------------------------------
    @contextmanager
    def observe(
        self,
        model: ModelInfo,
        inputs: Any,
        *,
        input_size: int | None = None,
        subject: str | None = None,
        request_id: str | None = None,
        endpoint: str = "",
        tenant: str | None = None,
    ) -> Iterator[InferenceEvent]:
        """Wrap one inference; set ``label``/``score``/``confidence`` on the yielded event.

        An exception raised inside the block marks the event as an error (its class name is the
        ``error.type``), is recorded on the span, and propagates unchanged.
        """
        ev = InferenceEvent(
            model=model,
            request_id=request_id or new_request_id(),
            service=self.settings.service_name,
            team=self.settings.team,
            endpoint=endpoint,
            inputs=inputs,
            input_size=input_size if input_size is not None else _size_of(inputs),
            subject=subject,
            tenant=tenant,
        )
        span = self._tracer.start_span(c.SPAN_NAME_INFERENCE, kind=SpanKind.INTERNAL)
        token = otel_context.attach(trace.set_span_in_context(span))
        ctx = span.get_span_context()
        ev.trace_id, ev.span_id, ev.sampled = ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled
        ev.start_time_ns = time.time_ns()
        t0 = time.perf_counter_ns()
        c0 = time.thread_time_ns()
        try:
            yield ev
        except BaseException as exc:
            ev.status = "error"
            if ev.error_type is None:
                ev.error_type = type(exc).__qualname__
            ev.error_message = str(exc)[:500]
            span.record_exception(exc)
            raise
        finally:
            ev.duration_ns = time.perf_counter_ns() - t0
            ev.cpu_ns = time.thread_time_ns() - c0
            if ev.status == "error":
                span.set_status(trace.StatusCode.ERROR, ev.error_type)
            span.set_attributes(span_attributes(ev))
            span.end()
            otel_context.detach(token)
            self._dispatch(ev)

    def record_rejection(
        self, model: ModelInfo, *, error_type: str, message: str, request_id: str, endpoint: str
    ) -> InferenceEvent:
        """Account for a request rejected before inference (bad input): error metric, log, span."""
        ev = InferenceEvent(
            model=model,
            request_id=request_id,
            service=self.settings.service_name,
            team=self.settings.team,
            endpoint=endpoint,
            inputs=None,
            input_size=0,
            status="error",
            error_type=error_type,
            error_message=message[:500],
        )
        with self._tracer.start_as_current_span("inference.rejected") as span:
            ctx = span.get_span_context()
            ev.trace_id, ev.span_id = ctx.trace_id, ctx.span_id
            ev.start_time_ns = time.time_ns()
            span.set_status(trace.StatusCode.ERROR, error_type)
            span.set_attributes(span_attributes(ev))
        self._enqueue(ev)
        return ev

    def instrument(
        self,
        model: ModelInfo,
        *,
        endpoint: str = "",
        output: Callable[[Any], tuple[str | None, float | None, float | None]] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator form of :meth:`observe` for a predict function of one input.

        ``output`` maps the function's return value to ``(label, score, confidence)``.
        """

        def wrap(fn: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(fn)
            def inner(*args: P.args, **kwargs: P.kwargs) -> R:
                inputs = args[0] if args else next(iter(kwargs.values()), None)
                with self.observe(model, inputs, endpoint=endpoint or fn.__name__) as ev:
                    result = fn(*args, **kwargs)
                    if output is not None:
                        ev.label, ev.score, ev.confidence = output(result)
                return result

            return inner

        return wrap

    def _dispatch(self, ev: InferenceEvent) -> None:
        for sink in self._sync_sinks:
            sink(ev)
        self._enqueue(ev)

    def _enqueue(self, ev: InferenceEvent) -> None:
        try:
            self._queue.put_nowait(ev)
        except queue.Full:
            self.dropped_events += 1

    # -- off the request path --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            ev = self._queue.get()
            if ev is _STOP:
                return
            if isinstance(ev, _Marker):
                ev.done.set()
                continue
            for sink in self._async_sinks:
                try:
                    sink(ev)
                except Exception:
                    self.sink_errors += 1
                    _log.exception("event sink %r failed", sink)

    def _record_metrics(self, ev: InferenceEvent) -> None:
        ins = self.telemetry.instruments
        attrs = metric_attributes(ev)
        ctx = _context_of(ev)
        if ev.status == "error":
            ins.errors.add(1, attrs, context=ctx)
            if ev.inputs is None:  # rejected before inference: no duration to record
                return
        ins.duration.record(ev.duration_ns / 1e9, attrs, context=ctx)
        ins.input_size.record(ev.input_size, attrs, context=ctx)
        if ev.status == "ok":
            label_attrs = {**attrs, c.PREDICTION_LABEL: ev.label or ""}
            ins.predictions.add(1, label_attrs, context=ctx)
            if ev.confidence is not None:
                ins.confidence.record(ev.confidence, attrs, context=ctx)

    def _emit_log(self, ev: InferenceEvent) -> None:
        error = ev.status == "error"
        self.telemetry.logger.emit(
            timestamp=ev.start_time_ns,
            context=_context_of(ev),
            severity_number=SeverityNumber.ERROR if error else SeverityNumber.INFO,
            severity_text="ERROR" if error else "INFO",
            body=log_record(ev, include_input=self.settings.log_raw_input),
            event_name="infertrail.inference",
        )

    def flush(self, timeout_s: float = 10.0) -> None:
        """Process every event queued so far, then export all telemetry now."""
        done = threading.Event()
        self._queue.put(_Marker(done), timeout=timeout_s)
        done.wait(timeout_s)
        self.telemetry.force_flush()

    def shutdown(self) -> None:
        """Drain the event queue, flush and stop telemetry. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._worker.join(timeout=10.0)
        self.telemetry.shutdown()


class _Marker:
    """Queued by flush(): the worker sets it when everything before it is processed."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done


def _observation(value: int) -> Observation:
    return Observation(value)


def _context_of(ev: InferenceEvent) -> otel_context.Context:
    """A context holding the event's span, so exemplars and log records carry its ids."""
    flags = TraceFlags(TraceFlags.SAMPLED if ev.sampled else TraceFlags.DEFAULT)
    sc = SpanContext(ev.trace_id, ev.span_id, is_remote=False, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(sc))


def _size_of(inputs: Any) -> int:
    try:
        return len(inputs)
    except TypeError:
        return 1
