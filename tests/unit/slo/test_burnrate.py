"""Burn-rate evaluation on synthetic good/bad streams with an injected clock.

Streams are per-minute (good, total) counts written straight into the buckets; the evaluation
time is the clock. Expected firing times are worked out in the comments from the workbook's
conditions (objective 99 %, so the error budget is 1 %; 1000 events a minute).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.slo.burnrate import (
    RATIO_WINDOWS_S,
    WORKBOOK_POLICY,
    SLOStatus,
    _consistent,
    evaluate_slo,
)
from infertrail.slo.definitions import SLO
from infertrail.slo.sli import EventCounts
from tests.unit.slo.helpers import T0, make_slo

PER_MIN = 1000
DAY_MIN = 1440


class Stream:
    """Per-minute counts of one SLO, minute 0 starting at T0."""

    def __init__(self, slo: SLO) -> None:
        self.slo = slo
        self.counts = EventCounts(60, slo.window_s // 60 + 1)
        self.minute = 0

    def run(self, minutes: int, bad_per_min: int = 0, total: int = PER_MIN) -> None:
        for _ in range(minutes):
            self.counts.add(T0 // 60 + self.minute, total - bad_per_min, total)
            self.minute += 1

    def status(self) -> SLOStatus:
        """Evaluated at the end of the last minute run."""
        return evaluate_slo(self.slo, self.counts, T0 + self.minute * 60)

    def firing_minutes(self, minutes: int, bad_per_min: int, severity: str) -> list[int]:
        """Run minute by minute; the minutes (counted from now) after which it fires."""
        out = []
        for m in range(1, minutes + 1):
            self.run(1, bad_per_min)
            if self.status().firing[severity]:  # type: ignore[index]
                out.append(m)
        return out


def test_fast_burn_pages_on_1h_5m_and_resolves_on_the_short_window() -> None:
    s = Stream(make_slo(window="7d"))
    s.run(DAY_MIN)
    assert not s.status().firing["page"]
    # 20 % errors = 20x. The 1h ratio after m bad minutes is 0.2m/60 > 14.4 x 1 % when m > 43.2.
    fired = s.firing_minutes(60, 200, "page")
    assert fired[0] == 44 and fired == list(range(44, 61))
    st = s.status()
    assert st.burn_rate(300) == pytest.approx(20) and st.burn_rate(3600) == pytest.approx(20)
    assert st.margins["page"] == pytest.approx(20 / 14.4)
    # Clean again: the 5m window holds 5-j bad minutes after j clean ones; 0.2(5-j)/5 > 0.144
    # only for j <= 1, so the page resolves at the second clean minute while 1h still burns.
    after = [s.firing_minutes(1, 0, "page") != [] for _ in range(3)]
    assert after == [True, False, False]
    assert s.status().burn_rate(3600) > 14.4
    # 60 minutes at 20x is 1.7 % of a 7-day budget in a day: no ticket.
    assert not s.status().firing["ticket"]


def test_slow_burn_pages_on_6h_30m() -> None:
    s = Stream(make_slo())
    s.run(3 * DAY_MIN)
    # 7 % errors: 1h never exceeds 14.4 %; the 6h ratio 0.07m/360 > 6 % when m > 308.6.
    fired = s.firing_minutes(320, 70, "page")
    assert fired[0] == 309
    # Ticket: 2h (> 3 % after 52 min) and 1d: 0.07m/1440 > 3 % when m > 617.1.
    ticket = s.firing_minutes(300, 70, "ticket")
    assert ticket[0] == 618 - 320


def test_sustained_low_burn_tickets_on_3d_6h_only() -> None:
    s = Stream(make_slo())
    s.run(3 * DAY_MIN)
    # 2.3 % errors (2.3x): below every page factor and the 3x ticket; the 3d ratio
    # 23m/4320000 exceeds 1 % when m > 1878.3 (the 6h one long before).
    s.run(1870, 23)
    st = s.status()
    assert not st.firing["page"] and not st.firing["ticket"]
    assert s.firing_minutes(10, 23, "ticket")[0] == 1879 - 1870
    assert not s.status().firing["page"]


def test_no_traffic_is_no_alert_and_a_full_budget() -> None:
    st = Stream(make_slo()).status()
    assert st.firing == {"page": False, "ticket": False}
    assert st.margins == {"page": 0.0, "ticket": 0.0}
    assert math.isnan(st.error_ratio(300)) and math.isnan(st.burn_rate(3600))
    assert st.budget_remaining == 1.0
    signals = st.signals()
    assert signals["slo.sentiment_latency.burn.page"] == 0.0
    assert math.isnan(signals["slo.sentiment_latency.burn_rate.5m"])


def test_budget_remaining_by_hand() -> None:
    """7-day window, 99 %: a day of 1,440,000 events with 3,600 bad spends 25 % of it."""
    s = Stream(make_slo(window="7d"))
    s.run(1, bad_per_min=1000, total=10_000)  # 8 days before the end: outside the window
    s.run(DAY_MIN)
    s.run(6 * DAY_MIN, 0, 0)
    s.run(DAY_MIN - 60)
    s.run(60, 60)  # 3,600 bad in the last hour
    st = s.status()
    assert (st.period.good, st.period.total) == (1_440_000 - 3_600, 1_440_000)
    # Allowed: 1 % of 1,440,000 = 14,400 bad events; 3,600 spent = 25 %.
    assert st.budget_remaining == pytest.approx(0.75, abs=1e-12)
    assert st.signals()["slo.sentiment_latency.error_budget_remaining"] == st.budget_remaining
    s.run(1, 20_000, 20_000)  # overspent: the budget goes negative, not to zero
    assert s.status().budget_remaining == pytest.approx(1 - (23_600 / 1_460_000) / 0.01)
    assert s.status().budget_remaining < 0


def test_signals_name_every_window() -> None:
    s = Stream(make_slo(name="a-b"))
    s.run(10, 10)
    keys = set(s.status().signals())
    assert keys == {
        "slo.a_b.burn.page",
        "slo.a_b.burn.ticket",
        "slo.a_b.error_budget_remaining",
        *(f"slo.a_b.burn_rate.{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")),
    }


def test_margin_agrees_with_the_condition_at_the_last_ulp() -> None:
    assert _consistent(True, 1.0) > 1.0
    assert _consistent(False, math.nextafter(1.0, 2.0)) == 1.0
    assert _consistent(True, 2.5) == 2.5 and _consistent(False, 0.3) == 0.3


def naive_firing(per_min: np.ndarray, budget: float, at_min: int) -> dict[str, bool]:
    """The workbook's conditions computed from scratch over per-minute (good, total) rows."""
    out = {"page": False, "ticket": False}
    for a in WORKBOOK_POLICY:
        ok = True
        for w in (a.long_s, a.short_s):
            rows = per_min[max(0, at_min - w // 60) : at_min]
            good, total = int(rows[:, 0].sum()), int(rows[:, 1].sum())
            ratio = 1 - good / total if total else math.nan
            ok = ok and ratio > a.factor * budget
        out[a.severity] = out[a.severity] or ok
    return out


@settings(max_examples=25, deadline=None)
@given(
    segments=st.lists(
        st.tuples(st.integers(1, 400), st.integers(0, 300), st.integers(0, 1000)),
        min_size=1,
        max_size=8,
    ),
    objective=st.sampled_from([90.0, 99.0, 99.5, 99.9]),
)
def test_evaluation_agrees_with_a_naive_recomputation(
    segments: list[tuple[int, int, int]], objective: float
) -> None:
    slo = make_slo(objective=objective, window="3d")
    s = Stream(slo)
    rows = []
    for minutes, bad, total in segments:
        bad = min(bad, total)
        s.run(minutes, bad, total)
        rows += [(total - bad, total)] * minutes
        expected = naive_firing(np.array(rows), slo.error_budget, len(rows))
        assert s.status().firing == expected
    st = s.status()
    window = np.array(rows[-slo.window_s // 60 :])
    good, total = int(window[:, 0].sum()), int(window[:, 1].sum())
    assert (st.period.good, st.period.total) == (good, total)
    assert set(st.windows) == set(RATIO_WINDOWS_S)
