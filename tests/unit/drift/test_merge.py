"""Merging profiles (issue 18): profiles built in parts merge into the profile of all the rows;
merged samples are uniform; what cannot merge is refused by name; merging survives save/load."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infertrail.drift.build import (
    CategoryCodes,
    build_image_profile,
    build_tabular_profile,
    build_text_profile,
    tabular_partial,
)
from infertrail.drift.partial import NumericalPart, PartialProfile, merge_profiles, merge_samples
from infertrail.drift.profile import Profile
from infertrail.drift.profile_io import arrays_path, load_profile

from .conftest import synthetic_texts
from .profile_equality import profile_differences

NAMES = ["x", "k", "c"]
SHA = "ab" * 32


@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rows of a numerical column (ties, NaN), a small-integer one and a categorical one (None),
    with predictions and confidences."""
    n = draw(st.integers(1, 80))
    x = draw(st.lists(st.one_of(st.integers(-5, 5).map(float), st.floats(-100, 100),
                                st.just(float("nan"))), min_size=n, max_size=n))  # fmt: skip
    k = draw(st.lists(st.integers(0, 3).map(float), min_size=n, max_size=n))
    c = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    X = np.empty((n, 3), dtype=object)
    X[:, 0], X[:, 1], X[:, 2] = x, k, c
    preds = draw(st.lists(st.sampled_from(["no", "yes", "maybe"]), min_size=n, max_size=n))
    conf = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    return X, preds, conf


def build(X: np.ndarray, preds: list[str], conf: np.ndarray, **kw: Any) -> Profile:
    return build_tabular_profile(
        X, NAMES, categorical=["c"], predictions=preds, confidences=conf,
        model_name="m", model_sha256=SHA, **kw,
    )  # fmt: skip


def _valid_part(X: np.ndarray) -> bool:
    """Every feature has a value (a profile of the part can be built on its own)."""
    x = X[:, 0].astype(float)
    return bool(len(X)) and not np.isnan(x).all() and any(v is not None for v in X[:, 2])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.lists(st.integers(0, 80), max_size=3), st.integers(0, 2**32 - 1))
def test_profiles_built_in_parts_merge_into_the_profile_of_all_rows(
    table: tuple[np.ndarray, list[str], np.ndarray], cuts: list[int], seed: int
) -> None:
    X, preds, conf = table
    assume(_valid_part(X))
    cuts = sorted(min(c, len(X)) for c in cuts)
    bounds = [0, *cuts, len(X)]
    pieces = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    assume(all(_valid_part(X[a:b]) for a, b in pieces))
    whole = build(X, preds, conf)
    parts = [build(X[a:b], preds[a:b], conf[a:b]) for a, b in pieces]
    merged = merge_profiles(parts, seed=seed)
    # every row fits in the sample: it is every row, in order, as in the whole build
    assert profile_differences(merged, whole, sample=True) == []
    pairwise = parts[0]
    for p in parts[1:]:
        pairwise = pairwise.merge(p, seed=seed)
    assert profile_differences(pairwise, whole, sample=True) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.lists(st.integers(0, 80), max_size=4))
def test_partial_profiles_merge_even_when_a_part_lacks_a_feature(
    table: tuple[np.ndarray, list[str], np.ndarray], cuts: list[int]
) -> None:
    X, preds, conf = table
    assume(_valid_part(X))
    whole = build(X, preds, conf)
    rng = np.random.default_rng(0)
    merged: PartialProfile | None = None
    for idx in np.split(np.arange(len(X)), sorted(min(c, len(X)) for c in cuts)):
        if idx.size == 0:
            continue
        present = sorted({v for v in X[idx, 2] if v is not None}, reverse=True)  # any order
        columns: dict[str, Any] = {
            "x": X[idx, 0].astype(float),
            "k": X[idx, 1].astype(float),
            "c": CategoryCodes(
                np.array([-1 if v is None else present.index(v) for v in X[idx, 2]]), present
            ),
        }
        part = tabular_partial(
            columns, predictions=[preds[i] for i in idx], confidences=conf[idx],
            model_name="m", model_sha256=SHA, seed=rng,
        )  # fmt: skip
        merged = part if merged is None else merged.merge(part, rng)
    assert merged is not None
    assert profile_differences(merged.profile(), whole, sample=True) == []


def test_merged_samples_are_rows_of_the_parts_with_their_codes_moved() -> None:
    rng = np.random.default_rng(3)
    n = 400
    X = np.empty((n, 3), dtype=object)
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = rng.integers(0, 4, n).astype(float)
    X[:, 2] = np.where(np.arange(n) < 200, rng.choice(["b", "c"], n), rng.choice(["a", "d"], n))
    preds = list(np.where(np.arange(n) < 200, "yes", "no"))
    conf = rng.uniform(size=n)
    whole = build(X, preds, conf, sample_size=50)
    merged = build(X[:200], preds[:200], conf[:200], sample_size=50).merge(
        build(X[200:], preds[200:], conf[200:], sample_size=50), seed=7
    )
    assert profile_differences(merged, whole, sample=False) == []
    assert merged.sample.shape == (50, 3) and merged.sample_size == 50
    # each sampled row is a row of the data, coded with the merged categories and labels
    rows = whole.features_batch([dict(zip(NAMES, r, strict=True)) for r in X])
    index = {tuple(r): i for i, r in enumerate(rows.tolist())}
    assert merged.sample_labels is not None and merged.sample_confidences is not None
    labels = whole.prediction.categories  # type: ignore[union-attr]
    for row, label, c in zip(
        merged.sample.tolist(), merged.sample_labels, merged.sample_confidences, strict=True
    ):
        i = index[tuple(row)]
        assert labels[label] == preds[i] and c == conf[i]


def test_merged_samples_draw_each_part_in_proportion() -> None:
    # a uniform 10-row sample of 100 + 300 rows takes 2.5 rows of the first part on average
    takes = [
        merge_samples((100, 10), (300, 10), 10, np.random.default_rng(seed))[0].size
        for seed in range(2000)
    ]
    assert abs(np.mean(takes) - 2.5) < 0.1
    assert np.var(takes) == pytest.approx(10 * 0.25 * 0.75 * 390 / 399, rel=0.1)


def test_merged_sample_size_is_the_smaller_one() -> None:
    X = np.random.default_rng(0).normal(size=(300, 1))
    a = build_tabular_profile(X[:150], ["x"], sample_size=20)
    b = build_tabular_profile(X[150:], ["x"], sample_size=50)
    merged = a.merge(b)
    assert merged.sample_size == 20 and merged.sample.shape == (20, 1)


def test_image_and_text_profiles_merge(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, y = digits
    labels = [str(i) for i in range(10)]
    kw: dict[str, Any] = {"labels": labels, "model_name": "digits"}
    whole = build_image_profile(images[:300], predictions=[str(v) for v in y[:300]], **kw)
    parts = [
        build_image_profile(images[a:b], predictions=[str(v) for v in y[a:b]], **kw)
        for a, b in ((0, 100), (100, 300))
    ]
    assert profile_differences(merge_profiles(parts), whole, sample=True) == []
    texts = synthetic_texts(120, 1)
    vocab = {w.lower() for t in texts for w in t.split()}
    text_whole = build_text_profile(texts, vocab)
    merged = build_text_profile(texts[:50], vocab).merge(build_text_profile(texts[50:], vocab))
    assert profile_differences(merged, text_whole, sample=True) == []


def _base() -> tuple[Profile, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(100, 2))
    return build_tabular_profile(X, ["a", "b"], model_name="m", model_sha256=SHA), X


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (lambda X: build_tabular_profile(X, ["a", "b"], model_name="m", model_sha256="cd" * 32),
         r"different models 'm' \(sha256 abababababababab\) and 'm' \(sha256 cdcdcdcdcdcdcdcd\)"),
        (lambda X: build_tabular_profile(X, ["a", "z"], model_name="m", model_sha256=SHA),
         r"different features \['a', 'b'\] and \['a', 'z'\]"),
        (lambda X: build_tabular_profile(
            X.round().astype(int).astype(object), ["a", "b"], categorical=["b"],
            model_name="m", model_sha256=SHA),
         "feature 'b' is numerical in one and categorical in the other"),
        (lambda X: build_tabular_profile(X, ["a", "b"], model_name="m", model_sha256=SHA,
                                         predictions=["y"] * 100),
         "different predictions in one profile only"),
        (lambda X: build_tabular_profile(X, ["a", "b"], model_name="m", model_sha256=SHA,
                                         confidences=np.full(100, 0.5)),
         "different confidences in one profile only"),
    ],
)  # fmt: skip
def test_profiles_that_differ_are_refused_by_what_differs(other: Any, message: str) -> None:
    base, X = _base()
    with pytest.raises(ValueError, match=message):
        base.merge(other(X))


def test_label_orders_declared_differently_are_refused() -> None:
    X = np.zeros((4, 1))
    kw: dict[str, Any] = {"predictions": ["b", "a", "b", "a"]}
    a = build_tabular_profile(X, ["x"], labels=["b", "a"], **kw)
    b = build_tabular_profile(X, ["x"], labels=["b", "a", "c"], **kw)
    with pytest.raises(ValueError, match=r"'prediction\.label' has categories.*declared order"):
        a.merge(b)
    # the same declared labels merge, whatever their order
    merged = a.merge(build_tabular_profile(X, ["x"], labels=["b", "a"], **kw))
    assert merged.prediction is not None and merged.prediction.categories == ("b", "a")


def test_text_profiles_of_their_own_vocabularies_are_refused() -> None:
    a = build_text_profile(["good food"], predictions=None)
    b = build_text_profile(["bad service"], predictions=None)
    with pytest.raises(ValueError, match="different text specs"):
        a.merge(b)


def test_a_feature_without_a_distribution_cannot_merge() -> None:
    base, _ = _base()
    old = dataclasses.replace(
        base, columns=(dataclasses.replace(base.columns[0], distribution=None), base.columns[1])
    )
    with pytest.raises(ValueError, match=r"feature 'a' has no mergeable distribution.*rebuild"):
        base.merge(old)
    with pytest.raises(ValueError, match="at least one profile"):
        merge_profiles([])


def _rewrite_arrays(path: Path, drop: str) -> None:
    """Drop arrays whose name has ``drop`` and record the new sha256, as an older writer."""
    npz = arrays_path(path)
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files if drop not in k}
    with npz.open("wb") as fh:
        np.savez(fh, **arrays)
    meta = json.loads(path.read_text())
    meta["arrays"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    meta.pop("sample_size")
    path.write_text(json.dumps(meta))


def test_merging_survives_saving_and_loading_compacted_distributions(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 2))
    whole, parts = build_tabular_profile(X, ["a", "b"]), []
    for k, rows in enumerate((X[:1000], X[1000:])):
        p = build_tabular_profile(rows, ["a", "b"])
        # a compacted distribution (64 knots) on column a, as a large reference would have
        part = NumericalPart.of_values("a", rows[:, 0], max_values=64)
        p = dataclasses.replace(p, columns=(part.feature("a"), p.columns[1]))
        p.save(tmp_path / f"p{k}.json")
        parts.append(load_profile(tmp_path / f"p{k}.json"))
    assert parts[0].columns[0].distribution is not None
    assert not parts[0].columns[0].distribution.is_exact
    # merging at 64 knots compacts every numerical column: as a build at 64 knots would
    merged = merge_profiles(parts, max_values=64)
    want = dataclasses.replace(
        whole,
        columns=tuple(
            NumericalPart.of_values(n, X[:, j], 64).feature(n) for j, n in enumerate("ab")
        ),
    )
    assert profile_differences(merged, want, sample=True) == []


def test_files_without_distributions_merge_when_their_ecdf_holds_every_value(
    tmp_path: Path,
) -> None:
    X = np.random.default_rng(6).normal(size=(400, 1)).round(2)
    whole = build_tabular_profile(X, ["a"])
    paths = []
    for k, rows in enumerate((X[:100], X[100:])):
        build_tabular_profile(rows, ["a"]).save(path := tmp_path / f"p{k}.json")
        _rewrite_arrays(path, ".value")  # a file from before the distributions
        paths.append(path)
    loaded = [load_profile(p) for p in paths]
    assert loaded[0].columns[0].distribution is not None
    assert loaded[0].sample_size == 5000  # not recorded: the sample held every row
    assert profile_differences(merge_profiles(loaded), whole, sample=True) == []


def test_a_damaged_distribution_is_refused(tmp_path: Path) -> None:
    from infertrail.drift.profile_io import ProfileError

    path = tmp_path / "p.json"
    build_tabular_profile(np.arange(10.0)[:, None], ["a"]).save(path)
    npz = arrays_path(path)
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["col0.value_counts"] = arrays["col0.value_counts"] * 2
    with npz.open("wb") as fh:
        np.savez(fh, **arrays)
    meta = json.loads(path.read_text())
    meta["arrays"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    path.write_text(json.dumps(meta))
    with pytest.raises(ProfileError, match="distribution counts 20 values, the feature 10"):
        load_profile(path)
    arrays["col0.value_counts"] = arrays["col0.value_counts"][::-1].astype(np.float64)
    with npz.open("wb") as fh:
        np.savez(fh, **arrays)
    meta["arrays"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    path.write_text(json.dumps(meta))
    with pytest.raises(ProfileError, match=r"'col0\.value_counts' has dtype float64"):
        load_profile(path)
