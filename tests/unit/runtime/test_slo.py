"""open_slos: the SLO layer on a real Monitor, from observed inferences to an alert."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from infertrail.alerting.engine import AlertEngine
from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.runtime.slo import open_slos
from infertrail.slo.alerts import with_slo_rules
from infertrail.slo.business import ConfidenceReference
from tests.unit.slo.helpers import slo_body, slo_set


class FakeDriftMonitor:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


def test_observed_inferences_reach_the_counts_and_the_engine(tmp_path: Path) -> None:
    slos = slo_set(
        slo_body(name="avail", sli={"kind": "availability"}),
        slo_body(name="digits-ood", model="digits", sli={"kind": "ood"}),
    )
    engine = AlertEngine(with_slo_rules(None, slos), None, None)
    monitor = Monitor(Settings(data_dir=tmp_path, telemetry_files=False))
    drift = FakeDriftMonitor()
    counts = tmp_path / "slo" / "counts.json"
    service = open_slos(
        slos,
        engine,
        monitor.telemetry.meter,
        counts_path=counts,
        drift_monitors=[drift],  # type: ignore[list-item]
        references={"sentiment": ConfidenceReference.from_confidences([0.9] * 10)},
        start=False,
    )
    monitor.add_sink(service)
    try:
        model = ModelInfo("sentiment", "1", "ab")
        for i in range(20):
            try:
                with monitor.observe(model, "text") as ev:
                    ev.label, ev.confidence = "pos", 0.7
                    if i % 2:
                        raise RuntimeError("model failed")
            except RuntimeError:
                pass
        monitor.flush()
        assert drift.listeners == [service.counter.record_drift_report]
        (status, _ood) = service.evaluator.evaluate(time.time() + 60)
        assert (status.period.good, status.period.total) == (10, 20)
        assert status.firing["page"]  # 50 % errors against a 1 % budget
        assert sorted(t.rule for t in engine.firing()) == ["AvailSLO-page", "AvailSLO-ticket"]
        assert service.confidence is not None
        signals = service.confidence.signals("sentiment", time.time() + 60)
        # Successful predictions at 0.7 against a reference at 0.9.
        assert signals["business.confidence_mean_delta"] == pytest.approx(-0.2)
    finally:
        monitor.shutdown()  # closes the SLO sink: saves the counts
    assert counts.exists()
