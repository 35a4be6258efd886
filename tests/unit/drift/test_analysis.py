"""Window analyzers and slices: what the drift monitor hands them, and what it does with it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import numpy as np
import pytest

from infertrail.drift import DriftMonitor, DriftReport, DriftWindow, Profile
from infertrail.drift.analysis import Analysis, check_analyzers, run_analyzers
from infertrail.drift.stats import IntArray
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.runtime.alerts import drift_signals

MODEL = ModelInfo("credit", "1.0", "cd" * 32)


def _event(inputs: object, i: int, **fields: object) -> InferenceEvent:
    return InferenceEvent(
        model=MODEL, request_id=f"r{i}", service="s", team="risk", endpoint="/score",
        inputs=inputs, input_size=1, label="yes" if i % 2 else "no", confidence=0.8,
        score=i / 100, tenant="acme" if i % 3 else None, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def _row(rng: np.random.Generator) -> list[object]:
    return [*rng.normal(size=20).tolist(), "red"]


class Recording:
    """Keeps every window it is given; signals from a function of the window."""

    def __init__(self, name: str = "recording", signal: float = 1.0) -> None:
        self.name = name
        self.signal = signal
        self.windows: list[DriftWindow] = []

    def analyze(self, window: DriftWindow) -> Analysis:
        self.windows.append(window)
        return Analysis({"n": window.n_samples}, {f"{self.name}.n": float(window.n_samples)})


class Failing:
    name = "failing"

    def analyze(self, window: DriftWindow) -> Analysis:
        raise RuntimeError("broken analyzer")


class ByTenant:
    def partition(self, window: DriftWindow) -> Mapping[str, IntArray]:
        tenants = np.array([t or "none" for t in window.attributes["tenant"]])
        return {f"tenant={t}": np.flatnonzero(tenants == t) for t in sorted(set(tenants))}


@pytest.fixture
def monitors() -> Iterator[list[DriftMonitor]]:
    made: list[DriftMonitor] = []
    yield made
    for m in made:
        m.close()


def test_analyzers_see_the_whole_window_and_fill_the_report(
    tabular_profile: Profile, monitors: list[DriftMonitor]
) -> None:
    recording = Recording()
    dm = DriftMonitor(tabular_profile, window_size=60, analyzers=[recording, Failing()])
    monitors.append(dm)
    rng = np.random.default_rng(1)
    dm(_event(["not", "a", "row"], 0))  # feature extraction fails: a rejected input
    for i in range(60):
        dm(_event(_row(rng), i, probabilities={"yes": 0.25, "no": 0.75, "maybe": 0.5}))
    assert dm.flush(30)
    report = dm.latest
    assert report is not None
    (window,) = recording.windows
    assert window.n_samples == 60 and len(window.inputs) == 60
    assert window.rejected == (["not", "a", "row"],)
    assert window.scores is not None and window.scores[7] == pytest.approx(0.07)
    assert window.attributes["tenant"][:3] == (None, "acme", "acme")
    assert window.attributes["team"][0] == "risk"
    assert window.attributes["endpoint"][0] == "/score"
    classes = tabular_profile.prediction.categories  # type: ignore[union-attr]
    assert window.probabilities is not None and window.probabilities.shape == (60, len(classes))
    assert window.probabilities[0, classes.index("yes")] == 0.25  # unknown labels are ignored
    assert report.sections == {"recording": {"n": 60}}  # the failing one: no section
    assert report.signals == {"recording.n": 60.0}
    assert dm.stats.analyzer_errors == 1
    # The alert engine sees the analyzers' signals beside the detector's.
    signals = drift_signals(report)
    assert signals["recording.n"] == 60.0 and "drift.score" in signals


def test_without_probabilities_the_window_has_none(
    tabular_profile: Profile, monitors: list[DriftMonitor]
) -> None:
    recording = Recording()
    dm = DriftMonitor(tabular_profile, window_size=40, analyzers=[recording])
    monitors.append(dm)
    rng = np.random.default_rng(2)
    for round_ in range(2):  # the second window reuses the buffers: nothing carries over
        for i in range(40):
            dm(_event(_row(rng), i))
        assert dm.flush(30)
        assert recording.windows[round_].probabilities is None
        assert recording.windows[round_].rejected == ()
        assert len(recording.windows[round_].inputs) == 40


def test_slices_are_judged_on_their_own(
    tabular_profile: Profile, monitors: list[DriftMonitor]
) -> None:
    recording = Recording()
    dm = DriftMonitor(
        tabular_profile,
        window_size=90,
        analyzers=[recording],
        slicer=ByTenant(),
        min_slice_samples=31,
    )
    monitors.append(dm)
    rng = np.random.default_rng(3)
    for i in range(90):
        dm(_event(_row(rng), i))
    assert dm.flush(30)
    report = dm.latest
    assert report is not None
    # 60 rows of acme, 30 without a tenant: below min_slice_samples, so not judged.
    assert set(report.slices) == {"tenant=acme"}
    acme = report.slices["tenant=acme"]
    assert acme.n_samples == 60
    assert acme.sections == {"recording": {"n": 60}}
    assert acme.signals == {"recording.n": 60.0}
    assert dm.stats.slices_too_small == 1
    # The slice's window holds only its rows, aligned.
    sliced = next(w for w in recording.windows if w.n_samples == 60)
    assert set(sliced.attributes["tenant"]) == {"acme"}
    assert len(sliced.inputs) == 60
    assert report.to_dict()["slices"]["tenant=acme"]["n_samples"] == 60


def test_run_analyzers_drops_signals_that_are_not_finite(caplog: pytest.LogCaptureFixture) -> None:
    class Odd:
        name = "odd"

        def analyze(self, window: DriftWindow) -> Analysis:
            return Analysis({}, {"a": float("nan"), "b": float("inf"), "c": 0.5, "d": "x"})  # type: ignore[dict-item]

    class Repeats:
        name = "repeats"

        def analyze(self, window: DriftWindow) -> Analysis:
            return Analysis({"x": 1}, {"c": 0.9})

    class NotAnAnalysis:
        name = "garbage"

        def analyze(self, window: DriftWindow) -> object:
            return {"section": {}}

    window = DriftWindow(np.zeros((3, 2)))
    with caplog.at_level(logging.ERROR, logger="infertrail.drift"):
        results = run_analyzers([Odd(), Repeats(), NotAnAnalysis()], window, "m")  # type: ignore[list-item]
    assert results.signals == {"c": 0.5}
    assert results.sections == {"odd": {}, "repeats": {"x": 1}}
    assert results.failed == ["garbage"]
    assert "not a finite number" in caplog.text and "repeats another's" in caplog.text


def test_analyzers_are_checked() -> None:
    with pytest.raises(ValueError, match="non-empty str name"):
        check_analyzers([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no analyze"):

        class NoMethod:
            name = "x"

        check_analyzers([NoMethod()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two window analyzers are named 'recording'"):
        check_analyzers([Recording(), Recording()])


def test_subset_keeps_rows_aligned() -> None:
    rows = np.arange(12, dtype=float).reshape(6, 2)
    window = DriftWindow(
        rows,
        labels=np.arange(6),
        confidences=np.linspace(0, 1, 6),
        scores=np.arange(6) / 10,
        probabilities=np.eye(6)[:, :3],
        inputs=tuple("abcdef"),
        rejected=("bad",),
        attributes={"tenant": ("t0", "t1", "t2", "t3", "t4", "t5")},
        started_at=1.0,
        closed_at=2.0,
    )
    part = window.subset(np.array([4, 1]))
    assert part.rows.tolist() == [[8.0, 9.0], [2.0, 3.0]]
    assert part.labels is not None and part.labels.tolist() == [4, 1]
    assert part.scores is not None and part.scores.tolist() == [0.4, 0.1]
    assert part.probabilities is not None and part.probabilities.shape == (2, 3)
    assert part.inputs == ("e", "b") and part.attributes == {"tenant": ("t4", "t1")}
    assert part.rejected == () and (part.started_at, part.closed_at) == (1.0, 2.0)


def test_a_report_without_analyzers_is_as_before(tabular_profile: Profile) -> None:
    from infertrail.drift import DriftDetector

    rng = np.random.default_rng(4)
    rows = tabular_profile.features_batch([_row(rng) for _ in range(50)])
    report: DriftReport = DriftDetector(tabular_profile).compare(DriftWindow(rows))
    assert report.sections == {} and report.signals == {} and report.slices == {}
    assert datetime.fromtimestamp(report.closed_at, UTC).year == 1970
