"""The public instrumentation point: ``Monitor.observe`` wraps one inference.

On the request thread it does the minimum: open and close the inference span, fill the
:class:`InferenceEvent`, run the synchronous sinks (the audit append, which must apply
backpressure rather than drop) and enqueue the event. A background worker derives the metric
points and the log record from the event; telemetry may be dropped when that queue is full, and
every drop is counted.

The worker drains the queue in batches: the first event after an idle spell wakes it, it then
waits ``batch_window_s`` for more and handles them all in one go. Waking a thread per event
cost more than the work it did (a futex wake and a GIL hand-off per inference, measured in
bench/overhead.py), and in a server every hand-off also delays the event loop.

Sinks follow one contract, the one OpenTelemetry's span processors follow (:class:`Sink`):
``__call__(event)``, ``flush(timeout_s)``, ``close(timeout_s)``. :meth:`Monitor.shutdown` owns
their end: within one deadline it closes the request-thread sinks first (the audit trail: its
final signed checkpoint is what a stop must not lose), drains the queue, then flushes and closes
the background sinks in reverse registration order, then stops telemetry; a step still running
at the deadline is abandoned (:mod:`infertrail.lifecycle`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Token
from dataclasses import replace
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import Observation
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, TraceFlags

from infertrail.config import Settings
from infertrail.events import (
    AttributeValue,
    Generation,
    InferenceEvent,
    ModelInfo,
    current_request,
    generation_metric_attributes,
    generation_span_attributes,
    generation_span_name,
    log_record,
    metric_attributes,
    new_request_id,
    span_attributes,
)
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S, NETWORK_STEP_S, Deadline, run_bounded
from infertrail.telemetry import conventions as c
from infertrail.telemetry.genai import conventions as genai_conventions
from infertrail.telemetry.otlp_json import LogEntry
from infertrail.telemetry.redaction import REDACTED, exception_attributes
from infertrail.telemetry.setup import AttributeKey, Telemetry
from infertrail.telemetry.spans import CompactSpan

_log = logging.getLogger("infertrail.monitor")

P = ParamSpec("P")
R = TypeVar("R")


@runtime_checkable
class Sink(Protocol):
    """A consumer of every inference event (audit, drift, SLO counts, cost, outcomes index).

    ``flush`` hands on what it buffered and returns False if it could not within the time;
    ``close`` flushes and releases the sink's threads and files. Both must respect their
    timeout; the Monitor runs them in a bounded helper thread anyway.
    """

    def __call__(self, event: InferenceEvent) -> None:
        """Consume one event (on the request thread or the Monitor's worker)."""

    def flush(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> bool:
        """Hand on everything buffered; False if that took longer than ``timeout_s``."""

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Flush, then release threads and files. Idempotent."""


class FunctionSink:
    """A plain ``event -> None`` function as a :class:`Sink` (nothing to flush or close)."""

    def __init__(self, fn: Callable[[InferenceEvent], None]) -> None:
        self._fn = fn

    def __call__(self, event: InferenceEvent) -> None:
        """Pass the event to the function."""
        self._fn(event)

    def flush(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> bool:
        """Nothing buffered."""
        return True

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"FunctionSink({self._fn!r})"


_STOP = object()
# How often the worker folds the histograms' pending measurements when it has events to handle.
_FOLD_INTERVAL_S = 1.0
# A prediction label longer than this is free text, never a metric attribute value.
_MAX_LABEL_CHARS = 64
_LABEL_OVERFLOW: AttributeKey = ((c.OVERFLOW_ATTRIBUTE, c.PREDICTION_LABEL),)
_MODEL_OVERFLOW: AttributeKey = ((c.OVERFLOW_ATTRIBUTE, c.GENAI_REQUEST_MODEL),)
# (model, team, status, error type) -> the metric attributes and their counter key
_SeriesKey = tuple[ModelInfo, str, str, str | None]


class Monitor:
    """Instruments inferences: traces, metrics, logs and sinks (audit, drift) from one event."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        telemetry: Telemetry | None = None,
        queue_max: int = 10_000,
        batch_window_s: float = 0.02,
    ) -> None:
        if queue_max < 1 or not batch_window_s >= 0:
            raise ValueError(
                f"queue_max must be >= 1 and batch_window_s >= 0, got {queue_max}, {batch_window_s}"
            )
        self.settings = settings or Settings()
        self.settings.ensure_dirs()
        # One owner stops telemetry: the Monitor if it made it, else whoever passed it in.
        self._owns_telemetry = telemetry is None
        self.telemetry = telemetry or Telemetry(self.settings)
        self._tracer = self.telemetry.tracer
        self.telemetry.span_pump.derive = _span_attributes
        self._sync_sinks: list[Sink] = []
        self._async_sinks: list[Sink] = []
        self._series: dict[_SeriesKey, tuple[dict[str, AttributeValue], AttributeKey]] = {}
        self._label_keys: dict[tuple[AttributeKey, str], AttributeKey] = {}
        self._admitted: dict[AttributeKey, int] = {}  # distinct labels admitted per series
        # GenAI series -> the histograms' keys: the series', then with each token type
        self._genai_series: dict[tuple[Any, ...], tuple[AttributeKey, ...]] = {}
        # deque append/popleft are atomic; the length check makes the bound approximate by at
        # most the number of concurrent request threads.
        self._events: deque[Any] = deque()
        self._queue_max = queue_max
        self._window = batch_window_s
        self._wake = threading.Event()
        self._idle = False  # the worker waits for the next event with no deadline
        self._urgent = False  # a flush or stop is queued: no batching window
        self.dropped_events = 0
        self.sink_errors = 0
        self._worker = threading.Thread(target=self._run, name="infertrail-events", daemon=True)
        self._worker.start()
        self._closed = False
        self.telemetry.meter.create_observable_counter(
            c.METRIC_TELEMETRY_DROPPED,
            callbacks=[lambda _o: [_observation(self.dropped_events)]],
            unit=c.UNIT_EVENT,
            description="Inference events whose metrics/logs were dropped: queue full.",
        )

    # -- sinks -----------------------------------------------------------------------------
    def add_sink(
        self, sink: Sink | Callable[[InferenceEvent], None], *, on_request_thread: bool = False
    ) -> Sink:
        """Register a consumer of every event; returns it as a :class:`Sink`.

        Request-thread sinks run before the event is queued and may apply backpressure (the
        audit trail does); background sinks run on the Monitor's worker, after the event's
        metrics and log record. A plain function is wrapped in a :class:`FunctionSink`.
        """
        if self._closed:
            raise RuntimeError("the Monitor is shut down; sinks can no longer be added")
        wrapped = sink if isinstance(sink, Sink) else FunctionSink(sink)
        (self._sync_sinks if on_request_thread else self._async_sinks).append(wrapped)
        return wrapped

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
        endpoint: str | None = None,
        tenant: str | None = None,
    ) -> Iterator[InferenceEvent]:
        """Wrap one inference; set ``label``/``score``/``confidence`` on the yielded event.

        ``request_id`` and ``endpoint`` default to the current HTTP request's (set by
        infertrail's middleware), else a new UUIDv7 and "". An exception raised inside the
        block marks the event as an error (its class name is the ``error.type``), is recorded
        on the span, and propagates unchanged.
        """
        active = self.begin(
            model,
            inputs,
            input_size=input_size,
            subject=subject,
            request_id=request_id,
            endpoint=endpoint,
            tenant=tenant,
        )
        try:
            yield active.event
        except BaseException as exc:
            active.fail(exc)
            raise
        finally:
            active.end()

    def begin(
        self,
        model: ModelInfo,
        inputs: Any,
        *,
        input_size: int | None = None,
        subject: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
        tenant: str | None = None,
        generation: Generation | None = None,
        span_kind: SpanKind = SpanKind.INTERNAL,
        attach: bool = True,
        span: bool = True,
    ) -> ActiveInference:
        """Start an inference that ends later, by :meth:`ActiveInference.end`.

        :meth:`observe` is this around a ``with`` block. A streamed generation ends when its
        stream does, somewhere else: it begins with ``attach=False`` (its span is not made the
        current one, since a context attached here could not be detached there). With a
        ``generation`` the span is named and attributed after the GenAI conventions.

        ``span=False`` records the event without a span of its own, for a call another
        instrumentation already traces (the OpenTelemetry ``openai`` one): the event carries
        the current span's ids, and nothing here writes to that span or ends it.
        """
        if request_id is None or endpoint is None:
            req = current_request.get()
            if request_id is None:
                request_id = req.request_id if req is not None else new_request_id()
            if endpoint is None:
                endpoint = req.endpoint if req is not None else ""
        ev = InferenceEvent(
            model=model,
            request_id=request_id,
            service=self.settings.service_name,
            team=self.settings.team,
            endpoint=endpoint,
            inputs=inputs,
            input_size=input_size if input_size is not None else _size_of(inputs),
            subject=subject,
            tenant=tenant,
            generation=generation,
        )
        name = c.SPAN_NAME_INFERENCE if generation is None else generation_span_name(generation)
        token = None
        if span:
            own: Span = self._tracer.start_span(name, kind=span_kind)
            if attach:
                token = otel_context.attach(trace.set_span_in_context(own))
        else:
            own = NonRecordingSpan(trace.get_current_span().get_span_context())
        ctx = own.get_span_context()
        ev.trace_id, ev.span_id, ev.sampled = ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled
        ev.start_time_ns = time.time_ns()
        return ActiveInference(self, ev, own, token)

    def _finish(self, active: ActiveInference) -> None:
        """End ``active``'s span and hand its event to the sinks (ActiveInference.end)."""
        ev, span = active.event, active.span
        if ev.status == "error":
            span.set_status(trace.StatusCode.ERROR, ev.error_type)
        if type(span) is CompactSpan:
            span.source = ev  # its attributes are derived off the request thread
        else:
            span.set_attributes(_span_attributes(ev))
        span.end()
        if active.token is not None:
            otel_context.detach(active.token)
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
        with self._tracer.start_as_current_span(c.SPAN_NAME_INFERENCE_REJECTED) as span:
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
        if self._closed:  # shut down: the sinks are closed; count it as dropped telemetry
            self.dropped_events += 1
            return
        for sink in self._sync_sinks:
            sink(ev)
        self._enqueue(ev)

    def _enqueue(self, ev: InferenceEvent) -> None:
        if len(self._events) >= self._queue_max:
            self.dropped_events += 1
            return
        self._events.append(ev)
        if self._idle:  # only the first event after an idle spell pays for a wake-up
            self._idle = False
            self._wake.set()

    def _put_control(self, item: object) -> None:
        """Queue a flush marker or the stop sentinel (never dropped) and cut the window short."""
        self._events.append(item)
        self._urgent = True
        self._wake.set()

    # -- off the request path --------------------------------------------------------------
    def _run(self) -> None:
        events = self._events
        last_fold = time.monotonic()
        while True:
            self._idle = True
            # Re-checked after publishing idleness: an event queued before this check is seen
            # here, one queued after it finds _idle set and wakes us.
            if not events:
                self._wake.wait()
            self._idle = False
            self._wake.clear()
            if self._window and not self._urgent:
                self._wake.wait(self._window)  # let a batch gather; flush/stop end it early
                self._wake.clear()
            self._urgent = False
            logs: list[LogEntry] = []
            while events:
                ev = events.popleft()
                if ev is _STOP:
                    self._emit_logs(logs)
                    return
                if isinstance(ev, _Marker):
                    self._emit_logs(logs)
                    ev.done.set()
                    continue
                try:
                    self._record_metrics(ev)
                    logs.append(self._log_entry(ev))
                except Exception:
                    self.sink_errors += 1
                    _log.exception("metrics or log record of an event failed")
                for sink in self._async_sinks:
                    try:
                        sink(ev)
                    except Exception:
                        self.sink_errors += 1
                        _log.exception("event sink %r failed", sink)
            self._emit_logs(logs)
            now = time.monotonic()
            if now - last_fold >= _FOLD_INTERVAL_S:  # bounds the histograms' pending values
                last_fold = now
                self.telemetry.aggregate()

    def _emit_logs(self, logs: list[LogEntry]) -> None:
        """Hand the batch's log records to telemetry (one write per file) and empty the list."""
        if not logs:
            return
        try:
            self.telemetry.emit_logs(logs)
        except Exception:
            self.sink_errors += 1
            _log.exception("writing a batch of %d log records failed", len(logs))
        logs.clear()

    def _series_of(self, ev: InferenceEvent) -> tuple[dict[str, AttributeValue], AttributeKey]:
        """The event's metric attributes and counter key, built once per series."""
        key = (ev.model, ev.team, ev.status, ev.error_type)
        found = self._series.get(key)
        if found is None:
            attrs = metric_attributes(ev)
            found = self._series[key] = (attrs, tuple(attrs.items()))
        return found

    def _record_metrics(self, ev: InferenceEvent) -> None:
        ins = self.telemetry.instruments
        _, key = self._series_of(ev)
        if ev.generation is not None:
            self._record_generation(ev, ev.generation)
        if ev.status == "error":
            ins.errors.add(key)
            if ev.inputs is None:  # rejected before inference: no duration to record
                return
        # Exemplars on the duration histogram only: it is the one a latency panel links from
        # to a trace; another span context per histogram cost ~2 us per event for no new link.
        ins.duration.record(ev.duration_ns / 1e9, key, ev.trace_id, ev.span_id, ev.sampled)
        ins.input_size.record(ev.input_size, key)
        if ev.status == "ok":
            ins.predictions.add(self._label_key(key, ev.label or ""))
            if ev.confidence is not None:
                ins.confidence.record(ev.confidence, key)

    def _label_key(self, key: AttributeKey, label: str) -> AttributeKey:
        """The predictions counter's series of ``label``, under the cardinality guard.

        A label is a class name, not text: one longer than ``_MAX_LABEL_CHARS`` or holding a
        line break or tab is free text and folds into ``other`` at once; past
        ``settings.telemetry_max_label_values`` distinct labels per series, every new one
        folds too. Each folded event counts in ``infertrail.telemetry.attribute_overflow``.
        The counters are cumulative, so a label admitted once keeps its series: the bound
        holds for the life of the process, which is what bounds the exported series.
        """
        found = self._label_keys.get((key, label))
        if found is not None:
            return found
        admitted = self._admitted.get(key, 0)
        free_text = len(label) > _MAX_LABEL_CHARS or any(ch in label for ch in "\n\r\t")
        if free_text or admitted >= self.settings.telemetry_max_label_values:
            self.telemetry.instruments.attribute_overflow.add(_LABEL_OVERFLOW)
            return (*key, (c.PREDICTION_LABEL, c.OVERFLOW_VALUE))
        self._admitted[key] = admitted + 1
        found = self._label_keys[(key, label)] = (*key, (c.PREDICTION_LABEL, label))
        return found

    def _record_generation(self, ev: InferenceEvent, gen: Generation) -> None:
        """The GenAI conventions' metrics of a generation, and its outcome counter."""
        ins = self.telemetry.instruments
        outcome = "error" if ev.status == "error" else gen.outcome
        ins.genai_outcomes.add(
            (
                (c.MODEL_NAME, ev.model.name),
                (c.MODEL_VERSION, ev.model.version),
                (c.TEAM, ev.team),
                (c.GENAI_OUTCOME, outcome),
            )
        )
        if gen.external:  # the other instrumentation records the gen_ai histograms
            return
        conv = genai_conventions()
        error = ev.error_type if ev.status == "error" else None
        series: tuple[Any, ...] = (
            conv.latest,
            gen.operation,
            gen.provider,
            gen.request_model,
            gen.response_model,
            gen.server_address,
            gen.server_port,
            error,
        )
        keys = self._genai_series.get(series)
        if keys is None:
            named = gen
            if len(self._genai_series) >= self.settings.telemetry_max_label_values:
                # Model names come from callers' requests: bounded like labels.
                ins.attribute_overflow.add(_MODEL_OVERFLOW)
                named = replace(gen, request_model=c.OVERFLOW_VALUE, response_model=None)
                series = (conv.latest, gen.operation, gen.provider, c.OVERFLOW_VALUE, error)
            keys = self._genai_series.get(series)
            if keys is None:
                attrs = tuple(generation_metric_attributes(named, conv, error).items())
                keys = self._genai_series[series] = (
                    attrs,
                    (*attrs, (c.GENAI_TOKEN_TYPE, "input")),
                    (*attrs, (c.GENAI_TOKEN_TYPE, "output")),
                )
        key, input_key, output_key = keys
        ins.genai_duration.record(ev.duration_ns / 1e9, key, ev.trace_id, ev.span_id, ev.sampled)
        if gen.input_tokens is not None:
            ins.genai_tokens.record(gen.input_tokens, input_key)
        if gen.output_tokens is not None:
            ins.genai_tokens.record(gen.output_tokens, output_key)
        if ev.status == "ok":  # the server timings count successful responses only
            ttft = gen.time_to_first_token_s
            if ttft is not None:
                ins.genai_ttft.record(ttft, key)
            tpot = gen.time_per_output_token_s
            if tpot is not None:
                ins.genai_tpot.record(tpot, key)

    def _log_entry(self, ev: InferenceEvent) -> LogEntry:
        """The event's log record: its fields, encoded later with the whole batch."""
        error = ev.status == "error"
        return LogEntry(
            ev.start_time_ns,
            ev.trace_id,
            ev.span_id,
            TraceFlags.SAMPLED if ev.sampled else TraceFlags.DEFAULT,
            SeverityNumber.ERROR.value if error else SeverityNumber.INFO.value,
            "ERROR" if error else "INFO",
            log_record(ev, include_input=self.settings.log_raw_input),
            c.EVENT_NAME_INFERENCE,
        )

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Process every event queued so far, flush every sink, then export all telemetry now.

        Returns False if that did not finish within ``timeout_s``.
        """
        deadline = Deadline(timeout_s)
        done = self.flush_events(timeout_s)
        for sink in (*self._sync_sinks, *self._async_sinks):
            done = sink.flush(deadline.remaining()) and done
        exported = self.telemetry.force_flush(int(deadline.remaining() * 1000))
        return done and exported

    def flush_events(self, timeout_s: float = 10.0) -> bool:
        """Hand every event queued so far to the background sinks now; False on timeout.

        Cheaper than :meth:`flush` (no telemetry export): for a caller that needs the sinks
        up to date, such as the outcomes ingest looking up a just-served prediction.
        """
        done = threading.Event()
        self._put_control(_Marker(done))
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Close every sink and stop telemetry, all within ``timeout_s``. Idempotent.

        Order: the request-thread sinks first, in reverse registration order (the audit trail's
        final signed checkpoint must not wait behind a slow exporter); then the queue is drained
        to the background sinks, which are flushed and closed in reverse registration order;
        telemetry last (only if this Monitor made it: a Telemetry passed in is its owner's to
        stop). Events observed after this point are counted as dropped.
        """
        if self._closed:
            return
        self._closed = True
        deadline = Deadline(timeout_s)
        for sink in reversed(self._sync_sinks):
            run_bounded(f"sink {sink!r}", sink.close, deadline)
        self._put_control(_STOP)
        self._worker.join(deadline.remaining())
        if self._worker.is_alive():
            _log.warning("shutdown: the event queue was not drained before the deadline")
        for sink in reversed(self._async_sinks):
            run_bounded(f"sink {sink!r}", sink.close, deadline)
        if self._owns_telemetry:
            self.telemetry.shutdown(deadline.capped(NETWORK_STEP_S).remaining())


class ActiveInference:
    """An inference between :meth:`Monitor.begin` and :meth:`end`: its event and its span.

    Times run from ``begin``; ``end`` is idempotent, so a stream closed twice, or closed after
    an error, ends its inference once.
    """

    __slots__ = ("_c0", "_ended", "_monitor", "_t0", "_thread", "event", "span", "token")

    def __init__(
        self,
        monitor: Monitor,
        event: InferenceEvent,
        span: Span,
        token: Token[otel_context.Context] | None,
    ) -> None:
        self._monitor = monitor
        self.event = event
        self.span = span
        self.token = token
        self._ended = False
        self._t0 = time.perf_counter_ns()
        self._c0 = time.thread_time_ns()
        self._thread = threading.get_ident()

    @property
    def started_ns(self) -> int:
        """``perf_counter_ns`` at the start (what a generation's token times count from)."""
        return self._t0

    def fail(self, exc: BaseException) -> None:
        """Mark the inference failed by ``exc``: error status, type, exception event (redacted)."""
        ev = self.event
        ev.status = "error"
        if ev.error_type is None:
            ev.error_type = type(exc).__qualname__
        # The message can carry the input (KeyError('alice'), a validation error): telemetry
        # keeps the type and the stack frames only (docs/privacy.md, "Telemetry").
        ev.error_message = REDACTED
        self.span.add_event(c.EVENT_NAME_EXCEPTION, exception_attributes(exc, escaped=True))

    def end(self) -> None:
        """Stop the clocks, end the span, hand the event to the sinks (once)."""
        if self._ended:
            return
        self._ended = True
        ev = self.event
        ev.duration_ns = time.perf_counter_ns() - self._t0
        # The request thread's CPU time inside the inference; unknown (0) when a stream ended
        # on another thread than the one it began on.
        if threading.get_ident() == self._thread:
            ev.cpu_ns = time.thread_time_ns() - self._c0
        self._monitor._finish(self)


class _Marker:
    """Queued by flush(): the worker sets it when everything before it is processed."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done


def _observation(value: int) -> Observation:
    return Observation(value)


def _span_attributes(ev: InferenceEvent) -> dict[str, AttributeValue]:
    """The inference span's attributes (and a generation's, after the GenAI conventions)."""
    attrs: dict[str, Any] = span_attributes(ev)
    if ev.generation is not None:
        attrs.update(generation_span_attributes(ev.generation, genai_conventions()))
    return attrs


def _size_of(inputs: Any) -> int:
    try:
        return len(inputs)
    except TypeError:
        return 1
