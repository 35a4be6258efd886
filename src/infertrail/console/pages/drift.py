"""Drift: per model and feature, how the live windows compare with the reference over time.

Everything comes from the drift monitor's recent reports (``DriftMonitor.reports``, the last
``keep_reports`` windows, in memory) and its reference profile:

- per feature: each window's statistic, p-value, distance and threshold, and which windows
  fired; the reference's summary (mean, spread, quantiles; or its category shares);
- the model's outputs, where reports carry the live distribution itself: the label mix of
  each window against the reference's label shares, and the confidence mean against the
  reference's;
- the alert rules on the model's drift signals and their state in the alert engine.

A report keeps a feature's test result, not its live distribution: the live side of an input
feature is its distance from the reference, window by window. Telemetry only: every role.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from infertrail.console.app import Console, PageContext, PageError
from infertrail.console.svg import Series, line_chart

if TYPE_CHECKING:
    from infertrail.alerting.engine import AlertEngine
    from infertrail.drift.detector import DriftReport
    from infertrail.drift.profile import FeatureProfile
    from infertrail.drift.window import DriftMonitor

__all__ = ["drift_chart", "drift_page", "prediction_chart", "register"]

#: Signals a drift report feeds to the alert engine (runtime.alerts.drift_signals and the
#: window analyzers' ``report.signals``): rules on these are the model's drift rules.
DRIFT_SIGNAL_PREFIXES = (
    "drift.",
    "ood.",
    "prediction.",
    "quality.",
    "multivariate.",
    "embedding.",
    "estimated.",
)


def register(console: Console) -> None:
    @console.page("drift", title="Drift")
    def drift(ctx: PageContext) -> dict[str, Any]:
        return drift_page(ctx)

    console.env.globals["drift_chart"] = drift_chart
    console.env.globals["prediction_chart"] = prediction_chart


def drift_page(ctx: PageContext) -> dict[str, Any]:
    """The page's data for ``?model=`` (default: the first monitored) and ``?feature=``."""
    monitors = ctx.runtime.drift
    names = sorted(monitors)
    out: dict[str, Any] = {
        "models": names,
        "model": None,
        "feature": None,
        "detail": None,
        "note": None,
    }
    if not names:
        out["note"] = (
            "no model is drift-monitored on this service (drift needs a reference profile "
            "beside the model, and drift_enabled)"
        )
        return out
    model = ctx.param("model") or names[0]
    if model not in monitors:
        raise PageError(422, f"model: {model[:60]!r} is not drift-monitored; valid: {names}")
    monitor = monitors[model]
    reports = monitor.reports
    features = monitor.profile.feature_names
    feature = ctx.param("feature") or None
    if feature is not None and feature not in features:
        raise PageError(
            422, f"feature: {feature[:60]!r} is not a feature of {model}; valid: {features}"
        )
    out.update(
        model=model,
        feature=feature,
        features=features,
        window_size=monitor.window_size,
        window_seconds=monitor.window_seconds,
        n_reports=len(reports),
        windows=[_window_row(r) for r in reversed(reports)],
        summary=[_feature_summary(name, reports) for name in features],
        prediction=_prediction(monitor, reports),
        alerts=_alert_rules(ctx.runtime.alerting.engine if ctx.runtime.alerting else None, model),
    )
    if feature is not None:
        out["detail"] = _feature_detail(monitor, feature, reports)
    return out


# -- per feature ---------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _feature_summary(name: str, reports: list[DriftReport]) -> dict[str, Any]:
    """A feature's latest verdict and how many of the kept windows it drifted in."""
    verdicts = [f for r in reports for f in r.features if f.name == name]
    latest = verdicts[-1] if verdicts else None
    return {
        "name": name,
        "method": latest.method if latest else None,
        "statistic": _finite(latest.statistic) if latest else None,
        "p_value": _finite(latest.p_value) if latest else None,
        "distance": _finite(latest.distance) if latest else None,
        "threshold": _finite(latest.threshold) if latest else None,
        "drifted": latest.drifted if latest else None,
        "windows_drifted": sum(f.drifted for f in verdicts),
        "windows": len(verdicts),
    }


def _feature_detail(monitor: DriftMonitor, name: str, reports: list[DriftReport]) -> dict[str, Any]:
    """One feature over time: every kept window's verdict, and the reference's summary."""
    points = []
    for r in reports:
        for f in r.features:
            if f.name == name:
                points.append(
                    {
                        "closed_at": r.closed_at,
                        "n_samples": r.n_samples,
                        "method": f.method,
                        "statistic": _finite(f.statistic),
                        "p_value": _finite(f.p_value),
                        "distance": _finite(f.distance),
                        "threshold": _finite(f.threshold),
                        "drifted": f.drifted,
                        # What the verdict compares with the threshold (see drift_chart).
                        "judged": _finite(f.p_value if f.p_value is not None else f.statistic),
                    }
                )
    column = next(c for c in monitor.profile.columns if c.name == name)
    return {
        "name": name,
        "reference": _reference(column),
        "points": points,
        "fired": [p for p in points if p["drifted"]],
    }


def _reference(column: FeatureProfile) -> dict[str, Any]:
    """What the reference says of a feature: numbers for a numerical one, shares for a
    categorical one (the profile's own values; nothing recomputed)."""
    out: dict[str, Any] = {"kind": column.kind, "count": column.count, "n_unique": column.n_unique}
    if column.category_counts is not None and column.categories:
        total = int(column.category_counts.sum()) or 1
        out["shares"] = {
            str(cat): int(n) / total
            for cat, n in zip(column.categories, column.category_counts, strict=False)
        }
    else:
        out["shares"] = None
    for key in ("mean", "std", "q_low", "q_high"):
        out[key] = _finite(getattr(column, key))
    return out


# -- the model's outputs -------------------------------------------------------------------


def _prediction(monitor: DriftMonitor, reports: list[DriftReport]) -> dict[str, Any]:
    """Label mix and confidence mean per window, with the reference's values to compare."""
    profile = monitor.profile
    reference_shares = _reference(profile.prediction)["shares"] if profile.prediction else None
    labels = sorted(
        {k for r in reports for k in r.prediction.label_shares} | set(reference_shares or {})
    )
    return {
        "labels": labels,
        "reference_shares": reference_shares,
        "reference_confidence_mean": _finite(profile.confidence.mean)
        if profile.confidence
        else None,
        "windows": [
            {
                "closed_at": r.closed_at,
                "label_shares": {k: r.prediction.label_shares.get(k) for k in labels},
                "confidence_mean": _finite(r.prediction.confidence_mean),
                "low_confidence_rate": _finite(r.prediction.low_confidence_rate),
                "label_distance": _finite(r.prediction.label.distance)
                if r.prediction.label
                else None,
            }
            for r in reports
        ],
    }


def _window_row(r: DriftReport) -> dict[str, Any]:
    return {
        "started_at": r.started_at,
        "closed_at": r.closed_at,
        "n_samples": r.n_samples,
        "dataset_drift": r.dataset_drift,
        "drift_score": _finite(r.drift_score),
        "share_drifted": _finite(r.share_drifted),
        "drifted_features": [f.name for f in r.features if f.drifted],
        "ood_rate": _finite(r.ood_rate),
    }


# -- alert rules ---------------------------------------------------------------------------


def _alert_rules(engine: AlertEngine | None, model: str) -> dict[str, Any]:
    """The rules on ``model``'s drift signals and their state: firing (since when, at what
    value), pending (breaches counted toward ``for_windows``), or inactive."""
    if engine is None:
        return {"configured": False, "rules": []}
    states = engine.states()
    rows = []
    for rule in engine.rules:
        if not rule.applies_to(model) or not rule.signal.startswith(DRIFT_SIGNAL_PREFIXES):
            continue
        state = states.get((rule.name, model))
        if state is None or state.last_at is None:
            status = "not evaluated"
        elif state.status == "firing":
            status = "firing"
        elif state.breaches:
            status = "pending"
        else:
            status = "inactive"
        active = state.active if state else None
        rows.append(
            {
                "rule": rule.name,
                "signal": rule.signal,
                "condition": f"{rule.comparison} {rule.threshold:g}",
                "for_windows": rule.for_windows,
                "resolve_after": rule.resolve_after,
                "severity": rule.severity,
                "status": status,
                "breaches": state.breaches if state else 0,
                "clean": state.clean if state else 0,
                "last_evaluated": state.last_at.isoformat() if state and state.last_at else None,
                "firing_since": active.started_at.isoformat() if active else None,
                "value": _finite(active.value) if active else None,
            }
        )
    return {"configured": True, "rules": rows}


# -- the chart -----------------------------------------------------------------------------


def drift_chart(detail: dict[str, Any]) -> Markup:
    """One feature's judged value per window against its threshold: the p-value against
    alpha for a statistical test (drift below it), the statistic against the method's
    threshold for a distance (drift at or above it)."""
    points = detail["points"]
    tests = {p["p_value"] is not None for p in points}
    judged = "p-value" if tests == {True} else "statistic" if tests == {False} else "judged value"
    series = [
        Series(judged, [(p["closed_at"], p["judged"]) for p in points]),
        Series("threshold", [(p["closed_at"], p["threshold"]) for p in points]),
    ]
    return line_chart(series, y_label=judged, title=f"{detail['name']}: {judged} per drift window")


def prediction_chart(prediction: dict[str, Any]) -> Markup:
    """Each label's share per window, and its reference share as a flat line."""
    windows = prediction["windows"]
    series = [
        Series(label, [(w["closed_at"], w["label_shares"].get(label)) for w in windows])
        for label in prediction["labels"]
    ]
    reference = prediction["reference_shares"] or {}
    if windows:
        lo, hi = windows[0]["closed_at"], windows[-1]["closed_at"]
        series += [
            Series(f"{label} (reference)", [(lo, reference[label]), (hi, reference[label])])
            for label in prediction["labels"]
            if label in reference
        ]
    # The chart tells series apart by six dash patterns: more labels stay in the table only.
    return line_chart(series[:6], y_label="share of the window", title="Label mix per window")
