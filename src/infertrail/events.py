"""The one in-memory record of an inference, and the pure functions deriving its views.

An inference builds exactly one :class:`InferenceEvent`. Span attributes, metric attributes, the
log record and (in :mod:`infertrail.audit.record`) the audit record are derived from it by the
small functions below; no stage re-collects what another already has.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from infertrail.telemetry import conventions as c
from infertrail.telemetry.genai import GenAIConventions

if TYPE_CHECKING:
    from infertrail.audit.receipts import Receipt

Status = Literal["ok", "error"]
AttributeValue = str | bool | int | float

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


class InvalidRequestId(ValueError):
    """A caller-supplied request id that is not safe to carry through telemetry and logs."""


# The variant nibble is 10xx: keep the two low random bits of a hex digit.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class _Entropy(threading.local):
    """Per-thread buffer of OS randomness as hex: one getrandom call per 107 ids."""

    def __init__(self) -> None:
        self.hex = ""
        self.pos = 0


_entropy = _Entropy()
_ms_cache: tuple[int, str] = (-1, "")


def _after_fork_in_child() -> None:
    # A forked child must not hand out the random bits its parent is also using.
    _entropy.hex = ""
    _entropy.pos = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562) string: 48-bit Unix ms, then 74 bits from the OS CSPRNG.

    Time-ordered, so ids sort by creation time. The randomness is read 1 KiB at a time per
    thread: ``os.urandom`` releases the GIL, and every release on a request thread lets the
    background threads take it mid-request (measured as request latency, bench/overhead.py).
    """
    global _ms_cache
    e = _entropy
    pos = e.pos
    if pos + 19 > len(e.hex):
        e.hex = os.urandom(1024).hex()
        pos = 0
    e.pos = pos + 19
    ms = time.time_ns() // 1_000_000
    cached_ms, prefix = _ms_cache  # one tuple read: consistent even across threads
    if cached_ms != ms:
        h = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
        prefix = f"{h[:8]}-{h[8:]}-7"
        _ms_cache = (ms, prefix)
    r = e.hex[pos : pos + 19]  # 76 random bits: 12 + 2 (variant nibble) + 60 are used
    return f"{prefix}{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:]}"


def validate_request_id(value: str) -> str:
    """Return ``value`` if it is 1-128 chars of ``[A-Za-z0-9._:-]`` starting alphanumeric."""
    if not _REQUEST_ID_RE.fullmatch(value):
        raise InvalidRequestId(
            "X-Request-ID must be 1-128 characters of letters, digits, '.', '_', ':' or '-', "
            f"starting with a letter or digit; got {value[:64]!r}"
            + ("..." if len(value) > 64 else "")
        )
    return value


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The request an inference belongs to, as the HTTP layer saw it (its ASGI scope)."""

    request_id: str
    scope: Mapping[str, Any]

    @property
    def endpoint(self) -> str:
        """The matched route's path template (low cardinality), else the raw path."""
        route = self.scope.get("route")
        template = getattr(route, "path", None)
        return template if isinstance(template, str) else str(self.scope.get("path", ""))


#: Set by the HTTP middleware for the duration of a request (``web.requestid``); read by
#: ``Monitor.observe`` when the caller passes no request id or endpoint of its own.
current_request: ContextVar[RequestContext | None] = ContextVar(
    "infertrail_current_request", default=None
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Identity of a served model artifact: its name, version and the sha256 of its file."""

    name: str
    version: str
    sha256: str

    @classmethod
    def of_artifact(cls, name: str, version: str, path: str | os.PathLike[str]) -> ModelInfo:
        """The identity of the model saved at ``path`` (its sha256 is read from the file)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:  # noqa: PTH123 (any PathLike, streamed)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return cls(name, version, h.hexdigest())


#: How a generation ended, for its outcome counter (``infertrail.gen_ai.outcomes``): a
#: business signal per value but ``ok``.
GenerationOutcome = Literal["ok", "empty", "refused", "truncated", "cancelled", "error"]


@dataclass(slots=True)
class Generation:
    """One generative-AI call: what was asked, how the answer came, what it cost in tokens.

    The prompt is the event's ``inputs`` (the chat messages, ``[{"role", "content"}]``); the
    answer is ``response_text``. Both stay in memory only: telemetry carries them only when
    message content is opted in (redacted first), the audit record only their keyed digests.
    Times are ``perf_counter_ns`` readings of the request thread, taken from the stream itself.
    """

    operation: str  # gen_ai.operation.name: chat, text_completion, embeddings, ...
    provider: str  # gen_ai.provider.name: openai, infertrail, ...
    request_model: str | None = None
    #: Request parameters by their gen_ai.request.* suffix: temperature, top_p, max_tokens, ...
    params: dict[str, AttributeValue | tuple[str, ...]] = field(default_factory=dict)
    stream: bool = False
    server_address: str | None = None
    server_port: int | None = None
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    response_text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    #: Where the token counts came from: the response's usage, a tokenizer, or counted chunks.
    usage_source: Literal["response", "tokenizer", "chunks"] | None = None
    started_ns: int = 0  # perf_counter_ns at the request
    first_token_ns: int = 0  # perf_counter_ns at the first content chunk (0: none)
    last_token_ns: int = 0  # perf_counter_ns at the last content chunk
    chunks: int = 0  # content chunks received (streams), 1 for a whole answer
    cancelled: bool = False  # the caller stopped reading before the end
    #: Another instrumentation (opentelemetry-instrumentation-openai-v2) traces and measures
    #: this call: no gen_ai span or gen_ai histograms of infertrail's, which would count it twice.
    external: bool = False

    @property
    def time_to_first_token_s(self) -> float | None:
        """Seconds from the request to the first content chunk, if one came."""
        if not self.first_token_ns:
            return None
        return (self.first_token_ns - self.started_ns) / 1e9

    @property
    def time_per_output_token_s(self) -> float | None:
        """Mean seconds per output token after the first (None below two tokens)."""
        tokens = self.output_tokens if self.output_tokens is not None else self.chunks
        if not self.first_token_ns or tokens < 2:
            return None
        return (self.last_token_ns - self.first_token_ns) / 1e9 / (tokens - 1)

    @property
    def outcome(self) -> GenerationOutcome:
        """How the call ended, for the business signals (an error is the event's status)."""
        if self.cancelled:
            return "cancelled"
        if "content_filter" in self.finish_reasons:
            return "refused"
        if "length" in self.finish_reasons:
            return "truncated"
        if not self.response_text and self.operation != "embeddings":
            return "empty"
        return "ok"


@dataclass(slots=True)
class InferenceEvent:
    """Everything known about one inference; the source of every telemetry and audit view."""

    model: ModelInfo
    request_id: str
    service: str
    team: str
    endpoint: str
    inputs: Any
    input_size: int
    subject: str | None = None
    tenant: str | None = None
    start_time_ns: int = 0
    duration_ns: int = 0
    cpu_ns: int = 0  # CPU time of the request thread inside the observed block
    accelerator_seconds: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    label: str | None = None
    score: float | None = None
    confidence: float | None = None
    decision: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    #: Per-class probabilities (label -> p) of a multiclass classifier, when the service gives
    #: them: label-free performance estimates need them (docs/estimation.md). Not audited.
    probabilities: dict[str, float] | None = None
    explanation: dict[str, Any] | None = None
    status: Status = "ok"
    error_type: str | None = None
    error_message: str | None = None
    trace_id: int = 0
    span_id: int = 0
    sampled: bool = True
    #: What a generative model's call adds (LLM chat, completion, embeddings): set through
    #: :mod:`infertrail.genai`; None for every other inference.
    generation: Generation | None = None
    #: The audit record's future, set by the audit trail on the request thread: it resolves to
    #: the record's Receipt once durable. Wait through ``Runtime.audit_receipt(_async)``.
    audit: Future[Receipt] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return self.duration_ns / 1e6

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.start_time_ns / 1e9, tz=UTC)


def rfc3339_micros(time_ns: int) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. ``2026-11-26T20:46:24.123456Z``."""
    secs, ns = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns // 1000:06d}Z"


def span_attributes(ev: InferenceEvent) -> dict[str, AttributeValue]:
    """Attributes for the inference span; high-cardinality values belong here, not on metrics."""
    attrs: dict[str, AttributeValue] = {
        c.MODEL_NAME: ev.model.name,
        c.MODEL_VERSION: ev.model.version,
        c.MODEL_SHA256: ev.model.sha256,
        c.INPUT_SIZE: ev.input_size,
        c.REQUEST_ID: ev.request_id,
        c.TEAM: ev.team,
        c.ENDPOINT: ev.endpoint,
        c.STATUS: ev.status,
    }
    if ev.label is not None:
        attrs[c.PREDICTION_LABEL] = ev.label
    if ev.score is not None:
        attrs[c.PREDICTION_SCORE] = ev.score
    if ev.confidence is not None:
        attrs[c.PREDICTION_CONFIDENCE] = ev.confidence
    if ev.error_type is not None:
        attrs[c.ERROR_TYPE] = ev.error_type
    return attrs


# gen_ai.request.* parameters a Generation may carry, by suffix.
GENAI_REQUEST_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "frequency_penalty",
        "presence_penalty",
        "stop_sequences",
        "seed",
        "choice.count",
    }
)


def generation_span_name(gen: Generation) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}``, or the operation alone."""
    return f"{gen.operation} {gen.request_model}" if gen.request_model else gen.operation


def generation_span_attributes(
    gen: Generation, conv: GenAIConventions
) -> dict[str, AttributeValue | tuple[str, ...]]:
    """The GenAI conventions' attributes of a generation span (never its content)."""
    attrs: dict[str, AttributeValue | tuple[str, ...]] = {
        c.GENAI_OPERATION_NAME: gen.operation,
        conv.provider_key: gen.provider,
    }
    if gen.request_model is not None:
        attrs[c.GENAI_REQUEST_MODEL] = gen.request_model
    for name, value in gen.params.items():
        attrs[f"gen_ai.request.{name}"] = value
    if gen.stream:
        attrs[c.GENAI_REQUEST_STREAM] = True
        attrs[c.GENAI_STREAM_CHUNKS] = gen.chunks
    if gen.server_address is not None:
        attrs[c.SERVER_ADDRESS] = gen.server_address
    if gen.server_port is not None:
        attrs[c.SERVER_PORT] = gen.server_port
    if gen.response_id is not None:
        attrs[c.GENAI_RESPONSE_ID] = gen.response_id
    if gen.response_model is not None:
        attrs[c.GENAI_RESPONSE_MODEL] = gen.response_model
    if gen.finish_reasons:
        attrs[c.GENAI_RESPONSE_FINISH_REASONS] = gen.finish_reasons
    if gen.input_tokens is not None:
        attrs[c.GENAI_USAGE_INPUT_TOKENS] = gen.input_tokens
    if gen.output_tokens is not None:
        attrs[c.GENAI_USAGE_OUTPUT_TOKENS] = gen.output_tokens
    if gen.usage_source is not None:
        attrs[c.GENAI_USAGE_SOURCE] = gen.usage_source
    ttft = gen.time_to_first_token_s
    if ttft is not None and conv.latest:
        attrs[c.GENAI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttft
    tpot = gen.time_per_output_token_s
    if tpot is not None:
        attrs[c.GENAI_TIME_PER_OUTPUT_TOKEN] = tpot
    if gen.cancelled:
        attrs[c.GENAI_CANCELLED] = True
    return attrs


def generation_metric_attributes(
    gen: Generation, conv: GenAIConventions, error_type: str | None
) -> dict[str, AttributeValue]:
    """The GenAI metrics' attributes: low cardinality only (models, provider, server, error)."""
    attrs: dict[str, AttributeValue] = {
        c.GENAI_OPERATION_NAME: gen.operation,
        conv.provider_key: gen.provider,
    }
    if gen.request_model is not None:
        attrs[c.GENAI_REQUEST_MODEL] = gen.request_model
    if gen.response_model is not None:
        attrs[c.GENAI_RESPONSE_MODEL] = gen.response_model
    if gen.server_address is not None:
        attrs[c.SERVER_ADDRESS] = gen.server_address
    if gen.server_port is not None:
        attrs[c.SERVER_PORT] = gen.server_port
    if error_type is not None:
        attrs[c.ERROR_TYPE] = error_type
    return attrs


def metric_attributes(ev: InferenceEvent) -> dict[str, AttributeValue]:
    """Low-cardinality attributes shared by every metric point of this event."""
    attrs: dict[str, AttributeValue] = {
        c.MODEL_NAME: ev.model.name,
        c.MODEL_VERSION: ev.model.version,
        c.TEAM: ev.team,
        c.STATUS: ev.status,
    }
    if ev.error_type is not None:
        attrs[c.ERROR_TYPE] = ev.error_type
    return attrs


def log_record(ev: InferenceEvent, *, include_input: bool = False) -> dict[str, Any]:
    """The structured log line of the inference (raw input only when explicitly enabled)."""
    record: dict[str, Any] = {
        "timestamp": rfc3339_micros(ev.start_time_ns),
        "level": "INFO" if ev.status == "ok" else "ERROR",
        "event": "inference",
        "request_id": ev.request_id,
        "trace_id": ev.trace_id_hex,
        "span_id": ev.span_id_hex,
        "service": ev.service,
        "team": ev.team,
        "endpoint": ev.endpoint,
        "model": ev.model.name,
        "model_version": ev.model.version,
        "label": ev.label,
        "score": ev.score,
        "confidence": ev.confidence,
        "latency_ms": round(ev.latency_ms, 3),
        "input_size": ev.input_size,
        "status": ev.status,
    }
    if ev.error_type is not None:
        record["error_type"] = ev.error_type
        record["error"] = ev.error_message
    gen = ev.generation
    if gen is not None:  # the numbers of the call; its text only through include_input
        ttft = gen.time_to_first_token_s
        record["gen_ai"] = {
            "operation": gen.operation,
            "provider": gen.provider,
            "request_model": gen.request_model,
            "response_model": gen.response_model,
            "finish_reasons": list(gen.finish_reasons),
            "input_tokens": gen.input_tokens,
            "output_tokens": gen.output_tokens,
            "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "stream": gen.stream,
            "outcome": gen.outcome,
        }
    if include_input:
        record["input"] = ev.inputs
    return record


def message_text(content: Any) -> str:
    """The text of one chat message's content: a string, or the text of its parts.

    Content parts follow the OpenAI / GenAI-conventions shape (``{"type": "text", "text": ...}``);
    parts without text (images, audio, tool calls) add nothing.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                text = part.get("text", part.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        return "\n".join(texts)
    return ""


def prompt_text(messages: Any) -> str:
    """The user's words in a prompt: the text of its ``user`` messages, one per line.

    A plain string (a completion prompt) is its own text. System and assistant turns are left
    out: they are the application's, and drift in them is a deployment change, not traffic.
    """
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list | tuple):
        return ""
    return "\n".join(
        message_text(m.get("content"))
        for m in messages
        if isinstance(m, Mapping) and m.get("role") == "user"
    )


def drift_inputs(ev: InferenceEvent) -> Any:
    """What the drift monitor windows for this event: the inputs, or a generation's shape.

    A generation's prompt is free text; its drift is judged on numbers measured from the call
    (lengths in characters and tokens, of the prompt and the answer) and on the prompt's text
    (embedding drift, drift/embedding.py), never on the raw messages.
    """
    gen = ev.generation
    if gen is None:
        return ev.inputs
    prompt = prompt_text(ev.inputs)
    return {
        "prompt_chars": len(prompt),
        "prompt_tokens": gen.input_tokens,
        "response_chars": len(gen.response_text or ""),
        "response_tokens": gen.output_tokens,
        "prompt": prompt,
    }
