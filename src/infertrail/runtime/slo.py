"""Wiring the SLO layer into a running service: sinks, listeners, the evaluator's timer.

``attach_slos`` is what a service calls once at start, next to its drift monitors and its
alert engine (built with ``with_slo_rules`` so that the one engine holds the drift, business
and SLO rules)::

    slos = load_slos(settings_slo_file)
    rules = with_slo_rules(load_rules(settings.alert_rules_file), slos)
    engine = AlertEngine(rules, NotifierDispatch.from_rules(rules), state_path)
    slo = attach_slos(monitor, slos, engine, counts_path=data_dir / "slo" / "counts.json",
                      drift_monitors=[digits_drift], references={"digits": reference})
    ...
    slo.close()  # at shutdown: stops the timer, saves the counts
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infertrail.alerting.engine import AlertEngine
from infertrail.slo.business import ConfidenceReference, ConfidenceWindow
from infertrail.slo.definitions import SLOSet
from infertrail.slo.evaluator import SLOEvaluator
from infertrail.slo.sli import SLICounter

if TYPE_CHECKING:
    from infertrail.drift.window import DriftMonitor
    from infertrail.monitor import Monitor


@dataclass
class SLOService:
    """The SLO parts attached to one Monitor."""

    slos: SLOSet
    counter: SLICounter
    evaluator: SLOEvaluator
    confidence: ConfidenceWindow | None

    def close(self) -> None:
        """Stop the evaluator's timer and save the counts. Idempotent."""
        self.evaluator.stop()


def attach_slos(
    monitor: Monitor,
    slos: SLOSet,
    engine: AlertEngine | None,
    *,
    counts_path: str | os.PathLike[str] | None = None,
    drift_monitors: Iterable[DriftMonitor] = (),
    references: Mapping[str, ConfidenceReference] | None = None,
    business_window_s: int = 3600,
    start: bool = True,
) -> SLOService:
    """Count the SLOs' events on ``monitor``, evaluate them on a timer, alert through ``engine``.

    The counter is a background sink of the Monitor and, when ``engine`` is given, feeds the
    confidence window of the business signals; OOD SLIs listen to ``drift_monitors``;
    ``references`` (model -> reference confidences) turn on the business delta signals.
    """
    window = ConfidenceWindow(references, window_s=business_window_s) if engine else None
    counter = SLICounter(slos.slos, confidence=window)
    monitor.add_sink(counter)
    for drift in drift_monitors:
        drift.add_listener(counter.record_drift_report)
    evaluator = SLOEvaluator(
        counter, engine, meter=monitor.telemetry.meter, counts_path=counts_path
    )
    if window is not None and engine is not None:
        evaluator.add_listener(window.listener(engine))
    if start:
        evaluator.start()
    return SLOService(slos, counter, evaluator, window)
