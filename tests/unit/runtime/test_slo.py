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


def test_generation_outcome_rules_fire_without_an_slo_file(tmp_path: Path) -> None:
    """A rules file alone is enough for the business signals: the runtime still runs them."""
    from infertrail.runtime.assembly import Runtime

    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "llm-truncated"\nsignal = "business.gen_ai_truncated_rate"\n'
        'model = "support-llm"\ncomparison = ">"\nthreshold = 0.2\nfor_windows = 1\n'
        'resolve_after = 1\nseverity = "warning"\n'
    )
    settings = Settings(
        data_dir=tmp_path / "data",
        telemetry_files=False,
        audit_enabled=False,
        alert_rules_file=rules,
    )
    llm = ModelInfo("support-llm", "1", "")
    runtime = Runtime.start(settings, models=[llm])
    try:
        assert runtime.slo is not None and runtime.alerting is not None
        genai = runtime.genai("openai")
        for i in range(10):  # 4 of 10 cut at max_tokens: 40 % > 20 %
            with genai.chat(llm, [{"role": "user", "content": f"question {i}"}]) as call:
                call.finish("an answer", finish_reasons=["length" if i < 4 else "stop"])
        assert runtime.flush(10)
        runtime.slo.evaluator.evaluate(time.time() + 61)
        firing = [(t.rule, t.model) for t in runtime.alerting.engine.firing()]
    finally:
        runtime.shutdown()
    assert firing == [("llm-truncated", "support-llm")]
