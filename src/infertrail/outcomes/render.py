"""A performance report as JSON-ready data (API, ``--format json``) or as a text table.

Each group shows the realized metrics of its joined outcomes and, when the report has
estimates, CBPE's estimate of each metric over all the group's predictions side by side with the
same metric realized (docs/outcomes.md, "Estimated beside realized").
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from infertrail.events import rfc3339_micros
from infertrail.outcomes.estimated import EstimatedPerformance
from infertrail.outcomes.join import Band, GroupReport, PerformanceReport

__all__ = ["report_as_dict", "report_as_table"]

_RATE_NAME = {"binary": "positive rate", "multiclass": "accuracy", "value": "mean value"}


def _time(ns: int | None) -> str | None:
    return None if ns is None else rfc3339_micros(ns)


def _group(g: GroupReport) -> dict[str, Any]:
    return {
        "model": g.model,
        "version": g.version,
        "window_start": _time(g.window_start_ns),
        "positive": g.spec.positive,
        "threshold": g.spec.threshold,
        **g.performance.as_dict(),
        "kpi_rate": _RATE_NAME[g.performance.mode],
        "by_score": [asdict(b) for b in g.by_score],
        "by_latency_ms": [
            {**asdict(b), "upper": None if b.upper == float("inf") else b.upper}
            for b in g.by_latency
        ],
        "estimated": None if g.estimated is None else g.estimated.as_dict(),
    }


def report_as_dict(report: PerformanceReport) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {
        "kind": report.kind,
        "from": _time(report.start_ns),
        "to": _time(report.end_ns),
        "every_s": report.every_s,
        "groups": [_group(g) for g in report.groups],
    }


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _bands(title: str, bands: list[Band], rate: str, unit: str) -> list[str]:
    lines = [f"  {title:<18} {'n':>7} {rate:>14} {'mean score':>11}"]
    for b in bands:
        if not b.count:
            continue
        upper = "inf" if b.upper == float("inf") else f"{b.upper:g}"
        span = f"({b.lower:g}, {upper}]{unit}"
        lines.append(
            f"  {span:<18} {b.count:>7} {_num(b.outcome_rate):>14} {_num(b.mean_score):>11}"
        )
    return lines


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.4f}"


def _estimated(e: EstimatedPerformance) -> list[str]:
    """The side-by-side table: per metric the estimate, its band, the realized value, the gap."""
    if e.status != "estimated":
        return [f"  estimated: none ({e.reason})"]
    lines = [
        f"  estimated (cbpe) over {e.n_estimated} of {e.n_predictions} predictions, realized "
        f"over the {e.n_realized} with outcomes",
        f"  {'metric':<10} {'estimated':>10} {'band (3 se)':>18} {'realized':>10} "
        f"{'est - real':>11}  flags",
    ]
    for m in e.metrics:
        lo, hi = m.estimate.lower_band, m.estimate.upper_band
        band = "-" if lo is None or hi is None else f"[{lo:.4f}, {hi:.4f}]"
        flags = ", ".join(
            flag
            for flag, on in (
                ("outside reference thresholds", m.estimate.alert),
                ("gap beyond sampling error", m.beyond_sampling_error),
            )
            if on
        )
        lines.append(
            f"  {m.name:<10} {_num(m.estimate.value):>10} {band:>18} {_num(m.realized):>10} "
            f"{_signed(m.difference):>11}  {flags}".rstrip()
        )
    return lines


def report_as_table(report: PerformanceReport) -> str:
    """A readable summary per group: metrics, reliability, outcome rate by score and latency."""
    head = f"outcomes of kind {report.kind!r}"
    if report.start_ns is not None or report.end_ns is not None:
        head += (
            f", predictions {_time(report.start_ns) or '...'} .. {_time(report.end_ns) or '...'}"
        )
    lines = [head]
    if not report.groups:
        lines.append("no joined outcomes")
    for g in report.groups:
        p = g.performance
        title = f"{g.model} {g.version}"
        if g.window_start_ns is not None:
            title += f" window {_time(g.window_start_ns)}"
        how = {
            "binary": f"binary, positive = {g.spec.positive!r}, threshold {g.spec.threshold:g}",
            "multiclass": "multiclass (top-label calibration)",
            "value": "numeric outcomes",
        }[p.mode]
        lines += [
            "",
            f"{title}: {p.n} joined, {p.n_used} used; {how}",
            f"  accuracy {_num(p.accuracy)}  precision {_num(p.precision)}  recall "
            f"{_num(p.recall)}  roc_auc {_num(p.roc_auc)}  brier {_num(p.brier)}  "
            f"positive_rate {_num(p.positive_rate)}  mean_value {_num(p.mean_value)}",
        ]
        if p.reliability:
            lines.append(f"  {'reliability bin':<18} {'n':>7} {'predicted':>14} {'observed':>11}")
            for r in p.reliability:
                span = f"({r.lower:g}, {r.upper:g}]"
                lines.append(
                    f"  {span:<18} {r.count:>7} {r.mean_predicted:>14.4f} {r.observed:>11.4f}"
                )
        if g.estimated is not None:
            lines += _estimated(g.estimated)
        rate = _RATE_NAME[p.mode]
        lines += _bands("score band", g.by_score, rate, "")
        lines += _bands("latency bucket", g.by_latency, rate, " ms")
    return "\n".join(lines) + "\n"
