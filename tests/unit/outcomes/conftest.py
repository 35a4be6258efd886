"""A service-shaped outcomes loop: Monitor, real audit trail, OutcomeLoop, FastAPI app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.runtime.audit import AuditTrail
from infertrail.runtime.outcomes import OutcomeLoop
from infertrail.web.requestid import RequestIdMiddleware

CREDIT = ModelInfo("credit", "1.0.0", "a" * 64)


@dataclass
class Service:
    settings: Settings
    monitor: Monitor
    trail: AuditTrail
    loop: OutcomeLoop
    client: TestClient

    def predict(
        self, rid: str, score: float, model: ModelInfo = CREDIT, label: str | None = None
    ) -> None:
        """One observed inference with a fixed request id (as the credit endpoint makes)."""
        with self.monitor.observe(
            model, {"x": 1}, request_id=rid, endpoint="/v1/credit/score"
        ) as ev:
            ev.score, ev.confidence = score, max(score, 1 - score)
            ev.label = ev.decision = label or ("approve" if score >= 0.5 else "decline")

    def audit_records(self, event_type: str = "outcome") -> list[dict[str, Any]]:
        log = self.trail.log
        log.flush()
        records = [json.loads(b) for _, b in log.read(0, log.size)]
        return [r for r in records if r["event_type"] == event_type]


@pytest.fixture
def service_settings(tmp_path: Path, clean_env: None) -> Settings:
    s = Settings(data_dir=tmp_path / "data", metric_export_interval_ms=60_000, outcome_window=10)
    s.ensure_dirs()
    return s


@pytest.fixture
def service(service_settings: Settings) -> Iterator[Service]:
    monitor = Monitor(service_settings)
    trail = AuditTrail.open(service_settings, fsync=False)
    monitor.add_sink(trail, on_request_thread=True)
    loop = OutcomeLoop.open(
        service_settings,
        monitor.telemetry.meter,
        audit=trail,
        hand_over_events=monitor.flush_events,
    )
    monitor.add_sink(loop)
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, on_invalid=lambda rid, msg, path: None)
    app.include_router(loop.router())
    with TestClient(app) as client:
        yield Service(service_settings, monitor, trail, loop, client)
    monitor.shutdown()  # closes the trail, then the loop
