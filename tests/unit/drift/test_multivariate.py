"""Multivariate drift: joint shifts the univariate tests miss, calibrated false alarms, inputs."""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from infertrail.alerting.rules import parse_rules
from infertrail.drift import (
    DriftDetector,
    DriftMonitor,
    DriftWindow,
    Profile,
    build_tabular_profile,
)
from infertrail.drift.analysis import WindowAnalyzer, check_analyzers, run_analyzers
from infertrail.drift.multivariate import (
    MIN_ROWS,
    DomainClassifierDrift,
    ReconstructionDrift,
)
from infertrail.drift.multivariate_stats import (
    auc_null_std,
    count_encoded,
    fit_reconstruction,
    mean_band,
    rank_auc,
)
from infertrail.drift.profile import FeatureKind
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.runtime.alerts import drift_signals

DOC = Path(__file__).resolve().parents[3] / "docs" / "drift.md"
RHO = 0.8
NAMES = ["x0", "x1", "x2", "x3", "x4"]
NUMERICAL: tuple[FeatureKind, ...] = ("numerical",) * 5


def correlated(rng: np.random.Generator, n: int, rho: float = RHO) -> np.ndarray:
    """x0, x1 standard normal with correlation ``rho``; x2..x4 independent standard normal."""
    x = rng.normal(size=(n, 5))
    x[:, 1] = rho * x[:, 0] + math.sqrt(1 - rho**2) * x[:, 1]
    return x


def flipped(rng: np.random.Generator, n: int) -> np.ndarray:
    """The correlation of x0 and x1 turned to -RHO: x1 negated, every marginal unchanged."""
    x = correlated(rng, n)
    x[:, 1] = -x[:, 1]
    return x


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(11)
    return build_tabular_profile(
        correlated(rng, 4000), NAMES, model_name="joint", model_sha256="ef" * 32
    )


@pytest.fixture(scope="module")
def reconstruction(profile: Profile) -> ReconstructionDrift:
    return ReconstructionDrift(profile).fit()


def test_a_flipped_correlation_is_caught_by_both_and_missed_by_the_univariate_tests(
    profile: Profile, reconstruction: ReconstructionDrift
) -> None:
    rng = np.random.default_rng(12)
    window = DriftWindow(flipped(rng, 1000))
    univariate = DriftDetector(profile).compare(window)
    assert univariate.n_drifted == 0 and not univariate.dataset_drift
    assert all(f.p_value is not None and f.p_value > 0.2 for f in univariate.features)

    rec = reconstruction.analyze(window)
    assert rec.section["drifted"] is True
    assert rec.section["statistic"] > rec.section["upper"]
    assert rec.signals == {
        "multivariate.reconstruction_error": rec.section["statistic"],
        "multivariate.reconstruction_drift": 1.0,
    }
    dom = DomainClassifierDrift(profile, seed=3).analyze(window)
    assert dom.section["drifted"] is True
    assert dom.section["statistic"] > 0.7 > dom.section["threshold"]
    assert dom.section["p_value"] < 1e-6
    assert dom.signals["multivariate.domain_drift"] == 1.0
    assert dom.signals["multivariate.domain_auc"] == dom.section["statistic"]


def test_reference_like_windows_pass_both(
    profile: Profile, reconstruction: ReconstructionDrift
) -> None:
    window = DriftWindow(correlated(np.random.default_rng(13), 1000))
    rec = reconstruction.analyze(window)
    assert rec.section["drifted"] is False
    assert rec.section["lower"] < rec.section["statistic"] < rec.section["upper"]
    assert rec.signals["multivariate.reconstruction_drift"] == 0.0
    dom = DomainClassifierDrift(profile, seed=4).analyze(window)
    assert dom.section["drifted"] is False and dom.section["p_value"] > 0.01
    assert dom.signals["multivariate.domain_drift"] == 0.0


def test_a_dependence_without_correlation_is_caught_by_the_classifier() -> None:
    # x1 = +-x0: uncorrelated with x0, both N(0, 1); then x1 independent of x0. Marginals and
    # covariance are unchanged, so only a learner of the joint shape can see it.
    rng = np.random.default_rng(14)
    ref = rng.normal(size=(4000, 3))
    ref[:, 1] = ref[:, 0] * rng.choice([-1.0, 1.0], 4000)
    win = rng.normal(size=(1000, 3))
    prof = build_tabular_profile(ref, ["a", "b", "c"], model_name="m", model_sha256="0" * 64)
    assert DriftDetector(prof).compare(DriftWindow(win)).n_drifted == 0
    assert DomainClassifierDrift(prof, seed=5).judge(win).drifted


def test_reconstruction_false_alarms_sit_at_the_calibrated_rate() -> None:
    # Fresh reference per trial (the band's own estimate varies with it); a numerical, skewed and
    # categorical mix; alpha 0.1 so that 600 windows tell a rate off by half from the target.
    alarms = []
    for trial in range(12):
        rng = np.random.default_rng(100 + trial)

        def mixed(n: int, rng: np.random.Generator = rng) -> np.ndarray:
            x = correlated(rng, n)
            x[:, 3] = rng.gamma(2.0, size=n)
            x[:, 4] = rng.choice(4, size=n, p=[0.5, 0.3, 0.15, 0.05])
            return x

        kinds: list[FeatureKind] = [
            "numerical",
            "numerical",
            "numerical",
            "numerical",
            "categorical",
        ]
        drift = ReconstructionDrift(mixed(3000), kinds, alpha=0.1, seed=trial)
        alarms += [drift.judge(mixed(n)).drifted for n in (30, 200, 1000) for _ in range(17)]
    rate = float(np.mean(alarms))
    assert 0.06 <= rate <= 0.14, rate


def test_domain_classifier_p_values_are_uniform_on_reference_like_windows() -> None:
    # The null holds for any classifier: small trees keep the 150 fits fast.
    rng = np.random.default_rng(21)
    drift = DomainClassifierDrift(correlated(rng, 3000), alpha=0.1, max_iter=5, seed=22)
    p = np.array([drift.judge(correlated(rng, 80)).p_value for _ in range(150)])
    rate = float(np.mean(p < 0.1))
    assert 0.04 <= rate <= 0.17, rate
    assert 0.4 <= float(np.mean(p)) <= 0.6


def test_calibrating_in_sample_would_set_the_band_too_low() -> None:
    # NannyML's pitfall: the PCA fits the rows it was fitted on better than new ones.
    rng = np.random.default_rng(31)
    fitted, fresh = rng.standard_t(4, size=(300, 12)), rng.standard_t(4, size=(300, 12))
    model = fit_reconstruction(fitted, ("numerical",) * 12, 0.65)
    assert model.errors(fitted).mean() < 0.95 * model.errors(fresh).mean()


def test_the_pca_keeps_the_fewest_components_reaching_the_variance() -> None:
    rng = np.random.default_rng(32)
    x = correlated(rng, 2000)
    model = fit_reconstruction(x, NUMERICAL, 0.65)
    # eigenvalues about 1.8, 1, 1, 1, 0.2 of 5: two components keep 56%, three 76%
    assert model.components.shape == (3, 5)
    assert 0.65 <= model.explained_variance < 0.85
    np.testing.assert_allclose(model.components @ model.components.T, np.eye(3), atol=1e-10)
    assert fit_reconstruction(x, NUMERICAL, 0.3).components.shape == (1, 5)


def test_missing_values_and_categories_are_encoded_from_the_reference() -> None:
    rows = np.array([[1.0, 0], [2.0, 0], [3.0, 1], [np.nan, 0], [10.0, np.nan]])
    model = fit_reconstruction(rows, ["numerical", "categorical"], 0.65)
    np.testing.assert_allclose(model.fill, [2.5, 0.0])  # the median; the most frequent code
    assert model.frequencies[0] is None
    np.testing.assert_allclose(np.asarray(model.frequencies[1]), [0.75, 0.25])
    live = np.array([[np.nan, 1.0], [np.inf, 7.0], [4.0, -1.0], [5.0, 0.5], [6.0, np.nan]])
    encoded = count_encoded(live, model.fill, model.frequencies)
    # missing: the fill; unseen, negative or fractional codes: share 0
    expected = [[2.5, 0.25], [2.5, 0.0], [4.0, 0.0], [5.0, 0.0], [6.0, 0.75]]
    np.testing.assert_allclose(encoded, np.array(expected))


@given(
    mean=st.floats(0, 10),
    std=st.floats(0.01, 5),
    skew=st.floats(-20, 20),
    m=st.integers(2, 10_000),
    n=st.integers(2, 10_000),
    alpha=st.floats(0.001, 0.4),
)
def test_the_band_holds_the_expected_mean_and_narrows_with_more_rows(
    mean: float, std: float, skew: float, m: int, n: int, alpha: float
) -> None:
    lower, upper = mean_band(mean, std, skew, m, n, alpha)
    assert lower < mean < upper
    wider = mean_band(mean, std, skew, m, max(1, n // 2), alpha)
    assert wider[1] - wider[0] >= upper - lower - 1e-9
    looser = mean_band(mean, std, skew, m, n, alpha / 2)
    assert looser[1] - looser[0] > upper - lower


def test_the_band_without_skew_is_the_normal_one() -> None:
    lower, upper = mean_band(1.0, 2.0, 0.0, 400, 100, 0.05)
    half = 1.959964 * 2.0 * math.sqrt(1 / 100 + 1 / 400)
    assert lower == pytest.approx(1.0 - half) and upper == pytest.approx(1.0 + half)
    # equal sizes: the difference of two means is symmetric whatever the skewness
    assert mean_band(1.0, 2.0, 5.0, 300, 300, 0.05) == pytest.approx(
        mean_band(1.0, 2.0, 0.0, 300, 300, 0.05)
    )
    # a right-skewed error: the band leans up (a window mean is rarely far below)
    low, high = mean_band(1.0, 2.0, 3.0, 5000, 50, 0.05)
    assert high - 1.0 > 1.0 - low


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40))
def test_rank_auc_is_sklearns(pairs: list[tuple[int, bool]]) -> None:
    scores = np.array([float(s) for s, _ in pairs])
    labels = np.array([int(y) for _, y in pairs])
    if labels.min() == labels.max():
        return
    assert rank_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


@settings(max_examples=40)
@given(
    scores=st.lists(st.integers(0, 4), min_size=3, max_size=9),
    n1=st.integers(1, 8),
)
def test_the_null_std_is_that_of_every_relabelling(scores: list[int], n1: int) -> None:
    n = len(scores)
    if n1 >= n:
        return
    s = np.array(scores, dtype=float)
    aucs = []
    for ones in itertools.combinations(range(n), n1):
        labels = np.zeros(n, dtype=np.int64)
        labels[list(ones)] = 1
        aucs.append(rank_auc(s, labels))
    labels = np.r_[np.zeros(n - n1, np.int64), np.ones(n1, np.int64)]
    assert float(np.mean(aucs)) == pytest.approx(0.5)
    assert auc_null_std(s, labels) == pytest.approx(float(np.std(aucs)), abs=1e-12)


def test_missing_and_infinite_window_values_are_judged(
    profile: Profile, reconstruction: ReconstructionDrift
) -> None:
    rows = correlated(np.random.default_rng(41), 300)
    rows[::7, 2] = np.nan
    rows[::11, 3] = np.inf
    verdict = reconstruction.judge(rows)
    assert math.isfinite(verdict.statistic) and not verdict.drifted
    assert math.isfinite(DomainClassifierDrift(profile, seed=6).judge(rows).statistic)


@pytest.mark.parametrize("analyzer", ["reconstruction", "domain"])
def test_bad_windows(profile: Profile, analyzer: str) -> None:
    drift: ReconstructionDrift | DomainClassifierDrift = (
        ReconstructionDrift(profile)
        if analyzer == "reconstruction"
        else DomainClassifierDrift(profile)
    )
    with pytest.raises(ValueError, match=r"shape \(n, 5\), got \(100, 4\)"):
        drift.judge(np.zeros((100, 4)))
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        drift.judge(np.zeros(5))
    with pytest.raises(ValueError, match=f"at least {MIN_ROWS} rows, got 19"):
        drift.judge(np.zeros((19, 5)))
    # as an analyzer, a small window (a time-closed window, a slice) is skipped, not an error
    small = drift.analyze(DriftWindow(np.zeros((19, 5))))
    assert small.signals == {}
    assert small.section["skipped"] == f"19 rows; needs at least {MIN_ROWS}"
    assert small.section["statistic"] is None and small.section["drifted"] is None
    judged = drift.analyze(DriftWindow(correlated(np.random.default_rng(42), 60)))
    assert set(judged.section) == set(small.section)
    json.dumps(judged.section, allow_nan=False)


def _misses(seed: int, rows: list[int]) -> bool:
    """True when the seeded split holds out every one of ``rows`` (200 rows, half held out)."""
    held = np.random.default_rng(seed).permutation(200)[:100]
    return set(rows) <= set(held.tolist())


def test_bad_references_and_parameters(profile: Profile) -> None:
    rows = correlated(np.random.default_rng(43), 200)
    with pytest.raises(ValueError, match="at least 100 reference rows, got 99"):
        ReconstructionDrift(rows[:99])
    with pytest.raises(ValueError, match="2 feature kinds for 5 reference columns"):
        ReconstructionDrift(rows, NUMERICAL[:2])
    with pytest.raises(ValueError, match="kinds come from the profile"):
        ReconstructionDrift(profile, NUMERICAL)
    with pytest.raises(ValueError, match=r"unknown feature kinds \['text'\]"):
        ReconstructionDrift(rows, [*NUMERICAL[:4], "text"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="categorical reference column 4 must hold codes"):
        ReconstructionDrift(rows, [*NUMERICAL[:4], "categorical"])
    empty = rows.copy()
    empty[:, 2] = np.nan
    with pytest.raises(ValueError, match="reference column 2 has no value"):
        DomainClassifierDrift(empty)
    sparse = rows.copy()
    sparse[3:, 1] = np.nan  # three values: the half the PCA is fitted on may hold none
    with pytest.raises(ValueError, match="column 1 has no value among the 100 rows the PCA"):
        ReconstructionDrift(sparse, seed=next(s for s in range(100) if _misses(s, [0, 1, 2])))
    with pytest.raises(ValueError, match="2-D"):
        DomainClassifierDrift(rows[:, 0])
    with pytest.raises(ValueError, match="at least 2 features"):
        ReconstructionDrift(rows[:, :1])
    for name, value in (("variance", 1.0), ("variance", 0.0), ("holdout", 1.0), ("alpha", 0.5)):
        with pytest.raises(ValueError, match=name):
            ReconstructionDrift(rows, **{name: value})  # type: ignore[arg-type]
    for name, value in (("alpha", 0.0), ("max_rows", 19), ("max_iter", 0), ("max_leaf_nodes", 1)):
        with pytest.raises(ValueError, match=name):
            DomainClassifierDrift(rows, **{name: value})  # type: ignore[arg-type]


def test_fitting_is_lazy_and_once(profile: Profile) -> None:
    drift = ReconstructionDrift(profile)
    model = drift.model  # fitted on first use
    assert drift.fit() is drift and drift.model is model
    window = correlated(np.random.default_rng(44), 200)
    assert ReconstructionDrift(profile).judge(window) == drift.judge(window)
    # the same seed draws the same reference rows and split for the same windows
    first, second = DomainClassifierDrift(profile, seed=9), DomainClassifierDrift(profile, seed=9)
    assert [first.judge(window) for _ in range(2)] == [second.judge(window) for _ in range(2)]


def test_a_large_window_is_capped_at_max_rows(profile: Profile) -> None:
    verdict = DomainClassifierDrift(profile, max_rows=300).judge(
        flipped(np.random.default_rng(45), 3000)
    )
    assert verdict.n == 3000 and verdict.n_reference == 300 and verdict.n_test == 150
    assert verdict.drifted


def test_the_drift_monitor_reports_both_with_the_univariate_verdict(profile: Profile) -> None:
    analyzers: list[WindowAnalyzer] = [ReconstructionDrift(profile), DomainClassifierDrift(profile)]
    assert check_analyzers(analyzers) == analyzers  # names and analyze() as the hook expects
    model = ModelInfo("joint", "1.0", "ef" * 32)
    monitor = DriftMonitor(profile, window_size=500, analyzers=analyzers)
    try:
        for i, row in enumerate(flipped(np.random.default_rng(46), 500)):
            event = InferenceEvent(
                model=model, request_id=f"r{i}", service="s", team="t", endpoint="/e",
                inputs=row.tolist(), input_size=1,
            )  # fmt: skip
            monitor(event)
        assert monitor.flush(60)
    finally:
        monitor.close()
    report = monitor.latest
    assert report is not None and report.n_drifted == 0
    assert report.sections["reconstruction_drift"]["drifted"] is True
    assert report.sections["domain_classifier_drift"]["drifted"] is True
    signals = drift_signals(report)
    assert signals["multivariate.reconstruction_drift"] == 1.0
    assert signals["multivariate.domain_drift"] == 1.0
    # the hook's runner gives the same sections for the same window
    again = run_analyzers(analyzers[:1], DriftWindow(np.zeros((5, 5))), "joint")
    assert again.failed == [] and again.signals == {}


def _doc_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Multivariate drift\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", _doc_section(), re.DOTALL)
    exec(compile(block, str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "univariate: 0 features drifted"
    assert out[1].startswith("reconstruction_drift True {'multivariate.reconstruction_error': ")
    assert out[2].startswith("domain_classifier_drift True {'multivariate.domain_auc': ")


def test_the_docs_alert_rule_is_valid() -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", _doc_section(), re.DOTALL)
    (rule,) = parse_rules(tomllib.loads(block)).rules
    assert rule.signal == "multivariate.domain_drift" and rule.for_windows == 3
