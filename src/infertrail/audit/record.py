"""The audit record, schema version 1: pydantic model, retention classes, record construction.

:class:`AuditRecord` is the contract a stored record must meet (verification, the lake's typed
columns, the compliance API); it is checked off the request path with :func:`validate_record`.
The request thread calls :func:`derive_record` instead, which builds the same shape as a plain
dict without pydantic (too slow for a ~10 us budget); a property test keeps the two in step.
Every other event (outcomes, privacy actions, compliance queries) is built by
:func:`event_record`. docs/audit-record.md documents every field and the requirement it serves.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from infertrail.audit.canonical import MAX_SAFE_INTEGER, canonicalize
from infertrail.events import Generation, InferenceEvent, new_request_id

__all__ = [
    "DEFAULT_RETENTION",
    "EVENT_TYPES",
    "RECORD_SCHEMA_VERSION",
    "RETENTION_CLASSES",
    "Actor",
    "AuditRecord",
    "DecisionMode",
    "EventType",
    "Explanation",
    "RetentionPolicy",
    "derive_record",
    "event_record",
    "generation_details",
    "input_hmac_hex",
    "new_record_id",
    "retention_policy",
    "validate_record",
]

RECORD_SCHEMA_VERSION = 1

EventType = Literal[
    "inference",  # a model produced an output for a request
    "human_review",  # a person reviewed an automated output (GDPR 22(3), AI Act 14)
    "override",  # a person replaced an automated decision
    "outcome",  # the realised outcome of an earlier decision, joined back later
    "notice_sent",  # an adverse-action / AI-use notice went to the subject
    "explanation_served",  # an individual explanation was given to the subject
    "access_query",  # someone queried the audit log through the compliance interface
    "break_glass",  # privileged access to raw payloads, with its justification
    "erasure",  # a subject's key was shredded (crypto-erasure receipt)
    "subject_re_enrolled",  # an erased subject was deliberately given a new pseudonym
    "retention_purge",  # records or payloads were purged at the end of their retention
    "model_deployed",  # a model version went into service
    "model_retired",  # a model version left service (rollback, suspension, stop)
    "drift_alert",  # monitoring raised or resolved a drift / SLO alert
    "incident",  # a risk or serious incident was recorded
    "key_rotation",  # a signing or HMAC key was rotated
    "log_verified",  # a verification run over the log, with its result
]
#: Every valid ``event_type``; see :data:`EventType` for what each one records.
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))

DecisionMode = Literal["solely_automated", "human_in_loop", "advisory"]
_DECISION_MODES: frozenset[str] = frozenset(get_args(DecisionMode))

# Event types whose record must say who acted: they are human or privileged actions.
_ACTOR_REQUIRED = frozenset(
    {"human_review", "override", "access_query", "break_glass", "erasure", "subject_re_enrolled"}
)

_Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_UUID7 = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"


class Explanation(BaseModel):
    """Feature attributions of one output and the reason codes given for it."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)

    method: _Name = Field(description="Attribution method and version, e.g. 'treeshap'.")
    base_value: float | None = Field(description="Expected model output the values add to.")
    values: dict[str, float] = Field(description="Attribution per feature name.")
    reason_codes: list[str] = Field(description="Principal reasons, most important first.")


class Actor(BaseModel):
    """The person or service principal behind a human or privileged action (pseudonymous id)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    id: _Name = Field(description="Pseudonymous staff or service-principal id, never a name.")
    role: _Name = Field(description="Role or authority the action was taken under.")


class GenerationDetails(BaseModel):
    """``record["generation"]`` of an inference that was a generative-AI call.

    The prompt is the record's ``input_hmac`` (the HMAC of the canonical messages); the answer
    is ``response_hmac``, under the same key (``input_hmac_key_id``): both prove which text it
    was to whoever holds the text, and reveal nothing of a short one to anybody else.
    """

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)

    operation: _Name
    provider: _Name
    request_model: _Name | None
    response_model: _Name | None
    response_id: Annotated[str, StringConstraints(max_length=256)] | None
    params: dict[str, float | int | str | bool | list[str]]
    stream: bool
    finish_reasons: list[str]
    input_tokens: int | None = Field(ge=0)
    output_tokens: int | None = Field(ge=0)
    usage_source: Literal["response", "tokenizer", "chunks"] | None
    ttft_ms: float | None = Field(ge=0.0)
    cancelled: bool
    response_hmac: _Hex64 | None


class AuditRecord(BaseModel):
    """One audit log entry, schema version 1; extra fields are kept, required ones checked.

    Every field below must be present (``null`` where it does not apply). ``inference``
    records must also identify the model, the request and the outcome; human and privileged
    actions must name their actor.
    """

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)

    schema_version: Literal[1]
    seq: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    record_id: Annotated[str, StringConstraints(pattern=_UUID7)]
    event_type: EventType
    ts: Annotated[str, StringConstraints(pattern=_TS)]
    request_id: _Name | None
    trace_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None
    span_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] | None
    service: _Name | None
    team: _Name | None
    endpoint: _Name | None
    subject: _Name | None
    model_name: _Name | None
    model_version: _Name | None
    model_sha256: _Hex64 | None
    input_hmac: _Hex64 | None
    input_hmac_key_id: _Name | None
    decision: str | None
    score: float | None
    confidence: float | None = Field(ge=0.0, le=1.0)
    ci_low: float | None
    ci_high: float | None
    explanation: Explanation | None
    decision_mode: DecisionMode | None
    latency_ms: float | None = Field(ge=0.0)
    status: Literal["ok", "error"] | None
    error: str | None
    actor: Actor | None
    retention_class: _Name
    retention_until: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    producer: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9.+_-]+$")]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ts = datetime.strptime(self.ts, "%Y-%m-%dT%H:%M:%S.%fZ").date()  # raises if no such day
        until = date.fromisoformat(self.retention_until)
        if until < ts:
            raise ValueError(f"retention_until {self.retention_until} is before ts {self.ts}")
        if self.event_type == "inference":
            for name in ("request_id", "model_name", "model_version", "status", "latency_ms"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name} is required for inference records, got null")
        if self.event_type in _ACTOR_REQUIRED and self.actor is None:
            raise ValueError(f"actor is required for {self.event_type} records, got null")
        if self.error is not None and self.status != "error":
            raise ValueError(f"error is set ({self.error!r}) but status is {self.status!r}")
        if (self.input_hmac is None) != (self.input_hmac_key_id is None):
            raise ValueError("input_hmac and input_hmac_key_id must be both set or both null")
        if self.ci_low is not None and self.ci_high is not None and self.ci_low > self.ci_high:
            raise ValueError(f"ci_low {self.ci_low} is above ci_high {self.ci_high}")
        generation = (self.model_extra or {}).get("generation")
        if generation is not None:
            if self.event_type != "inference":
                raise ValueError(f"generation details on a {self.event_type} record")
            GenerationDetails.model_validate(generation)
            if generation.get("response_hmac") is not None and self.input_hmac_key_id is None:
                raise ValueError("generation.response_hmac is set but input_hmac_key_id is null")
        return self


def validate_record(d: Mapping[str, Any]) -> AuditRecord:
    """Check a record dict against schema version 1 (raises pydantic.ValidationError)."""
    return AuditRecord.model_validate(dict(d))


# -- retention -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """A named minimum retention: records are kept at least ``days`` after their ts date.

    Day counts cover the longest calendar span of the period (6 months can be 184 days), so
    ``retention_until`` never falls short of the legal minimum.
    """

    retention_class: str
    days: int
    basis: str = ""

    def __post_init__(self) -> None:
        if not self.retention_class or self.days < 1:
            raise ValueError(
                f"retention needs a class name and days >= 1, got {self.retention_class!r}, "
                f"{self.days}"
            )

    def until(self, ts: str) -> str:
        """``retention_until`` (YYYY-MM-DD) for a record stamped ``ts`` (RFC 3339)."""
        return _add_days(ts[:10], self.days)


@lru_cache(maxsize=64)
def _add_days(day: str, days: int) -> str:
    # Cached: on the hot path every record of the same day and class gets the same answer.
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


RETENTION_CLASSES: Mapping[str, RetentionPolicy] = {
    p.retention_class: p
    for p in (
        RetentionPolicy("eu-ai-act-6m", 184, "EU AI Act Art. 19(1), 26(6): at least 6 months"),
        RetentionPolicy("audit-1y", 366, "SOC 2 practice, PCI DSS 10.5.1: 12 months"),
        RetentionPolicy("reg-b-25m", 762, "12 CFR 1002.12(b): 25 months after notification"),
        RetentionPolicy("credit-5y", 1827, "ECOA 15 USC 1691e(f), EU AML: 5 years"),
        RetentionPolicy("hipaa-6y", 2192, "45 CFR 164.316(b)(2)(i); SEC 17a-4(a): 6 years"),
        RetentionPolicy("ai-act-docs-10y", 3653, "EU AI Act Art. 18: 10 years"),
    )
}
DEFAULT_RETENTION = RETENTION_CLASSES["eu-ai-act-6m"]


def retention_policy(name: str) -> RetentionPolicy:
    """The built-in retention class called ``name`` (error lists the valid names)."""
    try:
        return RETENTION_CLASSES[name]
    except KeyError:
        valid = ", ".join(sorted(RETENTION_CLASSES))
        raise ValueError(f"unknown retention class {name!r}; valid: {valid}") from None


# -- hot-path derivation ---------------------------------------------------------------------


#: A UUIDv7 (RFC 9562) string: 48-bit Unix ms, then 74 bits from the OS CSPRNG (the request
#: ids' generator: one getrandom call per 107 ids, per thread).
new_record_id = new_request_id


_second_cache: tuple[int, str] = (-1, "")


def _rfc3339_micros(time_ns: int) -> str:
    """``2026-11-26T20:46:24.123456Z``; the per-second prefix is cached (strftime is slow)."""
    global _second_cache
    secs, ns = divmod(time_ns, 1_000_000_000)
    cached_secs, prefix = _second_cache  # one tuple read: consistent even across threads
    if cached_secs != secs:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _second_cache = (secs, prefix)
    return f"{prefix}.{ns // 1000:06d}Z"


def input_hmac_hex(key: bytes, inputs: Any) -> str:
    """HMAC-SHA256 of ``canonicalize(inputs)``, hex: proves which input was used, keyed so that
    low-entropy inputs (a date of birth, a postcode) cannot be recovered by brute force."""
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise ValueError(
            f"input HMAC key must be at least 16 bytes, got {type(key).__name__} "
            f"of length {len(key) if isinstance(key, bytes | bytearray) else 'n/a'}"
        )
    # hmac.new, not hmac.digest: the one-shot digest releases the GIL whatever the size, and
    # each release on a request thread hands the GIL to the background threads mid-request;
    # an update releases it only for inputs past 2 KiB.
    return hmac.new(key, canonicalize(inputs), "sha256").hexdigest()


# Every schema field but seq, in canonical (sorted) order; derive_record fills each one.
_RECORD_TEMPLATE: dict[str, Any] = dict.fromkeys(sorted(set(AuditRecord.model_fields) - {"seq"}))


def derive_record(
    ev: InferenceEvent,
    *,
    input_hmac: str | None,
    input_hmac_key_id: str | None,
    subject_pseudonym: str | None,
    retention: RetentionPolicy,
    producer: str,
    event_type: str = "inference",
    decision_mode: str = "solely_automated",
    actor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The audit record of ``ev`` as a plain dict, without ``seq`` (the ledger assigns it).

    Runs on the request thread, so it only copies fields: the raw subject id and error message
    never enter it (``subject`` is the pseudonym given here; ``error`` is the error type).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event_type {event_type!r}; valid: {sorted(EVENT_TYPES)}")
    if decision_mode not in _DECISION_MODES:
        raise ValueError(
            f"unknown decision_mode {decision_mode!r}; valid: {sorted(_DECISION_MODES)}"
        )
    ts = _rfc3339_micros(ev.start_time_ns)
    model = ev.model
    score, confidence, ci_low, ci_high = ev.score, ev.confidence, ev.ci_low, ev.ci_high
    rec = _RECORD_TEMPLATE.copy()  # presized: cheaper than growing a 31-key literal
    rec["actor"] = None if actor is None else dict(actor)
    # float() turns numpy scalars and ints into plain floats, which canonicalize fastest.
    rec["ci_high"] = None if ci_high is None else float(ci_high)
    rec["ci_low"] = None if ci_low is None else float(ci_low)
    rec["confidence"] = None if confidence is None else float(confidence)
    rec["decision"] = ev.decision if ev.decision is not None else ev.label
    rec["decision_mode"] = decision_mode
    rec["endpoint"] = ev.endpoint or None  # "": not served from a route (a batch job)
    rec["error"] = ev.error_type if ev.status == "error" else None
    rec["event_type"] = event_type
    rec["explanation"] = ev.explanation
    rec["input_hmac"] = input_hmac
    rec["input_hmac_key_id"] = input_hmac_key_id
    # Microsecond resolution; int / int is correctly rounded, so 3412 / 1000 prints as 3.412.
    rec["latency_ms"] = ev.duration_ns // 1000 / 1000
    rec["model_name"] = model.name
    rec["model_sha256"] = model.sha256 or None
    rec["model_version"] = model.version
    rec["producer"] = producer
    rec["record_id"] = new_record_id()
    rec["request_id"] = ev.request_id
    rec["retention_class"] = retention.retention_class
    rec["retention_until"] = retention.until(ts)
    rec["schema_version"] = RECORD_SCHEMA_VERSION
    rec["score"] = None if score is None else float(score)
    rec["service"] = ev.service
    # 0 is OpenTelemetry's invalid id: the inference was not traced.
    rec["span_id"] = f"{ev.span_id:016x}" if ev.span_id else None
    rec["status"] = ev.status
    rec["subject"] = subject_pseudonym
    rec["team"] = ev.team
    rec["trace_id"] = f"{ev.trace_id:032x}" if ev.trace_id else None
    rec["ts"] = ts
    return rec


def generation_details(gen: Generation, key: bytes) -> dict[str, Any]:
    """``record["generation"]``: the call's parameters, usage and the answer's keyed digest.

    ``key`` is the record's input-HMAC key (its month's). The answer's text never enters the
    record; a call with no answer (failed before one came) has ``response_hmac`` null.
    """
    ttft = gen.time_to_first_token_s
    return {
        "operation": gen.operation,
        "provider": gen.provider,
        "request_model": gen.request_model,
        "response_model": gen.response_model,
        "response_id": gen.response_id,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in gen.params.items()},
        "stream": gen.stream,
        "finish_reasons": list(gen.finish_reasons),
        "input_tokens": gen.input_tokens,
        "output_tokens": gen.output_tokens,
        "usage_source": gen.usage_source,
        "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
        "cancelled": gen.cancelled,
        "response_hmac": (
            None if gen.response_text is None else input_hmac_hex(key, gen.response_text)
        ),
    }


# The fields event_record fills from its own arguments; every other schema field but seq is
# the caller's to set (or leave null).
_EVENT_OWN_FIELDS = frozenset(
    {
        "schema_version",
        "record_id",
        "event_type",
        "ts",
        "retention_class",
        "retention_until",
        "producer",
    }
)
_EVENT_CALLER_FIELDS = frozenset(_RECORD_TEMPLATE) - _EVENT_OWN_FIELDS


def event_record(
    event_type: str,
    *,
    ts: str,
    retention: RetentionPolicy,
    producer: str,
    details: Mapping[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """The audit record (without ``seq``) of one event other than an inference.

    Every schema field is present, null unless set: ``fields`` sets schema fields by name
    (``request_id``, ``service``, ``subject``, ``actor`` as a plain dict, ``model_name``, ...);
    the header (``schema_version``, ``record_id``, ``event_type``, ``ts``, ``retention_class``,
    ``retention_until``, ``producer``) is built here. ``details``, copied, go under the extra
    field named after the event type (``record["erasure"]``, ``record["outcome"]``, ...).

    Values are stored as given, not checked against the schema (:func:`validate_record` does
    that). Raises ValueError for ``inference`` (see :func:`derive_record`), for an unknown
    event type, and for a name in ``fields`` that is not a settable schema field: a misspelt
    one would otherwise pass as an extra field and leave the real field null.
    """
    if event_type not in EVENT_TYPES or event_type == "inference":
        valid = sorted(EVENT_TYPES - {"inference"})
        raise ValueError(
            f"event_record builds non-inference events, got {event_type!r}; valid: {valid} "
            "(inference records come from derive_record)"
        )
    unknown = fields.keys() - _EVENT_CALLER_FIELDS
    if unknown:
        raise ValueError(
            f"event_record cannot set {sorted(unknown)}: not a schema field, or one it sets "
            f"itself; settable: {sorted(_EVENT_CALLER_FIELDS)}"
        )
    record = _RECORD_TEMPLATE.copy()
    record.update(fields)
    record.update(
        schema_version=RECORD_SCHEMA_VERSION,
        record_id=new_record_id(),
        event_type=event_type,
        ts=ts,
        retention_class=retention.retention_class,
        retention_until=retention.until(ts),
        producer=producer,
    )
    record[event_type] = dict(details)
    return record
