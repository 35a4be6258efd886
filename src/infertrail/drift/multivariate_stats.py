"""The pure statistics of multivariate drift: PCA reconstruction, its band, the AUC null.

No state, no threads, no I/O: :mod:`infertrail.drift.multivariate` fits and calibrates them per
model and judges windows with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from infertrail.drift.profile import FeatureKind
from infertrail.drift.stats import FloatArray, IntArray


@dataclass(frozen=True)
class ReconstructionModel:
    """Impute, count-encode, standardise, project on the principal components; fitted once.

    ``fill``: per column the reference median (numerical) or most frequent code (categorical),
    for missing values. ``frequencies``: per categorical column the reference share of each code
    (a code the reference lacks encodes as 0). ``components``: (k, n_features), orthonormal rows.
    """

    fill: FloatArray
    frequencies: tuple[FloatArray | None, ...]
    center: FloatArray
    scale: FloatArray
    components: FloatArray
    explained_variance: float

    def encode(self, rows: FloatArray) -> FloatArray:
        """Rows imputed, count-encoded and standardised (non-finite values are missing)."""
        x = count_encoded(rows, self.fill, self.frequencies)
        out: FloatArray = (x - self.center) / self.scale
        return out

    def errors(self, rows: FloatArray) -> FloatArray:
        """Per row, the L2 norm of what the principal components do not reconstruct."""
        z = self.encode(rows)
        residual = z - (z @ self.components.T) @ self.components
        out: FloatArray = np.sqrt(np.einsum("ij,ij->i", residual, residual))
        return out


def count_encoded(
    rows: FloatArray, fill: FloatArray, frequencies: Sequence[FloatArray | None]
) -> FloatArray:
    """Missing (non-finite) values filled, category codes replaced by their reference share."""
    x = np.where(np.isfinite(rows), rows, fill)
    for j, freq in enumerate(frequencies):
        if freq is not None:
            codes = x[:, j]
            known = (codes >= 0) & (codes < freq.size) & (codes == np.rint(codes))
            x[:, j] = np.where(known, freq[np.where(known, codes, 0).astype(np.intp)], 0.0)
    return x


def fit_reconstruction(
    rows: FloatArray, kinds: Sequence[FeatureKind], variance: float
) -> ReconstructionModel:
    """The encoding of ``rows`` (NaN: missing) and the fewest principal components keeping
    ``variance`` of the encoded rows' variance (numpy's SVD)."""
    n_features = rows.shape[1]
    fill = np.empty(n_features)
    frequencies: list[FloatArray | None] = []
    for j, kind in enumerate(kinds):
        col = rows[:, j][~np.isnan(rows[:, j])]
        if kind == "categorical":
            # A median of codes means nothing: missing categories take the most frequent one.
            counts = np.bincount(col.astype(np.intp))
            fill[j] = float(np.argmax(counts))
            frequencies.append(counts / col.size)
        else:
            fill[j] = float(np.median(col))
            frequencies.append(None)
    x = count_encoded(rows, fill, frequencies)
    center, std = x.mean(axis=0), x.std(axis=0)
    # A column constant in the reference keeps its own unit: any later change is all residual.
    scale = np.where(std > 0, std, 1.0)
    _, singular, vt = np.linalg.svd((x - center) / scale, full_matrices=False)
    power = singular**2
    total = float(power.sum())
    share = np.cumsum(power) / total if total > 0 else np.ones_like(power)
    k = min(int(np.searchsorted(share, variance)) + 1, n_features)
    return ReconstructionModel(
        fill, tuple(frequencies), center, scale, vt[:k].copy(), float(share[k - 1])
    )


def mean_band(
    mean: float, std: float, skew: float, m: int, n: int, alpha: float
) -> tuple[float, float]:
    """Where the mean of ``n`` new values lies with probability ``1 - alpha`` (two-sided).

    ``mean``, ``std`` and ``skew`` are those of ``m`` held-out values of the same distribution.
    The difference of the new mean and the held-out one has variance std^2 (1/n + 1/m) (the
    held-out mean is itself an estimate) and skewness skew (1/n^2 - 1/m^2) / (1/n + 1/m)^1.5;
    the band is its Cornish-Fisher quantiles (the normal ones plus the first skewness term),
    the skewness clipped to +-3/z so that the expansion stays increasing over [-z, z].
    """
    inv = 1.0 / n + 1.0 / m
    se = std * math.sqrt(inv)
    z = float(sps.norm.isf(alpha / 2))
    g = skew * (1.0 / n**2 - 1.0 / m**2) / inv**1.5
    g = min(max(g, -3.0 / z), 3.0 / z)
    shift = g * (z * z - 1.0) / 6.0
    return mean + se * (shift - z), mean + se * (shift + z)


def rank_auc(scores: FloatArray, labels: IntArray) -> float:
    """ROC AUC of ``scores`` for ``labels`` (0/1), ties counted half (Mann-Whitney U)."""
    ranks = sps.rankdata(scores)
    n1 = int(labels.sum())
    n0 = labels.size - n1
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def auc_null_std(scores: FloatArray, labels: IntArray) -> float:
    """Standard deviation of the AUC when the labels are permuted (its mean is 0.5).

    The exact moment of the permutation distribution: the class-1 rank sum is a sum of n1
    midranks drawn without replacement, so ties are accounted for and nothing is simulated.
    """
    ranks = sps.rankdata(scores)
    n = labels.size
    n1 = int(labels.sum())
    n0 = n - n1
    spread = float(((ranks - ranks.mean()) ** 2).sum())
    return math.sqrt(n1 * n0 / (n * (n - 1)) * spread) / (n0 * n1)
