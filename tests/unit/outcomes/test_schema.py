"""Outcome payloads: the normal form, and a precise message for every kind of mistake."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infertrail.outcomes.schema import OutcomeValidationError, parse_outcomes

NOW = 1_772_359_200 * 1_000_000_000


def one(item: dict[str, Any]) -> Any:
    [o] = parse_outcomes(item, batch_max=10, received_ns=NOW)
    return o


def test_normal_form() -> None:
    assert (
        one({"request_id": "r1", "outcome": "good"}).label,
        one({"request_id": "r1", "outcome": "good"}).value,
    ) == ("good", None)
    o = one({"request_id": "r1", "outcome": 1})
    assert (o.label, o.value, o.kind, o.ts_ns) == ("1", 1.0, "label", NOW)
    t = one({"request_id": "r1", "outcome": True})
    f = one({"request_id": "r1", "outcome": False})
    assert (t.label, t.value, f.label, f.value) == ("1", 1.0, "0", 0.0)  # true is 1
    v = one({"request_id": "r1", "outcome": 1.0, "kind": "revenue"})
    assert (v.label, v.value, v.kind) == (None, 1.0, "revenue")  # a float is a value only
    ts = one({"request_id": "r1", "outcome": 0, "ts": "2026-03-01T11:00:00+01:00"})
    assert ts.ts_ns == NOW  # offsets are honoured: 11:00+01:00 is 10:00Z
    assert one({"request_id": "r1", "outcome": 0, "ts": "2026-03-01T10:00:00.5Z"}).ts_ns == (
        NOW + 500_000_000
    )


def test_a_batch_keeps_its_order() -> None:
    batch = [{"request_id": f"r{i}", "outcome": i % 2} for i in range(5)]
    assert [o.request_id for o in parse_outcomes(batch, batch_max=5)] == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
    ]


def problems(data: Any, batch_max: int = 10) -> list[dict[str, Any]]:
    with pytest.raises(OutcomeValidationError) as info:
        parse_outcomes(data, batch_max=batch_max)
    return [p.as_json() for p in info.value.problems]


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        ({"outcome": 1}, "request_id", "is required"),
        ({"request_id": "r1"}, "outcome", "is required"),
        ({"request_id": "bad id", "outcome": 1}, "request_id", "got 'bad id'"),
        ({"request_id": "x" * 129, "outcome": 1}, "request_id", "1-128 characters"),
        ({"request_id": "r1", "outcome": None}, "outcome", "got None"),
        ({"request_id": "r1", "outcome": ""}, "outcome", "non-empty string"),
        ({"request_id": "r1", "outcome": "x" * 257}, "outcome", "up to 256"),
        ({"request_id": "r1", "outcome": [1]}, "outcome", "got [1]"),
        ({"request_id": "r1", "outcome": {"a": 1}}, "outcome", "finite number"),
        ({"request_id": "r1", "outcome": float("inf")}, "outcome", "must be finite, got inf"),
        ({"request_id": "r1", "outcome": 1, "ts": "tomorrow"}, "ts", "RFC 3339"),
        ({"request_id": "r1", "outcome": 1, "ts": "2026-03-01T10:00:00"}, "ts", "UTC offset"),
        ({"request_id": "r1", "outcome": 1, "ts": 1700000000}, "ts", "valid string"),
        ({"request_id": "r1", "outcome": 1, "kind": "Bad Kind"}, "kind", "must match"),
        ({"request_id": "r1", "outcome": 1, "label": 1}, "label", "is not a known field"),
        ({"request_id": 7, "outcome": 1}, "request_id", "valid string"),
    ],
)
def test_each_mistake_is_named(item: dict[str, Any], field: str, message: str) -> None:
    [single] = problems(item)
    assert single["index"] is None and single["field"] == field
    assert message in single["message"]
    # in a batch, the same problem carries the item's index
    [in_batch] = problems([{"request_id": "ok", "outcome": 1}, item])
    assert (in_batch["index"], in_batch["field"]) == (1, field)


def test_every_problem_of_a_batch_is_listed() -> None:
    found = problems(
        [
            {"request_id": "a b", "outcome": None},
            5,
            {"request_id": "ok", "outcome": 1},
            {"request_id": "c", "outcome": 1, "kind": "X"},
        ]
    )
    assert [(p["index"], p["field"]) for p in found] == [
        (0, "request_id"),
        (0, "outcome"),
        (1, "item"),
        (3, "kind"),
    ]
    assert "each outcome must be an object, got int" in found[2]["message"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("text", "must be an outcome object or a list of them, got str"),
        (None, "got NoneType"),
        ([], "the list of outcomes is empty"),
        ([{"request_id": "r", "outcome": 1}] * 3, "3 outcomes in one batch; at most 2"),
    ],
)
def test_bad_bodies(data: Any, message: str) -> None:
    [p] = problems(data, batch_max=2)
    assert (p["index"], p["field"]) == (None, "body") and message in p["message"]


def test_error_message_summarises() -> None:
    with pytest.raises(
        OutcomeValidationError, match=r"7 invalid outcome field\(s\): \[0\]\.outcome"
    ):
        parse_outcomes([{"request_id": f"r{i}", "outcome": None} for i in range(7)], batch_max=10)


labels = st.one_of(
    st.text(min_size=1, max_size=20),
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(labels)
def test_normal_form_properties(value: Any) -> None:
    o = one({"request_id": "r1", "outcome": value})
    if isinstance(value, bool):
        assert (o.label, o.value) == (str(int(value)), float(value))
    elif isinstance(value, int):
        assert (o.label, o.value) == (str(value), float(value))
    elif isinstance(value, float):
        assert (o.label, o.value) == (None, value)
    else:
        assert (o.label, o.value) == (value, None)
    assert o.same_as(o.label, o.value)
