"""The predictions index: a background Monitor sink that batches predictions into SQLite."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.outcomes.index import PredictionIndex
from infertrail.outcomes.store import OutcomeStore

MODEL = ModelInfo("digits", "2", "b" * 64)


@pytest.fixture
def store(tmp_path: Path) -> OutcomeStore:
    return OutcomeStore(tmp_path / "o.db")


def test_monitor_events_are_indexed(tmp_path: Path, clean_env: None, store: OutcomeStore) -> None:
    settings = Settings(data_dir=tmp_path / "data", telemetry_files=False)
    monitor = Monitor(settings)
    index = PredictionIndex(store, start=False)
    monitor.add_sink(index)
    try:
        with monitor.observe(MODEL, [0] * 64, request_id="ok-1", endpoint="/v1/digits") as ev:
            ev.label, ev.confidence = "7", 0.93
        with pytest.raises(RuntimeError), monitor.observe(MODEL, [0], request_id="bad-1"):
            raise RuntimeError("model failed")
        monitor.record_rejection(
            MODEL,
            error_type="invalid_input",
            message="x",
            request_id="rej-1",
            endpoint="/v1/digits",
        )
        monitor.flush_events()  # handed to the sinks, not yet flushed by them
        assert index.pending == 1  # only the successful inference has a prediction
        index.close()
    finally:
        monitor.shutdown()
    p = store.prediction("ok-1")
    assert p is not None
    assert (p.model, p.version, p.label, p.confidence, p.score) == ("digits", "2", "7", 0.93, None)
    assert p.endpoint == "/v1/digits" and p.team == settings.team and p.latency_ms >= 0
    assert store.prediction("bad-1") is None and store.prediction("rej-1") is None
    assert index.indexed == 1
    store.close()


def _event_stub(rid: str) -> object:
    from infertrail.events import InferenceEvent

    return InferenceEvent(
        model=MODEL,
        request_id=rid,
        service="s",
        team="t",
        endpoint="/e",
        inputs=[1],
        input_size=1,
        label="1",
        start_time_ns=1,
    )


def test_writer_thread_flushes_when_full(store: OutcomeStore) -> None:
    index = PredictionIndex(store, flush_interval_s=60.0, batch_max=10)
    try:
        for i in range(10):
            index(_event_stub(f"r{i}"))  # type: ignore[arg-type]
        done = threading.Event()
        for _ in range(200):  # the 10th wakes the writer long before its 60 s interval
            if store.counts()["predictions"] == 10:
                done.set()
                break
            done.wait(0.02)
        assert done.is_set()
    finally:
        index.close()
    index(_event_stub("late"))  # type: ignore[arg-type]
    assert index.pending == 0  # closed: ignored
    store.close()


def test_a_failed_flush_keeps_the_rows(store: OutcomeStore, tmp_path: Path) -> None:
    index = PredictionIndex(store, start=False)
    index(_event_stub("r1"))  # type: ignore[arg-type]
    broken = OutcomeStore(tmp_path / "broken.db")
    broken.close()
    index.store = broken
    with pytest.raises(sqlite3.ProgrammingError):
        index.flush()
    assert index.pending == 1
    index.store = store
    index.close()
    assert store.prediction("r1") is not None
    with pytest.raises(ValueError, match="flush_interval_s must be > 0"):
        PredictionIndex(store, flush_interval_s=0)
    store.close()
