"""Signal values from what monitoring produces, and the glue that feeds them to an engine.

``drift_signals`` turns a drift report into the signal keys of ``signals.SIGNALS`` (the same
numbers the drift gauges export, so Prometheus and the in-process engine judge one value);
``drift_listener`` is a ``DriftMonitor`` listener that evaluates the engine once per window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from infertrail.alerting.engine import AlertEngine

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftReport

log = logging.getLogger("infertrail.alerting")


def drift_signals(report: DriftReport) -> dict[str, float]:
    """The signal values of one closed drift window; a value the report lacks is left out."""
    out = {
        "drift.score": report.drift_score,
        "drift.share_drifted": report.share_drifted,
        "drift.dataset_drift": float(report.dataset_drift),
        "ood.rate": report.ood_rate,
    }
    if report.features:
        out["drift.feature_distance_max"] = max(f.distance for f in report.features)
    p = report.prediction
    optional = {
        "drift.prediction_label_distance": p.label.distance if p.label else None,
        "drift.prediction_confidence_distance": p.confidence.distance if p.confidence else None,
        "prediction.confidence_mean": p.confidence_mean,
        "prediction.low_confidence_rate": p.low_confidence_rate,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return {k: float(v) for k, v in out.items()}


def drift_listener(engine: AlertEngine) -> Callable[[DriftReport], None]:
    """A drift-report listener that evaluates ``engine`` at each window's close time."""

    def on_report(report: DriftReport) -> None:
        at = datetime.fromtimestamp(report.closed_at, UTC)
        try:
            engine.evaluate(drift_signals(report), report.model_name, at)
        except ValueError:
            # A malformed report must not stop the drift worker that calls its listeners.
            log.exception("alert evaluation of the %s window at %s failed", report.model_name, at)

    return on_report
