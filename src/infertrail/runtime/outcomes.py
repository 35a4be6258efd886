"""The outcomes loop of a service, built from Settings in one call.

``OutcomeLoop.open(settings, meter, audit=trail, engine=engine, hand_over_events=...)`` opens
the outcomes database, builds the predictions index (the loop is a background Monitor sink that
feeds it), the ingest service (auditing into ``trail``'s log), the performance windows with
their gauges and, when an alert engine is given, feeds it every closed window. ``loop.router()``
is the FastAPI router to mount; its performance view reads the models' CBPE estimators
(``<models_dir>/<model>/cbpe.json``) for estimates beside the realized metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.metrics import Meter

from infertrail.alerting.engine import AlertEngine
from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S
from infertrail.outcomes.estimated import Estimators
from infertrail.outcomes.index import PredictionIndex
from infertrail.outcomes.ingest import OutcomeAudit, OutcomeService
from infertrail.outcomes.join import OutcomeSpec, spec_from_settings
from infertrail.outcomes.performance import (
    PerformanceMetrics,
    PerformanceWindows,
    engine_listener,
)
from infertrail.outcomes.store import OutcomeStore, outcomes_db_path
from infertrail.runtime.audit import AuditTrail

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["OutcomeLoop"]


@dataclass
class OutcomeLoop:
    """Store, predictions index, ingest service and performance windows; a Monitor sink."""

    store: OutcomeStore
    index: PredictionIndex
    service: OutcomeService
    windows: PerformanceWindows
    spec_for: Callable[[str], OutcomeSpec]
    estimators: Estimators

    @classmethod
    def open(
        cls,
        settings: Settings,
        meter: Meter,
        *,
        audit: AuditTrail | None,
        engine: AlertEngine | None = None,
        hand_over_events: Callable[[], object] | None = None,
    ) -> OutcomeLoop:
        """Build the loop (see the module docstring); register it as a background sink.

        ``hand_over_events`` (the Monitor's ``flush_events``) lets an ingest see predictions
        still queued in the Monitor.
        """
        store = OutcomeStore(outcomes_db_path(settings))
        index = PredictionIndex(store)
        outcome_audit = (
            None
            if audit is None
            else OutcomeAudit(
                audit.log, audit.retention, audit.producer, service=settings.service_name
            )
        )
        service = OutcomeService(
            store,
            audit=outcome_audit,
            index=index,
            batch_max=settings.outcome_batch_max,
            meter=meter,
            hand_over_events=hand_over_events,
        )
        spec_for = spec_from_settings(settings)
        windows = PerformanceWindows(spec_for, size=settings.outcome_window)
        service.add_listener(windows)
        windows.add_listener(PerformanceMetrics(meter))
        if engine is not None:
            windows.add_listener(engine_listener(engine))
        return cls(store, index, service, windows, spec_for, Estimators(settings.models_dir))

    def router(self) -> APIRouter:
        """``POST /v1/outcomes`` and ``GET /v1/outcomes/performance``."""
        from infertrail.outcomes.api import outcomes_router  # FastAPI: only when served

        return outcomes_router(self.service, self.spec_for, self.estimators)

    def __call__(self, event: InferenceEvent) -> None:
        """Index the event's prediction (Monitor worker thread)."""
        self.index(event)

    def flush(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> bool:
        """Write the queued predictions now."""
        return self.index.flush(timeout_s)

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Write the queued predictions and close the database. Idempotent."""
        try:
            self.index.close(timeout_s)
        finally:
            self.store.close()
