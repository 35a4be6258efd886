"""The audit record: schema validation, hot-path derivation, record ids, retention, input HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infertrail.audit import record as record_module
from infertrail.audit.canonical import canonicalize
from infertrail.audit.record import (
    DEFAULT_RETENTION,
    EVENT_TYPES,
    RECORD_SCHEMA_VERSION,
    RETENTION_CLASSES,
    Actor,
    AuditRecord,
    RetentionPolicy,
    derive_record,
    event_record,
    input_hmac_hex,
    new_record_id,
    retention_policy,
    validate_record,
)
from infertrail.compliance.access import User
from infertrail.compliance.queries import ACCESS_EVENT, Caller
from infertrail.events import InferenceEvent, ModelInfo, Status, rfc3339_micros
from infertrail.outcomes.ingest import outcome_record
from infertrail.outcomes.schema import Outcome
from infertrail.outcomes.store import Prediction
from infertrail.privacy.records import SUBJECT_RE_ENROLLED, AuditRecorder, privacy_record

HMAC_KEY = b"k" * 32


def make_event(**overrides: Any) -> InferenceEvent:
    fields: dict[str, Any] = {
        "model": ModelInfo("credit-gbm", "2026.11.1", "ab" * 32),
        "request_id": "req-1",
        "service": "credit-api",
        "team": "risk",
        "endpoint": "/v1/score",
        "inputs": {"income": 52000, "age": 41},
        "input_size": 2,
        "subject": "alice@example.com",
        "start_time_ns": 1_795_000_000_123_456_789,
        "duration_ns": 3_412_345,
        "label": "approve",
        "score": 0.8731,
        "confidence": 0.92,
        "ci_low": 0.81,
        "ci_high": 0.93,
        "explanation": {
            "method": "treeshap",
            "base_value": 0.41,
            "values": {"income": 0.21, "age": -0.03},
            "reason_codes": ["R01"],
        },
        "trace_id": 0x0AF7651916CD43DD8448EB211C80319C,
        "span_id": 0xB7AD6B7169203331,
    }
    fields.update(overrides)
    return InferenceEvent(**fields)


def derive(ev: InferenceEvent | None = None, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "input_hmac": input_hmac_hex(HMAC_KEY, {"income": 52000, "age": 41}),
        "input_hmac_key_id": "hk-2026-11",
        "subject_pseudonym": "psn_7f3a9c2e1b",
        "retention": DEFAULT_RETENTION,
        "producer": "infertrail/0.1.0",
    }
    kwargs.update(overrides)
    return derive_record(ev or make_event(), **kwargs)


def valid_record(**overrides: Any) -> dict[str, Any]:
    rec = derive()
    rec["seq"] = 0
    rec.update(overrides)
    return rec


# -- derive_record -----------------------------------------------------------------------------


def test_derived_record_has_every_field_and_validates() -> None:
    rec = derive()
    assert "seq" not in rec  # the ledger assigns it under its lock
    rec["seq"] = 7
    model = validate_record(rec)
    assert set(AuditRecord.model_fields) == set(rec)
    # derive_record starts from a template of nulls: every field the event has must be filled.
    assert [k for k, v in rec.items() if v is None] == ["actor", "error"]
    assert model.schema_version == RECORD_SCHEMA_VERSION
    assert model.ts == "2026-11-18T11:06:40.123456Z"
    assert model.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert model.span_id == "b7ad6b7169203331"
    assert model.decision == "approve"
    assert model.latency_ms == 3.412
    assert model.retention_class == "eu-ai-act-6m"
    assert model.retention_until == "2027-05-21"
    assert model.explanation is not None and model.explanation.values["age"] == -0.03


def test_derived_record_holds_no_raw_subject_or_error_message() -> None:
    ev = make_event(
        status="error", error_type="ValueError", error_message="bad input for alice@example.com"
    )
    rec = derive(ev)
    assert rec["subject"] == "psn_7f3a9c2e1b"
    assert rec["error"] == "ValueError"
    assert b"alice" not in canonicalize(rec)


def test_untraced_event_has_null_trace_ids() -> None:
    rec = derive(make_event(trace_id=0, span_id=0))
    assert rec["trace_id"] is None and rec["span_id"] is None


def test_numpy_like_scores_become_plain_floats() -> None:
    class Float64(float):  # stands in for numpy.float64, a float subclass
        pass

    rec = derive(make_event(score=Float64(0.25), confidence=1))
    assert type(rec["score"]) is float and type(rec["confidence"]) is float


def test_decision_falls_back_to_label_and_prefers_decision() -> None:
    assert derive(make_event(decision=None, label="positive"))["decision"] == "positive"
    assert derive(make_event(decision="decline", label="class_0"))["decision"] == "decline"


def test_unknown_event_type_or_decision_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="'inferense'"):
        derive(event_type="inferense")
    with pytest.raises(ValueError, match="'fully_automatic'"):
        derive(decision_mode="fully_automatic")


def test_human_review_record_carries_its_actor() -> None:
    rec = derive(
        event_type="override",
        decision_mode="human_in_loop",
        actor={"id": "s-1", "role": "credit-officer"},
    )
    rec["seq"] = 3
    assert validate_record(rec).actor is not None


_ascii_name = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
_unicode_name = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_unit = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def events(draw: st.DrawFn) -> tuple[InferenceEvent, dict[str, Any]]:
    """A random InferenceEvent and the derive_record keyword arguments for it."""
    status: Status = draw(st.sampled_from(["ok", "error"]))
    ci = sorted(draw(st.lists(_finite, min_size=2, max_size=2)))
    has_ci = draw(st.booleans())
    explanation = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "method": _ascii_name,
                "base_value": st.none() | _finite,
                "values": st.dictionaries(_unicode_name, _finite, max_size=8),
                "reason_codes": st.lists(_unicode_name, max_size=4),
            }
        )
    )
    ev = InferenceEvent(
        model=ModelInfo(
            draw(_unicode_name),
            draw(_ascii_name),
            draw(st.just("") | st.text("0123456789abcdef", min_size=64, max_size=64)),
        ),
        request_id=draw(_ascii_name),
        service=draw(_ascii_name),
        team=draw(_unicode_name),
        endpoint=draw(_ascii_name),
        inputs=None,
        input_size=0,
        subject=draw(st.none() | _unicode_name),
        start_time_ns=draw(st.integers(0, 4_102_444_800 * 10**9 - 1)),  # 1970 .. 2099
        duration_ns=draw(st.integers(0, 10**12)),
        label=draw(st.none() | _unicode_name),
        score=draw(st.none() | _finite),
        confidence=draw(st.none() | _unit),
        decision=draw(st.none() | _unicode_name),
        ci_low=ci[0] if has_ci else None,
        ci_high=ci[1] if has_ci else None,
        explanation=explanation,
        status=status,
        error_type=draw(_ascii_name) if status == "error" else None,
        trace_id=draw(st.integers(0, 2**128 - 1)),
        span_id=draw(st.integers(0, 2**64 - 1)),
    )
    event_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    hmac_present = draw(st.booleans())
    kwargs: dict[str, Any] = {
        "input_hmac": draw(st.text("0123456789abcdef", min_size=64, max_size=64))
        if hmac_present
        else None,
        "input_hmac_key_id": draw(_ascii_name) if hmac_present else None,
        "subject_pseudonym": draw(st.none() | _ascii_name),
        "retention": draw(st.sampled_from(list(RETENTION_CLASSES.values()))),
        "producer": "infertrail/0.1.0",
        "event_type": event_type,
        "decision_mode": draw(st.sampled_from(["solely_automated", "human_in_loop", "advisory"])),
        "actor": draw(st.fixed_dictionaries({"id": _ascii_name, "role": _ascii_name})),
    }
    return ev, kwargs


@settings(max_examples=300, deadline=None)
@given(events(), st.integers(0, 2**53 - 1))
def test_derived_records_of_random_events_validate(
    case: tuple[InferenceEvent, dict[str, Any]], seq: int
) -> None:
    ev, kwargs = case
    rec = derive_record(ev, **kwargs)
    rec["seq"] = seq
    model = validate_record(rec)
    assert model.ts == rfc3339_micros(ev.start_time_ns)
    # What is stored is the canonical bytes: parsed back, they must validate too, and the
    # model must reproduce them exactly (no field lost or retyped).
    stored = canonicalize(rec)
    parsed = validate_record(json.loads(stored))
    assert canonicalize(parsed.model_dump(mode="json")) == stored


# -- event_record ----------------------------------------------------------------------------

EVENT_TS = "2026-11-18T11:06:40.123456Z"
FIXED_RECORD_ID = "01a219a9-77af-7f19-a500-4aa15a70e384"


def test_event_record_fills_the_header_and_nests_the_details() -> None:
    details = {"severity": "serious", "ref": ["INC-7"]}
    rec = event_record(
        "incident",
        ts=EVENT_TS,
        retention=RETENTION_CLASSES["audit-1y"],
        producer="infertrail/0.1.0",
        details=details,
        service="credit-api",
        actor={"id": "s-1", "role": "risk-officer"},
    )
    assert list(rec) == [*sorted(set(AuditRecord.model_fields) - {"seq"}), "incident"]
    assert rec["schema_version"] == RECORD_SCHEMA_VERSION
    assert uuid.UUID(rec["record_id"]).version == 7
    assert (rec["event_type"], rec["ts"], rec["producer"]) == (
        "incident",
        EVENT_TS,
        "infertrail/0.1.0",
    )
    assert (rec["retention_class"], rec["retention_until"]) == ("audit-1y", "2027-11-19")
    assert (rec["service"], rec["actor"]) == ("credit-api", {"id": "s-1", "role": "risk-officer"})
    assert rec["request_id"] is None and rec["model_name"] is None
    details["severity"] = "minor"  # the record holds its own copy
    assert rec["incident"] == {"severity": "serious", "ref": ["INC-7"]}
    assert validate_record({**rec, "seq": 0}).model_dump()["incident"]["severity"] == "serious"


@pytest.mark.parametrize(
    ("event_type", "fields", "message"),
    [
        ("inference", {}, "come from derive_record"),
        ("incidents", {}, "'incidents'"),
        ("incident", {"model_verison": "1"}, r"\['model_verison'\]"),
        ("incident", {"seq": 0}, r"\['seq'\]"),
        ("incident", {"record_id": FIXED_RECORD_ID}, r"\['record_id'\]"),
        ("incident", {"incident": {}}, r"\['incident'\]"),
    ],
)
def test_event_record_refuses_what_it_cannot_build(
    event_type: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        event_record(
            event_type,
            ts=EVENT_TS,
            retention=DEFAULT_RETENTION,
            producer="infertrail/0.1.0",
            details={},
            **fields,
        )


# The construction each caller had before event_record, copied verbatim but for the record id,
# fixed here: the reference the records built through event_record must match byte for byte.
_OLD_TEMPLATE: dict[str, Any] = dict.fromkeys(sorted(set(AuditRecord.model_fields) - {"seq"}))


def _old_privacy_record(
    event_type: str,
    *,
    ts: str,
    actor: Actor | None,
    subject: str | None,
    request_id: str | None,
    details: dict[str, Any],
    retention: RetentionPolicy,
    producer: str,
    service: str | None,
) -> dict[str, Any]:
    record = _OLD_TEMPLATE.copy()
    record.update(
        schema_version=RECORD_SCHEMA_VERSION,
        record_id=FIXED_RECORD_ID,
        event_type=event_type,
        ts=ts,
        request_id=request_id,
        service=service,
        subject=subject,
        actor=None if actor is None else actor.model_dump(),
        retention_class=retention.retention_class,
        retention_until=retention.until(ts),
        producer=producer,
    )
    record[event_type] = dict(details)
    return record


def _old_outcome_record(
    outcome: Outcome,
    prediction: Prediction,
    *,
    ts: str,
    retention: RetentionPolicy,
    producer: str,
    service: str | None,
) -> dict[str, Any]:
    record = _OLD_TEMPLATE.copy()
    record.update(
        schema_version=RECORD_SCHEMA_VERSION,
        record_id=FIXED_RECORD_ID,
        event_type="outcome",
        ts=ts,
        request_id=outcome.request_id,
        service=service,
        team=prediction.team or None,
        endpoint=prediction.endpoint or None,
        model_name=prediction.model,
        model_version=prediction.version or None,
        retention_class=retention.retention_class,
        retention_until=retention.until(ts),
        producer=producer,
    )
    record["outcome"] = {
        "kind": outcome.kind,
        "label": outcome.label,
        "value": outcome.value,
        "observed_at": rfc3339_micros(outcome.ts_ns),
    }
    return record


_OFFICER = Actor(id="staff-17", role="compliance")
# The privacy events as their callers build them (privacy.erasure, .raw_payloads, .pseudonyms).
_PRIVACY_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "erasure",
        {
            "actor": _OFFICER,
            "subject": None,
            "request_id": None,
            "details": {
                "reason": "GDPR Art. 17 request #4411",
                "erased_at": "2026-11-18T11:06:40.000000Z",
                "mapping_rows": 1,
                "data_keys": 1,
                "payloads": 3,
                "resumed": False,
                "method": "mapping row and per-subject data key deleted (crypto-shredding)",
            },
        },
    ),
    (
        "break_glass",
        {
            "actor": _OFFICER,
            "subject": "psn_7f3a9c2e1b",
            "request_id": "req-1",
            "details": {"justification": "dispute #88: check input", "store": "raw_payloads"},
        },
    ),
    (
        "retention_purge",
        {
            "actor": None,
            "subject": None,
            "request_id": None,
            "details": {
                "store": "raw_payloads",
                "payloads": 12,
                "data_keys": 2,
                "cutoff": "2026-10-19T11:06:40.123456Z",
                "oldest": "2026-10-01T00:00:00.000001Z",
                "newest": "2026-10-19T11:06:40.123455Z",
                "retention_days": 30.0,
            },
        },
    ),
    (
        SUBJECT_RE_ENROLLED,
        {
            "actor": _OFFICER,
            "subject": "psn_00c0ffee",
            "request_id": None,
            "details": {
                "reason": "subject re-applied and consented",
                "erased_at": "2026-01-02T03:04:05.000006Z",
                "erasure_seq": 7,
            },
        },
    ),
]


@pytest.fixture
def fixed_record_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_module, "new_record_id", lambda: FIXED_RECORD_ID)


def _assert_same_record(new: dict[str, Any], old: dict[str, Any]) -> None:
    assert new == old
    assert list(new) == list(old)  # same key order too, though canonical bytes sort the keys
    assert canonicalize(new) == canonicalize(old)
    validate_record({**new, "seq": 0})


@pytest.mark.usefixtures("fixed_record_id")
@pytest.mark.parametrize(
    ("event_type", "kwargs"), _PRIVACY_EVENTS, ids=[e for e, _ in _PRIVACY_EVENTS]
)
@pytest.mark.parametrize("service", [None, "credit-api"])
def test_privacy_records_are_unchanged_by_event_record(
    event_type: str, kwargs: dict[str, Any], service: str | None
) -> None:
    common = {
        **kwargs,
        "ts": EVENT_TS,
        "retention": RETENTION_CLASSES["credit-5y"],
        "producer": "infertrail/0.1.0",
        "service": service,
    }
    _assert_same_record(
        privacy_record(event_type, **common), _old_privacy_record(event_type, **common)
    )


class _Capture:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, record: Any, timeout: float | None = None) -> Any:
        self.records.append(record)
        return None


@pytest.mark.usefixtures("fixed_record_id")
def test_access_query_records_are_unchanged_by_event_record() -> None:
    # The compliance service's self-audit goes through the privacy layer's AuditRecorder.
    now_ns = 1_795_000_000_123_456_789
    log = _Capture()
    recorder = AuditRecorder(
        log, DEFAULT_RETENTION, "infertrail/0.1.0", service="credit-api", clock_ns=lambda: now_ns
    )
    caller = Caller(
        User("ana", "auditor", "k1", "2026-01-01T00:00:00Z", None),
        "cli",
        request_id="req-9",
        detail={"os_user": "ana"},
    )
    details = {
        "operation": "query",
        "filters": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-18T00:00:00Z"},
        "subject_lookup": "resolved",
        "justification": "quarterly review",
        "result_count": 3,
        "tree_size": 1000,
        "outcome": "ok",
    }
    recorder.append(
        ACCESS_EVENT,
        actor=caller.actor(),
        subject="psn_7f3a9c2e1b",
        request_id=caller.request_id,
        details=details,
    )
    old = _old_privacy_record(
        ACCESS_EVENT,
        ts=rfc3339_micros(now_ns),
        actor=caller.actor(),
        subject="psn_7f3a9c2e1b",
        request_id="req-9",
        details=details,
        retention=DEFAULT_RETENTION,
        producer="infertrail/0.1.0",
        service="credit-api",
    )
    (new,) = log.records
    _assert_same_record(new, old)
    assert new["actor"] == {"id": "ana", "role": "auditor", "channel": "cli", "os_user": "ana"}


def _prediction(request_id: str, model: str, version: str, **kwargs: str) -> Prediction:
    return Prediction(request_id, 1, model, version, "approve", 0.87, 0.92, None, 3.4, **kwargs)


@pytest.mark.usefixtures("fixed_record_id")
@pytest.mark.parametrize(
    ("outcome", "prediction"),
    [
        (
            Outcome("req-1", "default", "repaid", None, 1_795_100_000_000_000_001),
            _prediction("req-1", "credit-gbm", "2026.11.1", team="risk", endpoint="/v1/score"),
        ),
        (  # empty team, endpoint and version are stored as null
            Outcome("req-2", "revenue", None, 129.9, 1_795_100_000_000_000_000),
            _prediction("req-2", "churn", ""),
        ),
    ],
)
def test_outcome_records_are_unchanged_by_event_record(
    outcome: Outcome, prediction: Prediction
) -> None:
    common: dict[str, Any] = {
        "ts": EVENT_TS,
        "retention": DEFAULT_RETENTION,
        "producer": "infertrail/0.1.0",
        "service": "credit-api",
    }
    _assert_same_record(
        outcome_record(outcome, prediction, **common),
        _old_outcome_record(outcome, prediction, **common),
    )


# -- record ids and timestamps -------------------------------------------------------------------


def test_record_ids_are_uuid7_unique_and_time_ordered() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_record_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for rid in ids[:200]:
        u = uuid.UUID(rid)
        assert str(u) == rid and u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= u.int >> 80 <= after
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_record_ids_use_all_74_random_bits() -> None:
    ids = [uuid.UUID(new_record_id()).int for _ in range(2000)]
    ored = 0
    for u in ids:
        ored |= u
    random_mask = (0xFFF << 64) | ((1 << 62) - 1)
    assert ored & random_mask == random_mask


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_reuse_parent_randomness() -> None:
    new_record_id()  # fill this thread's entropy buffer before forking
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report one id and leave without running pytest's teardown
        os.write(write_end, new_record_id().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_id[14:] != new_record_id()[14:]


@settings(max_examples=200)
@given(st.integers(0, 4_102_444_800 * 10**9 - 1))
def test_cached_timestamp_matches_the_reference_formatter(time_ns: int) -> None:
    assert record_module._rfc3339_micros(time_ns) == rfc3339_micros(time_ns)
    assert record_module._rfc3339_micros(time_ns + 1000) == rfc3339_micros(time_ns + 1000)


# -- retention -------------------------------------------------------------------------------


def test_retention_until_adds_days_to_the_ts_date() -> None:
    policy = RetentionPolicy("test", 366)
    assert policy.until("2028-02-29T23:59:59.999999Z") == "2029-03-01"
    assert DEFAULT_RETENTION.until("2026-07-01T00:00:00.000000Z") == "2027-01-01"


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2090, 12, 31)))
def test_each_class_covers_its_calendar_period(day: date) -> None:
    months = {"eu-ai-act-6m": 6, "audit-1y": 12, "reg-b-25m": 25, "credit-5y": 60}
    months |= {"hipaa-6y": 72, "ai-act-docs-10y": 120}
    for name, n in months.items():
        until = date.fromisoformat(RETENTION_CLASSES[name].until(f"{day}T12:00:00.000000Z"))
        y, m = divmod(day.month - 1 + n, 12)
        target_month_start = date(day.year + y, m + 1, 1)
        # Never earlier than the same day n months later (or that month's end).
        last_day = (target_month_start.replace(day=28) + timedelta(days=4)).replace(day=1)
        same_day = min(day.day, (last_day - timedelta(days=1)).day)
        assert until >= target_month_start.replace(day=same_day), (name, day)


def test_retention_policy_lookup_and_bad_values() -> None:
    assert retention_policy("hipaa-6y").days == 2192
    with pytest.raises(ValueError, match="valid: ai-act-docs-10y"):
        retention_policy("forever")
    with pytest.raises(ValueError, match="days >= 1"):
        RetentionPolicy("zero", 0)
    with pytest.raises(ValueError, match="class name"):
        RetentionPolicy("", 10)


# -- validate_record -------------------------------------------------------------------------


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


@pytest.mark.parametrize(
    "field",
    ["seq", "record_id", "event_type", "ts", "model_sha256", "explanation", "retention_until"],
)
def test_missing_required_field_is_named(field: str) -> None:
    rec = valid_record()
    del rec[field]
    with pytest.raises(ValidationError) as info:
        validate_record(rec)
    assert field in error_fields(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema_version", 2),
        ("seq", -1),
        ("seq", 2**53),
        ("seq", "5"),
        ("seq", True),
        ("seq", 1.5),
        ("record_id", str(uuid.uuid4())),
        ("event_type", "prediction"),
        ("ts", "2026-11-26T20:46:24Z"),
        ("ts", "2026-11-26 20:46:24.123456+00:00"),
        ("trace_id", "0AF7651916CD43DD8448EB211C80319C"),
        ("span_id", "123"),
        ("model_sha256", "ab" * 31),
        ("input_hmac", "zz" * 32),
        ("score", float("nan")),
        ("score", "0.5"),
        ("confidence", 1.5),
        ("latency_ms", -1.0),
        ("decision_mode", "automatic"),
        ("status", "failed"),
        ("retention_until", "2027-5-21"),
        ("producer", "infertrail 0.1"),
        (
            "explanation",
            {"method": "shap", "base_value": None, "values": [1.0], "reason_codes": []},
        ),
        ("actor", {"id": "x"}),
        ("subject", ""),
    ],
)
def test_ill_typed_field_is_named(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        validate_record(valid_record(**{field: value}))
    assert any(loc.split(".")[0] == field for loc in error_fields(info.value)), info.value


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_name": None}, "model_name is required for inference"),
        ({"latency_ms": None}, "latency_ms is required for inference"),
        ({"event_type": "override"}, "actor is required for override"),
        ({"error": "boom"}, "error is set"),
        ({"input_hmac_key_id": None}, "both set or both null"),
        ({"ci_low": 0.9, "ci_high": 0.1}, "ci_low 0.9 is above ci_high 0.1"),
        ({"retention_until": "2026-01-01"}, "before ts"),
        ({"ts": "2026-02-30T00:00:00.000000Z"}, "day is out of range"),
    ],
)
def test_inconsistent_records_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_record(valid_record(**overrides))


def test_non_inference_events_may_leave_model_fields_null() -> None:
    rec = valid_record(
        event_type="drift_alert",
        request_id=None,
        model_name=None,
        model_version=None,
        model_sha256=None,
        latency_ms=None,
        status=None,
        decision_mode=None,
        service=None,
    )
    assert validate_record(rec).model_name is None


def test_extra_fields_are_kept() -> None:
    model = validate_record(valid_record(ref_record_id="x", data_class="confidential"))
    assert model.model_dump()["ref_record_id"] == "x"
    assert "data_class" in model.model_dump()


def test_the_documented_example_is_a_valid_canonical_record() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "audit-record.md").read_text(encoding="utf-8")
    example = doc.split("## Example", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    parsed = json.loads(example)
    assert validate_record(parsed).seq == 42
    assert canonicalize(parsed) == example.encode()
    assert set(parsed) == set(AuditRecord.model_fields)
    for field in AuditRecord.model_fields:  # the field table documents every field
        assert f"| `{field}`" in doc or f"`{field}` |" in doc, field


# -- input HMAC --------------------------------------------------------------------------------


def test_input_hmac_is_over_canonical_bytes() -> None:
    inputs = {"b": [1.0, "x"], "a": None}
    expected = hmac.new(HMAC_KEY, b'{"a":null,"b":[1,"x"]}', hashlib.sha256).hexdigest()
    assert input_hmac_hex(HMAC_KEY, inputs) == expected
    assert input_hmac_hex(HMAC_KEY, {"a": None, "b": (1, "x")}) == expected
    assert input_hmac_hex(b"other-key-of-32-bytes-----------", inputs) != expected


def test_input_hmac_rejects_weak_or_wrong_keys() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        input_hmac_hex(b"short", {})
    with pytest.raises(ValueError, match="got str"):
        input_hmac_hex("k" * 32, {})  # type: ignore[arg-type]
