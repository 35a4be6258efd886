"""Shutdown: one deadline for everything, the audit log's final checkpoint first, sinks closed
in reverse registration order, and nothing that never answers can hold a stop."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infertrail.audit.checkpoint import NoteVerifier, open_checkpoint
from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.lifecycle import Deadline, run_bounded
from infertrail.monitor import Monitor
from infertrail.runtime import Runtime

MODEL = ModelInfo("churn", "1", "ab" * 32)


class RecordingSink:
    """A sink that notes its events and when it was flushed and closed."""

    def __init__(self, name: str, log: list[str], *, hang: threading.Event | None = None) -> None:
        self.name, self.log, self.events = name, log, 0
        self._hang = hang

    def __call__(self, event: InferenceEvent) -> None:
        self.events += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self.log.append(self.name)
        if self._hang is not None:
            self._hang.wait()  # never answers within the test

    def __repr__(self) -> str:
        return self.name


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_request_thread_sinks_close_first_then_the_others_in_reverse(settings: Settings) -> None:
    closed: list[str] = []
    monitor = Monitor(settings)
    sinks = [RecordingSink(n, closed) for n in ("audit", "pii", "drift", "slo", "cost")]
    monitor.add_sink(sinks[0], on_request_thread=True)
    monitor.add_sink(sinks[1], on_request_thread=True)
    for sink in sinks[2:]:
        monitor.add_sink(sink)
    for _ in range(3):
        with monitor.observe(MODEL, [1]):
            pass
    monitor.shutdown()
    assert closed == ["pii", "audit", "cost", "slo", "drift"]
    assert all(s.events == 3 for s in sinks)  # the queue was drained before closing
    with monitor.observe(MODEL, [1]):
        pass  # after shutdown: still works, dropped and counted
    assert monitor.dropped_events == 1 and sinks[2].events == 3


def test_a_sink_that_never_returns_cannot_hold_the_shutdown(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[str] = []
    forever = threading.Event()
    monitor = Monitor(settings)
    monitor.add_sink(RecordingSink("first", closed))
    monitor.add_sink(RecordingSink("stuck", closed, hang=forever))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="infertrail.lifecycle"):
        monitor.shutdown(timeout_s=1.0)
    elapsed = time.monotonic() - t0
    forever.set()
    assert elapsed < 2.0
    assert closed == ["stuck"]  # "first" had no time left: skipped, and said so
    assert "sink stuck still running at the deadline; abandoned" in caplog.text
    assert "no time left for sink first" in caplog.text


def test_run_bounded_reports_a_failing_step_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: float) -> None:
        raise OSError("disk gone")

    with caplog.at_level(logging.ERROR, logger="infertrail.lifecycle"):
        assert run_bounded("broken step", broken, Deadline(1.0))
    assert "shutdown: broken step failed" in caplog.text and "disk gone" in caplog.text
    with pytest.raises(ValueError, match="timeout_s must be >= 0"):
        Deadline(-1)


@pytest.mark.slow
def test_an_otlp_endpoint_that_never_answers_cannot_hold_the_runtime(
    settings: Settings, black_hole: str
) -> None:
    s = settings.model_copy(update={"otlp_endpoint": black_hole, "drift_enabled": False})
    rt = Runtime.start(s, [MODEL])
    seqs = []
    for i in range(50):
        with rt.observe(MODEL, {"x": i}, subject=f"s{i % 5}") as ev:
            ev.score = 0.5
        receipt = rt.audit_receipt(ev, timeout_s=10)
        assert receipt is not None
        seqs.append(receipt.seq)
    t0 = time.monotonic()
    rt.shutdown(timeout_s=2.0)
    assert time.monotonic() - t0 < 3.0
    assert not rt.running
    key = (s.keys_dir / "audit.key.pub").read_text().strip()
    note = (s.audit_log_dir / "checkpoints" / "latest").read_bytes()
    assert open_checkpoint(note, NoteVerifier.from_key(key)).size == max(seqs) + 1
    with pytest.raises(RuntimeError, match="not running"):
        rt.observe(MODEL, [1])


def test_a_failed_start_stops_what_it_started(settings: Settings, tmp_path: Path) -> None:
    bad = settings.model_copy(update={"alert_rules_file": tmp_path / "missing.toml"})
    with pytest.raises(Exception, match=r"missing\.toml"):
        Runtime.start(bad, [MODEL])
    # the audit log's lock was released: a new runtime opens the same data directory
    Runtime.start(settings, [MODEL]).shutdown()


def test_models_must_have_unique_names(settings: Settings) -> None:
    with pytest.raises(ValueError, match="model names must be unique"):
        Runtime.start(settings, [MODEL, MODEL])


@pytest.mark.slow
def test_a_webhook_that_never_answers_cannot_hold_the_runtime(
    settings: Settings, black_hole: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[receivers.hook]\ntype = "webhook"\nurl = "{black_hole}/hook"\n\n'
        '[[rules]]\nname = "drifted"\nsignal = "drift.share_drifted"\ncomparison = ">"\n'
        'threshold = 0.3\nfor_windows = 1\nresolve_after = 1\nreceivers = ["hook"]\n'
    )
    s = settings.model_copy(update={"alert_rules_file": rules, "drift_enabled": False})
    rt = Runtime.start(s, [MODEL])
    assert rt.alerting is not None
    for minute in range(3):  # fires, then refreshes: deliveries queue behind the stuck one
        at = datetime.now(UTC) + timedelta(minutes=minute)
        rt.alerting.engine.evaluate({"drift.share_drifted": 0.9}, MODEL.name, at)
    t0 = time.monotonic()
    rt.shutdown(timeout_s=2.0)
    assert time.monotonic() - t0 < 3.0
    assert not rt.running
