"""Compact spans: the request thread records, a batch builds the SDK's spans.

The SDK's span does its bookkeeping on the thread that creates it: a lock, bounded attribute
and event containers, every attribute validated as it is set, the processors' ``on_start`` and
``on_end`` (measured at ~18 us for start, 11 attributes and end, bench/RESULTS.md). On a
server's request thread that time is taken from the GIL every other request needs.

:class:`CompactTracer` is an OpenTelemetry API tracer whose spans are small slotted objects:
ids, times, the attributes and events the code sets, and optionally the
:class:`~infertrail.events.InferenceEvent` they describe, whose attributes are derived later.
They are real spans to the API: they can be made current, so spans the application starts with
any tracer nest under them, and their context propagates. Ending one appends it to a
:class:`SpanPump`, whose thread turns each batch into SDK :class:`ReadableSpan` objects off the
request path and hands them to the tracer provider's span processors (the batch processors and
their exporters: files, OTLP, anything a test or user added). Sampling is the provider's
sampler's decision, made when the span starts, as in the SDK.

What differs from an SDK span: span processors see the span when it ends, not when it starts
(``on_start`` is not called), and attribute values set by application code are validated when
set, as the SDK does, while those infertrail derives from its own events are trusted.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redaction import exception_attributes, redact_status_description

if TYPE_CHECKING:
    from types import TracebackType

_log = logging.getLogger("infertrail.telemetry")

__all__ = ["CompactSpan", "CompactTracer", "SpanPump"]

#: The SDK's default limits (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and friends).
MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)
_OK = Status(StatusCode.OK)
_SIMPLE = (str, bool, int, float)


def _clean(key: str, value: types.AnyValue) -> types.AnyValue | None:
    """An attribute value as the SDK would store it (sequences as tuples); None to drop it."""
    if type(value) in _SIMPLE:
        return value
    # Anything else (sequences, mappings, odd types) the way the installed SDK cleans it.
    return BoundedAttributes(attributes={key: value}, immutable=False).get(key)


class CompactSpan(trace_api.Span):
    """A recording span that defers everything but its ids and times to :class:`SpanPump`.

    ``source``: an object whose attributes are added when the span is built (the inference
    event: :attr:`CompactTracer.derive` turns it into attributes off the request thread).
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_pump",
        "_record_exception",
        "_set_status_on_exception",
        "_start",
        "_status",
        "source",
    )

    def __init__(
        self,
        pump: SpanPump,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, types.AnyValue] | None,
        links: Sequence[Link],
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._pump = pump
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._start = start_ns
        self._end = 0
        self._attributes = attributes
        self._events: list[Event] | None = None
        self._links = links
        self._status = _UNSET
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self.source: Any = None

    # -- the API ------------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        """The span's ids (valid from the start, like an SDK span's)."""
        return self._context

    def is_recording(self) -> bool:
        """True until the span ends."""
        return self._end == 0

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """Set one attribute (validated as the SDK validates it; invalid ones are dropped)."""
        if self._end:
            return
        cleaned = _clean(key, value)
        if cleaned is None:
            return
        attrs = self._attributes
        if attrs is None:
            self._attributes = {key: cleaned}
        elif key in attrs or len(attrs) < MAX_ATTRIBUTES:
            attrs[key] = cleaned

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Set several attributes."""
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        """Record an event (at most :data:`MAX_EVENTS`, as the SDK's default limit)."""
        if self._end:
            return
        events = self._events
        if events is None:
            events = self._events = []
        if len(events) < MAX_EVENTS:
            cleaned = {}
            for key, value in (attributes or {}).items():
                v = _clean(key, value)
                if v is not None:
                    cleaned[key] = v
            events.append(Event(name, cleaned, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Add a link to another span."""
        if not self._end and context.is_valid:
            self._links = [*self._links, Link(context, attributes)]

    def update_name(self, name: str) -> None:
        """Rename the span."""
        if not self._end:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status as the SDK does (OK is final, UNSET never overrides), its description
        redacted as an exception's message is (``"KeyError: REDACTED"``)."""
        if self._end or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if code is StatusCode.ERROR:
            self._status = Status(code, redact_status_description(description))
        elif code is StatusCode.OK:
            self._status = _OK

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record ``exception`` as an event: its type and frames, never its message.

        The message of an exception raised over model inputs can hold them (``KeyError('alice')``);
        telemetry keeps the type and the stack (docs/privacy.md, "Telemetry").
        """
        attrs: dict[str, types.AnyValue] = dict(exception_attributes(exception, escaped=escaped))
        if attributes:
            attrs.update(attributes)
        self.add_event(c.EVENT_NAME_EXCEPTION, attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span: it is queued for the pump (once)."""
        if self._end:
            return
        self._end = end_time or time.time_ns()
        self._pump.append(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, type(exc_val).__qualname__))
        self.end()

    def __repr__(self) -> str:
        return f"CompactSpan(name={self._name!r}, span_id={self._context.span_id:016x})"

    # -- building the SDK span (on the pump's thread) -----------------------------------------
    def readable(
        self,
        resource: Resource,
        scope: InstrumentationScope,
        derive: Callable[[Any], Mapping[str, types.AnyValue]] | None,
    ) -> ReadableSpan:
        """The SDK's span for the exporters: the ``source``'s attributes, then the ones set."""
        attrs: dict[str, types.AnyValue] | None = self._attributes
        if self.source is not None and derive is not None:
            derived = dict(derive(self.source))
            if attrs:
                derived.update(attrs)
            attrs = derived
        return ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=resource,
            attributes=attrs or {},
            events=tuple(self._events or ()),
            links=tuple(self._links),
            kind=self._kind,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=scope,
        )


class CompactTracer(trace_api.Tracer):
    """An API tracer of :class:`CompactSpan` objects, sampled by ``sampler``."""

    def __init__(self, pump: SpanPump, sampler: sampling.Sampler) -> None:
        self._pump = pump
        self._sampler = sampler
        # The default samplers decide from the parent alone: skip the SDK's call (~2 us).
        self._fast = _fast_decision(sampler)

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        """Start a span, a child of the span current in ``context`` (or the current context)."""
        parent = trace_api.get_current_span(context).get_span_context()
        if not parent.is_valid:
            parent_ctx = None
            trace_id = random.getrandbits(128)
            while not trace_id:  # pragma: no cover (one in 2**128)
                trace_id = random.getrandbits(128)
        else:
            parent_ctx = parent
            trace_id = parent.trace_id
        span_id = random.getrandbits(64)
        while not span_id:  # pragma: no cover
            span_id = random.getrandbits(64)
        fast = self._fast
        if fast is not None:
            sampled = fast(parent_ctx)
            trace_state = parent.trace_state if parent_ctx is not None else None
            extra = None
        else:
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = result.decision is sampling.Decision.RECORD_AND_SAMPLE
            trace_state = result.trace_state
            extra = result.attributes
            if result.decision is sampling.Decision.RECORD_ONLY:
                sampled = False  # recorded but never exported: nothing to build
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        span_context = SpanContext(trace_id, span_id, False, flags, trace_state)
        if not sampled:
            return trace_api.NonRecordingSpan(span_context)
        attrs: dict[str, types.AnyValue] | None = None
        if attributes or extra:
            attrs = {}
            for key, value in {**(attributes or {}), **(extra or {})}.items():
                v = _clean(key, value)
                if v is not None:
                    attrs[key] = v
        return CompactSpan(
            self._pump,
            name,
            span_context,
            parent_ctx,
            kind,
            start_time or time.time_ns(),
            attrs,
            tuple(links or ()),
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        """Start a span and make it current for the block (the API's semantics)."""
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


def _fast_decision(sampler: sampling.Sampler) -> Callable[[SpanContext | None], bool] | None:
    """The decision of the samplers that look at the parent's flag alone, as a function."""
    if sampler is sampling.ALWAYS_ON:
        return lambda _parent: True
    if sampler is sampling.ALWAYS_OFF:
        return lambda _parent: False
    if type(sampler) is sampling.ParentBased:
        root = sampler._root
        delegates = (
            sampler._remote_parent_sampled,
            sampler._remote_parent_not_sampled,
            sampler._local_parent_sampled,
            sampler._local_parent_not_sampled,
        )
        defaults = (sampling.ALWAYS_ON, sampling.ALWAYS_OFF) * 2
        if root in (sampling.ALWAYS_ON, sampling.ALWAYS_OFF) and delegates == defaults:
            root_sampled = root is sampling.ALWAYS_ON
            return lambda parent: root_sampled if parent is None else parent.trace_flags.sampled
    return None


class _HandOnFirst(SpanProcessor):
    """The pump's span processor, registered before the others: a flush or shutdown of the
    provider (``TracerProvider.force_flush``, by anyone) first hands the queued compact spans
    to every processor, then the processors after it flush or stop."""

    def __init__(self, pump: SpanPump) -> None:
        self._pump = pump

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._pump.pump()
        return True

    def shutdown(self) -> None:
        self._pump.close()


class SpanPump:
    """Ended compact spans, built into SDK spans in batches and handed to the span processors.

    ``append`` (the request thread's part) is one deque append. A daemon thread wakes every
    ``interval_s``, takes every span queued, builds them and calls the provider's span
    processors' ``on_end`` (the batch processors queue them for their exporters). ``pump()``
    does the same at once, for a flush. Past ``max_queue`` queued spans, new ones are dropped
    and counted (:attr:`dropped`), as the SDK's batch processor does. :attr:`derive` turns a
    span's ``source`` into its attributes (set by the Monitor: an inference event's).

    Make it before adding the provider's other span processors: it registers one of its own,
    so that the provider's ``force_flush`` and ``shutdown`` hand the queued spans on first.
    """

    def __init__(
        self,
        provider: TracerProvider,
        scope: InstrumentationScope,
        *,
        interval_s: float = 0.25,
        max_queue: int = 65_536,
    ) -> None:
        self._provider = provider
        self._scope = scope
        self._interval = interval_s
        self._max_queue = max_queue
        self._queue: deque[CompactSpan] = deque()
        self._lock = threading.Lock()  # one pump at a time keeps the spans in order
        self._stop = threading.Event()
        self.derive: Callable[[Any], Mapping[str, types.AnyValue]] | None = None
        self.dropped = 0
        self.built = 0
        self._thread = threading.Thread(target=self._run, name="infertrail-spans", daemon=True)
        self._thread.start()
        provider.add_span_processor(_HandOnFirst(self))
        # A forked worker (gunicorn --preload) starts with the parent's queue and no thread.
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: _call_if_alive(ref))

    def _after_fork(self) -> None:
        self._queue = deque()  # the parent exports what it queued
        self._lock = threading.Lock()
        if not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="infertrail-spans", daemon=True)
            self._thread.start()

    def append(self, span: CompactSpan) -> None:
        """Queue an ended span (dropped and counted when the queue is full)."""
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(span)

    def pump(self) -> int:
        """Build and hand on every span queued so far; returns how many."""
        with self._lock:
            queue = self._queue
            n = len(queue)
            if not n:
                return 0
            resource = self._provider.resource
            scope, derive = self._scope, self.derive
            on_end = self._provider._active_span_processor.on_end
            for _ in range(n):
                span = queue.popleft()
                try:
                    on_end(span.readable(resource, scope, derive))
                except Exception:
                    _log.exception("building or handing on a span failed: %r", span)
            self.built += n
            return n

    def close(self) -> None:
        """Pump what is left and stop the thread. Idempotent."""
        self._stop.set()
        self._thread.join(5.0)
        self.pump()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.pump()


def _call_if_alive(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()
