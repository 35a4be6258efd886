"""Reference profiles: building, feature extraction, files that round-trip and fail clearly."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infertrail.drift import (
    DriftConfig,
    DriftDetector,
    DriftWindow,
    Profile,
    ProfileError,
    build_tabular_profile,
    build_text_profile,
    load_profile,
    profile_path,
    stats,
)
from infertrail.drift.profile_io import FORMAT_VERSION, arrays_path

from .conftest import synthetic_texts


def test_image_profile_has_pixels_derived_stats_and_pooled_histogram(
    digits_profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    p = digits_profile
    assert p.kind == "image" and p.n_rows == 1200
    assert p.feature_names[:2] == ["pixel_0", "pixel_1"]
    assert p.feature_names[64:] == ["mean_intensity", "intensity_std", "ink_fraction"]
    assert p.pooled is not None and p.pooled.categories == tuple(str(i) for i in range(17))
    assert p.pooled.category_counts is not None
    assert int(p.pooled.category_counts.sum()) == 1200 * 64
    row = p.features(digits[0][0].reshape(8, 8))
    assert row.shape == (67,)
    assert row[66] == pytest.approx(np.mean(digits[0][0] > 0))
    assert row[64] == pytest.approx(digits[0][0].mean() / 16)
    assert p.prediction is not None and p.prediction.name == "prediction.label"
    assert p.label_code("3") == 3 and p.label_code("cat") == 10 and p.label_code(None) == -1


def test_image_profile_rejects_bad_images() -> None:
    from infertrail.drift import build_image_profile

    with pytest.raises(ValueError, match=r"integers 0\.\.16"):
        build_image_profile(np.full((3, 64), 17.0))
    with pytest.raises(ValueError, match="64 pixels"):
        build_image_profile(np.zeros((3, 60)))
    p = build_image_profile(np.zeros((3, 64)))
    with pytest.raises(ValueError, match="64 pixels"):
        p.features(np.zeros(10))


def test_text_profile_measures_length_and_oov() -> None:
    texts = synthetic_texts(300, seed=0)
    p = build_text_profile(texts, vocabulary=["good", "bad", "good service"], predictions=None)
    assert p.text is not None and p.text.vocabulary == {"good", "bad"}  # bigram ignored
    row = p.features("Good good zebra!")
    assert row.tolist() == [len("Good good zebra!"), 3, pytest.approx(1 / 3)]
    assert p.features("")[2] == 0.0  # no tokens: no OOV
    with pytest.raises(ValueError, match="str inputs"):
        p.features(42)
    # default vocabulary: the training texts' own tokens
    own = build_text_profile(texts)
    assert own.features(texts[0])[2] == 0.0
    with pytest.raises(ValueError, match="empty"):
        build_text_profile([])


def test_tabular_profile_features_from_sequences_and_mappings(tabular_profile: Profile) -> None:
    p = tabular_profile
    values = [0.5] * 20 + ["green"]
    row = p.features(values)
    color = p.columns[20]
    assert color.kind == "categorical" and color.categories == ("blue", "green", "red")
    assert row[20] == 1.0
    named = p.features({**{f"x{i}": 0.5 for i in range(20)}, "color": "purple"})
    assert named[20] == 3.0  # unseen category: its own bucket
    assert math.isnan(p.features([None] * 20 + ["red"])[0])
    with pytest.raises(ValueError, match="21"):
        p.features([1.0])
    with pytest.raises(ValueError, match="'x3' must be a number"):
        p.features([0.0] * 3 + ["abc"] + [0.0] * 16 + ["red"])
    with pytest.raises(ValueError, match="no value for feature 'x0'"):
        p.features({"color": "red"})


def test_tabular_profile_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="2-D table with 2 columns"):
        build_tabular_profile(np.zeros((5, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="categorical names unknown"):
        build_tabular_profile(np.zeros((5, 2)), ["a", "b"], categorical=["c"])
    with pytest.raises(ValueError, match="no non-missing"):
        build_tabular_profile(np.full((5, 1), np.nan), ["a"])
    with pytest.raises(ValueError, match="labels not in"):
        build_tabular_profile(np.zeros((2, 1)), ["a"], predictions=["x", "y"], labels=["x"])
    with pytest.raises(ValueError, match=r"confidences must lie in \[0, 1\]"):
        build_tabular_profile(np.zeros((2, 1)), ["a"], confidences=[0.5, 2.0])


def test_sample_is_bounded_and_seeded() -> None:
    X = np.random.default_rng(0).normal(size=(3000, 2))
    a = build_tabular_profile(X, ["a", "b"], sample_size=500, seed=1)
    b = build_tabular_profile(X, ["a", "b"], sample_size=500, seed=1)
    assert a.sample.shape == (500, 2)
    assert np.array_equal(a.sample, b.sample)
    assert a.columns[0].count == 3000  # bins and stats use every row, not the sample


# -- files ------------------------------------------------------------------------------------
def _assert_same(a: Profile, b: Profile) -> None:
    assert (a.kind, a.model_name, a.model_sha256, a.n_rows) == (
        b.kind, b.model_name, b.model_sha256, b.n_rows,
    )  # fmt: skip
    assert np.array_equal(a.sample, b.sample, equal_nan=True)
    for fa, fb in zip(
        [*a.columns, a.prediction, a.confidence, a.pooled],
        [*b.columns, b.prediction, b.confidence, b.pooled],
        strict=True,
    ):
        if fa is None or fb is None:
            assert fa is fb
            continue
        assert (fa.name, fa.kind, fa.count, fa.n_unique, fa.categories) == (
            fb.name, fb.kind, fb.count, fb.n_unique, fb.categories,
        )  # fmt: skip
        for attr in ("mean", "std", "q_low", "q_high"):
            va, vb = getattr(fa, attr), getattr(fb, attr)
            assert (math.isnan(va) and math.isnan(vb)) or va == vb
        if fa.bins is not None:
            assert fb.bins is not None
            assert np.array_equal(fa.bins.edges, fb.bins.edges)
            assert np.array_equal(fa.bins.counts, fb.bins.counts)
            assert np.array_equal(fa.bins.sums, fb.bins.sums)
        assert (fa.ecdf is None) == (fb.ecdf is None) == (fa.kind == "categorical")
        if fa.ecdf is not None and fb.ecdf is not None:
            for attr in ("knots", "le", "lt"):
                assert np.array_equal(getattr(fa.ecdf, attr), getattr(fb.ecdf, attr))
                assert getattr(fb.ecdf, attr).dtype == getattr(fa.ecdf, attr).dtype


@pytest.mark.parametrize("which", ["digits", "tabular", "text"])
def test_profiles_round_trip(
    which: str, digits_profile: Profile, tabular_profile: Profile, tmp_path: Path
) -> None:
    texts = synthetic_texts(200, seed=1)
    p = {
        "digits": digits_profile,
        "tabular": tabular_profile,
        "text": build_text_profile(texts, predictions=["a"] * 200, confidences=[0.9] * 200),
    }[which]
    path = profile_path(tmp_path / "models", "m")
    assert path == tmp_path / "models" / "m" / "profile.json"
    p.save(path)
    assert arrays_path(path).is_file()
    loaded = Profile.load(path, expected_sha256=p.model_sha256)
    _assert_same(p, loaded)
    probe = texts[3] if which == "text" else p.sample[0][: 64 if which == "digits" else None]
    if which == "tabular":
        probe = [*p.sample[0][:20], "red"]
    assert np.array_equal(loaded.features(probe), p.features(probe))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 4),
    scale=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    seed=st.integers(0, 2**32 - 1),
)
def test_tabular_profiles_round_trip_property(
    n: int, d: int, scale: float, seed: int, tmp_path: Path
) -> None:
    data = np.random.default_rng(seed).normal(size=(n, d)) * scale
    data[data > scale] = np.round(data[data > scale])  # some ties
    p = build_tabular_profile(data, [f"f{i}" for i in range(d)], sample_size=20, seed=seed)
    path = tmp_path / f"p{seed}.json"
    p.save(path)
    _assert_same(p, load_profile(path))


@pytest.fixture
def saved(tabular_profile: Profile, tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    tabular_profile.save(path)
    return path


def _edit(path: Path, change: object) -> None:
    meta = json.loads(path.read_text())
    change(meta)  # type: ignore[operator]
    path.write_text(json.dumps(meta))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"nope\.json: file is missing"):
        load_profile(tmp_path / "nope.json")


def test_not_json(saved: Path) -> None:
    saved.write_text("{not json")
    with pytest.raises(ProfileError, match=r"profile\.json: not valid JSON"):
        load_profile(saved)


def test_not_a_profile(saved: Path) -> None:
    saved.write_text("[1, 2]")
    with pytest.raises(ProfileError, match="not an infertrail drift profile"):
        load_profile(saved)


def test_future_version(saved: Path) -> None:
    _edit(saved, lambda m: m.update(format_version=99))
    with pytest.raises(ProfileError, match="format_version 99 is not supported"):
        load_profile(saved)


def test_other_model(saved: Path) -> None:
    with pytest.raises(ProfileError, match="belongs to model sha256 cdcd"):
        load_profile(saved, expected_sha256="ef" * 32)


def test_missing_arrays_file(saved: Path) -> None:
    arrays_path(saved).unlink()
    with pytest.raises(ProfileError, match=r"arrays file .*profile\.npz is missing"):
        load_profile(saved)


def test_modified_arrays_file(saved: Path) -> None:
    npz = arrays_path(saved)
    data = bytearray(npz.read_bytes())
    data[100] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ProfileError, match="does not match the sha256"):
        load_profile(saved)


def test_missing_field(saved: Path) -> None:
    _edit(saved, lambda m: m["columns"][2].pop("count"))
    with pytest.raises(ProfileError, match=r"columns\[2\] \('x2'\) lacks the required field"):
        load_profile(saved)


def test_wrong_kind(saved: Path) -> None:
    _edit(saved, lambda m: m.update(kind="audio"))
    with pytest.raises(ProfileError, match="kind 'audio' is unknown"):
        load_profile(saved)


def test_bad_feature_kind_and_types(saved: Path) -> None:
    _edit(saved, lambda m: m["columns"][0].update(kind="ordinal"))
    with pytest.raises(ProfileError, match="must be numerical or categorical"):
        load_profile(saved)
    _edit(saved, lambda m: m["columns"][0].update(kind="numerical", count="many"))
    with pytest.raises(ProfileError, match="count has the wrong type"):
        load_profile(saved)


def test_category_count_mismatch(saved: Path) -> None:
    _edit(saved, lambda m: m["columns"][20]["categories"].append("pink"))
    with pytest.raises(ProfileError, match="3 category counts for 4 categories"):
        load_profile(saved)


def test_bad_token_pattern(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    build_text_profile(synthetic_texts(50, seed=0)).save(path)
    _edit(path, lambda m: m["text"].update(token_pattern="(unclosed"))
    with pytest.raises(ProfileError, match="not a valid regex"):
        load_profile(path)


# -- the reference ECDF (format version 2) and version-1 files --------------------------------
def _rewrite_arrays(path: Path, change: object) -> None:
    """Change the .npz arrays and record their new sha256, as a writer of that file would."""
    npz = arrays_path(path)
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)  # type: ignore[operator]
    with npz.open("wb") as fh:
        np.savez(fh, **arrays)
    sha = hashlib.sha256(npz.read_bytes()).hexdigest()
    _edit(path, lambda m: m["arrays"].update(sha256=sha))


def _as_version_1(path: Path) -> None:
    """Turn a saved profile into the version-1 file an earlier infertrail wrote (no ECDFs)."""
    _rewrite_arrays(path, lambda a: [a.pop(k) for k in list(a) if ".ecdf_" in k])
    _edit(path, lambda m: m.update(format_version=1))


def test_saved_profiles_are_version_2_with_an_ecdf_per_numerical_feature(saved: Path) -> None:
    meta = json.loads(saved.read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2
    with np.load(arrays_path(saved)) as data:
        keys = set(data.files)
    assert {"col0.ecdf_knots", "col0.ecdf_le", "col0.ecdf_lt", "confidence.ecdf_knots"} <= keys
    assert not any(k.startswith(("col20.ecdf", "prediction.ecdf")) for k in keys)  # categories


def test_version_1_profiles_load_and_test_against_their_sample(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    X = np.random.default_rng(3).normal(size=(3000, 3))
    built = build_tabular_profile(
        X, ["a", "b", "c"], confidences=np.linspace(0.5, 1, 3000), sample_size=500
    )
    path = tmp_path / "profile.json"
    built.save(path)
    _as_version_1(path)
    with caplog.at_level(logging.WARNING, logger="infertrail.drift"):
        old = load_profile(path)
    assert "KS for 4 feature(s) (a, b, c, prediction.confidence) runs against a sample" in (
        caplog.text
    )
    # the ECDF is the stored sample's: version 1's KS test, unchanged
    ecdf = old.columns[0].ecdf
    assert ecdf is not None and ecdf.exact and ecdf.n == 500 and old.columns[0].count == 3000
    assert np.array_equal(ecdf.values(), np.sort(built.sample[:, 0]))
    assert old.confidence is not None and old.confidence.ecdf is not None
    assert old.confidence.ecdf.n == 500
    window = np.random.default_rng(4).normal(0.05, 1, size=(400, 3))
    report = DriftDetector(old, DriftConfig(method="ks")).compare(DriftWindow(window))
    expected = [stats.ks_test(built.sample[:, j], window[:, j]).p_value for j in range(3)]
    assert [f.p_value for f in report.features] == pytest.approx(
        stats.adjust_pvalues(expected, "bh").tolist(), abs=1e-12
    )
    # saved again, it is a version-2 file whose ECDFs still count the sample, and say so
    old.save(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="infertrail.drift"):
        again = load_profile(path)
    assert json.loads(path.read_text())["format_version"] == 2
    assert again.columns[0].ecdf is not None and again.columns[0].ecdf.n == 500
    assert "runs against a sample" in caplog.text


def test_version_1_profile_of_a_small_reference_tests_against_all_of_it(
    tabular_profile: Profile, saved: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 5,000 rows, all of them in the sample: the sample's ECDF is the full reference's
    _as_version_1(saved)
    with caplog.at_level(logging.WARNING, logger="infertrail.drift"):
        old = load_profile(saved)
    assert caplog.text == ""
    for f, g in zip(old.columns[:20], tabular_profile.columns[:20], strict=True):
        assert f.ecdf is not None and g.ecdf is not None
        assert np.array_equal(f.ecdf.knots, g.ecdf.knots)
        assert np.array_equal(f.ecdf.le, g.ecdf.le)


def test_version_1_feature_missing_from_the_sample_has_no_ecdf(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(50, 2))
    X[:, 1] = np.nan
    X[0, 1] = 1.0  # the only value of f1: not among the sampled rows below
    p = build_tabular_profile(X, ["f0", "f1"], sample_size=10, seed=3)
    assert not np.isfinite(p.sample[:, 1]).any()
    path = tmp_path / "p.json"
    p.save(path)
    _as_version_1(path)
    old = load_profile(path)
    assert old.columns[0].ecdf is not None and old.columns[1].ecdf is None
    with pytest.raises(ValueError, match="'f1' has no reference ECDF for a KS test"):
        DriftDetector(old, DriftConfig(method="ks"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("col3.ecdf_le"), r"array 'col3.ecdf_le' is missing"),
        (lambda a: a.update({"col3.ecdf_knots": a["col3.ecdf_knots"][::-1].copy()}),
         "knots must be strictly increasing"),
        (lambda a: a.update({"col3.ecdf_lt": a["col3.ecdf_lt"] + 1}), "first ECDF knot"),
        (lambda a: a.update({"col3.ecdf_le": a["col3.ecdf_le"][:-1].copy()}), "1-D of one length"),
        (lambda a: a.update({"col3.ecdf_le": a["col3.ecdf_lt"].copy()}), "counts must grow"),
        (lambda a: a.update({"col3.ecdf_le": a["col3.ecdf_le"].astype(float)}), "expected integer"),
    ],
)  # fmt: skip
def test_damaged_ecdf_is_refused(saved: Path, change: object, message: str) -> None:
    _rewrite_arrays(saved, change)
    with pytest.raises(ProfileError, match=message):
        load_profile(saved)


def test_ecdf_cannot_count_more_values_than_its_feature(saved: Path) -> None:
    _edit(saved, lambda m: m["columns"][3].update(count=m["columns"][3]["count"] - 1))
    with pytest.raises(
        ProfileError, match=r"columns\[3\] \('x3'\): the ECDF counts 5000 values, more than"
    ):
        load_profile(saved)
