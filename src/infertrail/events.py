"""The one in-memory record of an inference, and the pure functions deriving its views.

An inference builds exactly one :class:`InferenceEvent`. Span attributes, metric attributes, the
log record and (in :mod:`infertrail.audit.record`) the audit record are derived from it by the
small functions below; no stage re-collects what another already has.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from infertrail.telemetry import conventions as c

if TYPE_CHECKING:
    from infertrail.audit.receipts import Receipt

Status = Literal["ok", "error"]
AttributeValue = str | bool | int | float

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


class InvalidRequestId(ValueError):
    """A caller-supplied request id that is not safe to carry through telemetry and logs."""


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so ids sort by creation time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


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
    if include_input:
        record["input"] = ev.inputs
    return record
