"""Drift detection: compare one window of live feature rows with a reference profile.

:class:`DriftDetector` precomputes everything it can from the profile once (reference CDF
integrals, the reference ECDFs KS reads, category shares); :meth:`DriftDetector.compare` then
costs one binning pass per feature. The default rule per feature follows Evidently's (tests for
small references, distances for large ones) with the differences listed in docs/drift.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from infertrail.drift import histogram as h
from infertrail.drift import stats
from infertrail.drift.ecdf import ReferenceEcdf
from infertrail.drift.profile import FeatureProfile, Profile
from infertrail.drift.rule import (
    CONTINUOUS_ONLY,
    DISCRETE_ONLY,
    DriftConfig,
    default_method,
    natural_distance,
)
from infertrail.drift.stats import FloatArray, IntArray, KsMode


@dataclass(frozen=True)
class DriftWindow:
    """Feature rows of one window, with what the model answered and what the request carried.

    Aligned row by row with ``rows`` (the profile's feature rows): ``labels`` (codes of the
    predicted labels, -1 for one the profile does not know), ``confidences`` and ``scores``
    (NaN where the event had none; a binary classifier's score is the positive class's
    probability), ``probabilities`` (per-class probabilities in the order of the profile's
    labels, NaN rows where not reported), ``inputs`` (the raw inputs) and ``attributes``
    (request attributes such as ``tenant``: a value or None per row). ``rejected``: raw inputs
    of the window whose feature extraction failed, so they have no row. The window analyzers
    (:mod:`infertrail.drift.analysis`) read them; the univariate detector reads the first three.
    """

    rows: FloatArray
    labels: IntArray | None = None
    confidences: FloatArray | None = None
    started_at: float = 0.0
    closed_at: float = 0.0
    scores: FloatArray | None = None
    probabilities: FloatArray | None = None
    inputs: tuple[Any, ...] = ()
    rejected: tuple[Any, ...] = ()
    attributes: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.rows.shape[0])

    def subset(self, index: IntArray) -> DriftWindow:
        """The window of the rows at ``index`` (a slice of it); ``rejected`` is not split."""
        index = np.asarray(index, dtype=np.intp)

        def take(array: NDArray[Any] | None) -> Any:
            return None if array is None else array[index]

        return DriftWindow(
            rows=self.rows[index],
            labels=take(self.labels),
            confidences=take(self.confidences),
            started_at=self.started_at,
            closed_at=self.closed_at,
            scores=take(self.scores),
            probabilities=take(self.probabilities),
            inputs=tuple(self.inputs[i] for i in index) if self.inputs else (),
            attributes={k: tuple(v[i] for i in index) for k, v in self.attributes.items()},
        )


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one feature: how it was judged and by how much it moved."""

    name: str
    method: str
    statistic: float
    p_value: float | None
    distance: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class PredictionDrift:
    """Drift of the model's outputs: label mix and confidence, with their window summaries."""

    label: FeatureDrift | None
    confidence: FeatureDrift | None
    label_shares: dict[str, float]
    confidence_mean: float | None
    low_confidence_rate: float | None


@dataclass(frozen=True)
class SliceReport:
    """The verdicts on one slice of a window: the detector's summary and the analyzers'."""

    n_samples: int
    n_drifted: int
    share_drifted: float
    dataset_drift: bool
    drift_score: float
    drifted_features: list[str]
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftReport:
    """Everything the detector concluded about one window; the listeners' payload."""

    model_name: str
    model_sha256: str
    n_samples: int
    started_at: float
    closed_at: float
    features: list[FeatureDrift]
    n_drifted: int
    share_drifted: float
    dataset_drift: bool
    drift_score: float
    correction: str
    prediction: PredictionDrift
    ood_rate: float
    #: The window analyzers' sections by analyzer name, and the signals they measured.
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)
    #: Per slice of the window (``tenant=acme``, ``age=[30,50)``): its own verdicts.
    slices: dict[str, SliceReport] = field(default_factory=dict)

    def feature(self, name: str) -> FeatureDrift:
        """The verdict on feature ``name``."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r} in this report")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN-free: missing values are None)."""
        return asdict(self)


@dataclass(frozen=True)
class _Plan:
    """What the detector precomputed for one feature."""

    profile: FeatureProfile
    fixed_method: str | None  # forced or calibrated; None: the default rule, per window
    threshold: float  # for distance methods; tests are judged on the corrected p-value
    ref_integrals: FloatArray | None
    locator: h.BinLocator | None
    norm: float
    psi_map: IntArray | None
    ref_psi_counts: FloatArray | None
    ref_cat_counts: FloatArray | None
    ks: _KsReference | None


class _KsReference:
    """The reference ECDF prepared for KS: its values as shares, and a way to locate a window."""

    def __init__(self, ecdf: ReferenceEcdf) -> None:
        self.ecdf = ecdf
        self.le: FloatArray = ecdf.le / ecdf.n  # F_ref at each knot
        self.lt: FloatArray = ecdf.lt / ecdf.n  # F_ref just below each knot
        self._locator: h.BinLocator | None = None

    def count_le(self, current: FloatArray) -> IntArray:
        """#(knots <= v) for each value v of the window."""
        knots = self.ecdf.knots
        if current.size < knots.size:
            # A binary search is cheaper than building the lookup grid (~7 ms for 16,384
            # knots), and the default rule only sends windows of <= 1,000 rows to KS.
            return np.searchsorted(knots, current, "right").astype(np.int64)
        if self._locator is None:  # two threads may both build it: same result, no harm
            self._locator = h.BinLocator(knots)
        return self._locator.count_le(current)

    def test(self, current: FloatArray, mode: KsMode) -> stats.TestResult:
        """KS test of ``current`` against the whole reference, without sorting ``current``.

        On a sketched ECDF the statistic is the lower bound of :func:`stats.ks_statistic_bounds`:
        the p-value can only come out higher than the exact one, never raising false alarms.
        """
        m, n = self.ecdf.n, current.size
        if self.ecdf.exact and stats.ks_uses_exact(m, n, mode):
            return stats.ks_test(self.ecdf.values(), current, "exact")
        n_le = self.count_le(current)
        hit = (n_le > 0) & (self.ecdf.knots[np.maximum(n_le - 1, 0)] == current)
        cur_le, cur_lt = stats.ecdf_at_knots(n_le - hit, n_le, self.le.size)
        d, _ = stats.ks_statistic_bounds(self.le, self.lt, cur_le, cur_lt)
        return stats.TestResult(d, stats.ks_pvalue(d, m, n, "asymp"))


class DriftDetector:
    """Compares windows with one profile under one config; safe to share between threads."""

    def __init__(self, profile: Profile, config: DriftConfig | None = None) -> None:
        self.profile = profile
        self.config = config or DriftConfig()
        names = {f.name for f in profile.columns}
        for part in (profile.prediction, profile.confidence, profile.pooled):
            if part is not None:
                names.add(part.name)
        unknown = (set(self.config.feature_methods) | set(self.config.thresholds)) - names
        if unknown:
            raise ValueError(f"config names features the profile lacks: {sorted(unknown)}")
        self._plans = [self._plan(f) for f in profile.columns]
        self._pooled = None if profile.pooled is None else self._plan(profile.pooled)
        self._label = None if profile.prediction is None else self._plan(profile.prediction)
        self._conf = None if profile.confidence is None else self._plan(profile.confidence)
        self._q_low = np.array([f.q_low if f.kind == "numerical" else -np.inf
                                for f in profile.columns])  # fmt: skip
        self._q_high = np.array([f.q_high if f.kind == "numerical" else np.inf
                                 for f in profile.columns])  # fmt: skip
        self._categorical = np.array([f.kind == "categorical" for f in profile.columns])
        self._n_cats = np.array([len(f.categories) for f in profile.columns])
        self._oov_col = profile.feature_names.index("oov_rate") if profile.kind == "text" else -1

    def _plan(self, f: FeatureProfile) -> _Plan:
        cfg = self.config
        method: str | None = cfg.feature_methods.get(f.name) or cfg.method
        calibrated = cfg.thresholds.get(f.name)
        if calibrated is not None:
            # A calibrated threshold replaces the rule: judge the feature's own distance.
            method = natural_distance(f)
        if method in CONTINUOUS_ONLY and f.kind == "categorical":
            raise ValueError(f"method {method!r} needs a numerical feature; {f.name!r} is not")
        if method in DISCRETE_ONLY and not f.is_discrete:
            raise ValueError(
                f"method {method!r} needs categories; feature {f.name!r} has "
                f"{f.n_unique} distinct values (use ks, wasserstein, psi or jensenshannon)"
            )
        threshold = calibrated or cfg.distance_threshold
        bins = f.bins
        psi_map = ref_psi = ref_int = None
        if bins is not None and f.psi_edges is not None:
            psi_map = h.psi_bin_map(bins.edges, f.psi_edges)
            ref_psi = h.coarse_counts(bins.counts, psi_map, f.psi_edges.size + 1)
            ref_int = bins.cdf_integrals()
        cat = None
        if f.category_counts is not None:
            cat = np.append(f.category_counts, 0).astype(np.float64)  # + the 'unseen' bucket
        ks = None
        # the default rule judges continuous features by KS when the window is small
        if method == "ks" or (method is None and not f.is_discrete):
            ks = self._ks_reference(f, required=method == "ks")
        locator = None if bins is None else h.BinLocator(bins.edges)
        norm = max(f.std, stats.STD_FLOOR) if f.kind == "numerical" else 1.0
        return _Plan(f, method, threshold, ref_int, locator, norm, psi_map, ref_psi, cat, ks)

    def _ks_reference(self, f: FeatureProfile, *, required: bool) -> _KsReference | None:
        """The KS side of a feature's plan; None when it has no ECDF and KS is not forced."""
        if f.ecdf is None:
            if required:
                raise ValueError(
                    f"feature {f.name!r} has no reference ECDF for a KS test (a version-1 "
                    "profile whose sample lacks it); rebuild the profile"
                )
            return None
        if self.config.ks_mode == "exact" and not f.ecdf.exact:
            raise ValueError(
                f"ks_mode='exact' needs every reference value, but the profile keeps feature "
                f"{f.name!r} as an ECDF of {f.ecdf.knots.size} knots over its {f.ecdf.n} values; "
                "use ks_mode='auto' or 'asymp'"
            )
        return _KsReference(f.ecdf)

    # -- comparison -------------------------------------------------------------------------
    def compare(self, window: DriftWindow) -> DriftReport:
        """Judge every feature, the predictions and OOD rate of ``window``."""
        rows = np.asarray(window.rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self._plans):
            raise ValueError(
                f"window rows must have shape (n, {len(self._plans)}), got {rows.shape}"
            )
        if rows.shape[0] == 0:
            raise ValueError("window is empty; a drift comparison needs at least one row")
        # NaN is a missing value; an infinite one cannot enter the statistics either (it still
        # counts as out of distribution). Both are skipped per feature.
        incomplete = np.asarray(~np.isfinite(rows).all(axis=0), dtype=bool)
        raw = []
        for j, plan in enumerate(self._plans):
            col = rows[:, j]
            if incomplete[j]:
                col = col[np.isfinite(col)]
            raw.append(self._judge(plan, col) if col.size else None)
        if self._pooled is not None and self.profile.image is not None:
            pix = rows[:, : self.profile.image.n_pixels].ravel()
            raw.append(self._judge(self._pooled, pix, pooled=self.profile.image.pixel_max))
        feats = self._decide([r for r in raw if r is not None])
        n_drifted = sum(f.drifted for f in feats)
        share = n_drifted / len(feats) if feats else 0.0
        return DriftReport(
            model_name=self.profile.model_name,
            model_sha256=self.profile.model_sha256,
            n_samples=rows.shape[0],
            started_at=window.started_at,
            closed_at=window.closed_at,
            features=feats,
            n_drifted=n_drifted,
            share_drifted=share,
            dataset_drift=bool(feats) and share >= self.config.drift_share,
            drift_score=float(np.mean([f.distance for f in feats])) if feats else 0.0,
            correction=self.config.correction,
            prediction=self._prediction(window),
            ood_rate=self._ood_rate(rows),
        )

    def _judge(self, plan: _Plan, col: FloatArray, pooled: int | None = None) -> _Raw:
        f = plan.profile
        m = plan.fixed_method or default_method(f, self.config.small_reference, col.size)
        if m == "ks" and plan.ks is None:
            m = natural_distance(f)  # a version-1 profile's sample lacks it: no KS possible
        cur_cats = cur_bins = None
        if f.category_counts is not None:
            if pooled is not None:
                ok = (col == np.rint(col)) & (col >= 0) & (col <= pooled)
                codes = np.where(ok, col, pooled + 1).astype(np.int64)
            elif f.kind == "categorical":
                codes = np.where(col < len(f.categories), col, len(f.categories)).astype(np.int64)
            else:
                assert f.support is not None
                codes = h.category_codes(f.support, col)
            cur_cats = np.bincount(codes, minlength=f.n_categories + 1).astype(np.float64)
        if f.bins is not None and (not f.is_discrete or m == "wasserstein"):
            cur_bins = h.NumericBins.of(f.bins.edges, col, plan.locator)
        if f.is_discrete:
            assert cur_cats is not None and plan.ref_cat_counts is not None
            distance = stats.jensen_shannon(plan.ref_cat_counts, cur_cats)
        else:
            assert cur_bins is not None and plan.ref_integrals is not None
            distance = h.binned_wasserstein(plan.ref_integrals, cur_bins) / plan.norm
        p_value = None
        if m == natural_distance(f):
            statistic = distance
        elif m == "wasserstein":
            assert cur_bins is not None and plan.ref_integrals is not None
            statistic = h.binned_wasserstein(plan.ref_integrals, cur_bins) / plan.norm
        elif m in ("psi", "jensenshannon"):
            ref, cur = self._distribution(plan, cur_cats, cur_bins)
            statistic = stats.psi(ref, cur) if m == "psi" else stats.jensen_shannon(ref, cur)
        elif m == "ks":
            assert plan.ks is not None
            res = plan.ks.test(col, self.config.ks_mode)
            statistic, p_value = res.statistic, res.p_value
        elif m == "chisquare":
            assert plan.ref_cat_counts is not None and cur_cats is not None
            res = stats.chi2_homogeneity(plan.ref_cat_counts, cur_cats)
            statistic, p_value = res.statistic, res.p_value
        else:  # ztest: share of the first category
            assert plan.ref_cat_counts is not None and cur_cats is not None
            ref_n, cur_n = int(plan.ref_cat_counts.sum()), int(cur_cats.sum())
            res = stats.two_proportion_ztest(
                int(plan.ref_cat_counts[0]), ref_n, int(cur_cats[0]), cur_n
            )
            statistic, p_value = res.statistic, res.p_value
        return _Raw(plan, m, statistic, p_value, distance)

    @staticmethod
    def _distribution(
        plan: _Plan, cur_cats: FloatArray | None, cur_bins: h.NumericBins | None
    ) -> tuple[FloatArray, FloatArray]:
        """Reference and current counts over the feature's categories or decile bins."""
        if plan.profile.is_discrete:
            assert plan.ref_cat_counts is not None and cur_cats is not None
            return plan.ref_cat_counts, cur_cats
        assert plan.psi_map is not None and plan.ref_psi_counts is not None
        assert cur_bins is not None
        cur = h.coarse_counts(cur_bins.counts, plan.psi_map, plan.ref_psi_counts.size)
        return plan.ref_psi_counts, cur

    def _decide(self, raw: list[_Raw]) -> list[FeatureDrift]:
        tested = [r for r in raw if r.p_value is not None]
        adjusted = stats.adjust_pvalues(
            [r.p_value for r in tested if r.p_value is not None], self.config.correction
        )
        p_adj = {id(r): float(p) for r, p in zip(tested, adjusted, strict=True)}
        out = []
        for r in raw:
            name = r.plan.profile.name
            if r.p_value is not None:
                p, a = p_adj[id(r)], self.config.alpha
                out.append(FeatureDrift(name, r.method, r.statistic, p, r.distance, a, p < a))
            else:
                t = r.plan.threshold
                drifted = r.statistic >= t
                out.append(FeatureDrift(name, r.method, r.statistic, None, r.distance, t, drifted))
        return out

    def _prediction(self, window: DriftWindow) -> PredictionDrift:
        label = conf = None
        shares: dict[str, float] = {}
        conf_mean = low_rate = None
        if window.labels is not None and self._label is not None:
            codes = window.labels[window.labels >= 0]
            if codes.size:
                r = self._judge(self._label, codes.astype(np.float64))
                label = self._decide([r])[0]
                cats = self._label.profile.categories
                counts = np.bincount(codes, minlength=len(cats) + 1)
                names = [*cats, "(other)"]
                shares = {names[i]: float(counts[i] / codes.size) for i in np.flatnonzero(counts)}
        if window.confidences is not None:
            c = window.confidences[np.isfinite(window.confidences)]
            if c.size:
                conf_mean = float(c.mean())
                low_rate = float(np.mean(c < self.config.low_confidence))
                if self._conf is not None:
                    conf = self._decide([self._judge(self._conf, c)])[0]
        return PredictionDrift(label, conf, shares, conf_mean, low_rate)

    def _ood_rate(self, rows: FloatArray) -> float:
        """Share of rows judged out of distribution (rule in docs/drift.md)."""
        if self._oov_col >= 0:
            return float(np.mean(rows[:, self._oov_col] > self.config.oov_threshold))
        with np.errstate(invalid="ignore"):
            outside = (rows < self._q_low) | (rows > self._q_high)
            outside |= self._categorical & (rows >= self._n_cats)
        return float(np.mean(outside.mean(axis=1) > self.config.ood_feature_share))


@dataclass(frozen=True)
class _Raw:
    plan: _Plan
    method: str
    statistic: float
    p_value: float | None
    distance: float
