"""Multivariate drift: changes of the joint distribution that no single feature shows.

A correlation that flips, or a dependence that appears, can leave every feature's own
distribution unchanged: the univariate tests of :class:`~infertrail.drift.DriftDetector` cannot
see it. Two window analyzers (:mod:`infertrail.drift.analysis`) judge the same closed windows on
the drift thread, off the request path:

- :class:`ReconstructionDrift`: the mean error of reconstructing each row from the principal
  components of the reference (NannyML's data-reconstruction drift), its band calibrated out of
  sample for a false-alarm rate ``alpha`` at the window's size;
- :class:`DomainClassifierDrift`: the held-out ROC AUC of a small gradient-boosted classifier
  telling reference rows from the window's rows, judged against the label-permutation null of
  its held-out scores.

Both read the reference from ``Profile.sample`` (or rows given directly) and are fitted once per
model, lazily on the first window or by calling ``fit()``. docs/drift.md, "Multivariate drift",
gives their false-alarm rates, costs and signals.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from infertrail.drift.analysis import Analysis
from infertrail.drift.multivariate_stats import (
    ReconstructionModel,
    auc_null_std,
    fit_reconstruction,
    mean_band,
    rank_auc,
)
from infertrail.drift.profile import FeatureKind, Profile
from infertrail.drift.stats import FloatArray, IntArray

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftWindow

__all__ = [
    "DomainClassifierDrift",
    "DomainVerdict",
    "ReconstructionDrift",
    "ReconstructionVerdict",
]

#: Fewest window rows either statistic judges: below it a window's section says it was skipped.
MIN_ROWS = 20
#: Fewest reference rows a multivariate statistic is fitted on.
MIN_REFERENCE_ROWS = 100
#: False-alarm rate per window of both statistics (one window in a hundred on clean data).
DEFAULT_ALPHA = 0.01


def _reference(
    reference: Profile | ArrayLike, kinds: Sequence[FeatureKind] | None
) -> tuple[FloatArray, tuple[FeatureKind, ...]]:
    """The reference rows and feature kinds, validated (non-finite values become missing)."""
    if isinstance(reference, Profile):
        if kinds is not None:
            raise ValueError("kinds come from the profile's columns; pass them only with rows")
        rows = np.asarray(reference.sample, dtype=np.float64)
        kinds = tuple(f.kind for f in reference.columns)
    else:
        rows = np.asarray(reference, dtype=np.float64)
        if rows.ndim != 2:
            raise ValueError(f"reference rows must be 2-D (n, n_features), got shape {rows.shape}")
        kinds = ("numerical",) * rows.shape[1] if kinds is None else tuple(kinds)
    if len(kinds) != rows.shape[1]:
        raise ValueError(f"{len(kinds)} feature kinds for {rows.shape[1]} reference columns")
    bad = sorted(set(kinds) - {"numerical", "categorical"})
    if bad:
        raise ValueError(f"unknown feature kinds {bad}; valid: numerical, categorical")
    if rows.shape[0] < MIN_REFERENCE_ROWS:
        raise ValueError(
            f"multivariate drift needs at least {MIN_REFERENCE_ROWS} reference rows, "
            f"got {rows.shape[0]}"
        )
    rows = np.where(np.isfinite(rows), rows, np.nan)
    for j, kind in enumerate(kinds):
        col = rows[:, j]
        if np.isnan(col).all():
            raise ValueError(f"reference column {j} has no value (every row is missing)")
        codes = col[~np.isnan(col)]
        if kind == "categorical" and ((codes < 0).any() or (codes != np.rint(codes)).any()):
            raise ValueError(f"categorical reference column {j} must hold codes 0, 1, 2, ...")
    return rows, kinds


def _window_rows(window: ArrayLike, n_features: int) -> FloatArray:
    rows = np.asarray(window, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"window rows must have shape (n, {n_features}), got {rows.shape}")
    if rows.shape[0] < MIN_ROWS:
        raise ValueError(f"a window needs at least {MIN_ROWS} rows, got {rows.shape[0]}")
    return rows


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")


def _skipped(n: int, keys: Sequence[str]) -> Analysis:
    """The section of a window too small to judge: every value None, no signals."""
    section: dict[str, Any] = dict.fromkeys(keys)
    section.update(n=n, drifted=None, skipped=f"{n} rows; needs at least {MIN_ROWS}")
    return Analysis(section)


# -- data reconstruction ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReconstructionVerdict:
    """One window's mean reconstruction error against its band (drifted: outside it)."""

    statistic: float
    lower: float
    upper: float
    expected: float
    n: int
    n_components: int
    explained_variance: float
    alpha: float
    drifted: bool

    def section(self) -> dict[str, Any]:
        """The JSON-ready section of the drift report."""
        return {**asdict(self), "skipped": None}


_RECONSTRUCTION_KEYS = tuple(ReconstructionVerdict.__dataclass_fields__)


@dataclass(frozen=True)
class _ReconstructionFit:
    model: ReconstructionModel
    mean: float
    std: float
    skew: float
    n_holdout: int


class ReconstructionDrift:
    """Data-reconstruction drift: the window's mean PCA reconstruction error against a band.

    The rows are imputed (reference medians; categories: the most frequent code), categories
    replaced by their reference frequency (count encoding), standardised, and projected on the
    fewest principal components that keep ``variance`` of the reference's variance; a row's error
    is the L2 norm of what the projection misses. A joint change (a correlation that flips, a
    new combination of values) moves rows off the reference's principal plane, so their error
    grows, while every feature keeps its distribution.

    Why out of sample: NannyML sets its band from reference chunks scored by a PCA fitted on
    the same rows, which fits those rows better than it will ever fit new ones, so clean live
    data alarms too often. Here the PCA is fitted on part of the reference (``1 - holdout``,
    seeded) and the band comes from the errors of the other part, which the PCA has never seen,
    exactly like live rows; :func:`mean_band` turns their mean, spread and skewness into the
    band of a window of ``n`` rows for a false-alarm rate ``alpha`` (two-sided: a fall of the
    error, rows collapsing onto the plane, is drift too).
    """

    name = "reconstruction_drift"

    def __init__(
        self,
        reference: Profile | ArrayLike,
        kinds: Sequence[FeatureKind] | None = None,
        *,
        variance: float = 0.65,
        alpha: float = DEFAULT_ALPHA,
        holdout: float = 0.5,
        seed: int = 0,
    ) -> None:
        """``reference``: a profile (its sample and column kinds) or rows with ``kinds``
        (default: all numerical; categorical columns hold codes). Nothing is fitted yet."""
        if not 0.0 < variance < 1.0:
            raise ValueError(f"variance must lie in (0, 1), got {variance!r}")
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"holdout must lie in (0, 1), got {holdout!r}")
        _check_alpha(alpha)
        self._rows, self._kinds = _reference(reference, kinds)
        if self._rows.shape[1] < 2:
            raise ValueError("reconstruction drift needs at least 2 features")
        self.variance, self.alpha, self.holdout, self.seed = variance, alpha, holdout, seed
        n = self._rows.shape[0]
        order = np.random.default_rng(seed).permutation(n)
        n_holdout = min(max(round(n * holdout), MIN_ROWS), n - MIN_ROWS)
        self._held, self._fitted_rows = order[:n_holdout], order[n_holdout:]
        empty = np.flatnonzero(np.isnan(self._rows[self._fitted_rows]).all(axis=0))
        if empty.size:
            raise ValueError(
                f"reference column {int(empty[0])} has no value among the "
                f"{self._fitted_rows.size} rows the PCA is fitted on"
            )
        self._fit: _ReconstructionFit | None = None
        self._lock = threading.Lock()

    @property
    def n_features(self) -> int:
        """The width of the rows this analyzer judges (the profile's feature count)."""
        return int(self._rows.shape[1])

    def fit(self) -> ReconstructionDrift:
        """Fit the PCA and calibrate the band (once; later calls return at once)."""
        self._fitted()
        return self

    def _fitted(self) -> _ReconstructionFit:
        fit = self._fit
        if fit is None:
            with self._lock:
                if self._fit is None:
                    self._fit = self._calibrate()
                fit = self._fit
        return fit

    def _calibrate(self) -> _ReconstructionFit:
        model = fit_reconstruction(self._rows[self._fitted_rows], self._kinds, self.variance)
        errors = model.errors(self._rows[self._held])
        std = float(errors.std(ddof=1))
        skew = float(sps.skew(errors, bias=False)) if std > 0 else 0.0
        return _ReconstructionFit(model, float(errors.mean()), std, skew, int(errors.size))

    @property
    def model(self) -> ReconstructionModel:
        """The fitted encoding and components (fitting them if needed)."""
        return self._fitted().model

    def judge(self, rows: ArrayLike) -> ReconstructionVerdict:
        """The verdict on a window of feature rows (ValueError: wrong shape, < 20 rows)."""
        x = _window_rows(rows, self.n_features)
        fit = self._fitted()
        statistic = float(fit.model.errors(x).mean())
        lower, upper = mean_band(fit.mean, fit.std, fit.skew, fit.n_holdout, x.shape[0], self.alpha)
        return ReconstructionVerdict(
            statistic=statistic,
            lower=lower,
            upper=upper,
            expected=fit.mean,
            n=int(x.shape[0]),
            n_components=int(fit.model.components.shape[0]),
            explained_variance=fit.model.explained_variance,
            alpha=self.alpha,
            drifted=not lower <= statistic <= upper,
        )

    def analyze(self, window: DriftWindow) -> Analysis:
        """The window analyzer: section ``reconstruction_drift``, signals
        ``multivariate.reconstruction_error`` and ``multivariate.reconstruction_drift`` (0/1)."""
        n = window.n_samples
        if n < MIN_ROWS:
            return _skipped(n, _RECONSTRUCTION_KEYS)
        v = self.judge(window.rows)
        return Analysis(
            v.section(),
            {
                "multivariate.reconstruction_error": v.statistic,
                "multivariate.reconstruction_drift": float(v.drifted),
            },
        )


# -- domain classifier -----------------------------------------------------------------------


@dataclass(frozen=True)
class DomainVerdict:
    """One window's domain-classifier AUC against its permutation null (drifted: above it)."""

    statistic: float
    threshold: float
    p_value: float
    null_std: float
    n: int
    n_reference: int
    n_test: int
    alpha: float
    drifted: bool

    def section(self) -> dict[str, Any]:
        """The JSON-ready section of the drift report."""
        return {**asdict(self), "skipped": None}


_DOMAIN_KEYS = tuple(DomainVerdict.__dataclass_fields__)


class DomainClassifierDrift:
    """Domain-classifier drift: can a classifier tell the window's rows from reference rows?

    Per window, a seeded subsample of the reference as large as the window (both capped at
    ``max_rows``) is labelled 0 and the window's rows 1. Each side is split in half: a small
    scikit-learn ``HistGradientBoostingClassifier`` (``max_iter`` trees of ``max_leaf_nodes``
    leaves, one OpenMP thread) learns on one half and scores the other, and the statistic is
    the ROC AUC of those held-out scores: 0.5 when the window looks like the reference, towards
    1 as it departs, whatever the change (a mean, a correlation, a dependence the principal
    components cannot express). Missing and infinite values are missing to the trees; category
    codes are split as numbers.

    Threshold: the label-permutation null of the held-out scores. Under no drift the held-out
    rows are exchangeable given their scores (the classifier never saw them), so that null is
    the AUC's exact null for this window, at any window size and with ties; its mean is 0.5 and
    its variance is exact (:func:`auc_null_std`), the p-value the normal tail above them;
    ``drifted``: p < ``alpha``. Why not NannyML's out-of-fold AUC over k folds with the same
    null: each fold's model learns the chance structure of the other folds, so the fold AUCs
    move together and the pooled AUC spreads 29% wider than its permutation null (3.2% alarms
    at a nominal 1%, 100-row windows, 3 folds: bench/multivariate_drift.py). Reference-vs-reference
    splits at start would repair that for one window size only (windows closed by time are
    smaller) at the cost of tens of fits; one split costs one fit per window instead of k.
    """

    name = "domain_classifier_drift"

    def __init__(
        self,
        reference: Profile | ArrayLike,
        *,
        alpha: float = DEFAULT_ALPHA,
        max_rows: int = 2_000,
        max_iter: int = 30,
        max_leaf_nodes: int = 8,
        learning_rate: float = 0.2,
        seed: int = 0,
    ) -> None:
        """``reference``: a profile (its sample) or reference feature rows."""
        _check_alpha(alpha)
        if max_rows < MIN_ROWS:
            raise ValueError(f"max_rows must be at least {MIN_ROWS}, got {max_rows}")
        if max_iter < 1 or max_leaf_nodes < 2 or not learning_rate > 0:
            raise ValueError(
                f"need max_iter >= 1, max_leaf_nodes >= 2, learning_rate > 0; got {max_iter}, "
                f"{max_leaf_nodes}, {learning_rate}"
            )
        self._rows, _ = _reference(reference, None)
        self.alpha, self.max_rows = alpha, max_rows
        self._params = {"max_iter": max_iter, "max_leaf_nodes": max_leaf_nodes,
                        "learning_rate": learning_rate}  # fmt: skip
        self._rng = np.random.default_rng(seed)
        self._threads: Any = None
        self._lock = threading.Lock()

    @property
    def n_features(self) -> int:
        """The width of the rows this analyzer judges (the profile's feature count)."""
        return int(self._rows.shape[1])

    def fit(self) -> DomainClassifierDrift:
        """Import scikit-learn's trees and the thread limiter (once); each window fits anew."""
        with self._lock:
            if self._threads is None:
                from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: F401
                from threadpoolctl import ThreadpoolController

                self._threads = ThreadpoolController()
        return self

    def held_out_scores(self, train: FloatArray, labels: IntArray, test: FloatArray) -> FloatArray:
        """The probability that each ``test`` row is live, from a classifier of ``train``."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.fit()
        model = HistGradientBoostingClassifier(
            **self._params,
            max_bins=63,
            # Small windows: leaves of 20 rows (the default) would leave nothing to split.
            min_samples_leaf=max(5, min(20, labels.size // 50)),
            # No early stopping: it would hold out rows of its own and make the fit random.
            early_stopping=False,
            random_state=0,
        )
        # One thread: the drift thread shares the cores with the service it watches.
        with self._threads.limit(limits=1, user_api="openmp"):
            model.fit(np.where(np.isfinite(train), train, np.nan), labels)
            out: FloatArray = model.predict_proba(np.where(np.isfinite(test), test, np.nan))[:, 1]
        return out

    def judge(self, rows: ArrayLike) -> DomainVerdict:
        """The verdict on a window of feature rows (ValueError: wrong shape, < 20 rows)."""
        x = _window_rows(rows, self.n_features)
        n_side = min(x.shape[0], self._rows.shape[0], self.max_rows)
        with self._lock:  # the generator is the analyzer's only mutable state
            rng = np.random.default_rng(self._rng.integers(2**63))
        ref = self._rows[rng.choice(self._rows.shape[0], n_side, replace=False)]
        win = x[rng.choice(x.shape[0], n_side, replace=False)]
        half = n_side // 2
        n_test = n_side - half
        y_train = np.repeat(np.array([0, 1], np.int64), half)
        y_test = np.repeat(np.array([0, 1], np.int64), n_test)
        scores = self.held_out_scores(
            np.vstack([ref[:half], win[:half]]), y_train, np.vstack([ref[half:], win[half:]])
        )
        auc = rank_auc(scores, y_test)
        null_std = auc_null_std(scores, y_test)
        # every score tied (null_std 0): the classifier found nothing
        p_value = float(sps.norm.sf((auc - 0.5) / null_std)) if null_std > 0 else 1.0
        return DomainVerdict(
            statistic=auc,
            threshold=0.5 + float(sps.norm.isf(self.alpha)) * null_std,
            p_value=p_value,
            null_std=null_std,
            n=int(x.shape[0]),
            n_reference=n_side,
            n_test=n_test,
            alpha=self.alpha,
            drifted=p_value < self.alpha,
        )

    def analyze(self, window: DriftWindow) -> Analysis:
        """The window analyzer: section ``domain_classifier_drift``, signals
        ``multivariate.domain_auc`` and ``multivariate.domain_drift`` (0/1)."""
        n = window.n_samples
        if n < MIN_ROWS:
            return _skipped(n, _DOMAIN_KEYS)
        v = self.judge(window.rows)
        return Analysis(
            v.section(),
            {"multivariate.domain_auc": v.statistic, "multivariate.domain_drift": float(v.drifted)},
        )
