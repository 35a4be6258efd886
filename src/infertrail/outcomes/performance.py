"""The "performance dropped" signal: windows of joined outcomes, their metrics, gauges, alerts.

:class:`PerformanceWindows` listens to the ingest service and cuts, per model, tumbling windows
of ``size`` newly joined outcomes (in the order they arrive; an outcome belongs to the window in
which it was joined, whatever the age of its prediction). Each full window is measured by
:func:`window_performance` and handed to its listeners:

- :class:`PerformanceMetrics` publishes it as gauges ``infertrail.outcome.*`` (``/metrics``);
- :func:`engine_listener` evaluates the alert engine on :func:`performance_signals`, the signal
  keys ``outcome.accuracy``, ``outcome.brier``, ... that alert rules name. docs/outcomes.md has
  an example rule.

Windows close on the ingest path, so :func:`window_performance` computes the scalar metrics with
numpy rather than scikit-learn: the same definitions as
:func:`~infertrail.outcomes.join.performance` (which reports use, and which calls
scikit-learn), property-tested equal to it, at ~0.1 ms per window instead of ~10-50 ms (the
cost of scikit-learn's input validation, measured by bench/outcomes_ingest.py). ROC AUC is the
Mann-Whitney statistic with average ranks for ties, which is the area under scikit-learn's ROC
curve. Windows carry no reliability bins (no signal uses them).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from scipy.stats import rankdata

from infertrail.alerting.engine import AlertEngine
from infertrail.outcomes.join import OutcomeSpec, Performance
from infertrail.outcomes.schema import DEFAULT_KIND, Outcome
from infertrail.outcomes.store import JoinedRow, Prediction
from infertrail.telemetry import conventions as c

__all__ = [
    "GAUGES",
    "SIGNALS",
    "PerformanceMetrics",
    "PerformanceWindows",
    "WindowReport",
    "engine_listener",
    "performance_signals",
    "window_performance",
]

_log = logging.getLogger("infertrail.outcomes")

#: Signal key -> (gauge name, description). A metric undefined on a window is left out.
SIGNALS: dict[str, tuple[str, str]] = {
    "outcome.accuracy": (c.METRIC_OUTCOME_ACCURACY, "Accuracy of the last window."),
    "outcome.precision": (c.METRIC_OUTCOME_PRECISION, "Precision of the last window."),
    "outcome.recall": (c.METRIC_OUTCOME_RECALL, "Recall of the last window."),
    "outcome.roc_auc": (c.METRIC_OUTCOME_ROC_AUC, "ROC AUC of the last window (binary)."),
    "outcome.brier": (c.METRIC_OUTCOME_BRIER, "Brier score of the last window."),
    "outcome.positive_rate": (
        c.METRIC_OUTCOME_POSITIVE_RATE,
        "Share of positive outcomes in the last window (binary).",
    ),
    "outcome.mean_value": (
        c.METRIC_OUTCOME_MEAN_VALUE,
        "Mean numeric outcome in the last window (value outcomes).",
    ),
    "outcome.samples": (c.METRIC_OUTCOME_SAMPLES, "Joined outcomes in the last window."),
}
GAUGES = {gauge for gauge, _ in SIGNALS.values()}


def performance_signals(perf: Performance) -> dict[str, float]:
    """The signal values of one window; a metric that is undefined (None) is left out."""
    values = {
        "outcome.accuracy": perf.accuracy,
        "outcome.precision": perf.precision,
        "outcome.recall": perf.recall,
        "outcome.roc_auc": perf.roc_auc,
        "outcome.brier": perf.brier,
        "outcome.positive_rate": perf.positive_rate,
        "outcome.mean_value": perf.mean_value,
        "outcome.samples": float(perf.n_used),
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def window_performance(rows: Sequence[JoinedRow], spec: OutcomeSpec) -> Performance:
    """The scalar metrics of :func:`~infertrail.outcomes.join.performance`, with numpy."""
    n = len(rows)
    labelled = [r for r in rows if r.outcome.label is not None]
    if not labelled:
        values = [r.outcome.value for r in rows if r.outcome.value is not None]
        return Performance("value", n, len(values), mean_value=_mean(values))
    if spec.positive is not None:
        used = [r for r in labelled if r.prediction.score is not None]
        if not used:
            return Performance("binary", n, 0)
        y = np.fromiter((r.outcome.label == spec.positive for r in used), bool, len(used))
        p = np.fromiter((r.prediction.score for r in used), float, len(used))
        pred = p >= spec.threshold
        tp = int(np.count_nonzero(pred & y))
        n_pos = int(np.count_nonzero(y))
        n_neg = len(used) - n_pos
        auc = None
        if n_pos and n_neg:
            ranks = rankdata(p)  # average ranks for ties: the ROC curve's trapezoids
            auc = float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        return Performance(
            "binary",
            n,
            len(used),
            accuracy=float(np.count_nonzero(pred == y) / len(used)),
            precision=_ratio(tp, int(np.count_nonzero(pred))),
            recall=_ratio(tp, n_pos),
            roc_auc=auc,
            brier=float(np.mean((np.clip(p, 0.0, 1.0) - y) ** 2)),
            positive_rate=n_pos / len(used),
        )
    used = [r for r in labelled if r.prediction.label is not None]
    if not used:
        return Performance("multiclass", n, 0)
    truth = np.array([str(r.outcome.label) for r in used])
    predicted = np.array([str(r.prediction.label) for r in used])
    correct = truth == predicted
    # Macro averages over every label seen; a label never predicted (or never true) has no
    # precision (recall) and is left out of the average, as scikit-learn's zero_division=nan.
    precisions, recalls = [], []
    for label in np.union1d(truth, predicted):
        hits = int(np.count_nonzero(correct & (truth == label)))
        if (n_pred := int(np.count_nonzero(predicted == label))) > 0:
            precisions.append(hits / n_pred)
        if (n_true := int(np.count_nonzero(truth == label))) > 0:
            recalls.append(hits / n_true)
    confident = [
        (r.prediction.confidence, ok)
        for r, ok in zip(used, correct, strict=True)
        if r.prediction.confidence is not None
    ]
    brier = None
    if confident:
        conf = np.clip(np.array([c for c, _ in confident], float), 0, 1)
        hit = np.array([ok for _, ok in confident], float)
        brier = float(np.mean((conf - hit) ** 2))
    return Performance(
        "multiclass",
        n,
        len(used),
        accuracy=float(np.count_nonzero(correct) / len(used)),
        precision=_mean(precisions),
        recall=_mean(recalls),
        brier=brier,
    )


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass(frozen=True)
class WindowReport:
    """One full window of joined outcomes of a model, measured."""

    model: str
    versions: tuple[str, ...]
    closed_at: datetime
    performance: Performance


class PerformanceWindows:
    """Per model, tumbling windows of ``size`` joined outcomes of ``kind``; thread-safe."""

    def __init__(
        self,
        spec_for: Callable[[str], OutcomeSpec],
        *,
        size: int,
        kind: str = DEFAULT_KIND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.spec_for = spec_for
        self.size = size
        self.kind = kind
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, list[JoinedRow]] = {}
        self._last_closed: dict[str, datetime] = {}
        self._listeners: list[Callable[[WindowReport], None]] = []

    def add_listener(self, listener: Callable[[WindowReport], None]) -> None:
        """Call ``listener`` with every window that closes."""
        self._listeners.append(listener)

    def __call__(self, pairs: Iterable[tuple[Outcome, Prediction]]) -> None:
        """Add newly joined outcomes (an OutcomeService listener); close every full window."""
        closed: list[WindowReport] = []
        with self._lock:
            for outcome, prediction in pairs:
                if outcome.kind != self.kind:
                    continue
                rows = self._open.setdefault(prediction.model, [])
                rows.append(JoinedRow(prediction, outcome, outcome.ts_ns))
                if len(rows) >= self.size:
                    closed.append(self._close(prediction.model, rows))
                    self._open[prediction.model] = []
        for report in closed:  # outside the lock: listeners may be slow (alert delivery)
            for listener in self._listeners:
                try:
                    listener(report)
                except Exception:
                    _log.exception("performance window listener %r failed", listener)

    def _close(self, model: str, rows: Sequence[JoinedRow]) -> WindowReport:
        at = datetime.fromtimestamp(self._clock(), UTC)
        last = self._last_closed.get(model)
        if last is not None and at <= last:
            # Several windows can close in one batch: keep their times strictly increasing,
            # or the alert engine would count them as one evaluation.
            at = last + timedelta(microseconds=1)
        self._last_closed[model] = at
        versions = tuple(sorted({r.prediction.version for r in rows}))
        perf = window_performance(rows, self.spec_for(model))
        return WindowReport(model, versions, at, perf)

    def pending(self, model: str) -> int:
        """Joined outcomes of ``model`` in its open (not yet full) window."""
        with self._lock:
            return len(self._open.get(model, ()))


class PerformanceMetrics:
    """Gauges ``infertrail.outcome.*`` holding each model's last window (a window listener)."""

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, float]] = {}
        for key, (name, description) in SIGNALS.items():
            meter.create_observable_gauge(
                name,
                callbacks=[self._callback(key)],
                # A count of outcomes; every other gauge is a ratio or a score.
                unit=c.UNIT_OUTCOME if name == c.METRIC_OUTCOME_SAMPLES else c.UNIT_RATIO,
                description=description,
            )

    def _callback(self, key: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(_options: CallbackOptions) -> list[Observation]:
            with self._lock:
                items = list(self._latest.items())
            return [
                Observation(signals[key], {c.MODEL_NAME: model})
                for model, signals in items
                if key in signals
            ]

        return observe

    def __call__(self, report: WindowReport) -> None:
        """Keep ``report`` as its model's latest window."""
        with self._lock:
            self._latest[report.model] = performance_signals(report.performance)


def engine_listener(engine: AlertEngine) -> Callable[[WindowReport], None]:
    """A window listener that evaluates ``engine`` on the window's signals at its close time."""

    def on_window(report: WindowReport) -> None:
        try:
            engine.evaluate(performance_signals(report.performance), report.model, report.closed_at)
        except ValueError:
            _log.exception("alert evaluation of the %s outcome window failed", report.model)

    return on_window
