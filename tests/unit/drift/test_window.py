"""DriftMonitor: sampling, bounded windows closed by count or time, its own detector thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from infertrail.config import Settings
from infertrail.drift import DriftMonitor, DriftReport, Profile
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.monitor import Monitor

MODEL = ModelInfo("credit", "1.0", "cd" * 32)


def _event(inputs: object, *, model: ModelInfo = MODEL, status: str = "ok") -> InferenceEvent:
    ev = InferenceEvent(
        model=model, request_id="r", service="s", team="t", endpoint="e",
        inputs=inputs, input_size=1, label="yes", confidence=0.8,
    )  # fmt: skip
    ev.status = status  # type: ignore[assignment]
    return ev


def _inputs(rng: np.random.Generator, shift: float = 0.0) -> list[object]:
    return [*(rng.normal(size=20) + shift).tolist(), "red"]


@pytest.fixture
def make(tabular_profile: Profile) -> Iterator[type[DriftMonitor]]:
    monitors: list[DriftMonitor] = []

    class Tracked(DriftMonitor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(tabular_profile, *args, **kwargs)  # type: ignore[arg-type]
            monitors.append(self)

    yield Tracked
    for m in monitors:
        m.close()


def test_windows_close_by_count_and_reach_listeners(make: type[DriftMonitor]) -> None:
    got: list[DriftReport] = []
    threads: set[str] = set()

    def listener(r: DriftReport) -> None:
        got.append(r)
        threads.add(threading.current_thread().name)

    dm = make(window_size=200, listeners=[listener])  # type: ignore[call-arg]
    rng = np.random.default_rng(0)
    for _ in range(200):
        dm(_event(_inputs(rng)))
    for _ in range(200):
        dm(_event(_inputs(rng, shift=2.0)))
    assert dm.flush()
    assert [r.n_samples for r in got] == [200, 200]
    assert not got[0].dataset_drift and got[1].dataset_drift
    assert threads == {"infertrail-drift"}  # never the caller's thread
    assert dm.latest is got[1] and dm.reports == got
    assert got[0].prediction.label_shares == {"yes": 1.0}


def test_sampling_rate_is_honoured_and_seeded(make: type[DriftMonitor]) -> None:
    rng = np.random.default_rng(1)
    events = [_event(_inputs(rng)) for _ in range(5000)]
    counts = []
    for _ in range(2):
        dm = make(window_size=10_000, sample_rate=0.2, seed=42)  # type: ignore[call-arg]
        for ev in events:
            dm(ev)
        counts.append(dm.stats.sampled)
    # binomial(5000, 0.2): mean 1000, sd 28; 5 sd either side
    assert abs(counts[0] - 1000) < 5 * 28.3
    assert counts[0] == counts[1]  # same seed, same sample


def test_memory_is_bounded_whatever_the_traffic(make: type[DriftMonitor]) -> None:
    dm = make(window_size=50, keep_reports=3)  # type: ignore[call-arg]
    before = dm.buffer_bytes
    # rows, labels, confidences, scores and the two classes' probabilities, per buffer
    assert before == 3 * (50 * 21 * 8 + 50 * 8 + 50 * 8 + 50 * 8 + 50 * 2 * 8)
    rng = np.random.default_rng(2)
    rows = [_inputs(rng) for _ in range(100)]
    for i in range(5000):
        dm(_event(rows[i % 100]))
    dm.flush()
    assert dm.buffer_bytes == before
    assert len(dm.reports) == min(3, dm.stats.windows_closed)
    s = dm.stats
    assert s.windows_closed + s.windows_dropped == 100
    assert s.sampled == 5000


def test_windows_close_by_time_without_new_events(make: type[DriftMonitor]) -> None:
    now = [0.0]
    got = threading.Event()
    dm = make(  # type: ignore[call-arg]
        window_size=10_000, window_seconds=0.05, min_samples=5,
        clock=lambda: now[0], listeners=[lambda r: got.set()],
    )  # fmt: skip
    rng = np.random.default_rng(3)
    for _ in range(10):
        dm(_event(_inputs(rng)))
    assert not got.is_set()
    now[0] = 1.0  # the window is now old: the drift thread closes it on its own
    assert got.wait(10.0)
    assert dm.latest is not None and dm.latest.n_samples == 10


def test_window_too_small_at_time_close_is_skipped(make: type[DriftMonitor]) -> None:
    now = [0.0]
    dm = make(  # type: ignore[call-arg]
        window_size=100, window_seconds=1.0, min_samples=50, clock=lambda: now[0]
    )
    rng = np.random.default_rng(4)
    dm(_event(_inputs(rng)))
    now[0] = 2.0
    dm(_event(_inputs(rng)))  # closes by time with 2 < 50 samples
    assert dm.stats.windows_too_small == 1 and dm.stats.windows_closed == 0


def test_other_models_errors_and_bad_inputs_are_counted(make: type[DriftMonitor]) -> None:
    dm = make(window_size=10)  # type: ignore[call-arg]
    dm(_event(_inputs(np.random.default_rng(5)), model=ModelInfo("other", "1", "00")))
    dm(_event(None))
    dm(_event([1.0], status="ok"))
    dm(_event(_inputs(np.random.default_rng(5)), status="error"))
    s = dm.stats
    assert (s.events, s.other_model, s.not_ok, s.feature_errors, s.sampled) == (4, 1, 2, 1, 0)


def test_a_failing_listener_does_not_stop_the_others(make: type[DriftMonitor]) -> None:
    got: list[DriftReport] = []

    def broken(_r: DriftReport) -> None:
        raise RuntimeError("boom")

    dm = make(window_size=30, listeners=[broken, got.append])  # type: ignore[call-arg]
    rng = np.random.default_rng(6)
    for _ in range(30):
        dm(_event(_inputs(rng)))
    dm.flush()
    assert len(got) == 1 and dm.stats.listener_errors == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_size": 0}, "window_size"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"window_seconds": -1.0}, "window_seconds"),
        ({"min_samples": 5000}, "min_samples"),
        ({"keep_reports": 0}, "keep_reports"),
    ],
)
def test_bad_arguments_are_named(
    tabular_profile: Profile, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DriftMonitor(tabular_profile, **kwargs)


def test_as_a_monitor_sink(settings: Settings, tabular_profile: Profile) -> None:
    monitor = Monitor(settings)
    dm = DriftMonitor(tabular_profile, window_size=100)
    monitor.add_sink(dm)
    try:
        rng = np.random.default_rng(7)
        for _ in range(100):
            with monitor.observe(MODEL, _inputs(rng)) as ev:
                ev.label, ev.confidence = "no", 0.7
        monitor.flush()
        deadline = time.monotonic() + 10
        while dm.latest is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dm.latest is not None and dm.latest.n_samples == 100
        assert dm.latest.prediction.confidence_mean == pytest.approx(0.7)
    finally:
        dm.close()
        monitor.shutdown()


def test_close_judges_the_last_window_and_ignores_later_events(make: type[DriftMonitor]) -> None:
    dm = make(window_size=1000, min_samples=10)  # type: ignore[call-arg]
    rng = np.random.default_rng(8)
    for _ in range(20):
        dm(_event(_inputs(rng)))
    dm.close()
    assert dm.latest is not None and dm.latest.n_samples == 20
    dm(_event(_inputs(rng)))
    assert dm.stats.sampled == 20
    dm.close()  # idempotent
