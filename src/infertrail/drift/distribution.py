"""The distribution of a numerical column, kept so that profiles built in parts merge exactly.

Quantile bins and the KS ECDF of a profile are not additive: the deciles of two halves do not
give the deciles of the whole. What they are computed from is: every distinct value with its
count. A :class:`ColumnDistribution` keeps that, and the profile's quantiles, bins and ECDF are
computed from it, so a profile built per batch, per process or per day and merged equals the
profile built from all the rows at once (:mod:`infertrail.drift.partial`).

Every distinct value costs 16 bytes, so the count is bounded by ``max_values``
(:data:`MAX_VALUES`). Beyond it the distribution is **compacted** on a floating-point grid:
at precision p, two values share a cell when their float64 bits agree in sign, exponent and the
first p mantissa bits (p = 52 keeps every distinct value), and a cell keeps its smallest and
largest value with their counts, and the count and sum of the values strictly between them (a
*gap*). The precision is the finest at which the knots fit in ``max_values``. The grids are
nested (a cell at p lies inside one cell at p - 1) and data-independent, and the knot count of a
multiset can only grow with it, so the compacted distribution of A + B is the compaction of the
compacted A and B at the coarser of their precisions: merging stays exact, in bounded memory.
At precision 0 a cell is a sign and a binade: at most 4,094 cells or 8,188 knots, so a
distribution never holds more than max(``max_values``, 8,188) knots (when even precision 0 does
not fit a smaller ``max_values``, it is precision 0).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.ecdf import KS_KNOTS, ReferenceEcdf
from infertrail.drift.histogram import NumericBins, sorted_unique
from infertrail.drift.stats import FloatArray, IntArray

#: Mantissa bits of a float64: at this precision every distinct value is its own knot.
EXACT = 52
#: Knots kept per numerical column: exact up to 131,072 distinct values (2 MB), compacted
#: beyond (4 MB at most with the gap arrays). Large enough that the KS ECDF of 16,384 knots
#: derived from it is the one of every value up to that size (docs/drift.md).
MAX_VALUES = 1 << 17

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class ColumnDistribution:
    """Sorted distinct ``values`` (the knots) with their ``counts``; ``gap_counts[i]`` values
    lie strictly between knots i and i + 1, summing to ``gap_sums[i]`` (all zero when exact).

    ``precision``: mantissa bits of the grid the knots were compacted on, :data:`EXACT` when
    every distinct value is a knot.
    """

    values: FloatArray
    counts: IntArray
    gap_counts: IntArray
    gap_sums: FloatArray
    precision: int = EXACT

    @classmethod
    def empty(cls) -> ColumnDistribution:
        """The distribution of no value (a batch where the column is all missing)."""
        return cls(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    @classmethod
    def of_values(cls, values: FloatArray, max_values: int = MAX_VALUES) -> ColumnDistribution:
        """The distribution of the finite ``values`` (the caller drops missing ones)."""
        s = np.asarray(values, dtype=np.float64) + 0.0  # a copy; -0.0 and 0.0 are one value
        s.sort()
        return cls.of_sorted(s, max_values)

    @classmethod
    def of_sorted(cls, s: FloatArray, max_values: int = MAX_VALUES) -> ColumnDistribution:
        """:meth:`of_values` of sorted values without -0.0 (no copy, no sort)."""
        if s.size and not (np.isfinite(s[0]) and np.isfinite(s[-1])):  # NaN sorts last
            raise ValueError("a column distribution takes finite values only")
        uniq, counts = sorted_unique(s)
        return cls.exact(uniq, counts, max_values)

    @classmethod
    def exact(
        cls, values: FloatArray, counts: IntArray, max_values: int = MAX_VALUES
    ) -> ColumnDistribution:
        """Sorted distinct ``values`` with their ``counts``, compacted if more than
        ``max_values``."""
        _check_max_values(max_values)
        return _fold(values, counts, None, EXACT, max_values)

    @classmethod
    def merged(
        cls, parts: Sequence[ColumnDistribution], max_values: int = MAX_VALUES
    ) -> ColumnDistribution:
        """The distribution of all the values of ``parts``: equal to the distribution built from
        those values at once (the gap sums up to floating-point rounding)."""
        _check_max_values(max_values)
        parts = [p for p in parts if p.values.size]
        if not parts:
            return cls.empty()
        if len(parts) == 1 and parts[0].values.size <= max_values:
            return parts[0]
        precision = min(p.precision for p in parts)
        values = np.concatenate([p.values for p in parts])
        order = np.argsort(values, kind="stable")  # timsort: merges the sorted runs in O(n)
        values = values[order]
        arrays = [np.concatenate([p.counts for p in parts])[order]]
        if precision < EXACT:  # exact parts have no gaps
            arrays.append(np.concatenate([p.gap_counts for p in parts])[order])
            arrays.append(np.concatenate([p.gap_sums for p in parts])[order])
        first = np.empty(values.size, dtype=bool)
        first[0] = True
        np.not_equal(values[1:], values[:-1], out=first[1:])
        if not first.all():  # a value in several parts: one knot
            starts = np.flatnonzero(first)
            values = values[starts]
            arrays = [np.add.reduceat(a, starts) for a in arrays]
        gaps = (arrays[1], arrays[2]) if precision < EXACT else None
        return _fold(values, arrays[0], gaps, precision, max_values)

    def merge(self, other: ColumnDistribution, max_values: int = MAX_VALUES) -> ColumnDistribution:
        """:meth:`merged` of this distribution and ``other``."""
        return ColumnDistribution.merged([self, other], max_values)

    # -- what it holds -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """How many values the distribution counts."""
        return int(self.counts.sum() + self.gap_counts.sum())

    @property
    def is_exact(self) -> bool:
        """True when every distinct value is a knot (no value lies between two knots)."""
        return not self.gap_counts.any()

    @functools.cached_property
    def lt(self) -> IntArray:
        """How many values lie strictly below each knot."""
        total = self.counts + self.gap_counts
        out: IntArray = np.cumsum(total) - total
        return out

    @functools.cached_property
    def le(self) -> IntArray:
        """How many values lie at or below each knot."""
        out: IntArray = self.lt + self.counts
        return out

    def equals(self, other: ColumnDistribution, rtol: float = 0.0) -> bool:
        """Same knots, counts and precision; gap sums equal within ``rtol`` (relative)."""
        return (
            self.precision == other.precision
            and self.values.shape == other.values.shape
            and np.array_equal(self.values, other.values)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.gap_counts, other.gap_counts)
            and np.allclose(self.gap_sums, other.gap_sums, rtol=rtol, atol=0.0)
        )

    # -- statistics computed from it -----------------------------------------------------------
    def rank_knots(self, ranks: IntArray) -> tuple[IntArray, BoolArray]:
        """The knot holding each 0-based rank (0..n-1) of the sorted values, and whether it
        holds it.

        A rank inside a gap (compacted distributions only) is not known: it gets the nearest
        knot by rank (the lower one on a tie) and ``False``.
        """
        i = np.searchsorted(self.le, ranks, "right")  # the first knot with le > rank
        known = self.lt[i] <= ranks
        below = np.maximum(i - 1, 0)
        # a rank in the gap after knot i - 1: its distances to that knot's last value, and to
        # knot i's first
        nearer_below = ranks - self.le[below] + 1 <= self.lt[i] - ranks
        out = np.where(known | ~nearer_below, i, below)
        return out.astype(np.int64), known

    def quantiles(self, probs: FloatArray) -> FloatArray:
        """``np.quantile(all_values, probs)`` (linear), computed from the knots.

        Exact (the same floats) where both order statistics it interpolates are knots, which is
        everywhere for an exact distribution; otherwise the nearest knot by rank, so that every
        quantile of a compacted distribution is a knot and bins on them count exactly.
        """
        n = self.n
        if n == 0:
            raise ValueError("quantiles of an empty distribution")
        h = (n - 1) * np.asarray(probs, dtype=np.float64)
        prev = np.floor(h)
        above = h >= n - 1
        lo = np.where(above, n - 1, prev).astype(np.int64)
        hi = np.where(above, n - 1, prev + 1).astype(np.int64)
        gamma = np.where(above, 0.0, h - prev)
        ia, ka = self.rank_knots(lo)
        ib, kb = self.rank_knots(hi)
        a, b = self.values[ia], self.values[ib]
        # numpy's _lerp, operation for operation, so an exact distribution gives its floats
        diff = b - a
        lerp = a + diff * gamma
        np.subtract(b, diff * (1 - gamma), out=lerp, where=gamma >= 0.5)
        snapped = np.where(gamma < 0.5, a, b)
        out: FloatArray = np.where(ka & kb, lerp, snapped)
        return out

    def quantile_edges(self, n_bins: int) -> FloatArray:
        """:func:`~infertrail.drift.histogram.sorted_quantile_edges` of the values."""
        if self.is_exact and self.values.size <= n_bins + 1:
            edges = self.values
        else:
            probs = np.arange(n_bins + 1, dtype=np.float64) / n_bins
            edges = np.unique(self.quantiles(probs))
        return np.repeat(edges, 2) if edges.size == 1 else edges

    def bins(self, edges: FloatArray) -> NumericBins:
        """:meth:`NumericBins.from_sorted` of the values over ``edges`` (no edge inside a gap)."""
        lt = np.append(self.lt, self.n)
        prefix = np.concatenate([[0.0], np.cumsum(self.values * self.counts + self.gap_sums)])
        at = np.searchsorted(self.values, edges, "left")
        at[-1] = np.searchsorted(self.values, edges[-1], "right")  # the last interior bin is closed
        bounds = np.concatenate([[0], at, [self.values.size]])
        return NumericBins(edges, np.diff(lt[bounds]).astype(np.int64), np.diff(prefix[bounds]))

    def ecdf(self, max_knots: int = KS_KNOTS) -> ReferenceEcdf:
        """The KS ECDF: every knot when exact and at most ``max_knots``; otherwise the knots at
        ``max_knots`` evenly spaced ranks, as :meth:`ReferenceEcdf.of_sorted` picks them (the
        nearest knot by rank for a rank inside a gap)."""
        if max_knots < 2:
            raise ValueError(f"an ECDF needs at least 2 knots, got max_knots={max_knots}")
        if self.values.size == 0:
            raise ValueError("an ECDF needs at least one value")
        if self.is_exact and self.values.size <= max_knots:
            return ReferenceEcdf(self.values, self.le, self.lt)
        ranks = np.round(np.linspace(0, self.n - 1, max_knots)).astype(np.int64)
        idx = np.unique(self.rank_knots(ranks)[0])
        return ReferenceEcdf(self.values[idx], self.le[idx], self.lt[idx])

    def problem(self) -> str | None:
        """What makes these arrays an invalid distribution, or None (for the profile loader)."""
        k = self.values.size
        shapes = {a.shape for a in (self.values, self.counts, self.gap_counts, self.gap_sums)}
        if self.values.ndim != 1 or k == 0 or len(shapes) != 1:
            return "distribution arrays must be 1-D, non-empty and of one length"
        if not 0 <= self.precision <= EXACT:
            return f"distribution precision must be 0..{EXACT}, got {self.precision}"
        if not np.all(np.isfinite(self.values)) or np.any(np.diff(self.values) <= 0):
            return "distribution values must be finite and strictly increasing"
        if np.any(self.counts < 1) or np.any(self.gap_counts < 0) or self.gap_counts[-1] != 0:
            return "distribution counts must be positive and gap counts non-negative"
        if np.any(self.gap_sums[self.gap_counts == 0] != 0):
            return "an empty gap of the distribution has a non-zero sum"
        if self.precision == EXACT and not self.is_exact:
            return "an exact distribution (precision 52) has no gaps"
        return None


def _check_max_values(max_values: int) -> None:
    if max_values < 2:
        raise ValueError(f"max_values must be at least 2, got {max_values}")


def common_precision(values: FloatArray) -> IntArray:
    """For each pair of neighbours of the sorted ``values``, the finest precision at which they
    share a grid cell: the mantissa bits their float64 bits agree on, -1 when their sign or
    exponent differ."""
    bits = values.view(np.uint64)
    x = bits[1:] ^ bits[:-1]  # never 0: the values are distinct
    # The bit length of x is read off x as a float: its exponent field is 1022 + the bit
    # length, exactly below 2**53, where the conversion does not round; from 2**52 on (sign or
    # exponent differ) rounding up can only add one, and such neighbours share no cell anyway.
    # In place, as this runs on every value of a large column.
    field = x.astype(np.float64).view(np.int64)
    field >>= 52
    np.subtract(EXACT + 1022, field, out=field)  # 52 - bit length
    np.maximum(field, -1, out=field)
    out: IntArray = field
    return out


def _fold(
    values: FloatArray,
    counts: IntArray,
    gaps: tuple[IntArray, FloatArray] | None,
    precision: int,
    max_values: int,
) -> ColumnDistribution:
    """Compact sorted distinct knots, each with the count and sum of the gap after it
    (``gaps``; None for exact knots), at the finest precision <= ``precision`` whose knots fit
    in ``max_values``.

    Every gap already lies inside a cell at ``precision`` (it came from a distribution of at
    least that precision), so only the cells at or below it are known, and they are enough.
    """
    k = values.size
    if gaps is None and k <= max_values:
        zeros = np.zeros(k, dtype=np.int64)
        return ColumnDistribution(values, counts, zeros, np.zeros(k), EXACT)
    common = common_precision(values)
    levels = EXACT + 2  # precisions -1..52 shifted by one, for bincount
    # A cell of one knot adds one knot, a cell of more adds two (its least and its greatest).
    # At precision p there is a cell boundary after knot i when common[i] < p, and knot i is
    # alone when the boundaries on both its sides exist (a knot with a gap after it never is:
    # it shares its cell with the next knot). Counts of both, for every p at once:
    boundaries = np.cumsum(np.bincount(common + 1, minlength=levels))
    alone = np.full(k, -1, dtype=np.int64)
    alone[1:] = common
    np.maximum(alone[:-1], common, out=alone[:-1])
    singles = np.cumsum(np.bincount(alone + 1, minlength=levels))
    knots = 2 * (1 + boundaries[: precision + 1]) - singles[: precision + 1]
    fits = np.flatnonzero(knots <= max_values)  # knots grow with the precision
    chosen = int(fits[-1]) if fits.size else 0
    starts = np.concatenate([[0], np.flatnonzero(common < chosen) + 1])
    ends = np.append(starts[1:], k) - 1
    multi = ends > starts
    # The values strictly between a cell's first and last knot, and every gap of the cell:
    # the cell's total less its end knots. The sums lose nothing worth counting to the
    # subtraction: a cell's values share sign and binade, so its total is no larger than its
    # parts. An exact input has no gaps to add.
    weights = values * counts
    if gaps is not None:
        between = np.add.reduceat(counts + gaps[0], starts)
        between_sum = np.add.reduceat(weights + gaps[1], starts)
    else:
        between = np.add.reduceat(counts, starts)
        between_sum = np.add.reduceat(weights, starts)
    between -= counts[starts] + np.where(multi, counts[ends], 0)
    between_sum -= weights[starts] + np.where(multi, weights[ends], 0.0)
    # the kept knots: each cell's first, then its last when it has more than one
    width = 1 + multi
    slot = np.cumsum(width) - width  # where each cell's first knot lands among the kept
    kept = np.empty(int(width.sum()), dtype=np.int64)
    kept[slot] = starts
    kept[slot[multi] + 1] = ends[multi]
    out_gaps = np.zeros(kept.size, dtype=np.int64)
    out_sums = np.zeros(kept.size)
    out_gaps[slot] = between
    out_sums[slot] = np.where(between > 0, between_sum, 0.0)
    return ColumnDistribution(values[kept], counts[kept], out_gaps, out_sums, chosen)
