"""Overview: each model version's health over a time range, on one page.

Per model and version: traffic, p50/p99 latency, error rate and mean confidence (aggregates of
the audit records in the range, :mod:`infertrail.console.data`), and the traffic and latency
charts; per model: the state of each drift feature group in the latest judged window; the SLOs'
error budgets and burn rates now; the attributed cost over the range; the alerts firing now.
Only aggregates: every logged-in role sees this page, including those that may not see
decisions.

Query parameters: ``range`` (1h, 6h, 24h, 7d; default 24h) or ``from``/``to`` (epoch seconds
or RFC 3339 times; the charts' zoom links use them); anything else is answered 400 naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from infertrail.console.app import Console, PageContext, PageError
from infertrail.console.data import (
    RANGES,
    ModelStats,
    RangeError,
    TimeRange,
    bucket_seconds,
    lake_slice,
    model_series,
    model_stats,
    parse_range,
)
from infertrail.console.svg import Chart, Series, zoom_ranges
from infertrail.cost.attribution import cost_db_path
from infertrail.cost.report import cost_report
from infertrail.slo.burnrate import RATIO_WINDOWS_S, evaluate_slo
from infertrail.slo.definitions import format_duration

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftReport
    from infertrail.runtime.assembly import Runtime

_PARAMS = frozenset({"range", "from", "to"})
#: Burn-rate windows shown per SLO (the workbook's long windows; the SLO page has them all).
_BURN_WINDOWS_S = tuple(w for w in RATIO_WINDOWS_S if w in (300, 3600, 6 * 3600, 86400))


def register(console: Console) -> None:
    @console.page("overview", title="Overview")
    def overview(ctx: PageContext) -> dict[str, Any]:
        unknown = sorted(set(ctx.request.query_params) - _PARAMS)
        if unknown:
            raise PageError(400, f"{unknown[0]}: unknown parameter; valid: range, from, to")
        try:
            span = parse_range(
                ctx.param("range"), ctx.param("from"), ctx.param("to"), datetime.now(UTC)
            )
        except RangeError as exc:
            raise PageError(400, str(exc)) from None
        return build(ctx.runtime, span, console.url)


def build(runtime: Runtime, span: TimeRange, url: Callable[..., str]) -> dict[str, Any]:
    """The page's data for ``span`` (``url`` builds console links: ``Console.url``)."""
    stats: list[ModelStats] = []
    series: dict[str, list[Any]] = {}
    bucket = bucket_seconds(span)
    lake_note = None
    if runtime.compliance is not None:
        source = lake_slice(runtime.compliance.engine, span)
        stats = model_stats(source, span)
        series = model_series(source, span, bucket)
    else:
        lake_note = "The audit trail is off in this service: no traffic figures."
    lo, hi = span.start.timestamp(), span.end.timestamp()

    def zoom(a: float, b: float) -> str:
        return url("overview", **{"from": int(a), "to": math.ceil(b)})

    # Every bucket of the range: one without records had no requests (0 on the traffic chart)
    # and has no latency (a gap in the p99 line, never a made-up 0).
    buckets = range(int(lo // bucket) * bucket, int(hi) + 1, bucket)
    by_bucket = {name: {p.at: p for p in points} for name, points in series.items()}
    per_minute = bucket / 60
    traffic = Chart(
        [Series(name, [(b, got[b].requests / per_minute if b in got else 0.0) for b in buckets])
         for name, got in by_bucket.items()],
        title="Requests per minute",
        y_label="requests / min",
        x_range=(lo, hi),
        zoom_url=zoom,
    )  # fmt: skip
    latency = Chart(
        [Series(name, [(b, got[b].p99_ms if b in got else None) for b in buckets])
         for name, got in by_bucket.items()],
        title="p99 latency",
        y_label="p99 latency (ms)",
        x_range=(lo, hi),
        zoom_url=zoom,
    )  # fmt: skip
    return {
        "range": span.to_dict(),
        "ranges": [{"name": n, "url": url("overview", range=n)} for n in RANGES],
        "zoom": [
            {
                "from": datetime.fromtimestamp(a, UTC),
                "to": datetime.fromtimestamp(b, UTC),
                "url": zoom(a, b),
            }
            for a, b in zoom_ranges(lo, hi, 4)
        ],
        "bucket_s": bucket,
        "lake_note": lake_note,
        "models": _models(runtime, stats, url),
        "charts": {"traffic": traffic, "latency": latency},
        "drift": _drift(runtime, url),
        "slos": _slos(runtime),
        "cost": _cost(runtime, span),
        "alerts": _alerts(runtime),
    }


def _models(
    runtime: Runtime, stats: list[ModelStats], url: Callable[..., str]
) -> list[dict[str, Any]]:
    """One row per model version with traffic, then served versions without any (all missing)."""
    rows = [s.to_dict() for s in stats]
    seen = {(s.model, s.version) for s in stats}
    for m in runtime.models:
        if (m.name, m.version) not in seen:
            rows.append(
                {"model": m.name, "version": m.version, "requests": 0, "errors": 0,
                 "error_rate": None, "p50_ms": None, "p99_ms": None, "mean_confidence": None,
                 "with_confidence": 0, "first": None, "last": None}
            )  # fmt: skip
    rows.sort(key=lambda r: (r["model"], r["version"]))
    for row in rows:
        row["drift_url"] = url("drift", model=row["model"])
        row["explorer_url"] = url("explorer", model=row["model"], version=row["version"])
    return rows


def _state(drifted: object) -> str:
    return "drift" if drifted is True else "ok" if drifted is False else "unknown"


def _groups(report: DriftReport) -> list[dict[str, Any]]:
    """The latest window's verdict per feature group: the inputs (univariate tests), the
    model's outputs, then each window analyzer's section (multivariate, data quality, ...)."""
    drifted_features = [f.name for f in report.features if f.drifted]
    groups = [
        {
            "group": "inputs",
            "state": _state(report.dataset_drift),
            "detail": f"{report.n_drifted} of {len(report.features)} features drifted"
            + (f": {', '.join(drifted_features[:5])}" if drifted_features else ""),
        }
    ]
    pred = report.prediction
    checks = [c for c in (pred.label, pred.confidence) if c is not None]
    groups.append(
        {
            "group": "prediction",
            "state": _state(any(c.drifted for c in checks) if checks else None),
            "detail": ", ".join(f"{c.name}: {'drifted' if c.drifted else 'stable'}"
                                for c in checks) or "no prediction profile",
        }
    )  # fmt: skip
    for name, section in sorted(report.sections.items()):
        groups.append(
            {
                "group": name,
                "state": _state(_section_drifted(section)),
                "detail": str(section.get("skipped") or ""),
            }
        )
    return groups


def _section_drifted(section: Mapping[str, Any]) -> bool | None:
    """An analyzer section's verdict: its ``drifted`` flag, or any of its parts' (None when
    none says)."""
    if isinstance(section.get("drifted"), bool):
        return bool(section["drifted"])
    verdicts = [
        part["drifted"]
        for part in section.values()
        if isinstance(part, Mapping) and isinstance(part.get("drifted"), bool)
    ]
    return any(verdicts) if verdicts else None


def _drift(runtime: Runtime, url: Callable[..., str]) -> list[dict[str, Any]]:
    out = []
    for name, monitor in sorted(runtime.drift.items()):
        report = monitor.latest
        out.append(
            {
                "model": name,
                "url": url("drift", model=name),
                "windows": len(monitor.reports),
                "window_closed": None if report is None else report.closed_at,
                "n_samples": None if report is None else report.n_samples,
                "ood_rate": None if report is None else _finite(report.ood_rate),
                "groups": [] if report is None else _groups(report),
            }
        )
    return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _slos(runtime: Runtime) -> list[dict[str, Any]] | None:
    """Every SLO evaluated now (at the last whole bucket) from the live counts; None when the
    service has no SLOs."""
    service = runtime.slo
    if service is None:
        return None
    counter = service.counter
    at = math.floor(datetime.now(UTC).timestamp() / counter.bucket_s) * counter.bucket_s
    with counter.locked():
        statuses = [evaluate_slo(slo, counter.counts(slo.name), at) for slo in counter.slos]
    return [
        {
            "slo": st.slo.name,
            "model": st.slo.model,
            "objective": st.slo.objective,
            "window": st.slo.window,
            "events": st.period.total,
            "budget_remaining": st.budget_remaining if st.period.total else None,
            "burn_rates": [
                {"window": format_duration(w), "rate": _finite(st.burn_rate(w))}
                for w in _BURN_WINDOWS_S
            ],
            "firing": [sev for sev, fired in st.firing.items() if fired],
        }
        for st in statuses
    ]


def _cost(runtime: Runtime, span: TimeRange) -> dict[str, Any] | None:
    """The attributed cost per model version over the whole hours covering ``span``."""
    if runtime.cost is None:
        return None
    report = cost_report(
        cost_db_path(runtime.settings), start=span.start, end=span.end, by=("model", "version")
    )
    return {
        "from": report.start,
        "to": report.end,
        "currency": report.currency,
        "rows": [
            {
                "model": r.group.get("model"),
                "version": r.group.get("version"),
                "requests": r.requests,
                "cost": r.total,
            }
            for r in report.rows
        ],
        "shared": sum(r.total for r in report.shared),
        "total": report.total,
    }


def _alerts(runtime: Runtime) -> list[dict[str, Any]] | None:
    """The alerts firing now, most severe and oldest first; None without an alert engine."""
    if runtime.alerting is None:
        return None
    firing = runtime.alerting.engine.firing()
    rank = {"critical": 0, "error": 1, "warning": 2, "info": 3}
    firing.sort(key=lambda t: (rank[t.severity], t.started_at))
    return [
        {"rule": t.rule, "model": t.model, "severity": t.severity, "summary": t.summary,
         "signal": t.signal, "value": _finite(t.value), "threshold": t.threshold,
         "comparison": t.comparison, "since": t.started_at}
        for t in firing
    ]  # fmt: skip
