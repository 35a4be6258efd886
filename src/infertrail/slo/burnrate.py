"""Multiwindow, multi-burn-rate alerting (Google SRE workbook) over time-bucketed counts.

The burn rate of a window is its error ratio divided by the error budget (``1 - target``): at
1 the budget lasts exactly the SLO window. An alert pair fires when both its long and its short
window burn faster than the pair's factor; the short window makes the alert resolve soon after
the burning stops. The pairs are the workbook's recommended parameters for a 30-day budget:

| severity | long | short | factor | budget spent in the long window (30 d) |
|---|---|---|---|---|
| page   | 1h | 5m  | 14.4 | 2 % |
| page   | 6h | 30m | 6    | 5 % |
| ticket | 1d | 2h  | 3    | 10 % (Sloth's addition) |
| ticket | 3d | 6h  | 1    | 10 % |

The factors are used as they are for any SLO window (a 28-day window spends 2.1 % of its
budget in the hour that trips the first page). Sloth's 1d/2h ticket pair is the one addition:
it tickets a sustained 3x burn a day earlier than 3d/6h would.

Everything here is pure: :func:`evaluate_slo` reads :class:`~infertrail.slo.sli.EventCounts`
at a bucket boundary and returns an :class:`SLOStatus`; nothing sleeps, nothing is global.
Evaluation at time ``t`` counts the whole buckets before ``t`` (the bucket being filled is not
yet complete), as a Prometheus ``rate()`` over scrapes up to ``t`` counts what was scraped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from infertrail.slo.definitions import SLO, format_duration
from infertrail.slo.sli import EventCounts

AlertSeverity = Literal["page", "ticket"]


@dataclass(frozen=True)
class BurnRateAlert:
    """One (long, short) window pair and the burn-rate factor both must exceed."""

    severity: AlertSeverity
    long_s: int
    short_s: int
    factor: float


WORKBOOK_POLICY: tuple[BurnRateAlert, ...] = (
    BurnRateAlert("page", 3600, 300, 14.4),
    BurnRateAlert("page", 6 * 3600, 1800, 6.0),
    BurnRateAlert("ticket", 86400, 2 * 3600, 3.0),
    BurnRateAlert("ticket", 3 * 86400, 6 * 3600, 1.0),
)
#: The error-ratio windows recorded for every SLO: each window of the policy.
RATIO_WINDOWS_S: tuple[int, ...] = tuple(
    sorted({w for a in WORKBOOK_POLICY for w in (a.long_s, a.short_s)})
)
SEVERITIES: tuple[AlertSeverity, ...] = ("page", "ticket")


@dataclass(frozen=True)
class WindowCounts:
    """Good and total events of one window."""

    good: int
    total: int

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def error_ratio(self) -> float:
        """``1 - good/total`` as the exported recording rule computes it; NaN with no events."""
        return 1 - self.good / self.total if self.total else math.nan


@dataclass(frozen=True)
class SLOStatus:
    """One SLO evaluated at one time: windows, burn rates, alert conditions, budget left."""

    slo: SLO
    at: float
    windows: dict[int, WindowCounts]
    period: WindowCounts
    firing: dict[AlertSeverity, bool]
    margins: dict[AlertSeverity, float]

    def error_ratio(self, window_s: int) -> float:
        """Error ratio of a recorded window (NaN without events)."""
        return self.windows[window_s].error_ratio

    def burn_rate(self, window_s: int) -> float:
        """Error ratio over the error budget: 1 spends the budget in exactly the SLO window."""
        return self.windows[window_s].error_ratio / self.slo.error_budget

    @property
    def budget_remaining(self) -> float:
        """Share of the SLO window's error budget not yet spent (negative when overspent).

        ``1 - bad / (budget x total)`` over the SLO window: by occurrences, so an hour of heavy
        traffic weighs more than a quiet hour. 1.0 when the window holds no events.
        """
        if not self.period.total:
            return 1.0
        return 1 - self.period.error_ratio / self.slo.error_budget

    def signals(self) -> dict[str, float]:
        """Signal values for the alert engine (docs/slo.md lists them)."""
        key = f"slo.{self.slo.signal_key}"
        out = {f"{key}.burn.{sev}": self.margins[sev] for sev in SEVERITIES}
        out[f"{key}.error_budget_remaining"] = self.budget_remaining
        for w in RATIO_WINDOWS_S:
            out[f"{key}.burn_rate.{format_duration(w)}"] = self.burn_rate(w)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (NaN as None)."""
        return {
            "slo": self.slo.name,
            "service": self.slo.service,
            "model": self.slo.model,
            "objective": self.slo.objective,
            "window": self.slo.window,
            "at": self.at,
            "period": {"good": self.period.good, "total": self.period.total},
            "error_budget_remaining": self.budget_remaining,
            "windows": {
                format_duration(w): {
                    "good": c.good,
                    "total": c.total,
                    "error_ratio": _finite(c.error_ratio),
                    "burn_rate": _finite(self.burn_rate(w)),
                }
                for w, c in self.windows.items()
            },
            "alerts": {
                sev: {"firing": self.firing[sev], "value": self.margins[sev]} for sev in SEVERITIES
            },
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def alert_threshold(slo: SLO, factor: float) -> float:
    """The error ratio a window must exceed: ``factor x budget``, as the exported rule has it."""
    return factor * slo.error_budget


def evaluate_slo(
    slo: SLO,
    counts: EventCounts,
    at: float,
    policy: Sequence[BurnRateAlert] = WORKBOOK_POLICY,
) -> SLOStatus:
    """Evaluate ``slo`` at ``at`` (epoch seconds) from its counts; read them under their lock."""
    b = counts.bucket_s
    end = int(at // b)
    windows = {w: WindowCounts(*counts.window(end, w // b)) for w in RATIO_WINDOWS_S}
    period = WindowCounts(*counts.window(end, slo.window_s // b))
    firing: dict[AlertSeverity, bool] = {}
    margins: dict[AlertSeverity, float] = {}
    for sev in SEVERITIES:
        pairs = [a for a in policy if a.severity == sev]
        fired = False
        margin = 0.0
        for a in pairs:
            threshold = alert_threshold(slo, a.factor)
            long_r, short_r = windows[a.long_s].error_ratio, windows[a.short_s].error_ratio
            # NaN (no events) compares false, as in PromQL.
            fired = fired or (long_r > threshold and short_r > threshold)
            if not (math.isnan(long_r) or math.isnan(short_r)):
                margin = max(margin, min(long_r, short_r) / threshold)
        firing[sev] = fired
        margins[sev] = _consistent(fired, margin)
    return SLOStatus(slo, at, windows, period, firing, margins)


def _consistent(fired: bool, margin: float) -> float:
    """The margin, nudged so that ``margin > 1`` is exactly the workbook condition.

    ``r > t`` and ``r / t > 1`` can disagree by one rounding when r is within an ulp of t; the
    engine's rule is ``> 1`` on the margin, and must fire exactly when Prometheus would.
    """
    if fired and not margin > 1:
        return math.nextafter(1.0, 2.0)
    if not fired and margin > 1:
        return 1.0
    return margin
