"""The predictions index sink: every successful inference, by request id, for outcomes to join.

A background Monitor sink: on the Monitor's worker thread it only builds a
:class:`~infertrail.outcomes.store.Prediction` and appends it to a list; its own writer thread
moves the list to SQLite in batches (every ``flush_interval_s``, or sooner when
``batch_max`` rows are waiting). Failed inferences and rejected requests have no prediction to
join and are skipped. An outcome that arrives before its prediction is indexed is reported
as unknown; the ingest service flushes the index before looking ids up, which closes that gap
for everything the Monitor has already handed over.

Each prediction keeps the artifact's sha256 and, when the event carries them, every class's
probabilities (``InferenceEvent.probabilities``): what label-free estimates of the outcomes
report read. Probabilities the store would refuse (more than
:data:`~infertrail.outcomes.store.MAX_PROBABILITY_CLASSES` classes, labels that are not short
strings, values that are not numbers) are left out of that prediction and counted in
``probabilities_dropped``; the prediction itself is kept.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from infertrail.events import InferenceEvent
from infertrail.outcomes.store import OutcomeStore, Prediction, check_probabilities

__all__ = ["PredictionIndex"]

_log = logging.getLogger("infertrail.outcomes")


class PredictionIndex:
    """Monitor sink writing predictions to an :class:`OutcomeStore` in batches."""

    def __init__(
        self,
        store: OutcomeStore,
        *,
        flush_interval_s: float = 0.5,
        batch_max: int = 5000,
        start: bool = True,
    ) -> None:
        if not flush_interval_s > 0 or batch_max < 1:
            raise ValueError(
                f"flush_interval_s must be > 0 and batch_max >= 1, got {flush_interval_s}, "
                f"{batch_max}"
            )
        self.store = store
        self._interval = flush_interval_s
        self._batch_max = batch_max
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._pending: list[Prediction] = []
        self._wake = threading.Event()
        self._stop = False
        self.indexed = 0
        self.flush_failures = 0
        self.probabilities_dropped = 0
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(
                target=self._run, name="infertrail-predictions", daemon=True
            )
            self._thread.start()

    def __call__(self, ev: InferenceEvent) -> None:
        """Queue the prediction of ``ev`` (Monitor worker thread; no I/O here)."""
        if ev.status != "ok" or self._stop:
            return
        probabilities = ev.probabilities
        if probabilities is not None:
            try:
                check_probabilities(probabilities)
                probabilities = dict(probabilities)  # the event's dict may change later
            except ValueError as exc:
                if not self.probabilities_dropped:
                    _log.warning("probabilities of %s not indexed: %s", ev.model.name, exc)
                self.probabilities_dropped += 1
                probabilities = None
        p = Prediction(
            request_id=ev.request_id,
            ts_ns=ev.start_time_ns,
            model=ev.model.name,
            version=ev.model.version,
            label=ev.label,
            score=None if ev.score is None else float(ev.score),
            confidence=None if ev.confidence is None else float(ev.confidence),
            decision=ev.decision,
            latency_ms=ev.duration_ns / 1e6,
            team=ev.team,
            endpoint=ev.endpoint,
            model_sha256=ev.model.sha256,
            probabilities=probabilities,
        )
        with self._lock:
            self._pending.append(p)
            full = len(self._pending) >= self._batch_max
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Predictions queued but not yet in the database."""
        return len(self._pending)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Write every queued prediction now (one transaction; sink contract: always True)."""
        self._write()
        return True

    def _write(self) -> None:
        with self._io_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self.store.add_predictions(batch)
            except sqlite3.Error:
                with self._lock:  # keep them for the next attempt, in order
                    self._pending[:0] = batch
                raise
            self.indexed += len(batch)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._write()
            except sqlite3.Error:
                self.flush_failures += 1
                _log.exception("predictions index flush failed; retrying at the next interval")

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the writer and write what is queued. Idempotent; the store stays open."""
        if self._stop:
            return
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self._write()
