"""Query filters: a required, bounded time window, field filters, and opaque page cursors.

Pure functions, no I/O. Every error a caller can cause is a :class:`QueryError` naming the
parameter, the bad value and what would be valid; the API answers it with 422.

Filters are written into the access record of every query, in the permanent audit log, so
each is checked against what it can match before anything is written: a pseudonym has the
form the privacy layer issues (:data:`PSEUDONYM_PATTERN`), an event type is one of
``EVENT_TYPES``, and a model name, model version or decision is 1 to 256 characters without
control characters (:data:`FILTER_TEXT_PATTERN`: no NUL, newline or escape sequence reaches
the log, a terminal or a CSV export). Times are written normalized, never as sent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from infertrail.audit.canonical import canonicalize
from infertrail.audit.record import EVENT_TYPES

__all__ = [
    "DEFAULT_MAX_WINDOW_DAYS",
    "DEFAULT_PAGE_SIZE",
    "FILTER_TEXT_PATTERN",
    "MAX_PAGE_SIZE",
    "PSEUDONYM_PATTERN",
    "QueryError",
    "QueryFilters",
    "TimeWindow",
    "decode_cursor",
    "encode_cursor",
    "parse_instant",
    "parse_window",
]

DEFAULT_MAX_WINDOW_DAYS = 366
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_MAX_FIELD_CHARS = 256
#: A subject's pseudonym as privacy.pseudonyms.new_pseudonym issues it: ``p-`` + 32 hex digits.
PSEUDONYM_PATTERN = r"^p-[0-9a-f]{32}$"
#: A model name, model version or decision: 1 to 256 characters, none a control character
#: (C0, DEL, C1). The same text is the OpenAPI pattern (ECMA and Python read it alike).
FILTER_TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]{1,256}$"
_PSEUDONYM = re.compile(PSEUDONYM_PATTERN.strip("^$"))
# ... nor a lone surrogate, which no URL can carry but a command line can.
_FILTER_TEXT = re.compile(FILTER_TEXT_PATTERN.strip("^$").replace("]", r"\ud800-\udfff]"))
_CURSOR_VERSION = "c1"
_CURSOR_RE = re.compile(r"c1\.(\d{1,16})\.([0-9a-f]{16})")


class QueryError(ValueError):
    """A query parameter is missing, malformed or out of bounds; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The half-open interval [start, end) of record times, both timezone-aware UTC."""

    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        return {"from": _rfc3339(self.start), "to": _rfc3339(self.end)}


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(value: str, field: str) -> datetime:
    """A date (``2026-07-01``, midnight UTC) or an RFC 3339 time with a zone, as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise QueryError(field, "is required: a date (2026-07-01) or an RFC 3339 UTC time")
    text = value.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise QueryError(
            field,
            f"{text[:40]!r} is not a date (2026-07-01) or RFC 3339 time (2026-07-01T00:00:00Z)",
        ) from None
    if parsed.tzinfo is None:
        raise QueryError(
            field, f"{text[:40]!r} has no time zone; add 'Z' (UTC) or an offset like +02:00"
        )
    return parsed.astimezone(UTC)


def parse_window(start: str | None, end: str | None, max_days: int) -> TimeWindow:
    """The window [start, end): both required, end after start, at most ``max_days`` long.

    Required and bounded so no query scans the whole lake by accident (and so every access
    record says exactly which period was looked at).
    """
    limit = f"a window of at most {max_days} days is required"
    if start is None or not str(start).strip():
        raise QueryError("from", f"is required ({limit}, e.g. from=2026-07-01&to=2026-10-01)")
    if end is None or not str(end).strip():
        raise QueryError("to", f"is required ({limit}, e.g. from=2026-07-01&to=2026-10-01)")
    window = TimeWindow(parse_instant(start, "from"), parse_instant(end, "to"))
    if window.end <= window.start:
        raise QueryError(
            "to",
            f"{_rfc3339(window.end)} is not after from={_rfc3339(window.start)} "
            "(the window is [from, to))",
        )
    if window.end - window.start > timedelta(days=max_days):
        days = (window.end - window.start) / timedelta(days=1)
        raise QueryError("to", f"the window is {days:g} days long; the limit is {max_days} days")
    return window


def _checked_text(field: str, value: str | None) -> str | None:
    """A text filter as given, or QueryError (never quoting it: it may be anything)."""
    if value is None:
        return None
    if not isinstance(value, str) or _FILTER_TEXT.fullmatch(value) is None:
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        control = isinstance(value, str) and 1 <= len(value) <= _MAX_FIELD_CHARS
        raise QueryError(
            field,
            f"must be 1 to {_MAX_FIELD_CHARS} characters, none a control character; got "
            + ("a control character" if control else got),
        )
    return value


def _checked_pseudonym(value: str | None) -> str | None:
    """A pseudonym in the form the privacy layer issues, or QueryError."""
    if value is None:
        return None
    if not isinstance(value, str) or _PSEUDONYM.fullmatch(value) is None:
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise QueryError(
            "pseudonym",
            "must be a pseudonym as records carry it: 'p-' and 32 lowercase hex digits "
            f"(e.g. p-4bdf07a29e5c4e0f8d1a6b3c2e9f7a10); got {got} not of that form",
        )
    return value


@dataclass(frozen=True, slots=True)
class QueryFilters:
    """What to select: a window and optional exact-match fields (the subject as a pseudonym).

    Build with :meth:`create`, which validates every field.
    """

    window: TimeWindow
    pseudonym: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    decision: str | None = None
    event_type: str | None = None

    @classmethod
    def create(
        cls,
        window: TimeWindow,
        *,
        pseudonym: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        decision: str | None = None,
        event_type: str | None = None,
    ) -> QueryFilters:
        """Validated filters; QueryError names a bad field."""
        if event_type is not None and event_type not in EVENT_TYPES:
            raise QueryError(
                "event_type", f"{event_type[:40]!r} is unknown; valid: {sorted(EVENT_TYPES)}"
            )
        return cls(
            window,
            _checked_pseudonym(pseudonym),
            _checked_text("model_name", model_name),
            _checked_text("model_version", model_version),
            _checked_text("decision", decision),
            event_type,
        )

    def equalities(self) -> dict[str, str]:
        """The typed lake columns to match exactly, and their values."""
        pairs = {
            "subject": self.pseudonym,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "decision": self.decision,
            "event_type": self.event_type,
        }
        return {column: value for column, value in pairs.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as written into access records (never a raw subject id)."""
        return {
            **self.window.to_dict(),
            "pseudonym": self.pseudonym,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "decision": self.decision,
            "event_type": self.event_type,
        }

    def digest(self) -> str:
        """Short hash of the filters: binds a cursor to the query that produced it."""
        return hashlib.sha256(canonicalize(self.to_dict())).hexdigest()[:16]


def encode_cursor(last_seq: int, filters: QueryFilters) -> str:
    """Opaque cursor: the last seq returned and the filter hash (base64url)."""
    raw = f"{_CURSOR_VERSION}.{last_seq}.{filters.digest()}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, filters: QueryFilters) -> int:
    """The last seq of the previous page; QueryError if malformed or made for other filters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    match = _CURSOR_RE.fullmatch(raw)
    if match is None:
        raise QueryError("cursor", "is not a cursor returned by this API (next_cursor)")
    if match.group(2) != filters.digest():
        raise QueryError(
            "cursor",
            "was returned for other filters; repeat the query with the same from, to, subject, "
            "model, decision and event_type, or start again without a cursor",
        )
    return int(match.group(1))
