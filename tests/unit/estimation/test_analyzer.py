"""CbpeAnalyzer: each drift window's estimated_performance section and estimated.* signals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from infertrail.drift.analysis import WindowAnalyzer
from infertrail.drift.detector import DriftWindow
from infertrail.estimation import CbpeAnalyzer, CbpeModel, fit_cbpe

from .conftest import calibrated_multiclass, miscalibrated_binary

CLASSES = ("bad", "good")


@pytest.fixture(scope="module")
def binary() -> CbpeModel:
    y, pred, score = miscalibrated_binary(4000, 1)
    names = np.asarray(CLASSES)
    return fit_cbpe(names[y], names[pred], score, CLASSES)


def _window(n: int, **arrays: np.ndarray | None) -> DriftWindow:
    return DriftWindow(rows=np.zeros((n, 1)), **arrays)  # type: ignore[arg-type]


def test_it_is_a_window_analyzer_whose_section_is_json(binary: CbpeModel) -> None:
    analyzer = CbpeAnalyzer(binary, labels=["good", "bad"])  # the profile's own label order
    assert isinstance(analyzer, WindowAnalyzer) and analyzer.name == "estimated_performance"
    _, pred, score = miscalibrated_binary(1000, 2, shift=0.3)
    codes = np.where(pred == 1, 0, 1)  # "good" is the profile's code 0
    analysis = analyzer.analyze(_window(1000, labels=codes, scores=score))
    expected = binary.estimate(np.asarray(CLASSES)[pred], score)
    assert analysis.section["n"] == 1000
    assert analysis.section["metrics"] == expected.as_dict()["metrics"]
    assert analysis.signals == {
        **{f"estimated.{m}": v.value for m, v in expected.metrics.items()},
        "estimated.alert": float(expected.alert),
    }
    json.dumps(analysis.section, allow_nan=False)


def test_missing_scores_come_from_probabilities_then_label_and_confidence(
    binary: CbpeModel,
) -> None:
    analyzer = CbpeAnalyzer(binary, labels=CLASSES, min_rows=1)
    nan = math.nan
    window = _window(
        4,
        labels=np.array([1, 0, 1, -1]),
        scores=np.array([0.9, nan, nan, nan]),
        confidences=np.array([nan, 0.8, 0.7, 0.6]),
        probabilities=np.array([[0.1, 0.9], [nan, nan], [0.4, 0.6], [0.5, 0.5]]),
    )
    analysis = analyzer.analyze(window)
    # rows: score 0.9; label "bad" at 0.8 -> p(good) 0.2; probabilities' 0.6; unknown label
    expected = binary.estimate(["good", "bad", "good"], [0.9, 0.2, 0.6])
    assert analysis.section["n"] == 3
    assert analysis.section["skipped"] == {
        "total": 1,
        "unknown_label": 1,
        "no_score": 0,
        "invalid_probability": 0,
    }
    assert analysis.section["metrics"] == expected.as_dict()["metrics"]


def test_a_threshold_model_needs_only_scores() -> None:
    y, _, score = miscalibrated_binary(4000, 3)
    model = fit_cbpe(y, None, score, ["0", "1"], threshold=0.5)
    analyzer = CbpeAnalyzer(model, labels=["approve", "refer", "decline"])
    window_score = miscalibrated_binary(500, 4)[2]
    window_score[:10] = math.nan
    window_score[10] = 1.5
    analysis = analyzer.analyze(_window(500, labels=np.zeros(500, np.int64), scores=window_score))
    expected = model.estimate(None, window_score[11:])
    assert analysis.section["n"] == 489
    assert analysis.section["skipped"] == {"total": 11, "no_score": 10, "invalid_probability": 1}
    assert analysis.signals["estimated.accuracy"] == expected.value("accuracy")


def test_multiclass_windows_reorder_probabilities_to_the_estimator_classes() -> None:
    y, pred, proba = calibrated_multiclass(3000, 3, 5)
    names = np.asarray(["a", "b", "c"])
    model = fit_cbpe(names[y], names[pred], proba, names)
    labels = ["c", "a", "b"]  # the profile's order
    _, wpred, wproba = calibrated_multiclass(600, 3, 6)
    columns = [2, 0, 1]
    codes = np.array([labels.index(n) for n in names[wpred]])
    window_proba = wproba[:, columns]
    window_proba[0] = math.nan
    analysis = CbpeAnalyzer(model, labels).analyze(
        _window(600, labels=codes, probabilities=window_proba)
    )
    expected = model.estimate(names[wpred[1:]], wproba[1:])
    assert analysis.section["n"] == 599
    assert analysis.section["skipped"]["no_probabilities"] == 1
    assert analysis.section["metrics"] == expected.as_dict()["metrics"]
    assert analysis.section["confusion_matrix"]["classes"] == ["a", "b", "c"]


def test_a_window_with_too_few_usable_rows_has_no_estimates(binary: CbpeModel) -> None:
    analyzer = CbpeAnalyzer(binary, labels=CLASSES, min_rows=30)
    analysis = analyzer.analyze(_window(40, labels=np.ones(40, np.int64)))  # no scores at all
    assert analysis.signals == {}
    assert analysis.section["metrics"] is None and analysis.section["n"] == 0
    assert analysis.section["skipped"]["no_score"] == 40


def test_a_profile_without_the_estimator_classes_is_refused(binary: CbpeModel) -> None:
    with pytest.raises(ValueError, match=r"lack the estimator's classes \['bad'\]"):
        CbpeAnalyzer(binary, labels=["good", "neutral"])
    with pytest.raises(ValueError, match="min_rows"):
        CbpeAnalyzer(binary, labels=CLASSES, min_rows=0)
