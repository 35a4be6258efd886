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
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry.trace import Span, SpanContext, Status, StatusCode
from opentelemetry.util import types

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redaction import (
    REDACTED,
    exception_attributes,
    redact_status_description,
    with_query,
)

__all__ = ["RedactingSpan"]

#: Attributes holding a URL or target whose query is replaced.
_URL_KEYS = frozenset({c.URL_FULL, c.HTTP_TARGET, c.HTTP_URL})


class RedactingSpan(Span):
    """A span that redacts query strings and exception text before its SDK span records them."""

    def __init__(self, inner: Span) -> None:
        self._inner = inner
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
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def __getattr__(self, name: str) -> Any:
        # Whoever holds the span may read the SDK span's properties (kind, name, attributes).
        if name == "_inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)
