"""The drift detector: default rule, decisions, corrections, predictions and OOD."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.drift import (
    DriftConfig,
    DriftDetector,
    DriftWindow,
    Profile,
    build_tabular_profile,
    build_text_profile,
    default_method,
    stats,
)
from infertrail.drift.build import categorical_feature, numerical_feature

from .conftest import synthetic_texts


def _normal_profile(n: int, d: int = 3, seed: int = 0) -> tuple[Profile, np.ndarray]:
    X = np.random.default_rng(seed).normal(size=(n, d))
    return build_tabular_profile(X, [f"f{i}" for i in range(d)], sample_size=5000), X


def test_default_rule_follows_evidently() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=800), rng.normal(size=3000)
    assert default_method(numerical_feature("a", small)) == "ks"
    assert default_method(numerical_feature("a", large)) == "wasserstein"
    three = rng.integers(0, 3, 800).astype(float)
    assert default_method(numerical_feature("a", three)) == "chisquare"
    assert default_method(numerical_feature("a", three % 2)) == "ztest"
    assert default_method(numerical_feature("a", np.tile(three, 4))) == "jensenshannon"
    cat = categorical_feature("c", rng.integers(0, 4, 3000), ["a", "b", "c", "d"])
    assert default_method(cat) == "jensenshannon"
    assert default_method(cat, small_reference=5000) == "chisquare"


@settings(max_examples=25, deadline=None)
@given(n=st.integers(20, 3000), d=st.integers(1, 4), seed=st.integers(0, 1000))
def test_identical_samples_do_not_drift(n: int, d: int, seed: int) -> None:
    p, X = _normal_profile(n, d, seed)
    X[:, 0] = np.round(X[:, 0])  # a discrete feature too
    p = build_tabular_profile(X, [f"f{i}" for i in range(d)], sample_size=5000)
    report = DriftDetector(p).compare(DriftWindow(X))
    assert report.n_drifted == 0 and not report.dataset_drift
    assert report.drift_score == pytest.approx(0.0, abs=1e-12)
    for f in report.features:
        assert f.distance == pytest.approx(0.0, abs=1e-12)
        if f.p_value is not None:
            assert f.p_value == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.sampled_from([300, 2000]),
    seed=st.integers(0, 1000),
    shifts=st.lists(st.floats(0, 3), min_size=2, max_size=6),
)
def test_growing_mean_shift_never_lowers_the_score(n: int, seed: int, shifts: list[float]) -> None:
    p, X = _normal_profile(n, 2, seed)
    detector = DriftDetector(p)
    scores = [detector.compare(DriftWindow(X + s)).drift_score for s in sorted(shifts)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(scores))
    ks = DriftDetector(p, DriftConfig(method="ks"))
    stat = [ks.compare(DriftWindow(X + s)).features[0].statistic for s in sorted(shifts)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(stat))


def test_normed_wasserstein_of_a_shift_is_the_shift_in_stds() -> None:
    p, X = _normal_profile(4000, 1)
    f = DriftDetector(p).compare(DriftWindow(X + 0.3)).features[0]
    assert f.method == "wasserstein" and f.p_value is None
    assert f.statistic == pytest.approx(0.3 / X[:, 0].std(), rel=1e-9)
    assert f.drifted and f.threshold == 0.1


def test_small_reference_uses_corrected_ks_pvalues() -> None:
    p, X = _normal_profile(600, 6)
    rng = np.random.default_rng(5)
    window = rng.normal(size=(400, 6))
    window[:, 0] += 0.4
    for correction in ("none", "bonferroni", "bh"):
        report = DriftDetector(p, DriftConfig(correction=correction)).compare(DriftWindow(window))
        raw = [stats.ks_test(X[:, j], window[:, j]).p_value for j in range(6)]
        expected = stats.adjust_pvalues(raw, correction)
        assert [f.method for f in report.features] == ["ks"] * 6
        assert [f.p_value for f in report.features] == pytest.approx(expected.tolist(), abs=1e-12)
        assert report.features[0].drifted
        assert [f.drifted for f in report.features] == [q < 0.05 for q in expected]


def test_dataset_drift_needs_the_configured_share() -> None:
    p, _ = _normal_profile(3000, 4)
    window = np.random.default_rng(1).normal(size=(2000, 4))
    window[:, :2] += 1.0
    half = DriftDetector(p).compare(DriftWindow(window))
    assert half.n_drifted == 2 and half.share_drifted == 0.5 and half.dataset_drift
    strict = DriftDetector(p, DriftConfig(drift_share=0.75)).compare(DriftWindow(window))
    assert not strict.dataset_drift


def test_forced_psi_matches_the_hand_computed_example() -> None:
    p = build_tabular_profile(np.arange(100.0)[:, None], ["x"])
    window = np.array([-5, 5, 5, 15, 25, 50, 50, 50, 95, 120.0])[:, None]
    f = DriftDetector(p, DriftConfig(method="psi")).compare(DriftWindow(window)).features[0]
    assert f.method == "psi" and f.statistic == pytest.approx(5.118053215456615, abs=1e-12)


def test_categorical_feature_and_unseen_categories(tabular_profile: Profile) -> None:
    p = tabular_profile
    rng = np.random.default_rng(3)
    rows = np.column_stack([rng.normal(size=(2000, 20)), rng.choice([0, 1, 2, 3], 2000)])
    f = DriftDetector(p).compare(DriftWindow(rows)).feature("color")
    assert f.method == "jensenshannon" and f.drifted  # a quarter of the rows are a new colour
    chi = DriftDetector(p, DriftConfig(feature_methods={"color": "chisquare"}))
    g = chi.compare(DriftWindow(rows)).feature("color")
    assert g.method == "chisquare" and g.p_value is not None and g.p_value < 1e-10


def test_invalid_method_choices_are_named() -> None:
    p = build_tabular_profile(
        np.array([[0.5, "a"], [1.5, "b"], [2.5, "a"]] * 10, dtype=object),
        ["x", "c"],
        categorical=["c"],
    )
    with pytest.raises(ValueError, match="'ks' needs a numerical feature; 'c'"):
        DriftDetector(p, DriftConfig(feature_methods={"c": "ks"}))
    with pytest.raises(ValueError, match="profile lacks: \\['zz'\\]"):
        DriftDetector(p, DriftConfig(feature_methods={"zz": "ks"}))
    q, _ = _normal_profile(100, 1)
    with pytest.raises(ValueError, match="'chisquare' needs categories; feature 'f0'"):
        DriftDetector(q, DriftConfig(method="chisquare"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must lie in"),
        ({"drift_share": 1.5}, "drift_share must lie in"),
        ({"distance_threshold": -1}, "distance_threshold must be positive"),
        ({"correction": "holm"}, "correction 'holm'"),
        ({"method": "mmd"}, "unknown drift method 'mmd'"),
        ({"thresholds": {"f0": 0}}, "threshold for 'f0'"),
        ({"ks_mode": "fast"}, "ks_mode 'fast'"),
        ({"low_confidence": 2}, "low_confidence must lie in"),
    ],
)
def test_bad_config_is_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_windows_are_rejected(tabular_profile: Profile) -> None:
    detector = DriftDetector(tabular_profile)
    with pytest.raises(ValueError, match=r"shape \(n, 21\)"):
        detector.compare(DriftWindow(np.zeros((5, 3))))
    with pytest.raises(ValueError, match="window is empty"):
        detector.compare(DriftWindow(np.zeros((0, 21))))


def test_missing_values_are_skipped_per_feature() -> None:
    p, X = _normal_profile(2000, 2)
    window = X.copy()
    window[::2, 0] = np.nan
    window[:, 1] = np.nan
    report = DriftDetector(p).compare(DriftWindow(window))
    assert [f.name for f in report.features] == ["f0"]  # f1 has no value at all
    assert not report.features[0].drifted
    window[1, 0] = np.inf  # skipped by the statistics, counted as out of distribution
    for config in (DriftConfig(), DriftConfig(method="ks", ks_mode="exact")):
        r = DriftDetector(p, config).compare(DriftWindow(window))
        assert not r.features[0].drifted
        assert r.ood_rate == pytest.approx(report.ood_rate + 1 / 2000)


def test_prediction_drift_and_confidence(tabular_profile: Profile) -> None:
    p = tabular_profile
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(1000, 21))
    rows[:, 20] = 0
    labels = np.array([p.label_code("yes")] * 900 + [p.label_code("maybe")] * 100)
    conf = np.concatenate([np.full(500, 0.55), np.full(500, 0.95)])
    report = DriftDetector(p).compare(DriftWindow(rows, labels, conf))
    pred = report.prediction
    assert pred.label is not None and pred.label.drifted
    assert pred.label_shares == {"yes": 0.9, "(other)": 0.1}
    assert pred.confidence_mean == pytest.approx(0.75)
    assert pred.low_confidence_rate == pytest.approx(0.5)
    assert pred.confidence is not None and pred.confidence.name == "prediction.confidence"
    json.dumps(report.to_dict())  # the listeners' payload is JSON-ready


def test_ood_rate_counts_rows_far_outside_the_reference(tabular_profile: Profile) -> None:
    detector = DriftDetector(tabular_profile)
    rng = np.random.default_rng(6)
    clean = np.column_stack([rng.normal(size=(1000, 20)), rng.integers(0, 3, 1000)])
    assert detector.compare(DriftWindow(clean)).ood_rate < 0.01
    far = clean.copy()
    far[:300, :5] = 50.0  # 5 of 21 features outside: above the 10% row share
    far[300:600, 0] = 50.0  # 1 of 21: not enough to call the row OOD
    # (a few of the 1-feature rows also have 2 chance exceedances among the other 20)
    assert detector.compare(DriftWindow(far)).ood_rate == pytest.approx(0.3, abs=0.02)


def test_text_ood_is_the_oov_rule_and_lengths_drift() -> None:
    texts = synthetic_texts(1500, seed=0)
    p = build_text_profile(texts)
    detector = DriftDetector(p)
    same = detector.compare(DriftWindow(p.features_batch(synthetic_texts(500, seed=1))))
    assert same.ood_rate == 0.0 and not same.dataset_drift
    foreign = ["zebra quantum " + t.lower() for t in synthetic_texts(250, seed=2)]
    shifted = synthetic_texts(250, seed=3) + [" ".join(["xylophone"] * 8)] * 250
    r = detector.compare(DriftWindow(p.features_batch(foreign + shifted)))
    # only the all-unknown rows pass the OOV threshold of 0.5; 2 unknown words in 5-13 do not
    assert r.ood_rate == pytest.approx(1 / 3)
    assert r.feature("oov_rate").drifted and r.feature("n_chars").drifted


def test_digits_clean_split_vs_noisy_images(
    digits_profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    detector = DriftDetector(digits_profile)
    clean = detector.compare(DriftWindow(digits_profile.features_batch(X[1200:])))
    assert not clean.dataset_drift and clean.ood_rate < 0.05
    assert clean.feature("pixel_intensity").method == "jensenshannon"
    noisy = np.clip(X[1200:] + np.random.default_rng(0).integers(0, 5, X[1200:].shape), 0, 16)
    r = detector.compare(DriftWindow(digits_profile.features_batch(noisy)))
    assert r.dataset_drift and r.feature("ink_fraction").drifted
    assert r.feature("pixel_intensity").drifted and r.ood_rate > 0.5


def test_small_windows_are_judged_by_tests_even_with_a_large_reference() -> None:
    p, _ = _normal_profile(5000, 2)
    rng = np.random.default_rng(8)
    detector = DriftDetector(p)
    small = detector.compare(DriftWindow(rng.normal(size=(800, 2))))
    assert [f.method for f in small.features] == ["ks", "ks"]
    large = detector.compare(DriftWindow(rng.normal(size=(1500, 2))))
    assert [f.method for f in large.features] == ["wasserstein", "wasserstein"]
    assert default_method(p.columns[0], window_size=800) == "ks"
    assert default_method(p.columns[0], window_size=1500) == "wasserstein"


def test_ks_without_sorting_the_window_matches_scipy_asymptotic() -> None:
    from scipy import stats as sps

    p, X = _normal_profile(1000, 3)
    rng = np.random.default_rng(9)
    window = np.round(rng.normal(0.05, 1, size=(3000, 3)), 2)  # ties with each other
    window[:10] = X[:10]  # and values equal to reference values
    report = DriftDetector(p, DriftConfig(correction="none")).compare(DriftWindow(window))
    for j, f in enumerate(report.features):
        expected = sps.ks_2samp(X[:, j], window[:, j], method="asymp")
        assert f.method == "ks"
        assert f.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert f.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_small_windows_are_located_by_binary_search_and_still_match_scipy() -> None:
    from scipy import stats as sps

    p, X = _normal_profile(3000, 2)
    window = np.round(np.random.default_rng(10).normal(0.1, 1, size=(800, 2)), 2)
    window[:5] = X[:5]  # values equal to reference values
    config = DriftConfig(method="ks", ks_mode="asymp", correction="none")
    report = DriftDetector(p, config).compare(DriftWindow(window))  # 800 rows < 3,000 knots
    for j, f in enumerate(report.features):
        expected = sps.ks_2samp(X[:, j], window[:, j], method="asymp")
        assert f.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert f.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_exact_ks_needs_every_reference_value() -> None:
    from scipy import stats as sps

    from infertrail.drift.ecdf import KS_KNOTS

    p, X = _normal_profile(KS_KNOTS + 100, 1)
    ecdf = p.columns[0].ecdf
    assert ecdf is not None and not ecdf.exact and ecdf.n == KS_KNOTS + 100
    with pytest.raises(ValueError, match=r"ks_mode='exact' needs every reference value.*'f0'"):
        DriftDetector(p, DriftConfig(method="ks", ks_mode="exact"))
    # auto is asymptotic here: the p-value uses the full reference's n, not the knots'
    window = np.random.default_rng(2).normal(0.05, 1, size=(5000, 1))
    f = DriftDetector(p, DriftConfig(method="ks")).compare(DriftWindow(window)).features[0]
    assert f.p_value == stats.ks_pvalue(f.statistic, X.shape[0], 5000, "asymp")
    assert f.p_value != stats.ks_pvalue(f.statistic, KS_KNOTS, 5000, "asymp")
    full = sps.ks_2samp(X[:, 0], window[:, 0])
    assert full.pvalue <= f.p_value <= 1.1 * full.pvalue
