"""Small reference data sets shared by the monitoring tests (no download)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from infertrail.drift import Profile, build_image_profile, build_tabular_profile

WORDS = ["good", "bad", "great", "awful", "service", "food", "place", "price", "staff", "movie",
         "plot", "fine", "slow", "tasty"]  # fmt: skip


def synthetic_texts(n: int, seed: int, extra: list[str] | None = None) -> list[str]:
    """Short review-like sentences from a small vocabulary (plus ``extra`` words if given)."""
    rng = np.random.default_rng(seed)
    pool = WORDS + (extra or [])
    return [" ".join(rng.choice(pool, size=rng.integers(3, 12))).capitalize() for _ in range(n)]


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits (1,797 images, intensities 0..16), shuffled once, seeded."""
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    return d.data[order], d.target[order]


@pytest.fixture(scope="session")
def digits_profile(digits: tuple[np.ndarray, np.ndarray]) -> Profile:
    """An image profile of the first 1,200 digits, with predictions and confidences."""
    X, y = digits
    conf = np.random.default_rng(1).uniform(0.5, 1.0, 1200)
    return build_image_profile(
        X[:1200],
        predictions=[str(v) for v in y[:1200]],
        confidences=conf,
        labels=[str(i) for i in range(10)],
        model_name="digits",
        model_sha256="ab" * 32,
    )


@pytest.fixture(scope="session")
def tabular_profile() -> Profile:
    """20 N(0,1) numerical features + a 3-way categorical, 5,000 rows, binary predictions."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(5000, 20))
    color = rng.choice(["red", "green", "blue"], size=5000, p=[0.5, 0.3, 0.2])
    table = np.column_stack([X.astype(object), color])
    preds = np.where(X[:, 0] > 0, "yes", "no")
    return build_tabular_profile(
        table,
        [f"x{i}" for i in range(20)] + ["color"],
        categorical=["color"],
        predictions=preds,
        confidences=rng.uniform(0.5, 1.0, 5000),
        model_name="credit",
        model_sha256="cd" * 32,
    )
