"""The demo's block per drift window, on reports the real detector and analyzers produced."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import expit

from infertrail.demo.monitoring import RealizedPerformance, monitoring_lines, window_block
from infertrail.drift import DriftDetector, DriftReport, DriftWindow, Profile, build_tabular_profile
from infertrail.drift.analysis import WindowAnalyzer, run_analyzers
from infertrail.drift.multivariate import DomainClassifierDrift, ReconstructionDrift
from infertrail.drift.quality import DataQualityAnalyzer
from infertrail.estimation import CbpeAnalyzer, CbpeModel, fit_cbpe

NAMES = ("amount", "income", "channel")
CHANNELS = ("branch", "phone", "web")


def table(n: int, seed: int, shift: float = 0.0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` applications (income follows amount) and their true outcomes."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(shift, 1.0, n)
    income = amount + rng.normal(0.0, 0.5, n)
    channel = rng.choice(CHANNELS, n)
    truth = (rng.random(n) < expit(2 * amount)).astype(int)
    inputs = [
        {"amount": float(a), "income": float(i), "channel": str(c)}
        for a, i, c in zip(amount, income, channel, strict=True)
    ]
    return inputs, truth


def scores_of(inputs: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray(expit(2 * np.array([float(x["amount"] or 0.0) for x in inputs])))


@pytest.fixture(scope="module")
def reference() -> tuple[Profile, CbpeModel]:
    inputs, truth = table(600, seed=1)
    scores = scores_of(inputs)
    labels = np.where(scores >= 0.5, "1", "0")
    profile = build_tabular_profile(
        [[x[n] for n in NAMES] for x in inputs],
        NAMES,
        categorical=["channel"],
        predictions=labels,
        confidences=np.maximum(scores, 1 - scores),
        labels=("0", "1"),
        model_name="toy",
    )
    cbpe = fit_cbpe(truth, None, scores, ("0", "1"), threshold=0.5, model_name="toy")
    return profile, cbpe


def judged(
    profile: Profile, inputs: list[dict[str, Any]], analyzers: list[WindowAnalyzer]
) -> DriftReport:
    """The report a DriftMonitor publishes for a window of ``inputs`` (as its _judge does)."""
    scores = scores_of(inputs)
    window = DriftWindow(
        profile.features_batch(inputs),
        np.array([profile.label_code("1" if s >= 0.5 else "0") for s in scores]),
        np.maximum(scores, 1 - scores),
        scores=scores,
        inputs=tuple(inputs),
    )
    report = DriftDetector(profile).compare(window)
    found = run_analyzers(analyzers, window, profile.model_name)
    return replace(report, sections=found.sections, signals=found.signals)


def every_analyzer(profile: Profile, cbpe: CbpeModel) -> list[WindowAnalyzer]:
    return [
        DataQualityAnalyzer(profile),
        CbpeAnalyzer(cbpe, profile.prediction.categories if profile.prediction else ()),
        ReconstructionDrift(profile, seed=3),
        DomainClassifierDrift(profile, seed=3),
    ]


def test_a_clean_window_reads_clean_with_estimates_beside_realized(
    reference: tuple[Profile, CbpeModel],
) -> None:
    profile, cbpe = reference
    inputs, _ = table(300, seed=2)
    report = judged(profile, inputs, every_analyzer(profile, cbpe))
    lines = window_block("toy", report, RealizedPerformance(300, 0.8123, 0.8555), name_width=6)
    verdict, quality, estimated, realized, multivariate = lines
    assert verdict == "  toy     300 rows  no drift: 0 of 3 features drifted; predictions steady"
    assert quality == "    quality       clean"
    section = report.sections["estimated_performance"]["metrics"]["accuracy"]
    assert estimated.startswith(
        f"    performance   estimated accuracy {section['value']:.3f} "
        f"[{section['lower_band']:.3f}, {section['upper_band']:.3f}], ROC AUC 0."
    )
    assert estimated.endswith("(CBPE)")  # every row was read: no count repeated
    assert realized == " " * 18 + "realized  accuracy 0.812, ROC AUC 0.856 (300 outcomes joined)"
    assert multivariate.startswith("    multivariate  reconstruction error ")
    assert "within [" in multivariate and "domain classifier AUC " in multivariate
    assert "DRIFT" not in multivariate


def test_a_shifted_window_with_bad_values_names_what_moved(
    reference: tuple[Profile, CbpeModel],
) -> None:
    profile, cbpe = reference
    inputs, _ = table(300, seed=4, shift=1.5)
    for x in inputs[:30]:
        x["income"] = None  # 10% missing
    for x in inputs[:6]:
        x["channel"] = "fax"  # 2% unseen
    report = judged(profile, inputs, every_analyzer(profile, cbpe))
    lines = window_block("toy", report)
    assert lines[0].startswith("  toy  300 rows  DRIFT: ")
    assert lines[0].endswith("predictions and confidence drifted")
    shifted = report.sections["data_quality"]["worst"]["out_of_range_share"]
    assert shifted["feature"] == "amount"  # beyond the reference's maximum, after the shift
    assert lines[1] == (
        f"    quality       missing income 10.0%; out of range amount {shifted['value']:.1%}; "
        "unseen categories channel 2.0%"
    )
    assert "ALERT: outside the reference thresholds" in lines[2]
    assert lines[3] == " " * 18 + "realized  no outcomes fed in the demo"
    assert lines[4].count(": DRIFT") == 2 and "outside [" in lines[4]


def test_analyzers_that_did_not_run_are_said_so(reference: tuple[Profile, CbpeModel]) -> None:
    profile, _ = reference
    inputs, _ = table(100, seed=5)
    lines = window_block("toy", judged(profile, inputs, []), RealizedPerformance(5, 1.0, None))
    assert lines[1:] == [
        "    quality       not checked",
        "    performance   no estimator",  # and no realized line without an estimate
        "    multivariate  not judged",
    ]


def test_a_window_too_small_to_estimate_or_to_judge_jointly(
    reference: tuple[Profile, CbpeModel],
) -> None:
    profile, cbpe = reference
    inputs, _ = table(12, seed=6)
    report = judged(profile, inputs, every_analyzer(profile, cbpe))
    lines = window_block("toy", report, RealizedPerformance(12, 0.75, 0.8))
    assert lines[2] == "    performance   not estimated: 12 usable rows, CBPE needs 30"
    assert lines[3] == (
        "    multivariate  reconstruction skipped (12 rows; needs at least 20); "
        "domain classifier skipped (12 rows; needs at least 20)"
    )
    assert len(lines) == 4  # nothing estimated: no realized line to compare with


def test_rows_cbpe_skipped_and_outcomes_that_matched_nothing_are_counted(
    reference: tuple[Profile, CbpeModel],
) -> None:
    profile, cbpe = reference
    inputs, _ = table(80, seed=7)
    report = judged(profile, inputs, [CbpeAnalyzer(cbpe, ("0", "1"))])
    section = report.sections["estimated_performance"]
    fewer = {**report.sections, "estimated_performance": {**section, "n": 70}}
    lines = window_block(
        "toy", replace(report, sections=fewer), RealizedPerformance(0, None, None, 3)
    )
    assert lines[2].endswith("(CBPE, 70 rows)")
    assert lines[3].endswith("realized  no outcome joined yet; 3 outcomes matched no prediction")


def test_monitoring_lines_heads_and_orders_the_models(
    reference: tuple[Profile, CbpeModel],
) -> None:
    profile, _ = reference
    inputs, _ = table(50, seed=8)
    report = judged(profile, inputs, [])
    lines = monitoring_lines({"zeta": report, "credit": None, "alpha": report})
    assert lines[0] == "the last drift window of each model (docs/drift.md):"
    assert lines[1].startswith("  alpha   50 rows  ")
    assert lines[5] == "  credit  no window judged yet"
    assert lines[6].startswith("  zeta    50 rows  ")
    assert len(lines) == 10


@pytest.fixture(scope="module")
def estimated(reference: tuple[Profile, CbpeModel]) -> DriftReport:
    profile, cbpe = reference
    inputs, _ = table(100, seed=9)
    return judged(profile, inputs, [CbpeAnalyzer(cbpe, ("0", "1"))])


@given(
    n=st.integers(0, 10**6),
    accuracy=st.none() | st.floats(0.0, 1.0),
    roc_auc=st.none() | st.floats(0.0, 1.0),
    lost=st.integers(0, 10**6),
)
def test_any_realized_performance_reads_as_three_decimals_or_undefined(
    estimated: DriftReport, n: int, accuracy: float | None, roc_auc: float | None, lost: int
) -> None:
    line = window_block("m", estimated, RealizedPerformance(n, accuracy, roc_auc, lost))[3]
    assert line.lstrip().startswith("realized  ")
    assert "nan" not in line and ("matched no prediction" in line) == (lost > 0)
    if n:
        assert f"({n} outcomes joined)" in line
        for value in (accuracy, roc_auc):
            assert ("undefined" if value is None else f"{value:.3f}") in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, None, None), "n and lost must be >= 0"),
        ((1, None, None, -2), "n and lost must be >= 0"),
        ((1, 1.5, None), "accuracy must lie in"),
        ((1, None, -0.1), "roc_auc must lie in"),
        ((1, float("nan"), None), "accuracy must lie in"),
    ],
)
def test_impossible_realized_performance_is_refused(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RealizedPerformance(*args)
