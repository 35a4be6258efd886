"""SLOs and alerts: budget remaining, multi-window burn rates, their history, open alerts.

- Per SLO, the status the evaluator computed last (``SLOEvaluator.latest``, what the alert
  engine judged); before its first run, the same computation over the counts now.
- Burn rates over a time range (``?from=&to=``, default the last 6 hours): recomputed from the
  SLO's per-bucket counts (``EventCounts``) exactly as :func:`~infertrail.slo.burnrate.evaluate_slo`
  does at each point, so the chart and the evaluator never disagree.
- Alert history: the alert engine persists each alert's current state, not its past
  (``alerting/state.py``), so the history of the burn-rate alerts is recomputed from the same
  counts: every interval of the range in which a severity's workbook condition held (both
  windows of a pair above ``factor x budget``), with its start, end and peak.
- Open alerts: every rule firing now in the alert engine (SLO and drift rules alike), since
  when and at what value, and the state of each (rule, model) the engine knows.

Telemetry only: every role.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from infertrail.compliance.filters import QueryError, parse_instant
from infertrail.console.app import Console, PageContext, PageError
from infertrail.console.svg import Series, line_chart
from infertrail.slo.burnrate import (
    RATIO_WINDOWS_S,
    SEVERITIES,
    WORKBOOK_POLICY,
    SLOStatus,
    alert_threshold,
    evaluate_slo,
)
from infertrail.slo.definitions import SLO, format_duration

if TYPE_CHECKING:
    from infertrail.alerting.engine import AlertEngine

__all__ = ["BucketHistory", "register", "slos_page"]

_DEFAULT_RANGE = timedelta(hours=6)
_MAX_RANGE = timedelta(days=7)
#: Points per chart line (the history's intervals use every bucket).
_CHART_POINTS = 180
#: Burn-rate windows charted: the short and long windows of the fast page pair and of the
#: slow one (all of them stay in the table).
_CHARTED_WINDOWS_S = (300, 3600, 6 * 3600)


def register(console: Console) -> None:
    @console.page("slos", title="SLOs & alerts")
    def slos(ctx: PageContext) -> dict[str, Any]:
        return slos_page(ctx)

    console.env.globals["burn_chart"] = burn_chart


@dataclass(frozen=True)
class BucketHistory:
    """One SLO's counted buckets as prefix sums: any window's (good, total) in O(log n)."""

    bucket_s: int
    indexes: list[int]
    good: list[int]  # prefix sums: good[i] = sum of the first i buckets' good events
    total: list[int]

    @classmethod
    def of(cls, bucket_s: int, nonzero: list[tuple[int, int, int]]) -> BucketHistory:
        """From ``EventCounts.nonzero()`` (bucket index, good, total; oldest first)."""
        return cls(
            bucket_s,
            [i for i, _, _ in nonzero],
            [0, *accumulate(g for _, g, _ in nonzero)],
            [0, *accumulate(t for _, _, t in nonzero)],
        )

    def window(self, end: int, k: int) -> tuple[int, int]:
        """(good, total) in the ``k`` buckets before bucket ``end`` (as EventCounts.window)."""
        lo = bisect.bisect_left(self.indexes, end - k)
        hi = bisect.bisect_left(self.indexes, end)
        return self.good[hi] - self.good[lo], self.total[hi] - self.total[lo]

    def burn_rate(self, slo: SLO, at: float, window_s: int) -> float | None:
        """The burn rate of the window ending at ``at`` (None: no events in it)."""
        good, total = self.window(int(at // self.bucket_s), window_s // self.bucket_s)
        return None if not total else (1 - good / total) / slo.error_budget

    def firing(self, slo: SLO, at: float) -> dict[str, float | None]:
        """Per severity: the largest margin of its pairs whose both windows burn above the
        threshold at ``at`` (None when no pair does), as evaluate_slo judges."""
        out: dict[str, float | None] = {}
        for sev in SEVERITIES:
            best = None
            for pair in (p for p in WORKBOOK_POLICY if p.severity == sev):
                threshold = alert_threshold(slo, pair.factor)
                ratios = []
                for w in (pair.long_s, pair.short_s):
                    good, total = self.window(int(at // self.bucket_s), w // self.bucket_s)
                    ratios.append(1 - good / total if total else math.nan)
                if all(r > threshold for r in ratios):
                    margin = min(ratios) / threshold
                    best = margin if best is None else max(best, margin)
            out[sev] = best
        return out


def slos_page(ctx: PageContext) -> dict[str, Any]:
    """The page's data over ``?from=&to=`` (see the module doc)."""
    start, end = _range(ctx)
    runtime = ctx.runtime
    engine = runtime.alerting.engine if runtime.alerting else None
    out: dict[str, Any] = {
        "time_range": {"from": start, "to": end, "from_text": _iso(start), "to_text": _iso(end)},
        "slos": [],
        "note": None,
        "alerts": _alerts(engine),
    }
    service = runtime.slo
    if service is None:
        out["note"] = "no SLOs are defined on this service (slo_file)"
        return out
    counter = service.counter
    latest = {st.slo.name: st for st in service.evaluator.latest}
    now = datetime.now(UTC).timestamp()
    at_now = math.floor(now / counter.bucket_s) * counter.bucket_s
    with counter.locked():  # copied under the lock; all the arithmetic happens after it
        snapshot = {
            slo.name: (slo, counter.counts(slo.name).nonzero(), latest.get(slo.name))
            for slo in counter.slos
        }
        computed = {
            name: evaluate_slo(slo, counter.counts(name), at_now)
            for name, (slo, _, status) in snapshot.items()
            if status is None
        }
    for name, (slo, nonzero, status) in snapshot.items():
        history = BucketHistory.of(counter.bucket_s, nonzero)
        shown = status or computed[name]
        out["slos"].append(
            {
                **_status(shown),
                "evaluated_by": "evaluator" if status is not None else "page",
                "history": _history(slo, history, start, end),
            }
        )
    return out


def _range(ctx: PageContext) -> tuple[float, float]:
    """The range asked for (epoch seconds): both of ``from``/``to`` or neither."""
    first, last = ctx.param("from"), ctx.param("to")
    now = datetime.now(UTC)
    if not first and not last:
        return (now - _DEFAULT_RANGE).timestamp(), now.timestamp()
    try:
        start = _instant(first, "from")
        end = _instant(last, "to") if last else now
    except QueryError as exc:
        raise PageError(422, str(exc)) from None
    if end <= start:
        raise PageError(422, f"to: {end.isoformat()} is not after from={start.isoformat()}")
    if end - start > _MAX_RANGE:
        raise PageError(422, f"to: the range is longer than {_MAX_RANGE.days} days")
    return start.timestamp(), end.timestamp()


def _instant(value: str, field: str) -> datetime:
    """An RFC 3339 time, a date, or epoch seconds (what the chart's zoom links carry)."""
    try:
        seconds = float(value)
    except ValueError:
        return parse_instant(value, field)
    if not math.isfinite(seconds) or not 0 <= seconds < 1e11:
        raise QueryError(field, f"{value[:40]!r} is not a time")
    return datetime.fromtimestamp(seconds, UTC)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _status(st: SLOStatus) -> dict[str, Any]:
    slo = st.slo
    return {
        "name": slo.name,
        "description": slo.description,
        "model": slo.model,
        "objective": slo.objective,
        "window": slo.window,
        "sli": slo.sli.kind,
        "at": st.at,
        "budget_remaining": st.budget_remaining if st.period.total else None,
        "period": {"good": st.period.good, "total": st.period.total},
        "windows": [
            {
                "window": format_duration(w),
                "good": st.windows[w].good,
                "total": st.windows[w].total,
                "error_ratio": _finite(st.windows[w].error_ratio),
                "burn_rate": _finite(st.burn_rate(w)),
            }
            for w in RATIO_WINDOWS_S
        ],
        "alerts": [
            {
                "severity": sev,
                "firing": st.firing[sev],
                # evaluate_slo's margin is 0 when no pair had events in both its windows: that
                # is no measurement, shown as missing.
                "margin": st.margins[sev]
                if any(
                    st.windows[p.long_s].total and st.windows[p.short_s].total
                    for p in WORKBOOK_POLICY
                    if p.severity == sev
                )
                else None,
                "pairs": [
                    {
                        "long": format_duration(p.long_s),
                        "short": format_duration(p.short_s),
                        "factor": p.factor,
                        "threshold": alert_threshold(slo, p.factor),
                    }
                    for p in WORKBOOK_POLICY
                    if p.severity == sev
                ],
            }
            for sev in SEVERITIES
        ],
    }


def _history(slo: SLO, history: BucketHistory, start: float, end: float) -> dict[str, Any]:
    """Burn rates over [start, end] for the chart, and the intervals each severity fired."""
    b = history.bucket_s
    first = math.ceil(start / b) * b
    last = math.floor(end / b) * b
    stride = max(b, math.ceil((last - first) / _CHART_POINTS / b) * b) if last > first else b
    chart_at = list(range(int(first), int(last) + 1, int(stride)))
    series = {
        format_duration(w): [(t, history.burn_rate(slo, t, w)) for t in chart_at]
        for w in _CHARTED_WINDOWS_S
    }
    intervals: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for t in range(int(first), int(last) + 1, b):
        for sev, margin in history.firing(slo, t).items():
            current = open_.get(sev)
            if margin is not None and current is None:
                open_[sev] = {"severity": sev, "start": t, "end": None, "peak": margin}
            elif margin is not None and current is not None:
                current["peak"] = max(current["peak"], margin)
            elif margin is None and current is not None:
                current["end"] = t
                intervals.append(open_.pop(sev))
    intervals += open_.values()  # still firing at the end of the range
    intervals.sort(key=lambda i: (i["start"], i["severity"]))
    return {"series": series, "fired": intervals}


def _alerts(engine: AlertEngine | None) -> dict[str, Any]:
    """Open alerts and every (rule, model) state of the engine."""
    if engine is None:
        return {"configured": False, "open": [], "states": [], "undelivered": 0}
    rules = {r.name: r for r in engine.rules}
    states = []
    for (rule_name, model), state in sorted(engine.states().items()):
        rule = rules.get(rule_name)
        states.append(
            {
                "rule": rule_name,
                "model": model,
                "signal": rule.signal if rule else None,
                "status": state.status,
                "breaches": state.breaches,
                "clean": state.clean,
                "for_windows": rule.for_windows if rule else None,
                "resolve_after": rule.resolve_after if rule else None,
                "last_evaluated": state.last_at.isoformat() if state.last_at else None,
            }
        )
    open_alerts = [
        {
            "rule": t.rule,
            "model": t.model,
            "signal": t.signal,
            "severity": t.severity,
            "value": _finite(t.value),
            "condition": f"{t.comparison} {t.threshold:g}",
            "since": t.started_at.isoformat(),
            "summary": t.summary,
        }
        for t in sorted(engine.firing(), key=lambda t: t.started_at)
    ]
    return {
        "configured": True,
        "open": open_alerts,
        "states": states,
        "undelivered": len(engine.pending_deliveries()),
    }


def burn_chart(slo: dict[str, Any], range_: dict[str, float], zoom: str = "") -> Markup:
    """The SLO's burn rates over the page's range (a missing point, no events, is a gap)."""
    series = [Series(f"burn rate {w}", points) for w, points in slo["history"]["series"].items()]
    return line_chart(
        series,
        y_label="burn rate (1 = the budget lasts the SLO window)",
        title=f"{slo['name']}: burn rates",
        x_range=(range_["from"], range_["to"]),
        zoom_url=(lambda lo, hi: f"{zoom}?from={lo:.0f}&to={hi:.0f}") if zoom else None,
    )
