"""Reference bins: exact bin assignment through the lookup grid, and binned Wasserstein."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from infertrail.drift import histogram as h

values = st.lists(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=200
)


@settings(max_examples=150)
@given(values, values)
def test_locator_assigns_exactly_like_searchsorted(ref: list[float], cur: list[float]) -> None:
    edges = h.quantile_edges(np.array(ref), h.FINE_BINS)
    probe = np.concatenate([np.array(cur), edges, np.nextafter(edges, np.inf)])
    locator = h.BinLocator(edges, cells=64)
    assert np.array_equal(locator.assign(probe), h.assign_bins(edges, probe))


def test_bins_place_edge_values_and_overflow() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    idx = h.assign_bins(edges, np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 2.5]))
    # below | [0,1) | [1,2] closed on the right | above
    assert idx.tolist() == [0, 1, 1, 2, 2, 3]


def test_constant_reference_has_one_closed_bin() -> None:
    edges = h.quantile_edges(np.full(10, 3.0), 10)
    assert edges.tolist() == [3.0, 3.0]
    assert h.assign_bins(edges, np.array([2.0, 3.0, 4.0])).tolist() == [0, 1, 2]
    assert h.BinLocator(edges).assign(np.array([2.0, 3.0, 4.0])).tolist() == [0, 1, 2]


def test_few_distinct_values_become_the_edges() -> None:
    edges = h.quantile_edges(np.array([1.0, 1, 2, 5, 5, 5]), 10)
    assert edges.tolist() == [1.0, 2.0, 5.0]


@settings(max_examples=60)
@given(st.lists(st.integers(0, 16), min_size=1, max_size=300), st.data())
def test_binned_wasserstein_is_exact_on_discrete_support(
    ref: list[int], data: st.DataObject
) -> None:
    # current values drawn from the reference's support (pixel intensities, counts, ...)
    cur = data.draw(st.lists(st.sampled_from(ref), min_size=1, max_size=300))
    r, c = np.array(ref, float), np.array(cur, float)
    edges = h.quantile_edges(r, h.FINE_BINS)
    binned = h.binned_wasserstein(
        h.NumericBins.of(edges, r).cdf_integrals(), h.NumericBins.of(edges, c)
    )
    assert binned == pytest.approx(sps.wasserstein_distance(r, c), abs=1e-9)


@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.1, 1.0), (0.5, 1.5), (-2.0, 0.5)])
def test_binned_wasserstein_is_a_tight_lower_bound(shift: float, scale: float) -> None:
    rng = np.random.default_rng(1)
    r, c = rng.normal(size=20_000), rng.normal(shift, scale, 5_000)
    edges = h.quantile_edges(r, h.FINE_BINS)
    binned = h.binned_wasserstein(
        h.NumericBins.of(edges, r).cdf_integrals(), h.NumericBins.of(edges, c)
    )
    exact = sps.wasserstein_distance(r, c)
    assert binned <= exact + 1e-12
    assert binned == pytest.approx(exact, rel=0.05, abs=0.005)


def test_binned_wasserstein_lower_bound_when_cdfs_cross_inside_a_bin() -> None:
    # reference {0, 2}, current {1}: the CDFs cross at 1, inside the single bin [0, 2]
    r, c = np.array([0.0, 2.0]), np.array([1.0])
    edges = h.quantile_edges(r, h.FINE_BINS)
    binned = h.binned_wasserstein(
        h.NumericBins.of(edges, r).cdf_integrals(), h.NumericBins.of(edges, c)
    )
    assert binned == 0.0
    assert sps.wasserstein_distance(r, c) == 1.0


def test_psi_bins_are_unions_of_fine_bins() -> None:
    rng = np.random.default_rng(2)
    r = rng.exponential(size=5000)
    fine, coarse = h.quantile_edges(r, h.FINE_BINS), h.quantile_edges(r, h.PSI_BINS)
    assert set(coarse.tolist()) <= set(fine.tolist())
    bin_map = h.psi_bin_map(fine, coarse)
    c = rng.exponential(1.3, size=3000)
    via_fine = h.coarse_counts(h.NumericBins.of(fine, c).counts, bin_map, coarse.size + 1)
    direct = np.bincount(h.assign_bins(coarse, c), minlength=coarse.size + 1)
    assert via_fine.tolist() == direct.tolist()


def test_category_codes_mark_unseen_values() -> None:
    support = np.array([0.0, 1.0, 3.0])
    codes = h.category_codes(support, np.array([3.0, 0.0, 2.0, 9.0, -1.0]))
    assert codes.tolist() == [2, 0, 3, 3, 3]


@settings(max_examples=60)
@given(values)
def test_bins_from_sorted_values_equal_binning_each_value(ref: list[float]) -> None:
    r = np.array(ref)
    s = np.sort(r)
    edges = h.quantile_edges(r, 7)
    fast, slow = h.NumericBins.from_sorted(edges, s), h.NumericBins.of(edges, r)
    assert fast.counts.tolist() == slow.counts.tolist()
    assert np.allclose(fast.sums, slow.sums, rtol=1e-9, atol=1e-6)
    uniq, counts = h.sorted_unique(s)
    expected_uniq, expected_counts = np.unique(r, return_counts=True)
    assert uniq.tolist() == expected_uniq.tolist() and counts.tolist() == expected_counts.tolist()
