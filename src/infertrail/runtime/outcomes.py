"""The outcomes loop of a service, built from Settings in one call.

``OutcomeLoop.open(settings, monitor, audit=trail, engine=engine)`` opens the outcomes database,
registers the predictions index as a background sink of ``monitor``, builds the ingest service
(auditing into ``trail``'s log), the performance windows with their gauges and, when an alert
engine is given, feeds it every closed window. ``loop.router()`` is the FastAPI router to mount.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter

from infertrail.alerting.engine import AlertEngine
from infertrail.config import Settings
from infertrail.monitor import Monitor
from infertrail.outcomes.api import outcomes_router
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

__all__ = ["OutcomeLoop"]


@dataclass
class OutcomeLoop:
    """Store, predictions index, ingest service and performance windows of one service."""

    store: OutcomeStore
    index: PredictionIndex
    service: OutcomeService
    windows: PerformanceWindows
    spec_for: Callable[[str], OutcomeSpec]

    @classmethod
    def open(
        cls,
        settings: Settings,
        monitor: Monitor,
        *,
        audit: AuditTrail | None,
        engine: AlertEngine | None = None,
    ) -> OutcomeLoop:
        """Build the loop and register its sink on ``monitor`` (see the module docstring)."""
        store = OutcomeStore(outcomes_db_path(settings))
        index = PredictionIndex(store)
        monitor.add_sink(index)
        outcome_audit = (
            None
            if audit is None
            else OutcomeAudit(
                audit.log, audit.retention, audit.producer, service=settings.service_name
            )
        )
        meter = monitor.telemetry.meter
        service = OutcomeService(
            store,
            audit=outcome_audit,
            index=index,
            batch_max=settings.outcome_batch_max,
            meter=meter,
            hand_over_events=monitor.flush_events,
        )
        spec_for = spec_from_settings(settings)
        windows = PerformanceWindows(spec_for, size=settings.outcome_window)
        service.add_listener(windows)
        windows.add_listener(PerformanceMetrics(meter))
        if engine is not None:
            windows.add_listener(engine_listener(engine))
        return cls(store, index, service, windows, spec_for)

    def router(self) -> APIRouter:
        """``POST /v1/outcomes`` and ``GET /v1/outcomes/performance``."""
        return outcomes_router(self.service, self.spec_for)

    def close(self) -> None:
        """Write the queued predictions and close the database (call after monitor.flush())."""
        self.index.close()
        self.store.close()
