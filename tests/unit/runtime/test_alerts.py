"""Drift reports as signal values, and the listener that feeds them to the engine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.signals import SIGNALS
from infertrail.alerting.testing import RecordingDispatch
from infertrail.drift.detector import DriftReport, FeatureDrift, PredictionDrift
from infertrail.runtime.alerts import drift_listener, drift_signals
from tests.unit.alerting.helpers import T0, rule


def feature(name: str, distance: float) -> FeatureDrift:
    return FeatureDrift(name, "wasserstein", distance, None, distance, 0.1, distance > 0.1)


def report(share: float, closed_at: float, *, with_prediction: bool = True) -> DriftReport:
    features = [feature("a", 0.05), feature("b", 0.4)]
    prediction = PredictionDrift(
        label=feature("label", 0.2) if with_prediction else None,
        confidence=feature("confidence", 0.3) if with_prediction else None,
        label_shares={"0": 0.5, "1": 0.5},
        confidence_mean=0.81 if with_prediction else None,
        low_confidence_rate=0.07 if with_prediction else None,
    )
    return DriftReport(
        model_name="digits",
        model_sha256="0" * 64,
        n_samples=500,
        started_at=closed_at - 60,
        closed_at=closed_at,
        features=features,
        n_drifted=1,
        share_drifted=share,
        dataset_drift=share >= 0.5,
        drift_score=0.225,
        correction="none",
        prediction=prediction,
        ood_rate=0.01,
    )


def test_drift_signals_are_the_exported_values() -> None:
    values = drift_signals(report(0.5, T0.timestamp()))
    assert values == {
        "drift.score": 0.225,
        "drift.share_drifted": 0.5,
        "drift.dataset_drift": 1.0,
        "drift.feature_distance_max": 0.4,
        "drift.prediction_label_distance": 0.2,
        "drift.prediction_confidence_distance": 0.3,
        "ood.rate": 0.01,
        "prediction.confidence_mean": 0.81,
        "prediction.low_confidence_rate": 0.07,
    }
    assert set(values) <= set(SIGNALS)  # every one can be exported to Prometheus too


def test_missing_report_values_are_left_out() -> None:
    values = drift_signals(report(0.0, T0.timestamp(), with_prediction=False))
    assert "prediction.confidence_mean" not in values
    assert "drift.prediction_label_distance" not in values
    assert values["drift.dataset_drift"] == 0.0


def test_listener_evaluates_at_window_close() -> None:
    engine = AlertEngine([rule(for_windows=2, receivers=[])], RecordingDispatch(), None)
    on_report = drift_listener(engine)
    on_report(report(0.5, T0.timestamp()))
    on_report(report(0.5, T0.timestamp() + 60))
    [firing] = engine.firing()
    assert firing.at == datetime.fromtimestamp(T0.timestamp() + 60, UTC)
    assert firing.value == 0.5


def test_listener_never_raises_into_the_drift_worker(caplog: pytest.LogCaptureFixture) -> None:
    engine = AlertEngine([rule()], RecordingDispatch(), None)
    bad = report(0.5, T0.timestamp())
    object.__setattr__(bad, "model_name", "")
    drift_listener(engine)(bad)
    assert "alert evaluation of the  window" in caplog.text
