"""What HTTP telemetry may show of a request: query strings and exception text, redacted.

Pure functions, no OpenTelemetry state: ``telemetry/redacting.py`` applies them to the spans of
the HTTP server instrumentation. The rules (docs/privacy.md, "Telemetry"):

- **Query strings.** Every value becomes ``REDACTED``; parameter names stay when they look like
  names: ``from=REDACTED&subject_id=REDACTED``. A value is kept, as sent (percent-encoded), only
  when its parameter is in the allow-list (setting ``telemetry_query_allowlist``), and never on
  a private route (:func:`is_private_path`: the audit and privacy routes). A name that does not
  look like a name (digits, ``@``, ``:``, spaces, over 64 characters: a value sent as a name)
  and a bare token without ``=`` become ``REDACTED`` too, unless allow-listed.
- **Message content** (opt-in GenAI content, :func:`redact_text`): e-mail addresses, runs of
  seven or more digits (phone, card, account and id numbers, separators allowed), IBANs and
  IPv4 addresses become ``REDACTED``; the request's subject id, wherever it appears, becomes
  its pseudonym; the text is cut at a maximum length.
- **Exceptions.** The type and the stack frames stay; the message, of the exception and of every
  exception chained to it, becomes ``REDACTED``: validation errors and ``KeyError`` echo input.
  A span status description keeps the exception type before its ``": "``.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from infertrail.telemetry import conventions as c

__all__ = [
    "PRIVATE_PATH_WORDS",
    "REDACTED",
    "QueryRedaction",
    "exception_attributes",
    "exception_type",
    "is_private_path",
    "redact_query",
    "redact_status_description",
    "redact_text",
    "redacted_stacktrace",
    "with_query",
]

#: What replaces a redacted value (the word the OpenTelemetry URL conventions use).
REDACTED = "REDACTED"
#: A path containing one of these (any case) is a private route: no query value is kept there,
#: allow-list or not. ``/v1/audit/...`` is the compliance API; the rest are for an app's own
#: routes about subjects, erasure and data-subject requests. Erring towards private is safe.
PRIVATE_PATH_WORDS = ("audit", "privacy", "erase", "gdpr", "dsar", "subject", "pseudonym")

# A parameter name kept as is: letters and _ . - [ ], starting with a letter or _, at most 64.
# Digits are left out on purpose: ids are what a value sent as a name looks like.
_NAME = re.compile(r"[A-Za-z_][A-Za-z_.\-\[\]]{0,63}")
# An exception type as a status description starts with it: "ValueError", "pkg.mod.Error".
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,199}")
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def is_private_path(path: str) -> bool:
    """True for the audit and privacy routes, where no query value is ever kept."""
    lowered = unquote(path).lower()
    return any(word in lowered for word in PRIVATE_PATH_WORDS)


def redact_query(query: str | bytes, keep: Collection[str] = ()) -> str:
    """``query`` (as sent, without ``?``) with every value ``REDACTED`` but those of ``keep``.

    Parameters stay in their order, empty ones (``a=1&&b=2``) are dropped. Names are compared
    percent-decoded (``subject%5Fid`` is ``subject_id``) and written decoded when kept; a kept
    value is written exactly as sent.
    """
    text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
    parts = []
    for part in text.split("&"):
        if not part:
            continue
        raw_name, has_value, raw_value = part.partition("=")
        name = unquote_plus(raw_name, errors="replace")
        kept = name in keep
        if not has_value:
            parts.append(name if kept else REDACTED)
            continue
        shown = name if kept or _NAME.fullmatch(name) else REDACTED
        parts.append(f"{shown}={raw_value if kept else REDACTED}")
    return "&".join(parts)


def with_query(url: str, query: str) -> str:
    """``url`` (a full URL or a path-and-query target) with its query replaced by ``query``.

    Everything after the first ``?`` goes; a URL without one is returned unchanged.
    """
    head, has_query, _ = url.partition("?")
    if not has_query:
        return url
    return f"{head}?{query}" if query else head


@dataclass(frozen=True, slots=True)
class QueryRedaction:
    """The query-string rule of one service: the allow-list, off on private routes."""

    keep: frozenset[str] = frozenset()

    def __call__(self, path: str, query: str | bytes) -> str:
        """The query of a request to ``path`` as telemetry may show it."""
        return redact_query(query, () if is_private_path(path) else self.keep)


def exception_type(exc: BaseException) -> str:
    """The type as OpenTelemetry's SDK names it: qualified by its module unless a builtin."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"


def redacted_stacktrace(exc: BaseException) -> str:
    """The traceback of ``exc`` and the exceptions chained to it, messages ``REDACTED``.

    Frames are file, line, function and the source line: the program, not its data. Notes
    (``add_note``) and the sub-exceptions of an exception group are left out with the messages.
    """
    # Newest first: links[k] says how chain[k] led to chain[k + 1] (its cause or context).
    chain, links = [exc], []
    while True:
        newer = chain[-1]
        if newer.__cause__ is not None:
            older, link = newer.__cause__, _CAUSE
        elif newer.__context__ is not None and not newer.__suppress_context__:
            older, link = newer.__context__, _CONTEXT
        else:
            break
        if any(older is e for e in chain):  # a cycle
            break
        chain.append(older)
        links.append(link)
    out: list[str] = []
    for k in range(len(chain) - 1, -1, -1):  # oldest first, as Python prints it
        e = chain[k]
        if e.__traceback__ is not None:
            out.append("Traceback (most recent call last):\n")
            out.extend(traceback.format_tb(e.__traceback__))
        out.append(f"{exception_type(e)}: {REDACTED}\n")
        if k:
            out.append(links[k - 1])
    return "".join(out)


def exception_attributes(exc: BaseException, *, escaped: bool = False) -> dict[str, str]:
    """The attributes of the ``exception`` span event of ``exc``, with nothing it carried."""
    return {
        c.EXCEPTION_TYPE: exception_type(exc),
        c.EXCEPTION_MESSAGE: REDACTED,
        c.EXCEPTION_STACKTRACE: redacted_stacktrace(exc),
        c.EXCEPTION_ESCAPED: str(escaped),
    }


def redact_status_description(description: str | None) -> str | None:
    """A span status description without the data it may carry.

    ``"ValueError: bad 'alice'"`` -> ``"ValueError: REDACTED"``; a bare type name stays; any
    other text is ``REDACTED``.
    """
    if not description:
        return description
    if _TYPE_NAME.fullmatch(description):
        return description
    head, sep, _ = description.partition(": ")
    if sep and _TYPE_NAME.fullmatch(head):
        return f"{head}: {REDACTED}"
    return REDACTED


# Personal data that free text carries most often, each replaced whole by REDACTED.
_TEXT_PATTERNS = re.compile(
    "|".join(
        (
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",  # e-mail address
            r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",  # IBAN
            r"\b(?:\d{1,3}\.){3}\d{1,3}\b",  # IPv4 address
            r"\+?\d(?:[ ().\-]*\d){6,}",  # 7+ digits: phone, card, account, id numbers
        )
    )
)


def redact_text(
    text: str,
    *,
    subject: str | None = None,
    pseudonym: str | None = None,
    max_chars: int = 4096,
) -> str:
    """``text`` as message-content telemetry may carry it (see the module doc).

    ``subject`` (the request's subject id) is replaced by ``pseudonym`` (or REDACTED) first;
    the result is at most ``max_chars`` characters plus a marker saying how many were cut.
    """
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0, got {max_chars}")
    if subject:
        text = text.replace(subject, pseudonym or REDACTED)
    text = _TEXT_PATTERNS.sub(REDACTED, text)
    if len(text) > max_chars:
        text = f"{text[:max_chars]}...[{len(text) - max_chars} characters cut]"
    return text
