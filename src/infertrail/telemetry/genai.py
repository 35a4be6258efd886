"""Which GenAI conventions to emit and whether message content may go with them.

The OpenTelemetry GenAI conventions are experimental. Like the OpenTelemetry GenAI
instrumentations, infertrail emits the pinned release (``conventions.GENAI_SEMCONV_VERSION``)
only when ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list) holds
``gen_ai_latest_experimental``; without it, the names those instrumentations emit by default
(``gen_ai.system`` for the provider, content as per-message log events). The variable is read
once per process, as theirs is: set it before the first generation (tests call
:func:`reset`).

Message content is off unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` turns it
on (or the ``genai_capture_content`` setting does): on the pinned conventions ``span_only``,
``event_only`` or ``span_and_event``; on the default ones ``true`` (events). Content is
redacted (:func:`infertrail.telemetry.redaction.redact_text`) and truncated before it is
attached, never exported raw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from infertrail.telemetry import conventions as c

__all__ = ["ContentCapture", "GenAIConventions", "conventions", "parse_capture", "reset"]

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ContentCapture = Literal["off", "span", "event", "span_and_event"]
_CAPTURE_VALUES: dict[str, ContentCapture] = {
    "": "off",
    "false": "off",
    "off": "off",
    "no_content": "off",
    "true": "event",  # the default conventions' switch: per-message events
    "span_only": "span",
    "event_only": "event",
    "span_and_event": "span_and_event",
}


def parse_capture(value: str) -> ContentCapture:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (any case) as a capture mode."""
    try:
        return _CAPTURE_VALUES[value.strip().lower()]
    except KeyError:
        valid = ", ".join(repr(v) for v in _CAPTURE_VALUES if v)
        raise ValueError(f"{CAPTURE_ENV} must be one of {valid}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class GenAIConventions:
    """The GenAI names this process emits: the pinned release or the instrumentations' default."""

    latest: bool
    capture: ContentCapture

    @property
    def provider_key(self) -> str:
        """The provider's attribute: gen_ai.provider.name (v1.37 on) or gen_ai.system."""
        return c.GENAI_PROVIDER_NAME if self.latest else c.GENAI_SYSTEM

    @property
    def version(self) -> str:
        """The conventions release the names follow ("1.41.1", or "default" without opt-in)."""
        return c.GENAI_SEMCONV_VERSION if self.latest else "default"


@lru_cache(maxsize=1)
def conventions() -> GenAIConventions:
    """This process's conventions, from the environment, read once (see the module doc)."""
    opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    latest = c.GENAI_OPT_IN in {part.strip() for part in opt_in.split(",")}
    capture = parse_capture(os.environ.get(CAPTURE_ENV, ""))
    return GenAIConventions(latest=latest, capture=capture)


def reset() -> None:
    """Forget the conventions read from the environment (tests that change it)."""
    conventions.cache_clear()
