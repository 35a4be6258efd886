"""Direct loss estimation (DLE): a regression model's error on a window without its outcomes.

On a labelled reference, one gradient-boosted regressor per metric learns the model's per-row
loss (``|y - y_hat|`` for MAE, ``(y - y_hat)^2`` for MSE) from the features and the prediction;
on a window, the estimate is the mean predicted loss (negative predictions count 0). Thresholds
and sampling error are CBPE's (:mod:`.estimate`): mean -/+ 3 sd of the metric over reference
chunks, and ``sd(per-row loss) / sqrt(n)``.

This is NannyML's DLE with scikit-learn's ``HistGradientBoostingRegressor`` in place of
LightGBM (not a dependency of infertrail), so estimates differ slightly from NannyML's; it is
tested against realized error instead. The premise is CBPE's in another form: the loss given
features and prediction is what it was on the reference (no concept shift).

Persistence: the fitted regressors are not JSON, so :meth:`DleModel.to_dict` keeps the reference
rows and the settings, and :meth:`DleModel.from_dict` fits again, deterministically (a fixed
seed; the same scikit-learn gives the same trees). Keep the reference a sample (say 10,000
rows): the file holds every row, and loading refits (about half a second per 10,000 rows).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from infertrail.estimation.calibration import FloatArray
from infertrail.estimation.cbpe import DEFAULT_CHUNKS, chunk_bounds
from infertrail.estimation.cbpe_io import read_json, write_json
from infertrail.estimation.estimate import Estimate, MetricReference, finite_or_none
from infertrail.estimation.metrics import thresholds

FORMAT = "infertrail-dle"
FORMAT_VERSION = 1
#: The regression metrics DLE estimates: mean absolute and mean squared error.
REGRESSION_METRICS = ("mae", "mse")


def _losses(name: str, y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    error = y_true - y_pred
    return np.abs(error) if name == "mae" else error * error


@dataclass(frozen=True)
class DleModel:
    """A fitted DLE estimator; :meth:`estimate` judges a window of features and predictions."""

    metrics: dict[str, MetricReference]
    features: FloatArray = field(repr=False)
    y_true: FloatArray = field(repr=False)
    y_pred: FloatArray = field(repr=False)
    chunk_size: int
    seed: int
    regressors: dict[str, HistGradientBoostingRegressor] = field(repr=False, compare=False)

    def estimate(self, features: Any, y_pred: Any) -> Estimate:
        """Estimated MAE/MSE of the predictions ``y_pred`` on the rows ``features``."""
        X = _matrix(features, "features", self.features.shape[1])
        predicted = _vector(y_pred, "y_pred", len(X))
        if len(X) == 0:
            raise ValueError("cannot estimate performance on a window without rows")
        inputs = np.column_stack([X, predicted])
        n = len(X)
        with threadpool_limits(limits=1):  # see fit_dle
            losses = {name: self.regressors[name].predict(inputs) for name in self.metrics}
        judged = {
            name: ref.judge(float(np.maximum(losses[name], 0.0).mean()), n)
            for name, ref in self.metrics.items()
        }
        return Estimate(n, judged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the settings and the reference rows :meth:`from_dict` refits on."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "metrics": list(self.metrics),
            "chunk_size": self.chunk_size,
            "seed": self.seed,
            "reference": {
                # NaN features (allowed: the regressor handles missing values) as JSON null
                "features": [
                    [None if math.isnan(v) else v for v in row] for row in self.features.tolist()
                ],
                "y_true": self.y_true.tolist(),
                "y_pred": self.y_pred.tolist(),
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> DleModel:
        """Refit from :meth:`to_dict`'s form; ValueError naming the field that is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a DLE estimator must be an object, got {type(data).__name__}")
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"format {data.get('format')!r} version {data.get('version')!r} is not "
                f"{FORMAT!r} version {FORMAT_VERSION}"
            )
        expected = {"format", "version", "metrics", "chunk_size", "seed", "reference"}
        if set(data) != expected:
            raise ValueError(f"fields must be {sorted(expected)}, got {sorted(data)}")
        reference = data["reference"]
        if not isinstance(reference, Mapping) or set(reference) != {"features", "y_true", "y_pred"}:
            raise ValueError("reference must hold features, y_true and y_pred")
        metrics, chunk_size, seed = data["metrics"], data["chunk_size"], data["seed"]
        if not isinstance(metrics, list) or not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError("metrics must be a list and seed an integer")
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool):
            raise ValueError(f"chunk_size must be an integer, got {chunk_size!r}")
        features = reference["features"]
        if not isinstance(features, list):
            raise ValueError("reference.features must be a list of rows")
        try:
            X = np.array(features, dtype=np.float64)  # JSON null -> NaN
        except (TypeError, ValueError) as exc:
            raise ValueError(f"reference.features must be rows of numbers: {exc}") from None
        return fit_dle(
            X,
            reference["y_true"],
            reference["y_pred"],
            metrics=metrics,
            chunk_size=chunk_size,
            seed=seed,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON at ``path``, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DleModel:
        """Read ``path`` and refit; ValueError naming the file and what is wrong."""
        try:
            return cls.from_dict(read_json(path))
        except ValueError as exc:
            raise ValueError(f"DLE estimator file {path}: {exc}") from None


def _matrix(values: Any, what: str, columns: int | None = None) -> FloatArray:
    X = np.asarray(values, dtype=np.float64)
    if X.ndim != 2 or (columns is not None and X.shape[1] != columns):
        want = "2-D" if columns is None else f"n x {columns}"
        raise ValueError(f"{what} must be {want}, got shape {X.shape}")
    if np.isinf(X).any():
        raise ValueError(f"{what} holds infinite values (NaN is read as missing)")
    return X


def _vector(values: Any, what: str, n: int) -> FloatArray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) != n:
        raise ValueError(f"{what} must hold one number per row ({n}), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what} must be finite numbers; row {int(np.argmin(np.isfinite(v)))}")
    return v


def fit_dle(
    X: Any,
    y_true: Any,
    y_pred: Any,
    metrics: Sequence[str] = REGRESSION_METRICS,
    *,
    chunk_size: int | None = None,
    seed: int = 0,
) -> DleModel:
    """Fit DLE on a labelled reference the model never trained on.

    ``X``: the features (n x f, NaN for missing), ``y_true``/``y_pred``: outcomes and the model's
    predictions. ``chunk_size``: rows per reference chunk for the thresholds (default a tenth).
    """
    chosen = tuple(dict.fromkeys(metrics))
    if not chosen or any(m not in REGRESSION_METRICS for m in chosen):
        raise ValueError(
            f"metrics must be a non-empty subset of {list(REGRESSION_METRICS)}, got {list(metrics)}"
        )
    features = _matrix(X, "X")
    n = len(features)
    truth = _vector(y_true, "y_true", n)
    predicted = _vector(y_pred, "y_pred", n)
    size = max(n // DEFAULT_CHUNKS, 1) if chunk_size is None else chunk_size
    if size < 1 or n // size < 2:
        raise ValueError(
            f"chunk_size {size} leaves fewer than 2 full chunks in {n} reference rows; "
            "thresholds need the metric's spread over chunks"
        )
    inputs = np.column_stack([features, predicted])
    references, regressors = {}, {}
    for name in chosen:
        loss = _losses(name, truth, predicted)
        values = [float(loss[lo:hi].mean()) for lo, hi in chunk_bounds(n, size)]
        lower, upper = thresholds(values, 0.0, None)
        unit = float(loss.std())
        references[name] = MetricReference(
            name,
            lower,
            upper,
            unit if math.isfinite(unit) else None,
            tuple(finite_or_none(v) for v in values),
            lower_limit=0.0,
            upper_limit=None,
        )
        # One OpenMP thread: on a busy machine the boosting's threads contend and a fit of a
        # few thousand rows takes seconds instead of a few hundred milliseconds.
        with threadpool_limits(limits=1):
            regressors[name] = HistGradientBoostingRegressor(random_state=seed).fit(inputs, loss)
    return DleModel(references, features, truth, predicted, size, seed, regressors)
