"""Slices of drift windows (infertrail.drift.slices): the settings syntax and its errors, every row
in exactly one slice per spec, bounded and stable cardinality."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.drift.build import build_tabular_profile
from infertrail.drift.detector import DriftWindow
from infertrail.drift.profile import Profile
from infertrail.drift.slices import Slicer, SliceSpec, parse_slice_specs


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(0)
    n = 600
    X = np.empty((n, 3), dtype=object)
    X[:, 0] = rng.normal(40, 12, n)
    X[:, 1] = rng.choice(["web", "app", "phone", "shop"], n, p=[0.4, 0.3, 0.2, 0.1])
    X[:, 2] = rng.integers(0, 50, n).astype(float)
    return build_tabular_profile(X, ["age", "channel", "n_items"], categorical=["channel"])


def window(profile: Profile, inputs: list[dict[str, Any]], **attributes: Any) -> DriftWindow:
    return DriftWindow(profile.features_batch(inputs), attributes=attributes)


def test_specs_parse_from_the_settings_string() -> None:
    specs = parse_slice_specs(" tenant ; feature:channel;feature:age:18,30.5,50 ")
    assert specs == [
        SliceSpec("attribute", "tenant"),
        SliceSpec("feature", "channel"),
        SliceSpec("feature", "age", (18.0, 30.5, 50.0)),
    ]
    assert [s.label for s in specs] == ["tenant", "feature:channel", "feature:age:18,30.5,50"]
    assert parse_slice_specs("  ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("region", r"'region' is not a request attribute \(tenant, endpoint, team\)"),
        ("feat:age", "expected an attribute .* not 'feat':"),
        ("feature:", r"the feature has no name \(feature:NAME\)"),
        ("feature:age:18,x", "bin edge 'x' is not a number"),
        ("feature:age:30,18", r"strictly increasing, got \[30.0, 18.0\]"),
        ("feature:age:18,inf", "bin edges must be finite"),
        ("tenant;;endpoint", "an empty entry between ';'"),
        ("tenant;tenant", "'tenant' is sliced twice"),
    ],
)
def test_bad_specs_are_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slice_specs(text)


def test_specs_must_fit_the_profile(profile: Profile) -> None:
    with pytest.raises(ValueError, match="the profile has no feature 'income'"):
        Slicer(profile, [SliceSpec("feature", "income")])
    with pytest.raises(ValueError, match="'channel' is categorical; bin edges apply"):
        Slicer(profile, [SliceSpec("feature", "channel", (1.0,))])
    with pytest.raises(ValueError, match="4 bins are more than max_slices=3"):
        Slicer(profile, [SliceSpec("feature", "age", (1.0, 2.0, 3.0))], max_slices=3)
    with pytest.raises(ValueError, match="max_slices must be at least 1"):
        Slicer(profile, [], max_slices=0)
    with pytest.raises(ValueError, match="'age' is sliced twice"):
        Slicer(profile, [SliceSpec("feature", "age"), SliceSpec("feature", "age", (3.0,))])


def test_slices_of_attributes_categories_and_bins(profile: Profile) -> None:
    slicer = Slicer(profile, parse_slice_specs("tenant;feature:channel;feature:age:30,50"))
    w = window(
        profile,
        [{"age": 20, "channel": "web", "n_items": 1}, {"age": 35, "channel": "tv", "n_items": 2},
         {"age": None, "channel": "app", "n_items": 3}, {"age": 60, "channel": None, "n_items": 4},
         {"age": 45, "channel": "web", "n_items": 5}],
        tenant=("acme", "beta", None, "acme", "other"),
    )  # fmt: skip
    got = {k: v.tolist() for k, v in slicer.partition(w).items()}
    assert got == {
        "tenant=acme": [0, 3], "tenant=beta": [1], "tenant='other'": [4], "tenant=none": [2],
        "channel=app": [2], "channel=web": [0, 4], "channel=other": [1], "channel=none": [3],
        "age=(-inf,30)": [0], "age=[30,50)": [1, 4], "age=[50,inf)": [3], "age=none": [2],
    }  # fmt: skip
    assert slicer.folded == {"tenant": 0, "feature:channel": 1, "feature:age:30,50": 0}


def test_a_window_without_the_attribute_is_one_none_slice(profile: Profile) -> None:
    slicer = Slicer(profile, [SliceSpec("attribute", "endpoint")])
    w = window(profile, [{"age": 1, "channel": "web", "n_items": 1}] * 3)
    assert {k: v.tolist() for k, v in slicer.partition(w).items()} == {"endpoint=none": [0, 1, 2]}
    bad = DriftWindow(w.rows, attributes={"endpoint": ("a",)})
    with pytest.raises(ValueError, match="'endpoint' has 1 values for 3 rows"):
        slicer.partition(bad)


def test_categories_beyond_the_bound_are_the_least_frequent_of_the_reference(
    profile: Profile,
) -> None:
    slicer = Slicer(profile, [SliceSpec("feature", "channel")], max_slices=2)
    inputs = [{"age": 1, "channel": c, "n_items": 1} for c in ("web", "app", "phone", "shop")]
    got = {k: v.tolist() for k, v in slicer.partition(window(profile, inputs)).items()}
    assert got == {"channel=app": [1], "channel=web": [0], "channel=other": [2, 3]}


def test_first_seen_values_keep_their_slices_in_later_windows(profile: Profile) -> None:
    slicer = Slicer(profile, [SliceSpec("attribute", "tenant"), SliceSpec("feature", "n_items")],
                    max_slices=2)  # fmt: skip
    rows = [{"age": 1, "channel": "web", "n_items": k} for k in (1.0, 2, 3, 1)]
    first = slicer.partition(window(profile, rows, tenant=("a", "b", "c", "a")))
    assert sorted(first) == ["n_items=1", "n_items=2", "n_items=other", "tenant=a", "tenant=b",
                             "tenant=other"]  # fmt: skip
    later = slicer.partition(window(profile, rows[::-1], tenant=("c", "c", "b", "d")))
    assert {k: v.tolist() for k, v in later.items() if k.startswith("tenant")} == {
        "tenant=b": [2], "tenant=other": [0, 1, 3]
    }  # fmt: skip
    assert slicer.folded["tenant"] == 4


TENANTS = st.sampled_from(["a", "b", "c", "d", "e", "other", "none"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), TENANTS), st.one_of(st.none(), st.floats(0, 100)),
                       st.sampled_from(["web", "app", "phone", "shop", "tv", None])),
             min_size=1, max_size=60),
    st.integers(1, 4),
)  # fmt: skip
def test_every_row_is_in_exactly_one_slice_per_spec_and_the_bound_holds(
    profile: Profile, rows: list[tuple[str | None, float | None, str | None]], max_slices: int
) -> None:
    specs = parse_slice_specs("tenant;feature:channel;feature:age:30;feature:n_items")
    slicer = Slicer(profile, specs, max_slices=max(max_slices, 2))
    inputs = [{"age": a, "channel": c, "n_items": a} for _, a, c in rows]
    w = window(profile, inputs, tenant=tuple(t for t, _, _ in rows))
    slices = slicer.partition(w)
    for name in ("tenant", "channel", "age", "n_items"):
        mine = {k: v for k, v in slices.items() if k.split("=")[0] == name}
        values = [k for k in mine if k not in (f"{name}=other", f"{name}=none")]
        assert len(values) <= slicer.max_slices
        members = np.concatenate(list(mine.values()))
        assert sorted(members.tolist()) == list(range(len(rows)))  # each row once
        for index in mine.values():
            assert index.size and np.all(np.diff(index) > 0)
        value = {"tenant": 0, "channel": 2, "age": 1, "n_items": 1}[name]
        missing = [i for i, row in enumerate(rows) if row[value] is None]
        assert mine.get(f"{name}=none", np.empty(0)).tolist() == missing
