"""The alerting of a service: one engine for every rule, and the glue that feeds it signals.

:meth:`Alerting.open` loads ``alert_rules_file`` and ``slo_file`` (whose burn-rate rules join
the same engine), checks every receiver's secret, and starts one notifier dispatch.
``drift_signals`` turns a drift report into the signal keys of ``signals.SIGNALS`` (the same
numbers the drift gauges export, so Prometheus and the in-process engine judge one value);
``drift_listener`` is a ``DriftMonitor`` listener that evaluates the engine once per window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry.metrics import Meter

from infertrail.alerting import AlertEngine, NotifierDispatch, load_rules
from infertrail.config import Settings
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S
from infertrail.slo.alerts import with_slo_rules
from infertrail.slo.definitions import SLOSet, load_slos

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftReport

__all__ = ["Alerting", "drift_listener", "drift_signals"]


@dataclass
class Alerting:
    """The alert engine of a service, its notifier dispatch, and the SLOs it judges."""

    engine: AlertEngine
    dispatch: NotifierDispatch
    slos: SLOSet | None

    @classmethod
    def open(cls, settings: Settings, meter: Meter) -> Alerting | None:
        """The engine of ``settings``' rules and SLOs; None when neither file is set.

        Fails before starting anything when a file is bad or a receiver's secret is missing.
        """
        rules = None if settings.alert_rules_file is None else load_rules(settings.alert_rules_file)
        slos = None if settings.slo_file is None else load_slos(settings.slo_file)
        if slos is not None:
            rules = with_slo_rules(rules, slos)
        if rules is None:
            return None
        dispatch = NotifierDispatch.from_rules(rules, meter=meter)
        try:
            engine = AlertEngine(rules, dispatch, settings.alert_state_path)
        except BaseException:
            dispatch.close(0.0)
            raise
        return cls(engine, dispatch, slos)

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Deliver what is queued (retrying within ``timeout_s``), then stop the notifiers."""
        self.dispatch.close(timeout_s)


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
    out.update(report.signals)  # the window analyzers' (estimates, quality, multivariate)
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
