"""Drift reports as OpenTelemetry gauges (and so on ``/metrics``).

:class:`DriftMetrics` is a report listener: it keeps the latest report per model, and observable
gauges read it whenever a metric reader collects. Names live in the ``infertrail.drift.*``
namespace (spelled in telemetry/conventions.py); docs/drift.md lists them with their units and
Prometheus names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from infertrail.drift.detector import DriftReport
from infertrail.telemetry import conventions as c

# Importable from here as before (callers and tests select points by them); conventions.py
# spells them.
DRIFT_SCORE = c.METRIC_DRIFT_SCORE
DRIFT_SHARE = c.METRIC_DRIFT_SHARE
DRIFT_DATASET = c.METRIC_DRIFT_DATASET
DRIFT_FEATURE_DISTANCE = c.METRIC_DRIFT_FEATURE_DISTANCE
DRIFT_FEATURE_P_VALUE = c.METRIC_DRIFT_FEATURE_P_VALUE
DRIFT_FEATURE_DRIFTED = c.METRIC_DRIFT_FEATURE_DRIFTED
DRIFT_PREDICTION_DISTANCE = c.METRIC_DRIFT_PREDICTION_DISTANCE
DRIFT_WINDOW_SAMPLES = c.METRIC_DRIFT_WINDOW_SAMPLES
DRIFT_CONFIDENCE_MEAN = c.METRIC_DRIFT_CONFIDENCE_MEAN
DRIFT_LOW_CONFIDENCE = c.METRIC_DRIFT_LOW_CONFIDENCE
DRIFT_OOD_RATE = c.METRIC_DRIFT_OOD_RATE
DRIFT_WINDOW_SIGNAL = c.METRIC_DRIFT_WINDOW_SIGNAL
FEATURE = c.DRIFT_FEATURE
SIGNAL = c.DRIFT_SIGNAL
SLICE = c.DRIFT_SLICE
DRIFT_SLICE_SCORE = c.METRIC_DRIFT_SLICE_SCORE
DRIFT_SLICE_SHARE = c.METRIC_DRIFT_SLICE_SHARE
DRIFT_SLICE_SAMPLES = c.METRIC_DRIFT_SLICE_SAMPLES
OUTPUT = c.DRIFT_OUTPUT

Extract = Callable[[DriftReport], Iterable[tuple[float, dict[str, str]]]]


def _one(value: Callable[[DriftReport], float | bool | None]) -> Extract:
    def extract(r: DriftReport) -> Iterable[tuple[float, dict[str, str]]]:
        v = value(r)
        return [] if v is None else [(float(v), {})]

    return extract


def _per_feature(value: Callable[..., float | bool | None]) -> Extract:
    def extract(r: DriftReport) -> Iterable[tuple[float, dict[str, str]]]:
        out = []
        for f in r.features:
            v = value(f)
            if v is not None:
                out.append((float(v), {FEATURE: f.name}))
        return out

    return extract


def _prediction_distances(r: DriftReport) -> Iterable[tuple[float, dict[str, str]]]:
    parts = (("label", r.prediction.label), ("confidence", r.prediction.confidence))
    return [(f.distance, {OUTPUT: name}) for name, f in parts if f is not None]


def _signals(r: DriftReport) -> Iterable[tuple[float, dict[str, str]]]:
    out = [(value, {SIGNAL: key}) for key, value in sorted(r.signals.items())]
    for name, part in r.slices.items():  # bounded: drift_max_slices per slice spec
        out += [(value, {SIGNAL: key, SLICE: name}) for key, value in sorted(part.signals.items())]
    return out


def _per_slice(value: Callable[..., float | bool]) -> Extract:
    def extract(r: DriftReport) -> Iterable[tuple[float, dict[str, str]]]:
        return [(float(value(part)), {SLICE: name}) for name, part in r.slices.items()]

    return extract


_GAUGES: list[tuple[str, str, str, Extract]] = [
    (DRIFT_SCORE, c.UNIT_RATIO,
     "Mean per-feature drift distance of the last window.",
     _one(lambda r: r.drift_score)),
    (DRIFT_SHARE, c.UNIT_RATIO,
     "Share of features judged drifted in the last window.",
     _one(lambda r: r.share_drifted)),
    (DRIFT_DATASET, c.UNIT_RATIO,
     "1 when the share of drifted features reached drift_share.",
     _one(lambda r: r.dataset_drift)),
    (DRIFT_FEATURE_DISTANCE, c.UNIT_RATIO,
     "Drift distance of one feature (normed Wasserstein or JS).",
     _per_feature(lambda f: f.distance)),
    (DRIFT_FEATURE_P_VALUE, c.UNIT_RATIO,
     "Corrected p-value of one feature, when judged by a test.",
     _per_feature(lambda f: f.p_value)),
    (DRIFT_FEATURE_DRIFTED, c.UNIT_RATIO,
     "1 when the feature was judged drifted in the last window.",
     _per_feature(lambda f: f.drifted)),
    (DRIFT_PREDICTION_DISTANCE, c.UNIT_RATIO,
     "Drift distance of the predicted label mix and confidence.",
     _prediction_distances),
    (DRIFT_WINDOW_SAMPLES, c.UNIT_SAMPLE,
     "Samples in the last judged window.",
     _one(lambda r: r.n_samples)),
    (DRIFT_CONFIDENCE_MEAN, c.UNIT_RATIO,
     "Mean prediction confidence in the last window.",
     _one(lambda r: r.prediction.confidence_mean)),
    (DRIFT_LOW_CONFIDENCE, c.UNIT_RATIO,
     "Share of predictions below the low-confidence threshold.",
     _one(lambda r: r.prediction.low_confidence_rate)),
    (DRIFT_OOD_RATE, c.UNIT_RATIO,
     "Share of inputs judged out of distribution in the last window.",
     _one(lambda r: r.ood_rate)),
    (DRIFT_WINDOW_SIGNAL, c.UNIT_RATIO,
     "A window analyzer's signal (estimated performance, data quality, multivariate drift).",
     _signals),
    (DRIFT_SLICE_SCORE, c.UNIT_RATIO,
     "Mean per-feature drift distance of one slice of the last window.",
     _per_slice(lambda part: part.drift_score)),
    (DRIFT_SLICE_SHARE, c.UNIT_RATIO,
     "Share of features judged drifted in one slice of the last window.",
     _per_slice(lambda part: part.share_drifted)),
    (DRIFT_SLICE_SAMPLES, c.UNIT_SAMPLE,
     "Samples of one slice in the last window (judged slices only).",
     _per_slice(lambda part: part.n_samples)),
]  # fmt: skip


class DriftMetrics:
    """Publishes the latest drift report of each model through observable gauges.

    Create one per meter and add :meth:`record` as a listener of every ``DriftMonitor``.
    """

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, DriftReport] = {}
        for name, unit, description, extract in _GAUGES:
            meter.create_observable_gauge(
                name, callbacks=[self._callback(extract)], unit=unit, description=description
            )

    def record(self, report: DriftReport) -> None:
        """Listener: remember ``report`` as its model's latest."""
        with self._lock:
            self._latest[report.model_name] = report

    def _callback(self, extract: Extract) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                reports = list(self._latest.values())
            return [
                Observation(value, {c.MODEL_NAME: r.model_name, **attrs})
                for r in reports
                for value, attrs in extract(r)
            ]

        return observe
