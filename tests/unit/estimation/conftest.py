"""Synthetic labelled data for the estimation tests: calibrated and miscalibrated scores."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, softmax


def calibrated_binary(
    n: int, seed: int, a: float = 2.0, b: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores ~ Beta(a, b) and outcomes drawn with exactly that probability: (y, pred, score)."""
    rng = np.random.default_rng(seed)
    score = rng.beta(a, b, n)
    y = (rng.random(n) < score).astype(np.int64)
    return y, (score >= 0.5).astype(np.int64), score


def miscalibrated_binary(
    n: int, seed: int, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True P(y=1) = sigmoid(2x - 0.5), the model says sigmoid(1.4x - 0.1): (y, pred, score)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    y = (rng.random(n) < expit(2.0 * x - 0.5)).astype(np.int64)
    score = expit(1.4 * x - 0.1)
    return y, (score >= 0.5).astype(np.int64), score


def calibrated_multiclass(
    n: int, k: int, seed: int, concentration: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities from a tempered softmax and classes drawn from them: (y, pred, proba)."""
    rng = np.random.default_rng(seed)
    proba = softmax(rng.normal(0.0, 2.0 * concentration, (n, k)), axis=1)
    y = np.minimum((rng.random((n, 1)) > np.cumsum(proba, axis=1)).sum(axis=1), k - 1)
    return y, proba.argmax(axis=1), proba
