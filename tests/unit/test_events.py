from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infertrail.events import (
    InferenceEvent,
    InvalidRequestId,
    ModelInfo,
    log_record,
    metric_attributes,
    new_request_id,
    rfc3339_micros,
    span_attributes,
    validate_request_id,
)
from infertrail.telemetry import conventions as c

MODEL = ModelInfo("sentiment", "1.0.0", "ab" * 32)


def event(**kw: object) -> InferenceEvent:
    base: dict[str, object] = dict(
        model=MODEL,
        request_id="req-1",
        service="svc",
        team="risk",
        endpoint="/v1/sentiment",
        inputs="great phone",
        input_size=11,
        start_time_ns=1_795_000_000_123_456_789,
        duration_ns=1_500_000,
        label="positive",
        score=0.9,
        confidence=0.9,
        trace_id=0x0123456789ABCDEF0123456789ABCDEF,
        span_id=0x0123456789ABCDEF,
    )
    base.update(kw)
    return InferenceEvent(**base)  # type: ignore[arg-type]


def test_request_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_request_id() for _ in range(200)]
    for rid in ids:
        u = uuid.UUID(rid)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
    assert len(set(ids)) == 200
    # the leading 48 bits are a millisecond timestamp: never decreasing
    stamps = [uuid.UUID(r).int >> 80 for r in ids]
    assert stamps == sorted(stamps)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}", fullmatch=True))
def test_valid_request_ids_are_accepted(rid: str) -> None:
    assert validate_request_id(rid) == rid


@pytest.mark.parametrize(
    "bad", ["", "-leading-dash", "has space", "x" * 129, "semi;colon", "new\nline", "ünïcode"]
)
def test_invalid_request_ids_are_rejected_with_the_rule(bad: str) -> None:
    with pytest.raises(InvalidRequestId, match="1-128 characters"):
        validate_request_id(bad)


def test_rfc3339_micros() -> None:
    assert rfc3339_micros(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339_micros(1_795_000_000_123_456_789) == "2026-11-18T11:06:40.123456Z"


def test_span_attributes_carry_model_identity_and_prediction() -> None:
    attrs = span_attributes(event())
    assert attrs[c.MODEL_NAME] == "sentiment"
    assert attrs[c.MODEL_SHA256] == "ab" * 32
    assert attrs[c.REQUEST_ID] == "req-1"
    assert attrs[c.PREDICTION_LABEL] == "positive"
    assert attrs[c.PREDICTION_CONFIDENCE] == 0.9
    assert attrs[c.INPUT_SIZE] == 11
    assert c.ERROR_TYPE not in attrs


def test_metric_attributes_are_low_cardinality() -> None:
    attrs = metric_attributes(event())
    # request ids, scores and hashes never become metric attributes
    assert c.REQUEST_ID not in attrs
    assert c.PREDICTION_SCORE not in attrs
    assert c.MODEL_SHA256 not in attrs
    assert set(attrs) == {c.MODEL_NAME, c.MODEL_VERSION, c.TEAM, c.STATUS}
    err = metric_attributes(event(status="error", error_type="ValueError"))
    assert err[c.ERROR_TYPE] == "ValueError"


def test_log_record_has_correlation_ids_and_no_raw_input_by_default() -> None:
    rec = log_record(event())
    assert rec["trace_id"] == "0123456789abcdef0123456789abcdef"
    assert rec["span_id"] == "0123456789abcdef"
    assert rec["request_id"] == "req-1"
    assert rec["latency_ms"] == 1.5
    assert rec["timestamp"] == "2026-11-18T11:06:40.123456Z"
    assert "input" not in rec
    assert log_record(event(), include_input=True)["input"] == "great phone"


def test_error_log_record() -> None:
    rec = log_record(event(status="error", error_type="ValueError", error_message="boom"))
    assert rec["level"] == "ERROR"
    assert (rec["error_type"], rec["error"]) == ("ValueError", "boom")
    assert re.fullmatch(r"[0-9a-f]{32}", rec["trace_id"])
