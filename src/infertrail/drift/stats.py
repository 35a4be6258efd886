"""Two-sample drift statistics as small pure functions of arrays and counts.

Every function here takes plain numpy arrays (samples, counts or shares) and returns numbers; no
profile, window or I/O. Exact versions agree with scipy (KS and chi-squared p-values to 1e-9;
KS beyond an effective size of 10,000 to 1.5e-3, see :func:`ks_pvalue`); KS against a sketched
reference ECDF gives bounds (:func:`ks_statistic_bounds`). The binned fast paths used on live
windows are in :mod:`infertrail.drift.histogram`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Correction = Literal["none", "bonferroni", "bh"]
KsMode = Literal["auto", "exact", "asymp"]

#: Added to the share of every empty bin before PSI renormalises (see docs/drift.md).
PSI_EPSILON = 1e-4
#: Floor of the reference standard deviation when normalising Wasserstein (Evidently's choice).
STD_FLOOR = 1e-3
#: ``ks_mode="auto"`` computes the exact KS p-value up to this many (n1 * n2) pairs: the exact
#: path costs O(n1 * n2) and takes ~0.3 s at 1,000 x 10,000 (scipy's own auto goes exact up to
#: 10,000 per side, too slow for a window of 64 features).
KS_EXACT_MAX_PAIRS = 1_000_000


@dataclass(frozen=True, slots=True)
class TestResult:
    """A test statistic and its p-value."""

    statistic: float
    p_value: float


def _as_1d(x: ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; a drift statistic needs at least one value")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values; drop them first")
    return a


# -- Kolmogorov-Smirnov -------------------------------------------------------------------
def ks_statistic_sorted(reference_sorted: FloatArray, current: FloatArray) -> float:
    """Two-sided KS statistic D against an already sorted reference, without sorting ``current``.

    Costs O(n log m): the window is only located among the reference's unique values, so a live
    window never needs a sort. Equal to ``scipy.stats.ks_2samp(...).statistic``.
    """
    uniq, ref_counts = np.unique(reference_sorted, return_counts=True)
    ref_le = np.cumsum(ref_counts)
    n = reference_sorted.size
    cur_le, cur_lt = ecdf_at_knots(
        np.searchsorted(uniq, current, "left"), np.searchsorted(uniq, current, "right"), uniq.size
    )
    low, _ = ks_statistic_bounds(ref_le / n, (ref_le - ref_counts) / n, cur_le, cur_lt)
    return low


def ecdf_at_knots(n_less: IntArray, n_le: IntArray, k: int) -> tuple[FloatArray, FloatArray]:
    """A sample's ECDF at ``k`` sorted knots u_i and just below them: F(u_i) and F(u_i-).

    For each sample value v, ``n_less`` is #(u < v) and ``n_le`` is #(u <= v) (searchsorted
    left and right): v <= u_i exactly when #(u < v) <= i, and v < u_i when #(u <= v) <= i.
    """
    n = n_less.size
    le = np.cumsum(np.bincount(n_less, minlength=k + 1))[:k] / n
    lt = np.cumsum(np.bincount(n_le, minlength=k + 1))[:k] / n
    return le, lt


def ks_statistic_bounds(
    ref_le: FloatArray, ref_lt: FloatArray, cur_le: FloatArray, cur_lt: FloatArray
) -> tuple[float, float]:
    """Lower and upper bound of the KS statistic sup |F_ref - F_cur| from both ECDFs at knots.

    ``ref_le[i]`` = F_ref(u_i) and ``ref_lt[i]`` = F_ref(u_i-) at sorted knots u_i, the first
    the reference minimum (F_ref(u_0-) = 0) and the last its maximum (F_ref(u_last) = 1);
    ``cur_le``/``cur_lt`` the same for the current sample (:func:`ecdf_at_knots`).

    The lower bound is the largest difference at the knots and just below them, where both
    ECDFs are known. Between two knots, on [u_i, u_i+1), each ECDF climbs from its value at u_i
    to its value just below u_i+1, so no difference there exceeds the upper bound. When every
    reference value is a knot (F_ref(u_i+1-) = F_ref(u_i)) F_ref is flat there, the bounds meet
    and equal scipy's statistic.
    """
    low = max(float(np.max(np.abs(ref_le - cur_le))), float(np.max(np.abs(ref_lt - cur_lt))))
    if ref_le.size < 2:
        return low, low
    high = max(
        low,
        float(np.max(ref_lt[1:] - cur_le[:-1])),
        float(np.max(cur_lt[1:] - ref_le[:-1])),
    )
    return low, high


#: Beyond this effective size n1 n2 / (n1 + n2), :func:`ks_pvalue` replaces scipy's
#: ``kstwo.sf`` (whose tail costs O(n): 60 ms at 50,000, 0.6 s at 500,000) by Vrbik's corrected
#: limit, within 1.4e-3 of it (relative) for p >= 1e-6 from here on (tested).
KS_SCIPY_MAX_N = 10_000


def ks_pvalue(d: float, n1: int, n2: int, mode: KsMode = "auto") -> float:
    """Two-sided KS p-value of statistic ``d`` for sample sizes ``n1``, ``n2``.

    ``asymp`` is scipy's Smirnov formula (``kstwo.sf(d, en)``, en = round(n1 n2 / (n1 + n2)),
    what ``ks_2samp`` computes) up to en = :data:`KS_SCIPY_MAX_N`, and beyond it the Kolmogorov
    limit at Vrbik's corrected argument, ``kstwobign.sf(L + 1/(6 sqrt(en)) + (L - 1)/(4 en))``
    with L = sqrt(en) d (J. Vrbik, Small-sample corrections to Kolmogorov-Smirnov test
    statistic, 2018), which costs O(1). ``exact`` is answered by the caller through scipy (see
    :func:`ks_test`), so it is not accepted here.
    """
    if mode != "asymp":
        raise ValueError(f"ks_pvalue computes the asymptotic p-value only, got mode={mode!r}")
    big, small = max(n1, n2), min(n1, n2)
    en = float(np.round(float(big) * float(small) / float(big + small)))
    if en <= KS_SCIPY_MAX_N:
        p = sps.kstwo.sf(d, en)
    else:
        lam = math.sqrt(en) * d
        p = sps.kstwobign.sf(lam + 1 / (6 * math.sqrt(en)) + (lam - 1) / (4 * en))
    return float(np.clip(p, 0.0, 1.0))


def ks_uses_exact(n1: int, n2: int, mode: KsMode) -> bool:
    """Whether ``mode`` means the exact p-value for these sample sizes."""
    if mode not in ("auto", "exact", "asymp"):
        raise ValueError(f"unknown KS mode {mode!r}; valid: auto, exact, asymp")
    return mode == "exact" or (mode == "auto" and n1 * n2 <= KS_EXACT_MAX_PAIRS)


def ks_test(reference: ArrayLike, current: ArrayLike, mode: KsMode = "auto") -> TestResult:
    """Two-sample two-sided KS test, with scipy's exact or asymptotic p-value.

    ``auto`` is exact up to :data:`KS_EXACT_MAX_PAIRS` pairs and asymptotic beyond; the exact
    path calls ``scipy.stats.ks_2samp`` itself, the asymptotic one needs no sort of ``current``.
    """
    ref = np.sort(_as_1d(reference, "reference"))
    cur = _as_1d(current, "current")
    if ks_uses_exact(ref.size, cur.size, mode):
        with warnings.catch_warnings():
            # scipy falls back to the asymptotic p-value when its exact recursion fails
            # numerically (large, unbalanced samples) and warns; that answer is the one wanted.
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
            res = sps.ks_2samp(ref, cur, method="exact")
        return TestResult(float(res.statistic), float(res.pvalue))
    d = ks_statistic_sorted(ref, cur)
    return TestResult(d, ks_pvalue(d, ref.size, cur.size, "asymp"))


# -- tests on category counts ---------------------------------------------------------------
def chi2_homogeneity(reference_counts: ArrayLike, current_counts: ArrayLike) -> TestResult:
    """Chi-squared test that two samples share one category distribution (2 x k table).

    Categories empty in both samples are dropped; a category new in ``current`` is simply a
    column with a zero reference count. Equal to ``scipy.stats.chi2_contingency(...,
    correction=False)``.
    """
    table = _count_table(reference_counts, current_counts)
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0)  # one category only: nothing can differ
    row = table.sum(axis=1, keepdims=True)
    col = table.sum(axis=0, keepdims=True)
    expected = row * col / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return TestResult(stat, float(sps.chi2.sf(stat, dof)))


def two_proportion_ztest(
    reference_successes: int, reference_n: int, current_successes: int, current_n: int
) -> TestResult:
    """Pooled two-proportion Z-test, two-sided; z squared equals the 2 x 2 chi-squared."""
    for name, k, n in (
        ("reference", reference_successes, reference_n),
        ("current", current_successes, current_n),
    ):
        if n <= 0 or not 0 <= k <= n:
            raise ValueError(f"{name} proportion needs 0 <= successes <= n and n > 0, got {k}/{n}")
    p1, p2 = reference_successes / reference_n, current_successes / current_n
    pooled = (reference_successes + current_successes) / (reference_n + current_n)
    var = pooled * (1.0 - pooled) * (1.0 / reference_n + 1.0 / current_n)
    if var == 0.0:
        return TestResult(0.0, 1.0)  # both samples all-success or all-failure
    z = (p2 - p1) / math.sqrt(var)
    return TestResult(z, float(2.0 * sps.norm.sf(abs(z))))


def _count_table(reference_counts: ArrayLike, current_counts: ArrayLike) -> FloatArray:
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError(
            f"count vectors must be 1-D and of equal length, got {ref.shape} and {cur.shape}"
        )
    if np.any(ref < 0) or np.any(cur < 0) or not np.all(np.isfinite(ref + cur)):
        raise ValueError("counts must be finite and non-negative")
    if ref.sum() == 0 or cur.sum() == 0:
        raise ValueError(
            f"both samples need at least one count, got {ref.sum():g} and {cur.sum():g}"
        )
    table = np.vstack([ref, cur])
    return table[:, table.sum(axis=0) > 0]


# -- distances ------------------------------------------------------------------------------
def shares(counts: ArrayLike) -> FloatArray:
    """Counts divided by their total (the empirical distribution over bins or categories)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("cannot turn counts into shares: the total is zero")
    out: FloatArray = c / total
    return out


def psi_shares(counts: ArrayLike, epsilon: float = PSI_EPSILON) -> FloatArray:
    """Shares for PSI: ``epsilon`` added to the share of every empty bin, then renormalised."""
    s = shares(counts)
    s = np.where(s == 0.0, epsilon, s)
    out: FloatArray = s / s.sum()
    return out


def psi(reference_counts: ArrayLike, current_counts: ArrayLike) -> float:
    """Population stability index, sum (A - E) ln(A / E), over bins fixed from the reference."""
    e = psi_shares(reference_counts)
    a = psi_shares(current_counts)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {e.size} and {a.size}")
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(reference_counts: ArrayLike, current_counts: ArrayLike) -> float:
    """Jensen-Shannon distance (natural log, as scipy and Evidently), in [0, sqrt(ln 2)]."""
    p, q = shares(reference_counts), shares(current_counts)
    if p.shape != q.shape:
        raise ValueError(f"JS needs the same bins on both sides, got {p.size} and {q.size}")
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(math.sqrt(max(0.5 * (kl_p.sum() + kl_q.sum()), 0.0)))


def wasserstein(reference: ArrayLike, current: ArrayLike) -> float:
    """Exact 1-Wasserstein distance between two samples (area between their CDFs)."""
    u = np.sort(_as_1d(reference, "reference"))
    v = np.sort(_as_1d(current, "current"))
    all_values = np.concatenate([u, v])
    all_values.sort(kind="stable")
    deltas = np.diff(all_values)
    fu = np.searchsorted(u, all_values[:-1], "right") / u.size
    fv = np.searchsorted(v, all_values[:-1], "right") / v.size
    return float(np.sum(np.abs(fu - fv) * deltas))


def normed_wasserstein(reference: ArrayLike, current: ArrayLike) -> float:
    """Wasserstein distance divided by the reference std (floored at :data:`STD_FLOOR`)."""
    ref = _as_1d(reference, "reference")
    return wasserstein(ref, current) / max(float(np.std(ref)), STD_FLOOR)


# -- multiple testing -----------------------------------------------------------------------
def adjust_pvalues(p_values: Sequence[float] | FloatArray, method: Correction) -> FloatArray:
    """Adjusted p-values: none, Bonferroni (p m) or Benjamini-Hochberg (step-up FDR).

    Compare the adjusted values with alpha; they equal statsmodels' ``multipletests`` for
    ``bonferroni`` and ``fdr_bh``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be one-dimensional, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "bh":
        order = np.argsort(p)
        ranked = p[order] * m / np.arange(1, m + 1)
        # step-up: each adjusted value is the minimum over all larger ranks
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(ranked, 1.0)
        return out
    raise ValueError(f"unknown correction {method!r}; valid: none, bonferroni, bh")
