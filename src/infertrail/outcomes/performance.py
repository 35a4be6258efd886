"""The "performance dropped" signal: windows of joined outcomes, their metrics, gauges, alerts.

:class:`PerformanceWindows` listens to the ingest service and cuts, per model, tumbling windows
of ``size`` newly joined outcomes (in the order they arrive; an outcome belongs to the window in
which it was joined, whatever the age of its prediction). Each full window is measured with
:func:`~infertrail.outcomes.join.performance` and handed to its listeners:

- :class:`PerformanceMetrics` publishes it as gauges ``infertrail.outcome.*`` (``/metrics``);
- :func:`engine_listener` evaluates the alert engine on :func:`performance_signals`, the signal
  keys ``outcome.accuracy``, ``outcome.brier``, ... that alert rules name. docs/outcomes.md has
  an example rule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from infertrail.alerting.engine import AlertEngine
from infertrail.outcomes.join import OutcomeSpec, Performance, performance
from infertrail.outcomes.payload import DEFAULT_KIND, Outcome
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
]

_log = logging.getLogger("infertrail.outcomes")

#: Signal key -> (gauge name, description). A metric undefined on a window is left out.
SIGNALS: dict[str, tuple[str, str]] = {
    "outcome.accuracy": ("infertrail.outcome.accuracy", "Accuracy of the last window."),
    "outcome.precision": ("infertrail.outcome.precision", "Precision of the last window."),
    "outcome.recall": ("infertrail.outcome.recall", "Recall of the last window."),
    "outcome.roc_auc": ("infertrail.outcome.roc_auc", "ROC AUC of the last window (binary)."),
    "outcome.brier": ("infertrail.outcome.brier", "Brier score of the last window."),
    "outcome.positive_rate": (
        "infertrail.outcome.positive_rate",
        "Share of positive outcomes in the last window (binary).",
    ),
    "outcome.mean_value": (
        "infertrail.outcome.mean_value",
        "Mean numeric outcome in the last window (value outcomes).",
    ),
    "outcome.samples": ("infertrail.outcome.samples", "Joined outcomes in the last window."),
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
        bins: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.spec_for = spec_for
        self.size = size
        self.kind = kind
        self.bins = bins
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
        perf = performance(rows, self.spec_for(model), bins=self.bins)
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
                unit="{outcome}" if key == "outcome.samples" else "1",
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
