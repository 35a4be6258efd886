"""Column distributions (infertrail.drift.distribution): exact statistics, compaction on the
floating-point grid, and merges that equal the distribution of all the values at once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.drift.distribution import EXACT, ColumnDistribution
from infertrail.drift.ecdf import ReferenceEcdf
from infertrail.drift.histogram import NumericBins, sorted_quantile_edges, sorted_unique

# Ties, zeros of both signs, several binades and both signs: where grids and merges go wrong.
VALUE = st.one_of(
    st.integers(-50, 50).map(float),
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 1.75, 2.0, -2.0, 1e-3, 1e6]),
)
VALUES = st.lists(VALUE, min_size=1, max_size=300)


def brute_cells(
    values: np.ndarray, precision: int
) -> list[tuple[float, int, float, int, int, float]]:
    """Each grid cell at ``precision`` from its definition: (min, its count, max, its count,
    count and sum of the values strictly between), by keys of the float64 bits."""
    s = np.sort(values + 0.0)
    keys = (s.view(np.uint64) >> np.uint64(EXACT - precision)).tolist()
    cells: dict[int, list[float]] = {}
    for key, v in zip(keys, s.tolist(), strict=True):
        cells.setdefault(key, []).append(v)
    out = []
    for members in sorted(cells.values(), key=lambda m: m[0]):
        lo, hi = members[0], members[-1]
        inner = [v for v in members if lo < v < hi]
        out.append((lo, members.count(lo), hi, members.count(hi), len(inner), sum(inner)))
    return out


def cells_of(d: ColumnDistribution) -> list[tuple[float, int, float, int, int, float]]:
    """The same cells read off a distribution (a cell is one knot, or two with the gap)."""
    out = []
    i = 0
    v, c, g, gs = d.values.tolist(), d.counts.tolist(), d.gap_counts.tolist(), d.gap_sums.tolist()
    keys = (d.values.view(np.uint64) >> np.uint64(EXACT - d.precision)).tolist()
    while i < len(v):
        if i + 1 < len(v) and keys[i + 1] == keys[i]:
            out.append((v[i], c[i], v[i + 1], c[i + 1], g[i], gs[i]))
            i += 2
        else:
            out.append((v[i], c[i], v[i], c[i], 0, 0.0))
            i += 1
    return out


def assert_cells(d: ColumnDistribution, values: np.ndarray) -> None:
    got, want = cells_of(d), brute_cells(values, d.precision)
    assert [x[:5] for x in got] == [w[:5] for w in want]
    assert np.allclose([x[5] for x in got], [w[5] for w in want], rtol=1e-12, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_an_exact_distribution_gives_numpys_quantiles_bins_and_the_ecdf(
    values: list[float],
) -> None:
    v = np.array(values)
    d = ColumnDistribution.of_values(v)
    s = np.sort(v)
    assert d.precision == EXACT and d.is_exact and d.n == v.size and d.problem() is None
    probs = np.concatenate([np.arange(101) / 100, [0.005, 0.995]])
    assert np.array_equal(d.quantiles(probs), np.quantile(v, probs))  # the same floats
    for n_bins in (10, 100):
        edges = d.quantile_edges(n_bins)
        assert np.array_equal(edges, sorted_quantile_edges(s, sorted_unique(s)[0], n_bins))
        want, got = NumericBins.from_sorted(edges, s), d.bins(edges)
        assert np.array_equal(got.counts, want.counts)
        assert np.allclose(got.sums, want.sums, rtol=1e-12, atol=1e-9)
    for knots in (2, 7, 16_384):
        a, b = ReferenceEcdf.of_sorted(s, knots), d.ecdf(knots)
        assert np.array_equal(a.knots, b.knots)
        assert np.array_equal(a.le, b.le) and np.array_equal(a.lt, b.lt)


@settings(max_examples=120, deadline=None)
@given(VALUES, st.integers(2, 40))
def test_compaction_keeps_the_cells_of_the_finest_grid_that_fits(
    values: list[float], max_values: int
) -> None:
    v = np.array(values)
    d = ColumnDistribution.of_values(v, max_values)
    assert d.n == v.size and d.problem() is None
    assert_cells(d, v)
    if d.precision < EXACT:
        assert d.values.size <= max_values or d.precision == 0
        finer = brute_cells(v, d.precision + 1)
        assert sum(1 if c[0] == c[2] else 2 for c in finer) > max_values  # the finest that fits
    # ranks known at knots, and the ECDF's counts are the data's
    s = np.sort(v)
    ecdf = d.ecdf(5)
    assert ecdf.problem() is None
    assert np.array_equal(ecdf.le, np.searchsorted(s, ecdf.knots, "right"))
    assert np.array_equal(ecdf.lt, np.searchsorted(s, ecdf.knots, "left"))
    # bins on its quantiles count exactly: no edge falls inside a gap
    edges = d.quantile_edges(10)
    assert np.array_equal(d.bins(edges).counts, NumericBins.from_sorted(edges, s).counts)


@settings(max_examples=150, deadline=None)
@given(VALUES, st.lists(st.integers(0, 300), max_size=4), st.integers(2, 40))
def test_merging_parts_equals_the_distribution_of_all_values(
    values: list[float], cuts: list[int], max_values: int
) -> None:
    v = np.array(values)
    whole = ColumnDistribution.of_values(v, max_values)
    parts = [ColumnDistribution.of_values(p, max_values) for p in np.split(v, sorted(cuts))]
    at_once = ColumnDistribution.merged(parts, max_values)
    pairwise = parts[0]
    for p in parts[1:]:
        pairwise = pairwise.merge(p, max_values)
    reversed_order = ColumnDistribution.merged(parts[::-1], max_values)
    for merged in (at_once, pairwise, reversed_order):
        assert merged.equals(whole, rtol=1e-9), (merged, whole)


def test_many_values_stay_bounded_and_their_ecdf_close_to_the_rank_sketch() -> None:
    v = np.random.default_rng(0).normal(size=300_000)
    d = ColumnDistribution.of_values(v, 1 << 14)
    assert d.precision < EXACT and d.values.size <= 1 << 14 and d.n == v.size
    merged = ColumnDistribution.merged(
        [ColumnDistribution.of_values(p, 1 << 14) for p in np.array_split(v, 7)], 1 << 14
    )
    assert merged.equals(d, rtol=1e-9)
    # the KS ECDF drawn from it: between two knots, the rank spacing plus at most a gap
    ecdf = d.ecdf(4096)
    between = int(np.max(ecdf.lt[1:] - ecdf.le[:-1]))
    assert between <= v.size / 4095 + 2 * int(d.gap_counts.max())


def test_empty_parts_and_zeros_of_both_signs() -> None:
    d = ColumnDistribution.of_values(np.array([0.0, -0.0, 1.0]))
    assert d.values.tolist() == [0.0, 1.0] and d.counts.tolist() == [2, 1]
    assert ColumnDistribution.merged([ColumnDistribution.empty(), d]).equals(d)
    assert ColumnDistribution.merged([]).n == 0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="finite values only"):
        ColumnDistribution.of_values(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="max_values must be at least 2"):
        ColumnDistribution.of_values(np.array([1.0]), 1)
    with pytest.raises(ValueError, match="quantiles of an empty distribution"):
        ColumnDistribution.empty().quantiles(np.array([0.5]))
    with pytest.raises(ValueError, match="at least 2 knots"):
        ColumnDistribution.of_values(np.array([1.0])).ecdf(1)
    with pytest.raises(ValueError, match="at least one value"):
        ColumnDistribution.empty().ecdf()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: {**d, "values": d["values"][::-1].copy()}, "strictly increasing"),
        (lambda d: {**d, "counts": d["counts"] * 0}, "counts must be positive"),
        (lambda d: {**d, "precision": 53}, "precision must be 0..52"),
        (lambda d: {**d, "gap_sums": d["gap_sums"] + 1.0}, "empty gap"),
        (lambda d: {**d, "counts": d["counts"][:-1]}, "of one length"),
        (lambda d: {**d, "gap_counts": d["gap_counts"] + 1, "gap_sums": d["gap_sums"] + 1},
         "gap counts"),
    ],
)  # fmt: skip
def test_invalid_arrays_are_named(change: object, problem: str) -> None:
    d = ColumnDistribution.of_values(np.arange(10.0))
    fields = {k: getattr(d, k) for k in ("values", "counts", "gap_counts", "gap_sums")}
    fields["precision"] = d.precision
    assert callable(change)
    broken = ColumnDistribution(**change(fields))
    assert problem in (broken.problem() or "")
