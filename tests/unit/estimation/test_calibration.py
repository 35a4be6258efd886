"""Isotonic calibration: the stored map is scikit-learn's, and it is used only when it helps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.isotonic import IsotonicRegression

from infertrail.estimation.calibration import (
    IsotonicMap,
    equal_count_edges,
    expected_calibration_error,
    fit_calibration,
    needs_calibration,
)

from .conftest import miscalibrated_binary

unit = st.floats(0, 1, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(2, 60), elements=unit),
    st.integers(0, 2**32 - 1),
    hnp.arrays(np.float64, 20, elements=st.floats(-0.5, 1.5, allow_nan=False)),
)
def test_the_map_predicts_what_isotonic_regression_predicts(
    scores: np.ndarray, seed: int, probe: np.ndarray
) -> None:
    y = np.random.default_rng(seed).integers(0, 2, len(scores))
    fitted = IsotonicMap.fit(scores, y)
    reference = IsotonicRegression(out_of_bounds="clip").fit(scores, y)
    np.testing.assert_allclose(fitted(probe), reference.predict(probe), atol=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([], [], "non-empty"),
        ([0.1, 0.2], [0.5], "equally long"),
        ([0.2, 0.1], [0.1, 0.2], "strictly increasing"),
        ([0.1, 0.2], [0.3, 0.2], "must not decrease"),
        ([0.1, 0.2], [0.3, 1.2], r"\[0, 1\]"),
        ([0.1, float("nan")], [0.1, 0.2], "finite"),
    ],
)
def test_a_malformed_map_is_refused(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IsotonicMap(np.asarray(x), np.asarray(y))


def test_equal_count_bins_put_the_remainder_last_and_shrink_for_few_values() -> None:
    assert equal_count_edges(105) == [(i * 10, i * 10 + 10) for i in range(9)] + [(90, 105)]
    assert equal_count_edges(12) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)]
    with pytest.raises(ValueError, match="at least 4"):
        equal_count_edges(3)


def test_expected_calibration_error_by_hand() -> None:
    p = np.array([0.1, 0.2, 0.8, 0.9])
    y = np.array([0, 1, 1, 1])
    # bins {0.1, 0.2} (mean p .15, mean y .5) and {0.8, 0.9} (.85 against 1): .5*.35 + .5*.15
    assert expected_calibration_error(y, p, [(0, 2), (2, 4)]) == pytest.approx(0.25)


def test_miscalibrated_scores_get_a_map_that_calibrates_them() -> None:
    y, _, score = miscalibrated_binary(20_000, 0)
    fitted = fit_calibration(y, score)
    assert fitted is not None
    y2, _, score2 = miscalibrated_binary(20_000, 1)
    edges = equal_count_edges(len(y2))
    after = expected_calibration_error(y2, fitted(score2), edges)
    assert after < 0.5 * expected_calibration_error(y2, score2, edges)


def test_one_class_or_separable_scores_are_left_alone() -> None:
    assert not needs_calibration(np.ones(50, dtype=np.int64), np.linspace(0, 1, 50))
    y = np.array([0] * 25 + [1] * 25)
    assert not needs_calibration(y, np.linspace(0.3, 0.6, 50))  # ROC AUC 1
