"""The embedded SLO evaluator: a timer thread that judges every SLO once per bucket.

At each bucket boundary (plus a short settling delay, so events of the closing bucket still
queued in the Monitor are counted) it evaluates every SLO from the :class:`SLICounter`, feeds
the signals to the alert engine (the same engine as the drift rules), publishes error budget
remaining and burn rates as OpenTelemetry gauges, and saves the counts. Nothing here runs on
the request thread.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from infertrail.alerting.engine import AlertEngine
from infertrail.slo.burnrate import RATIO_WINDOWS_S, SLOStatus, evaluate_slo
from infertrail.slo.definitions import format_duration
from infertrail.slo.sli import SLICounter
from infertrail.slo.store import load_counts, save_counts
from infertrail.telemetry import conventions as c

log = logging.getLogger("infertrail.slo")

# Importable from here as before (callers and tests select the gauges by them).
METRIC_BUDGET_REMAINING = c.METRIC_SLO_BUDGET_REMAINING
METRIC_BURN_RATE = c.METRIC_SLO_BURN_RATE

#: Called after every evaluation with its time (epoch seconds) and the statuses.
StatusListener = Callable[[float, list[SLOStatus]], None]


class SLOEvaluator:
    """Evaluates the SLOs of ``counter`` on a timer; feeds ``engine`` and the gauges."""

    def __init__(
        self,
        counter: SLICounter,
        engine: AlertEngine | None = None,
        *,
        meter: Meter | None = None,
        counts_path: str | os.PathLike[str] | None = None,
        settle_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        listeners: Iterable[StatusListener] = (),
    ) -> None:
        """Restore saved counts from ``counts_path`` (if any); ``start()`` begins the timer."""
        if not 0 <= settle_s < counter.bucket_s:
            raise ValueError(
                f"settle_s must be in [0, bucket_s={counter.bucket_s}), got {settle_s}"
            )
        self.counter = counter
        self.engine = engine
        self.settle_s = settle_s
        self.counts_path = Path(counts_path) if counts_path is not None else None
        self.errors = 0
        self.save_failures = 0
        self._clock = clock
        self._listeners = list(listeners)
        self._latest: list[SLOStatus] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.counts_path is not None:
            restored = load_counts(counter, self.counts_path)
            if restored:
                log.info("restored SLO counts of %s from %s", ", ".join(restored), self.counts_path)
        if meter is not None:
            meter.create_observable_gauge(
                METRIC_BUDGET_REMAINING,
                callbacks=[self._observe_budget],
                unit=c.UNIT_RATIO,
                description="Share of the SLO window's error budget not yet spent.",
            )
            meter.create_observable_gauge(
                METRIC_BURN_RATE,
                callbacks=[self._observe_burn],
                unit=c.UNIT_RATIO,
                description="Error ratio over the error budget, per burn-rate window.",
            )

    @property
    def latest(self) -> list[SLOStatus]:
        """The statuses of the last evaluation (empty before the first)."""
        with self._lock:
            return list(self._latest)

    def add_listener(self, listener: StatusListener) -> None:
        """Call ``listener(at, statuses)`` after every evaluation (on the evaluator's thread)."""
        self._listeners.append(listener)

    def evaluate(self, now: float | None = None) -> list[SLOStatus]:
        """Evaluate every SLO at the last bucket boundary at or before ``now`` (epoch seconds)."""
        t = self._clock() if now is None else now
        b = self.counter.bucket_s
        at = math.floor(t / b) * b
        with self.counter.locked():
            statuses = [
                evaluate_slo(slo, self.counter.counts(slo.name), at) for slo in self.counter.slos
            ]
        with self._lock:
            self._latest = statuses
        if self.engine is not None:
            when = datetime.fromtimestamp(at, UTC)
            for st in statuses:
                self.engine.evaluate(st.signals(), st.slo.model, when)
        for listener in self._listeners:
            try:
                listener(at, statuses)
            except Exception:
                self.errors += 1
                log.exception("SLO status listener %r failed", listener)
        if self.counts_path is not None:
            try:
                save_counts(self.counter, self.counts_path)
            except OSError:
                # Evaluation goes on from memory; a restart before the next save loses a bucket.
                self.save_failures += 1
                log.exception("cannot save SLO counts to %s", self.counts_path)
        return statuses

    # -- the timer ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start evaluating at every bucket boundary on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the SLO evaluator is already started")
        self._thread = threading.Thread(target=self._run, name="infertrail-slo", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the timer and save the counts one last time. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.counts_path is not None:
            try:
                save_counts(self.counter, self.counts_path)
            except OSError:
                self.save_failures += 1
                log.exception("cannot save SLO counts to %s", self.counts_path)

    def _run(self) -> None:
        b = self.counter.bucket_s
        while True:
            now = self._clock()
            due = (math.floor(now / b) + 1) * b + self.settle_s
            if self._stop.wait(max(0.0, due - now)):
                return
            try:
                self.evaluate()
            except Exception:
                # One bad evaluation (an engine that cannot save, say) must not end the timer.
                self.errors += 1
                log.exception("SLO evaluation failed")

    # -- gauges ------------------------------------------------------------------------------
    def _observe_budget(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(st.budget_remaining, _attrs(st)) for st in self.latest]

    def _observe_burn(self, _options: CallbackOptions) -> list[Observation]:
        out = []
        for st in self.latest:
            for w in RATIO_WINDOWS_S:
                rate = st.burn_rate(w)
                if math.isfinite(rate):
                    out.append(Observation(rate, {**_attrs(st), c.SLO_WINDOW: format_duration(w)}))
        return out


def _attrs(st: SLOStatus) -> dict[str, str]:
    return {c.SLO_NAME: st.slo.name, c.MODEL_NAME: st.slo.model}
