"""DLE: estimated regression error against realized error; persistence by refitting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infertrail.estimation import DleModel, fit_dle


def _data(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = sin(x0) + x1 + noise whose sd grows with |x0|; the model knows the mean exactly."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, 2))
    X[:, 0] += shift
    y_pred = np.sin(X[:, 0]) + X[:, 1]
    y = y_pred + rng.normal(0.0, 0.2 + 0.5 * np.abs(X[:, 0]), n)
    return X, y, y_pred


@pytest.fixture(scope="module")
def model() -> DleModel:
    X, y, y_pred = _data(6000, 0)
    return fit_dle(X, y, y_pred)


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_estimates_follow_the_realized_error_under_covariate_shift(
    model: DleModel, shift: float
) -> None:
    X, y, y_pred = _data(3000, 1, shift)
    estimate = model.estimate(X, y_pred)
    realized = {"mae": np.mean(np.abs(y - y_pred)), "mse": np.mean((y - y_pred) ** 2)}
    for name, value in realized.items():
        metric = estimate.metrics[name]
        assert metric.value is not None and metric.sampling_error is not None
        assert abs(metric.value - value) <= 0.1 * value + 3 * metric.sampling_error, name
    if shift:  # noisier inputs: the error grows, and the estimate says so
        assert estimate.alert


def test_thresholds_come_from_reference_chunks_and_stay_non_negative(model: DleModel) -> None:
    ref = model.metrics["mae"]
    values = np.asarray(ref.chunk_values, dtype=float)
    assert len(values) == 10
    assert ref.lower_threshold == pytest.approx(max(values.mean() - 3 * values.std(), 0.0))
    assert ref.upper_threshold == pytest.approx(values.mean() + 3 * values.std())
    assert ref.upper_limit is None


def test_a_saved_model_refits_to_the_same_estimates(model: DleModel, tmp_path: Path) -> None:
    model.save(tmp_path / "dle.json")
    loaded = DleModel.load(tmp_path / "dle.json")
    X, _, y_pred = _data(500, 2)
    assert loaded.estimate(X, y_pred) == model.estimate(X, y_pred)


def test_missing_features_are_kept_through_the_file(tmp_path: Path) -> None:
    X, y, y_pred = _data(400, 3)
    X[::7, 1] = np.nan
    model = fit_dle(X, y, y_pred, metrics=["mae"])
    model.save(tmp_path / "dle.json")
    loaded = DleModel.load(tmp_path / "dle.json")
    assert np.array_equal(loaded.features, model.features, equal_nan=True)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([[1.0]] * 20, [1.0] * 20, [1.0] * 19), {}, r"y_pred must hold one number per row \(20\)"),
        (([1.0] * 20, [1.0] * 20, [1.0] * 20), {}, "X must be 2-D"),
        (([[1.0]] * 20, [1.0] * 19 + [np.inf], [1.0] * 20), {}, "y_true must be finite"),
        (([[np.inf]] * 20, [1.0] * 20, [1.0] * 20), {}, "infinite"),
        (([[1.0]] * 20, [1.0] * 20, [1.0] * 20), {"metrics": ["mape"]}, "subset"),
        (([[1.0]] * 20, [1.0] * 20, [1.0] * 20), {"chunk_size": 11}, "2 full chunks"),
    ],
)
def test_bad_input_is_refused(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_dle(*args, **kwargs)


def test_a_window_of_other_features_is_refused(model: DleModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n x 2"):
        model.estimate(np.zeros((3, 3)), np.zeros(3))
    (tmp_path / "dle.json").write_text('{"format": "infertrail-dle", "version": 9}')
    with pytest.raises(ValueError, match=r"dle\.json: format 'infertrail-dle' version 9"):
        DleModel.load(tmp_path / "dle.json")
