"""The SLOs of a running service: the counting sink, the drift listeners, the evaluator's timer.

:func:`open_slos` builds an :class:`SLOService` the runtime registers as a background sink of
the Monitor (its events are counted per minute, and LLM generations by outcome), listening to
the drift monitors (OOD SLIs) and evaluating on a timer into the service's alert engine (whose
rules already hold the SLOs' burn-rate rules, ``runtime.alerts``)::

    slo = open_slos(slos, engine, meter, counts_path=settings.slo_counts_path,
                    drift_monitors=drift_monitors.values())
    monitor.add_sink(slo)
    ...
    slo.close()  # at shutdown (the Monitor does it): stops the timer, saves the counts
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.metrics import Meter

from infertrail.alerting.engine import AlertEngine
from infertrail.drift.window import DriftMonitor
from infertrail.events import InferenceEvent
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S
from infertrail.slo.business import (
    DEFAULT_OUTCOME_WINDOW_S,
    ConfidenceReference,
    ConfidenceWindow,
    GenerationOutcomes,
)
from infertrail.slo.definitions import SLOSet
from infertrail.slo.evaluator import SLOEvaluator
from infertrail.slo.sli import SLICounter

__all__ = ["SLOService", "open_slos"]


@dataclass
class SLOService:
    """The SLOs of one service, a Monitor sink: counts events, evaluates them on a timer."""

    slos: SLOSet
    counter: SLICounter
    evaluator: SLOEvaluator
    confidence: ConfidenceWindow | None
    outcomes: GenerationOutcomes | None = None

    def __call__(self, event: InferenceEvent) -> None:
        """Count the event toward every SLI it belongs to, and a generation's outcome toward
        the business signals (Monitor worker thread)."""
        self.counter(event)
        if self.outcomes is not None and event.generation is not None:
            self.outcomes(event)

    def flush(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> bool:
        """Nothing is buffered: counts are read by the evaluator as they are."""
        return True

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Stop the evaluator's timer and save the counts. Idempotent."""
        self.evaluator.stop(timeout_s)


def open_slos(
    slos: SLOSet,
    engine: AlertEngine | None,
    meter: Meter,
    *,
    counts_path: str | os.PathLike[str] | None = None,
    drift_monitors: Iterable[DriftMonitor] = (),
    references: Mapping[str, ConfidenceReference] | None = None,
    business_window_s: int = 3600,
    outcome_window_s: int = DEFAULT_OUTCOME_WINDOW_S,
    start: bool = True,
) -> SLOService:
    """Count ``slos``' events, evaluate them on a timer, alert through ``engine``.

    With an ``engine`` the counter also feeds the confidence window of the business signals,
    and LLM generations are counted by outcome over ``outcome_window_s`` (the empty, refused and
    truncated rates, ``slo.business.GenerationOutcomes``); OOD SLIs listen to
    ``drift_monitors``; ``references`` (model -> reference confidences) turn on the business
    delta signals. The caller registers the result as a Monitor sink.
    """
    window = ConfidenceWindow(references, window_s=business_window_s) if engine else None
    outcomes = GenerationOutcomes(window_s=outcome_window_s) if engine else None
    counter = SLICounter(slos.slos, confidence=window)
    for drift in drift_monitors:
        drift.add_listener(counter.record_drift_report)
    evaluator = SLOEvaluator(counter, engine, meter=meter, counts_path=counts_path)
    if window is not None and engine is not None:
        evaluator.add_listener(window.listener(engine))
    if outcomes is not None and engine is not None:
        evaluator.add_listener(outcomes.listener(engine))
    if start:
        evaluator.start()
    return SLOService(slos, counter, evaluator, window, outcomes)
