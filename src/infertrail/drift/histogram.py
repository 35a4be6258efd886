"""Reference bins and the binned fast paths that compare a live window against them.

A numerical reference column is summarised once by :class:`NumericBins`: fine quantile bin edges
(every unique value when there are few), per-bin counts and per-bin sums of the values, and the
coarser decile bins PSI uses. A window is then compared in O(n log B) without sorting it:

* the Wasserstein distance is integrated bin by bin from counts and sums; it is exact whenever
  the two CDFs do not cross inside a bin (always, for discrete data whose values are the edges),
  and a lower bound otherwise (see docs/drift.md);
* PSI and Jensen-Shannon use the decile bins with an overflow bin on each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infertrail.drift.stats import FloatArray, IntArray

#: Fine bins for the binned Wasserstein distance (quantiles of the reference).
FINE_BINS = 100
#: Bins for PSI and Jensen-Shannon on numerical data (deciles of the reference).
PSI_BINS = 10


def quantile_edges(values: FloatArray, n_bins: int) -> FloatArray:
    """Sorted unique edges at the ``n_bins``-quantiles of ``values`` (min and max included).

    With at most ``n_bins + 1`` distinct values the edges are the values themselves, so every
    value sits on an edge. A constant column yields ``[c, c]``: one closed bin ``[c, c]``.
    """
    s = np.sort(values)
    return sorted_quantile_edges(s, sorted_unique(s)[0], n_bins)


def sorted_unique(s: FloatArray) -> tuple[FloatArray, IntArray]:
    """Unique values of the sorted array ``s`` and their counts, without sorting again."""
    first = np.empty(s.size, dtype=bool)
    first[:1] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return s[starts], np.diff(np.append(starts, s.size)).astype(np.int64)


def sorted_quantile_edges(s: FloatArray, uniq: FloatArray, n_bins: int) -> FloatArray:
    """:func:`quantile_edges` of the sorted ``s`` whose unique values are ``uniq``."""
    edges = uniq if uniq.size <= n_bins + 1 else np.unique(np.quantile(s, _probs(n_bins)))
    return np.repeat(edges, 2) if edges.size == 1 else edges


def _probs(n_bins: int) -> FloatArray:
    # k / n_bins computed as integers over one denominator, so decile probabilities are exactly
    # the same floats as the matching percentile probabilities.
    return np.arange(n_bins + 1, dtype=np.float64) / n_bins


def assign_bins(edges: FloatArray, values: FloatArray) -> IntArray:
    """Bin index of each value: 0 below ``edges[0]``, k for ``[edges[k-1], edges[k])``, the
    last interior bin closed on the right, and ``len(edges)`` above ``edges[-1]``."""
    idx = np.searchsorted(edges, values, "right")
    idx[values == edges[-1]] = edges.size - 1
    return idx.astype(np.int64, copy=False)


#: Cells of the lookup grid that speeds up bin assignment, and the most correction passes for
#: which the grid beats a binary search (beyond, :class:`BinLocator` falls back to searchsorted).
GRID_CELLS = 8192
MAX_CELLS = 1 << 16
MAX_PASSES = 6


class BinLocator:
    """:func:`assign_bins` in O(1) per value: a uniform grid over the edges says how many
    edges lie at or below each cell's left end, and a few vectorised passes add the edges
    between the cell's start and the value. Exact; ~5x faster than a binary search.
    """

    def __init__(self, edges: FloatArray, cells: int | None = None) -> None:
        if cells is None:
            # about 8 cells per edge keeps the passes few for quantile edges and samples alike
            cells = max(GRID_CELLS, min(8 * edges.size, MAX_CELLS))
        self.edges = edges
        lo, hi = float(edges[0]), float(edges[-1])
        span = hi - lo
        self.lo = lo
        self.scale = cells / span if span > 0 else 0.0
        # A guard band of a few ulps keeps the grid conservative under rounding: a cell's start
        # count never exceeds the true count of a value that floating point placed in it.
        guard = 1e-9 * max(span, abs(lo), abs(hi), 1e-300)
        lefts = lo + np.arange(cells) / self.scale if span > 0 else np.full(cells, lo)
        start = np.searchsorted(edges, lefts - guard, "right")
        start[0] = 0
        rights = np.append(lefts[1:], np.inf) + guard
        self.passes = int(np.max(np.searchsorted(edges, rights, "right") - start))
        self.lut = start.astype(np.int32)
        self.padded = np.append(edges, np.inf)
        self.cells = cells

    def count_le(self, values: FloatArray) -> IntArray:
        """Number of edges <= each value: ``searchsorted(edges, values, "right")``."""
        if self.passes > MAX_PASSES or self.scale == 0.0:
            return np.searchsorted(self.edges, values, "right").astype(np.int64)
        cell = (values - self.lo) * self.scale
        np.clip(cell, 0, self.cells - 1, out=cell)
        idx = self.lut[cell.astype(np.int64)]
        for _ in range(self.passes):
            idx += self.padded[idx] <= values
        return idx.astype(np.int64)

    def assign(self, values: FloatArray) -> IntArray:
        """Same result as ``assign_bins(self.edges, values)`` (values without NaN)."""
        idx = self.count_le(values)
        idx[values == self.edges[-1]] = self.edges.size - 1
        return idx


@dataclass(frozen=True)
class NumericBins:
    """Per-bin counts and value sums of one sample over fixed edges (overflow bins included)."""

    edges: FloatArray
    counts: IntArray
    sums: FloatArray

    @classmethod
    def of(
        cls, edges: FloatArray, values: FloatArray, locator: BinLocator | None = None
    ) -> NumericBins:
        """Bin ``values`` (no NaN) over ``edges`` (through ``locator`` when given)."""
        idx = assign_bins(edges, values) if locator is None else locator.assign(values)
        nb = edges.size + 1
        counts = np.bincount(idx, minlength=nb).astype(np.int64)
        sums = np.bincount(idx, weights=values, minlength=nb).astype(np.float64)
        return cls(edges, counts, sums)

    @classmethod
    def from_sorted(cls, edges: FloatArray, s: FloatArray) -> NumericBins:
        """:meth:`of` for sorted values: O(B log n) from positions and prefix sums."""
        pos = np.searchsorted(s, edges, "left")
        pos[-1] = np.searchsorted(s, edges[-1], "right")  # the last interior bin is closed
        bounds = np.concatenate([[0], pos, [s.size]])
        prefix = np.concatenate([[0.0], np.cumsum(s)])
        return cls(edges, np.diff(bounds).astype(np.int64), np.diff(prefix[bounds]))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def cdf_integrals(self) -> FloatArray:
        """Integral of the empirical CDF over each bin, below and above the edges included.

        Interior bin [a, b): (#values below a * (b - a) + sum over the bin of (b - x)) / n.
        Underflow: the integral of F up to edges[0]; overflow: of (1 - F) from edges[-1] on.
        """
        n = self.total
        e = self.edges
        out = np.empty(e.size + 1)
        below = np.cumsum(self.counts)[:-1]  # values below each interior bin's left edge
        width = np.diff(e)
        c, s = self.counts[1:-1], self.sums[1:-1]
        out[1:-1] = below[: e.size - 1] * width + c * e[1:] - s
        out[0] = self.counts[0] * e[0] - self.sums[0]
        out[-1] = self.sums[-1] - self.counts[-1] * e[-1]
        return out / n


def binned_wasserstein(reference: FloatArray, current: NumericBins) -> float:
    """Wasserstein distance from per-bin CDF integrals (``reference`` = ``cdf_integrals()``).

    Overflow regions hold reference mass 0 by construction, so their integral is the current
    sample's alone, with the sign that the reference CDF is 0 below and 1 above.
    """
    return float(np.sum(np.abs(reference - current.cdf_integrals())))


def psi_bin_map(edges: FloatArray, psi_edges: FloatArray) -> IntArray:
    """For each fine bin (overflow included), the coarse PSI bin containing it.

    ``psi_edges`` must be a subset of ``edges`` (both come from the same quantiles).
    """
    coarse = np.searchsorted(psi_edges, edges[:-1], "right")
    coarse = np.minimum(coarse, psi_edges.size - 1)
    return np.concatenate([[0], coarse, [psi_edges.size]]).astype(np.int64)


def coarse_counts(fine_counts: IntArray, bin_map: IntArray, n_coarse: int) -> FloatArray:
    """Counts of the coarse bins, summed from the fine bins through ``bin_map``."""
    return np.bincount(bin_map, weights=fine_counts, minlength=n_coarse).astype(np.float64)


def category_codes(support: FloatArray, values: FloatArray) -> IntArray:
    """Index of each value in the sorted ``support``; ``len(support)`` for a value not in it."""
    idx = np.searchsorted(support, values)
    inside = idx < support.size
    hit = np.zeros(values.shape, dtype=bool)
    hit[inside] = support[idx[inside]] == values[inside]
    return np.where(hit, idx, support.size).astype(np.int64)
