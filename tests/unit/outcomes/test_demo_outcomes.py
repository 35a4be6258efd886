"""The demo loop: credit requests over HTTP, outcomes from german.data, the alert on degradation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import parse_rules
from infertrail.alerting.testing import RecordingDispatch
from infertrail.config import Settings
from infertrail.demo.outcomes import (
    CREDIT_LABELS,
    DIGITS_LABELS,
    Degradation,
    OutcomeEmitter,
    credit_samples,
    digits_samples,
    http_sender,
    run_credit_loop,
)
from infertrail.models import credit
from infertrail.models.credit import CreditModel, load_dataset
from infertrail.monitor import Monitor
from infertrail.outcomes.join import performance_report
from infertrail.runtime.audit import AuditTrail
from infertrail.runtime.outcomes import OutcomeLoop
from infertrail.server.credit import credit_router
from infertrail.web.requestid import RequestIdMiddleware

from .test_performance import doc_rules


def ignore(_batch: list[dict[str, Any]]) -> None:
    """A sender that drops what it is given."""


Service = tuple[TestClient, OutcomeLoop, AlertEngine, Monitor]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_emitter_waits_for_the_delay() -> None:
    sent: list[list[dict[str, Any]]] = []
    clock = Clock()
    e = OutcomeEmitter(sent.append, CREDIT_LABELS, delay_s=10.0, batch_max=2, clock=clock)
    for i in range(3):
        e.record(f"r{i}", i % 2)
    assert e.pump() == 0 and e.waiting == 3
    clock.now = 10.0
    assert e.pump() == 3
    assert [len(b) for b in sent] == [2, 1]
    assert sent[0][0] == {"request_id": "r0", "outcome": "0", "kind": "label"}
    e.record("r9", "1")
    assert e.drain() == 1 and e.waiting == 0


def test_degradation_flips_a_share_after_n() -> None:
    sent: list[dict[str, Any]] = []
    e = OutcomeEmitter(
        sent.extend, DIGITS_LABELS, degradation=Degradation(after=100, rate=0.5, seed=1)
    )
    truths = [i % 10 for i in range(1100)]
    for i, t in enumerate(truths):
        e.record(f"r{i}", t)
    e.drain()
    flipped = [s["outcome"] != str(t) for s, t in zip(sent, truths, strict=True)]
    assert not any(flipped[:100])
    assert 0.45 < sum(flipped[100:]) / 1000 < 0.55 and e.degraded == sum(flipped)
    assert all(s["outcome"] in DIGITS_LABELS for s in sent)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay_s": -1}, "must be >= 0, got -1"),
        ({"retries": -1}, "must be >= 0, got 0.0, 1.0, -1"),
        ({"batch_max": 0}, "batch_max must be >= 1"),
    ],
)
def test_emitter_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutcomeEmitter(ignore, CREDIT_LABELS, **kwargs)
    with pytest.raises(ValueError, match="at least two distinct labels"):
        OutcomeEmitter(ignore, ["1", "1"])
    with pytest.raises(ValueError, match="rate must be within"):
        Degradation(after=0, rate=1.5)
    with pytest.raises(ValueError, match="'after' must be >= 0"):
        Degradation(after=-1, rate=0.5)
    e = OutcomeEmitter(ignore, CREDIT_LABELS)
    with pytest.raises(ValueError, match="truth 2 is not one of the labels"):
        e.record("r", 2)


def test_samples_come_from_the_data() -> None:
    data = load_dataset()
    apps = [next(s) for s in [credit_samples(0)] for _ in range(5)]
    assert all(set(a) == set(credit.ATTRIBUTE_NAMES) and y in (0, 1) for a, y in apps)
    assert sorted(set(int(v) for v in data.y)) == [0, 1]
    pixels, digit = next(digits_samples(0))
    assert len(pixels) == 64 and 0 <= min(pixels) <= max(pixels) <= 16 and 0 <= digit <= 9


@pytest.fixture(scope="module")
def credit_model(tmp_path_factory: pytest.TempPathFactory) -> CreditModel:
    root = tmp_path_factory.mktemp("credit-models")
    credit.train(root)
    return CreditModel.load(root)


@pytest.fixture
def app(tmp_path: Path, clean_env: None, credit_model: CreditModel) -> Iterator[Service]:
    settings = Settings(
        data_dir=tmp_path / "data",
        metric_export_interval_ms=60_000,
        outcome_window=100,
        telemetry_files=False,
    )
    settings.ensure_dirs()
    monitor = Monitor(settings)
    trail = AuditTrail.open(settings, fsync=False)
    monitor.add_sink(trail, on_request_thread=True)
    engine = AlertEngine(parse_rules(doc_rules()), RecordingDispatch(), tmp_path / "alerts.json")
    loop = OutcomeLoop.open(
        settings,
        monitor.telemetry.meter,
        audit=trail,
        engine=engine,
        hand_over_events=monitor.flush_events,
    )
    monitor.add_sink(loop)
    api = FastAPI()
    api.add_middleware(RequestIdMiddleware, on_invalid=lambda rid, msg, path: None)
    api.include_router(credit_router(monitor, credit_model, settings))
    api.include_router(loop.router())
    with TestClient(api) as client:
        yield client, loop, engine, monitor
    monitor.shutdown()  # closes the trail, then the loop


@pytest.mark.slow
def test_credit_loop_alerts_only_when_the_world_changes(app: Service) -> None:
    client, loop, engine, monitor = app
    emitter = OutcomeEmitter(
        http_sender(client),
        CREDIT_LABELS,
        batch_max=50,
        degradation=Degradation(after=300, rate=0.6, seed=3),
    )

    def run(n: int, seed: int) -> None:
        run_credit_loop(client, emitter, n, seed=seed)
        monitor.flush()  # the index has every prediction before its outcome is sent
        emitter.drain()

    run(300, seed=1)  # three windows of truthful outcomes
    clean = performance_report(loop.store, loop.spec_for, model="credit").groups[0]
    assert clean.performance.n == 300 and clean.performance.accuracy is not None
    assert clean.performance.accuracy > 0.7
    assert engine.firing() == []
    run(300, seed=2)  # then 60% of outcomes contradict the data: accuracy falls
    [alert] = engine.firing()
    assert alert.rule == "credit-performance-dropped" and alert.value < 0.65
    assert loop.store.counts()["outcomes"] == 600 and emitter.lost == 0


def test_unknown_ids_are_sent_again() -> None:
    answers: list[dict[str, Any]] = [{"unknown": ["r1"]}, {"unknown": ["r1"]}, {"unknown": []}]
    sent: list[list[str]] = []

    def send(batch: list[dict[str, Any]]) -> dict[str, Any]:
        sent.append([o["request_id"] for o in batch])
        return answers.pop(0)

    clock = Clock()
    e = OutcomeEmitter(send, CREDIT_LABELS, retry_s=5.0, retries=1, clock=clock)
    e.record("r0", 1)
    e.record("r1", 0)
    assert e.pump() == 2 and e.waiting == 1  # r1 overtook its prediction: kept for later
    assert e.pump() == 0
    clock.now = 5.0
    assert e.pump() == 1 and e.lost == 1 and e.waiting == 0  # one retry, then given up
    assert sent == [["r0", "r1"], ["r1"]]
