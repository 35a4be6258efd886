"""The reference's empirical CDF, kept in the profile so KS tests see every reference value.

A two-sample KS test against a bounded sample of the reference tests with the sample's size, and
loses power on a large reference (issue 15: a 0.01 sd shift of 100,000 rows, p = 0.94 against a
5,000-row sample, 1e-4 against all rows). :class:`ReferenceEcdf` keeps the ECDF of **all**
reference values at up to :data:`KS_KNOTS` knots, exactly: at each knot it stores how many
reference values lie at or below it and strictly below it.

* When the reference has at most that many distinct values, the knots are those values and the
  ECDF is the reference's own: the KS statistic computed from it is scipy's.
* Beyond, the knots are the values at evenly spaced ranks (the minimum and the maximum
  included), so at most ``n / (KS_KNOTS - 1)`` reference values lie between two knots. The
  statistic evaluated at the knots is then a lower bound of the exact one, and the gaps give an
  upper bound (:func:`infertrail.drift.stats.ks_statistic_bounds`); docs/drift.md measures the
  difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infertrail.drift.histogram import sorted_unique
from infertrail.drift.stats import FloatArray, IntArray

#: Knots of the reference ECDF per numerical feature. 16,384 keeps the profile at 384 KB per
#: feature at most (a float and two counts per knot), is exact for references of up to 16,384
#: distinct values, and beyond moves KS p-values by a few percent at most (docs/drift.md).
KS_KNOTS = 16_384


@dataclass(frozen=True)
class ReferenceEcdf:
    """ECDF of a reference column at sorted knots: ``le[i]`` values <= ``knots[i]``, ``lt[i]`` <.

    The knots are reference values, the first the minimum and the last the maximum, so the ECDF
    is 0 below the first knot and 1 from the last one on.
    """

    knots: FloatArray
    le: IntArray
    lt: IntArray

    @classmethod
    def of_sorted(cls, s: FloatArray, max_knots: int = KS_KNOTS) -> ReferenceEcdf:
        """The ECDF of the sorted, finite, non-empty ``s`` at no more than ``max_knots`` knots."""
        if max_knots < 2:
            raise ValueError(f"an ECDF needs at least 2 knots, got max_knots={max_knots}")
        if s.size == 0:
            raise ValueError("an ECDF needs at least one value")
        uniq, counts = sorted_unique(s)
        if uniq.size <= max_knots:
            le = np.cumsum(counts)
            return cls(uniq, le, le - counts)
        ranks = np.round(np.linspace(0, s.size - 1, max_knots)).astype(np.int64)
        knots = sorted_unique(s[ranks])[0]  # a value spanning several ranks is one knot
        return cls(
            knots,
            np.searchsorted(s, knots, "right").astype(np.int64),
            np.searchsorted(s, knots, "left").astype(np.int64),
        )

    @classmethod
    def of_values(cls, values: FloatArray, max_knots: int = KS_KNOTS) -> ReferenceEcdf | None:
        """The ECDF of the finite ``values`` (NaN is missing); None when there are none."""
        v = values[np.isfinite(values)]
        return cls.of_sorted(np.sort(v), max_knots) if v.size else None

    @property
    def n(self) -> int:
        """Number of reference values the ECDF counts."""
        return int(self.le[-1])

    @property
    def exact(self) -> bool:
        """True when every distinct reference value is a knot (no value lies between knots)."""
        return bool(np.array_equal(self.lt[1:], self.le[:-1]))

    def values(self) -> FloatArray:
        """The reference values themselves, sorted; only an exact ECDF holds them."""
        if not self.exact:
            raise ValueError("a sketched ECDF does not hold the reference values")
        out: FloatArray = np.repeat(self.knots, self.le - self.lt)
        return out

    def problem(self) -> str | None:
        """What makes these arrays an invalid ECDF, or None (for the profile loader)."""
        k = self.knots.size
        if self.knots.ndim != 1 or k == 0 or self.le.shape != (k,) or self.lt.shape != (k,):
            return (
                f"ECDF arrays must be 1-D of one length, got {self.knots.shape}, "
                f"{self.le.shape}, {self.lt.shape}"
            )
        if np.any(np.diff(self.knots) <= 0):
            return "ECDF knots must be strictly increasing"
        if self.lt[0] != 0:
            return "the first ECDF knot must be the reference minimum (no value below it)"
        if np.any(self.le - self.lt < 1) or np.any(self.lt[1:] < self.le[:-1]):
            return "ECDF counts must grow and count each knot's own value at least once"
        return None
