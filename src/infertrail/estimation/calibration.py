"""Calibrating a classifier's scores into probabilities on the reference, NannyML's way.

CBPE reads a calibrated probability as the chance that a prediction is right, so a model's
scores are first mapped through an isotonic regression fitted on the reference (scores against
0/1 outcomes). The map is kept only when it helps: :func:`needs_calibration` skips it for a
reference with one class or scores that already separate the classes (ROC AUC > 0.999), and
otherwise compares the expected calibration error (ECE) of raw and calibrated scores on ten
stratified 90/10 splits (seed 42), pooled: calibration is used when it lowers the pooled ECE.
These are NannyML 0.13's rules (``nannyml/calibration.py``), so that our estimates agree with
its. The fitted map is kept as its breakpoints (:class:`IsotonicMap`), which is all that
``IsotonicRegression(out_of_bounds="clip").predict`` uses: linear interpolation between them,
constant beyond the ends. That makes it exact to store as JSON and a few microseconds to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Scores in [0, 1] fall in this many equal buckets for the per-window arithmetic (see
#: :meth:`IsotonicMap.on_buckets` and :func:`infertrail.estimation.metrics.bucketed_roc_auc`).
BUCKETS = 1 << 16

#: Above this reference ROC AUC the scores are left as they are (NannyML's rule).
SEPARABLE_AUC = 0.999
ECE_BINS = 10
ECE_SPLITS = 10
ECE_TEST_SHARE = 0.1
ECE_SEED = 42


@dataclass(frozen=True, eq=False)
class IsotonicMap:
    """A fitted isotonic calibration: breakpoints ``x`` (increasing) and their values ``y``."""

    x: FloatArray
    y: FloatArray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IsotonicMap):
            return NotImplemented
        return bool(np.array_equal(self.x, other.x) and np.array_equal(self.y, other.y))

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError(
                f"an isotonic map needs two equally long, non-empty 1-D arrays; got shapes "
                f"{x.shape} and {y.shape}"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("an isotonic map's breakpoints must be finite numbers")
        if x.size > 1 and not np.all(np.diff(x) > 0):
            raise ValueError("an isotonic map's x breakpoints must be strictly increasing")
        if x.size > 1 and not np.all(np.diff(y) >= 0):
            raise ValueError("an isotonic map's y values must not decrease")
        if y[0] < 0.0 or y[-1] > 1.0:
            raise ValueError(f"an isotonic map's values must lie in [0, 1], got {y[0]}..{y[-1]}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __call__(self, scores: FloatArray) -> FloatArray:
        """The calibrated probabilities of ``scores`` (clipped to the fitted range first)."""
        return np.interp(scores, self.x, self.y)

    @cached_property
    def _grid(self) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
        """The map at every bucket's lower edge, its slope across the bucket, and which buckets
        hold a breakpoint inside them (where the map is not one line)."""
        at_edges = self(np.arange(BUCKETS + 1) / BUCKETS)
        inside = np.floor(self.x * BUCKETS)
        interior = (self.x * BUCKETS != inside) & (inside >= 0) & (inside < BUCKETS)
        kinked = np.zeros(BUCKETS, dtype=np.bool_)
        kinked[inside[interior].astype(np.int64)] = True
        return at_edges[:-1], np.diff(at_edges), kinked

    def on_buckets(self, scores: FloatArray, buckets: IntArray) -> FloatArray:
        """:meth:`__call__` for scores in [0, 1] whose bucket (``scores * BUCKETS``, floored,
        the last one closed) is known: within a bucket without a breakpoint the map is a line
        through its edges, so two table lookups replace a binary search per score (several
        times faster on unsorted scores); the few scores in buckets with a breakpoint are
        interpolated exactly."""
        low, slope, kinked = self._grid
        p = low[buckets] + slope[buckets] * (scores * BUCKETS - buckets)
        exact = kinked[buckets]
        if exact.any():
            p[exact] = self(scores[exact])
        return p

    @classmethod
    def fit(cls, scores: FloatArray, outcomes: IntArray) -> IsotonicMap:
        """The isotonic regression of 0/1 ``outcomes`` on ``scores``, as its breakpoints."""
        iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(scores, outcomes)
        return cls(np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_))


def equal_count_edges(n: int, bins: int = ECE_BINS) -> list[tuple[int, int]]:
    """Index ranges of ``bins`` bins over ``n`` sorted values, equal in count (the remainder goes
    to the last); fewer bins, two values each at least, when ``n`` is small."""
    if n <= 2 * bins:
        bins = n // 2
        if bins < 2:
            raise ValueError(f"the calibration check needs at least 4 values, got {n}")
    width = n // bins
    starts = [k * width for k in range(bins)]
    return list(zip(starts, [*starts[1:], n], strict=True))


def expected_calibration_error(
    outcomes: IntArray, probabilities: FloatArray, edges: list[tuple[int, int]]
) -> float:
    """Sum over equal-count bins (by probability) of the bin's share times |mean p - mean y|."""
    order = np.argsort(probabilities, kind="stable")
    p, y = probabilities[order], outcomes[order].astype(np.float64)
    n = len(p)
    return float(sum((hi - lo) / n * abs(p[lo:hi].mean() - y[lo:hi].mean()) for lo, hi in edges))


def needs_calibration(outcomes: IntArray, scores: FloatArray) -> bool:
    """Whether isotonic calibration lowers the expected calibration error of ``scores``.

    False for one class or separable scores (ROC AUC > 0.999). Otherwise ten stratified splits
    fit the map on 90% and apply it to the other 10%; the held-out parts are pooled and their
    ECE compared before and after.
    """
    if np.unique(outcomes).size < 2:
        return False
    if roc_auc_score(outcomes, scores) > SEPARABLE_AUC:
        return False
    splits = StratifiedShuffleSplit(
        n_splits=ECE_SPLITS, test_size=ECE_TEST_SHARE, random_state=ECE_SEED
    )
    held_y, raw, calibrated = [], [], []
    for train, test in splits.split(scores, outcomes):
        fitted = IsotonicMap.fit(scores[train], outcomes[train])
        held_y.append(outcomes[test])
        raw.append(scores[test])
        calibrated.append(fitted(scores[test]))
    y = np.concatenate(held_y)
    edges = equal_count_edges(len(y))
    before = expected_calibration_error(y, np.concatenate(raw), edges)
    after = expected_calibration_error(y, np.concatenate(calibrated), edges)
    return before > after


#: When to calibrate: NannyML's rule, on every class that has both outcomes, or never.
CALIBRATION_MODES = ("auto", "always", "never")


def fit_calibration(
    outcomes: IntArray, scores: FloatArray, mode: str = "auto"
) -> IsotonicMap | None:
    """The isotonic map of ``scores``, or None for none.

    ``mode``: "auto" fits it when :func:`needs_calibration` says it helps (NannyML's rule);
    "always" whenever both outcomes occur; "never" not at all.
    """
    if mode not in CALIBRATION_MODES:
        raise ValueError(f"calibration must be one of {list(CALIBRATION_MODES)}, got {mode!r}")
    if mode == "never" or np.unique(outcomes).size < 2:
        return None
    if mode == "auto" and not needs_calibration(outcomes, scores):
        return None
    return IsotonicMap.fit(scores, outcomes)
