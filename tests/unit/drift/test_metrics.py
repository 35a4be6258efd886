"""Drift reports become OpenTelemetry gauges, on the same meter as /metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import generate_latest

from infertrail.config import Settings
from infertrail.drift import DriftDetector, DriftMetrics, DriftWindow, Profile
from infertrail.drift import metrics as m
from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

Points = dict[str, list[tuple[dict[str, Any], float]]]


def _points(reader: InMemoryMetricReader) -> Points:
    data = reader.get_metrics_data()
    out: Points = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [
                    (dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                    for p in metric.data.data_points
                ]
    return out


def test_gauges_carry_the_latest_report(settings: Settings, tabular_profile: Profile) -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry(settings, metric_readers=[reader])
    try:
        metrics = DriftMetrics(telemetry.meter)
        assert m.DRIFT_SCORE not in _points(reader)  # nothing before the first report
        rng = np.random.default_rng(0)
        rows = np.column_stack([rng.normal(size=(500, 20)) + 1.0, rng.integers(0, 3, 500)])
        labels = np.zeros(500, dtype=np.int64)
        conf = np.full(500, 0.5)
        report = DriftDetector(tabular_profile).compare(DriftWindow(rows, labels, conf))
        metrics.record(report)
        pts = _points(reader)
        model = {c.MODEL_NAME: "credit"}
        assert pts[m.DRIFT_SCORE] == [(model, report.drift_score)]
        assert pts[m.DRIFT_SHARE] == [(model, report.share_drifted)]
        assert pts[m.DRIFT_DATASET] == [(model, 1.0)]
        assert pts[m.DRIFT_WINDOW_SAMPLES] == [(model, 500.0)]
        assert pts[m.DRIFT_CONFIDENCE_MEAN] == [(model, 0.5)]
        assert pts[m.DRIFT_LOW_CONFIDENCE] == [(model, 1.0)]
        assert pts[m.DRIFT_OOD_RATE] == [(model, report.ood_rate)]
        distances = {a[m.FEATURE]: v for a, v in pts[m.DRIFT_FEATURE_DISTANCE]}
        assert distances["x3"] == report.feature("x3").distance and len(distances) == 21
        assert {a[m.OUTPUT] for a, _ in pts[m.DRIFT_PREDICTION_DISTANCE]} == {"label", "confidence"}
        # a window of 500 rows is judged by tests (KS, chi-squared, Z): p-values are published
        p_values = {a[m.FEATURE]: v for a, v in pts[m.DRIFT_FEATURE_P_VALUE]}
        assert p_values["x3"] == report.feature("x3").p_value and len(p_values) == 21
        exposition = generate_latest(telemetry.prometheus_registry).decode()
        assert 'infertrail_drift_feature_distance{feature="x3",infertrail_model_name="credit"' in (
            exposition.replace("ratio{", "{")
        )
    finally:
        telemetry.shutdown()
