"""Calibrated thresholds: each reference chunk is compared with the reference without it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infertrail.drift import (
    DriftDetector,
    DriftWindow,
    Profile,
    build_tabular_profile,
    calibrate,
)
from infertrail.drift.calibration import chunk_splits, profile_of_rows


@given(n=st.integers(2, 500), size=st.integers(1, 250))
def test_chunks_are_disjoint_from_their_rest(n: int, size: int) -> None:
    if n // size < 2:
        with pytest.raises(ValueError, match="at least 2 chunks"):
            chunk_splits(n, size)
        return
    splits = chunk_splits(n, size)
    assert len(splits) == n // size
    for chunk, rest in splits:
        assert len(chunk) == size
        assert not set(chunk) & set(rest)
        assert sorted([*chunk, *rest]) == list(range(n))


def test_each_chunk_is_compared_with_the_reference_without_it(tabular_profile: Profile) -> None:
    cal = calibrate(tabular_profile, chunk_size=1000)
    assert cal.chunk_size == 1000 and len(cal.chunk_distances["x0"]) == 5
    rows = tabular_profile.sample
    labels, conf = tabular_profile.sample_labels, tabular_profile.sample_confidences
    assert labels is not None and conf is not None
    for k, (chunk, rest) in enumerate(chunk_splits(len(rows), 1000)):
        sub = profile_of_rows(tabular_profile, rows[rest], labels[rest], conf[rest])
        report = DriftDetector(sub).compare(DriftWindow(rows[chunk], labels[chunk], conf[chunk]))
        assert cal.chunk_distances["x0"][k] == pytest.approx(report.feature("x0").distance)
        assert cal.chunk_distances["color"][k] == pytest.approx(report.feature("color").distance)
        assert report.prediction.label is not None
        assert cal.chunk_distances["prediction.label"][k] == pytest.approx(
            report.prediction.label.distance
        )
    d = np.array(cal.chunk_distances["x0"])
    assert cal.thresholds["x0"] == pytest.approx(d.mean() + 3 * d.std(ddof=1))


def test_leaving_the_chunk_out_widens_the_band(tabular_profile: Profile) -> None:
    cal = calibrate(tabular_profile, chunk_size=500)
    rows = tabular_profile.sample
    inside = DriftDetector(tabular_profile)  # the chunk is part of this reference
    in_sample = [
        inside.compare(DriftWindow(rows[chunk])).feature("x0").distance
        for chunk, _ in chunk_splits(len(rows), 500)
    ]
    assert np.mean(cal.chunk_distances["x0"]) > np.mean(in_sample)


def test_calibrated_thresholds_drive_the_decision() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3))
    p = build_tabular_profile(X, ["a", "b", "c"])
    cal = calibrate(p, chunk_size=200, reference=X)
    cfg = cal.config()
    detector = DriftDetector(p, cfg)
    window = rng.normal(size=(200, 3))
    report = detector.compare(DriftWindow(window))
    for f in report.features:
        assert f.threshold == pytest.approx(cal.thresholds[f.name])
        assert f.drifted == (f.distance >= f.threshold)
    # at window size 200 the default 0.1 would be close to the clean noise level; the
    # calibrated band sits above it and still flags a real shift
    assert all(t > 0.1 for t in cal.thresholds.values())
    shifted = detector.compare(DriftWindow(window + 0.5))
    assert shifted.n_drifted == 3


def test_calibration_rejects_bad_input(tabular_profile: Profile) -> None:
    with pytest.raises(ValueError, match="reference must have shape"):
        calibrate(tabular_profile, chunk_size=10, reference=np.zeros((100, 3)))
    with pytest.raises(ValueError, match="n_sigma must be positive"):
        calibrate(tabular_profile, chunk_size=1000, n_sigma=0)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        calibrate(tabular_profile, chunk_size=0)
