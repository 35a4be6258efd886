"""What ``infertrail demo`` shows of drift monitoring: a few lines per model's last window.

Every closed drift window is judged by the univariate detector and by the window analyzers the
settings name: data quality (docs/data-quality.md), label-free performance estimates (CBPE,
docs/estimation.md) and multivariate drift (docs/drift.md). :func:`window_block` turns one
:class:`~infertrail.drift.DriftReport` into a short block that says what each of them concluded,
and says so when one did not run (no estimator, too few rows, analyzer off or failed) rather
than leaving a gap. Where the demo fed true outcomes, the estimate is shown beside the
performance realized on them (:class:`RealizedPerformance`). Pure formatting: the demo's run
drives the traffic and hands the reports over.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infertrail.drift import DriftReport

__all__ = ["RealizedPerformance", "monitoring_lines", "window_block"]

#: The data-quality checks a block names, with the feature that scored worst on each.
QUALITY_CHECKS = (
    ("missing_share", "missing"),
    ("type_error_share", "type errors"),
    ("out_of_range_share", "out of range"),
    ("unseen_category_share", "unseen categories"),
)
#: The estimated metrics a block shows (of CBPE's five), as the report names and a reader does.
SHOWN_METRICS = (("accuracy", "accuracy"), ("roc_auc", "ROC AUC"))
#: Constant columns named in a block before the rest are counted.
CONSTANT_SHOWN = 3
_INDENT = "    "
_LABEL_WIDTH = 14


@dataclass(frozen=True)
class RealizedPerformance:
    """Performance of a model's predictions measured on their true outcomes (the joined ones).

    ``lost``: outcomes the service could not match to a prediction, so not in ``n``.
    """

    n: int
    accuracy: float | None
    roc_auc: float | None
    lost: int = 0

    def __post_init__(self) -> None:
        if self.n < 0 or self.lost < 0:
            raise ValueError(f"n and lost must be >= 0, got n={self.n}, lost={self.lost}")
        for name in ("accuracy", "roc_auc"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1] or be None, got {value!r}")


def monitoring_lines(
    reports: Mapping[str, DriftReport | None],
    realized: Mapping[str, RealizedPerformance] | None = None,
) -> list[str]:
    """The block of every model with a judged window (by name), under one heading; a model
    whose windows were all too small to judge gets one line saying so."""
    realized = realized or {}
    width = max((len(name) for name in reports), default=0)
    lines = ["the last drift window of each model (docs/drift.md):"]
    for name in sorted(reports):
        report = reports[name]
        if report is None:
            lines.append(f"  {name:<{width}}  no window judged yet")
            continue
        lines += window_block(name, report, realized.get(name), name_width=width)
    return lines


def window_block(
    name: str,
    report: DriftReport,
    realized: RealizedPerformance | None = None,
    *,
    name_width: int = 0,
) -> list[str]:
    """A few lines on ``report``: the drift verdict, data quality, performance (estimated and,
    with an estimate, realized on a second line), multivariate drift."""
    sections = report.sections
    estimated = sections.get("estimated_performance")
    lines = [
        f"  {name:<{name_width}}  {_verdict(report)}",
        _row("quality", _quality(sections.get("data_quality"))),
        _row("performance", _estimate(estimated, report.n_samples)),
    ]
    if estimated is not None and estimated.get("metrics") is not None:
        lines.append(_row("", _realized(realized)))
    lines.append(_row("multivariate", _multivariate(sections)))
    return lines


def _row(label: str, text: str) -> str:
    return f"{_INDENT}{label:<{_LABEL_WIDTH}}{text}"


def _verdict(report: DriftReport) -> str:
    """Rows, the dataset verdict with the drifted share, and the prediction drift."""
    drift = "DRIFT" if report.dataset_drift else "no drift"
    text = (
        f"{report.n_samples} rows  {drift}: {report.n_drifted} of {len(report.features)} "
        "features drifted"
    )
    moved = [
        what
        for what, judged in (
            ("predictions", report.prediction.label),
            ("confidence", report.prediction.confidence),
        )
        if judged is not None and judged.drifted
    ]
    judged_any = report.prediction.label is not None or report.prediction.confidence is not None
    if moved:
        text += f"; {' and '.join(moved)} drifted"
    elif judged_any:
        text += "; predictions steady"
    return text


def _quality(section: Mapping[str, Any] | None) -> str:
    """The feature that scored worst on each failed check, or ``clean``."""
    if section is None:
        return "not checked"
    worst = section.get("worst") or {}
    found = [
        f"{label} {entry['feature']} {entry['value']:.1%}"
        for key, label in QUALITY_CHECKS
        if (entry := worst.get(key))
    ]
    constant = list(section.get("constant_columns") or ())
    if constant:
        shown = ", ".join(constant[:CONSTANT_SHOWN])
        rest = len(constant) - CONSTANT_SHOWN
        more = f" and {rest} more" if rest > 0 else ""
        found.append(f"constant {shown}{more}")
    return "; ".join(found) if found else "clean"


def _estimate(section: Mapping[str, Any] | None, n_samples: int) -> str:
    """CBPE's estimates with their bands (and the rows read, when it skipped some), or why
    there are none."""
    if section is None:
        return "no estimator"
    metrics = section.get("metrics")
    n = section.get("n", 0)
    if metrics is None:
        return f"not estimated: {n} usable rows, CBPE needs {section.get('min_rows', '?')}"
    shown = [_metric(label, metrics.get(key)) for key, label in SHOWN_METRICS]
    rows = "" if n == n_samples else f", {n} rows"
    alert = ", ALERT: outside the reference thresholds" if section.get("alert") else ""
    return f"estimated {', '.join(shown)} (CBPE{rows}){alert}"


def _metric(label: str, metric: Mapping[str, Any] | None) -> str:
    if metric is None or metric.get("value") is None:
        return f"{label} undefined"
    low, high = metric.get("lower_band"), metric.get("upper_band")
    band = "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"
    return f"{label} {metric['value']:.3f}{band}"


def _realized(realized: RealizedPerformance | None) -> str:
    if realized is None:
        return "realized  no outcomes fed in the demo"
    if realized.n == 0:
        text = "realized  no outcome joined yet"
    else:
        shown = [f"{label} {_number(getattr(realized, key))}" for key, label in SHOWN_METRICS]
        text = f"realized  {', '.join(shown)} ({realized.n} outcomes joined)"
    if realized.lost:
        text += f"; {realized.lost} outcomes matched no prediction"
    return text


def _number(value: float | None) -> str:
    return "undefined" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _multivariate(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Each multivariate statistic's value against its band or threshold, and its verdict."""
    found = []
    recon = sections.get("reconstruction_drift")
    if recon is not None:
        found.append(
            _judged("reconstruction", recon)
            or f"reconstruction error {recon['statistic']:.3f} "
            f"{'outside' if recon['drifted'] else 'within'} "
            f"[{recon['lower']:.3f}, {recon['upper']:.3f}]: {_drift(recon['drifted'])}"
        )
    domain = sections.get("domain_classifier_drift")
    if domain is not None:
        found.append(
            _judged("domain classifier", domain)
            or f"domain classifier AUC {domain['statistic']:.3f} "
            f"(threshold {domain['threshold']:.3f}): {_drift(domain['drifted'])}"
        )
    return "; ".join(found) if found else "not judged"


def _judged(label: str, section: Mapping[str, Any]) -> str | None:
    """Why a statistic skipped the window, or None when it judged it."""
    skipped = section.get("skipped")
    return None if skipped is None else f"{label} skipped ({skipped})"


def _drift(drifted: bool) -> str:
    return "DRIFT" if drifted else "no drift"
