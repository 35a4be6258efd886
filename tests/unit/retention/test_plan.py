"""The retention plan: a key's state on a day, payload periods, the next day something is due."""

from __future__ import annotations

from datetime import date

import pytest

from infertrail.keyring import PeriodKey
from infertrail.retention.plan import KeyState, key_state, payload_periods, plan


def key(keep_until: date, destroyed: str | None = None, seq: int | None = None) -> PeriodKey:
    return PeriodKey("input-hmac@2026-03", "input-hmac", "2026-03", keep_until, "t", destroyed, seq)


@pytest.mark.parametrize(
    ("k", "today", "expected"),
    [
        (key(date(2026, 10, 1)), date(2026, 9, 30), "live"),
        (key(date(2026, 10, 1)), date(2026, 10, 1), "live"),  # kept through keep_until
        (key(date(2026, 10, 1)), date(2026, 10, 2), "due"),
        (key(date(2026, 10, 1), "2026-10-02T00:00:00+00:00"), date(2026, 10, 2), "unrecorded"),
        (key(date(2026, 10, 1), "2026-10-02T00:00:00+00:00", 7), date(2027, 1, 1), "destroyed"),
    ],
)
def test_key_state(k: PeriodKey, today: date, expected: KeyState) -> None:
    assert key_state(k, today) == expected


def test_next_due_is_the_day_after_the_earliest_live_keep_until() -> None:
    keys = [key(date(2026, 10, 1)), key(date(2026, 11, 1)), key(date(2026, 4, 1), "t", 3)]
    assert plan(keys, date(2026, 9, 1)).next_due == date(2026, 10, 2)
    assert plan(keys, date(2026, 10, 5)).next_due == date(2026, 11, 2)
    assert plan(keys, date(2027, 1, 1)).next_due is None
    assert plan(keys, date(2026, 10, 5)).of_state("due") == [keys[0]]


def test_payload_periods_are_due_after_the_months_last_day_plus_the_days() -> None:
    periods = payload_periods(
        {"2026-03": (2, 5), "2026-04": (1, 1), "": (3, 3)}, days=7, today=date(2026, 4, 8)
    )
    assert [(p.period, p.keep_until, p.due) for p in periods] == [
        ("", None, False),  # data keys from before key periods: never due by period
        ("2026-03", date(2026, 4, 7), True),
        ("2026-04", date(2026, 5, 7), False),
    ]
    assert (periods[1].data_keys, periods[1].payloads) == (2, 5)
