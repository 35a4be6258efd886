"""The span the app sees during a request, which never records what was redacted.

infertrail's HTTP layer (telemetry/httpserver.py) starts each request's server span with its
query already redacted, and makes a :class:`RedactingSpan` around it the app's current span
(``trace.get_current_span()``). Whatever the app, or a library it calls, then records on that
span is redacted on the way in (the rules are telemetry/redaction.py's), so neither the SDK nor
a sampler, span processor or exporter ever sees the raw value:

- a query-carrying attribute (``url.query``; the query part of ``url.full``, ``http.target``,
  ``http.url``) shows ``REDACTED`` whole until :meth:`RedactingSpan.show_query` is given the
  request's redacted query, and that query after;
- a recorded exception keeps its type and frames, not its message nor its chain's; a status
  description keeps the exception type; ``exception.message`` and ``exception.stacktrace`` set
  by hand show ``REDACTED``.

Spans the app or infertrail start with their own tracers are not wrapped (docs/privacy.md).

:class:`RedactingTracerProvider` and :func:`query_hook` apply the same redaction to the
OpenTelemetry FastAPI instrumentation, which infertrail no longer uses; they remain for the
configuration the HTTP layer is measured against (the reference of
tests/unit/telemetry/test_httpserver.py's differential test, the instrumentation's variant in
bench/http_middleware.py). That instrumentation starts its server span with the raw query among
the creation attributes, so its tracer redacts them before the SDK span exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util import types

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redaction import (
    REDACTED,
    QueryRedaction,
    exception_attributes,
    redact_status_description,
    with_query,
)

__all__ = ["RedactingSpan", "RedactingTracer", "RedactingTracerProvider", "query_hook"]

#: Attributes holding a URL or target whose query is replaced.
_URL_KEYS = frozenset({c.URL_FULL, c.HTTP_TARGET, c.HTTP_URL})


class RedactingSpan(Span):
    """A span that redacts query strings and exception text before its SDK span records them."""

    def __init__(
        self, inner: Span, *, record_exception: bool = True, set_status_on_exception: bool = True
    ) -> None:
        self._inner = inner
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        # What every query-carrying attribute shows: REDACTED until the request is known.
        self._query = REDACTED
        self._has_query = False
        # Of each URL attribute that had a query: the URL up to its "?" (what stays).
        self._url_heads: dict[str, str] = {}

    def clean(self, attributes: types.Attributes) -> dict[str, types.AnyValue] | None:
        """``attributes`` as this span records them (the query-carrying ones redacted)."""
        if attributes is None:
            return None
        return {key: self._clean(key, value) for key, value in attributes.items()}

    def _clean(self, key: str, value: types.AnyValue) -> types.AnyValue:
        if key == c.URL_QUERY:
            self._has_query = True
            return self._query
        if key in _URL_KEYS and isinstance(value, str):
            head, has_query, _ = value.partition("?")
            if has_query:
                self._url_heads[key] = f"{head}?"
                return with_query(value, self._query)
        elif key == c.EXCEPTION_MESSAGE:
            return REDACTED
        elif key == c.EXCEPTION_STACKTRACE:
            return REDACTED  # text from elsewhere: its messages cannot be told from its frames
        return value

    def show_query(self, query: str) -> None:
        """Show ``query`` (already redacted) wherever this span holds the request's query."""
        self._query = query
        if self._has_query:
            self._inner.set_attribute(c.URL_QUERY, query)
        for key, head in self._url_heads.items():
            self._inner.set_attribute(key, with_query(head, query))

    # -- the Span API ---------------------------------------------------------------------------
    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """Set one attribute, redacted."""
        self._inner.set_attribute(key, self._clean(key, value))

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Set attributes, redacted."""
        self._inner.set_attributes(self.clean(attributes) or {})

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        """Add an event, its attributes redacted."""
        self._inner.add_event(name, self.clean(attributes), timestamp)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record ``exception`` as the SDK does, its message (and its chain's) redacted."""
        event: dict[str, types.AnyValue] = dict(exception_attributes(exception, escaped=escaped))
        event.update(self.clean(attributes) or {})
        self._inner.add_event(c.EVENT_NAME_EXCEPTION, event, timestamp)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status; a description keeps the exception type only."""
        if isinstance(status, Status):
            status = Status(status.status_code, redact_status_description(status.description))
            self._inner.set_status(status)
        else:
            self._inner.set_status(status, redact_status_description(description))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Add a link, its attributes redacted."""
        self._inner.add_link(context, self.clean(attributes))

    def update_name(self, name: str) -> None:
        """Rename the span."""
        self._inner.update_name(name)

    def end(self, end_time: int | None = None) -> None:
        """End the span."""
        self._inner.end(end_time)

    def get_span_context(self) -> SpanContext:
        """The span's context (children and propagation use it)."""
        return self._inner.get_span_context()

    def is_recording(self) -> bool:
        """Whether the span records."""
        return self._inner.is_recording()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """End the span; an exception leaving the block is recorded as the SDK's span would."""
        if isinstance(exc_val, Exception) and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def __getattr__(self, name: str) -> Any:
        # Whoever holds the span may read the SDK span's properties (kind, name, attributes).
        if name == "_inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)


class RedactingTracer(trace.Tracer):
    """A tracer whose spans are :class:`RedactingSpan` around ``inner``'s."""

    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> RedactingSpan:
        """Start a span whose creation attributes are already redacted."""
        span = RedactingSpan(
            trace.INVALID_SPAN,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
        span._inner = self._inner.start_span(
            name,
            context,
            kind,
            span.clean(attributes),
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        """Start a span and make it current for the block, exceptions recorded redacted."""
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class RedactingTracerProvider(trace.TracerProvider):
    """Hands out :class:`RedactingTracer` over ``inner``'s tracers (give it to instrumentation)."""

    def __init__(self, inner: trace.TracerProvider) -> None:
        self._inner = inner

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        """A redacting tracer over ``inner``'s tracer of that name."""
        return RedactingTracer(
            self._inner.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )


def query_hook(redaction: QueryRedaction) -> Callable[[Span, Mapping[str, Any]], None]:
    """The ``server_request_hook``: shows the request's query redacted by ``redaction``.

    It reads the raw query from the ASGI scope: the attributes hold it percent-decoded, where a
    value's ``%26`` has become a separator and could pass for a kept parameter.
    """

    def hook(span: Span, scope: Mapping[str, Any]) -> None:
        raw = scope.get("query_string")
        if raw and isinstance(span, RedactingSpan):  # most requests have no query: no work
            span.show_query(redaction(str(scope.get("path", "")), raw))

    return hook
