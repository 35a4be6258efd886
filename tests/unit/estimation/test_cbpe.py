"""CBPE: estimates against hand computation and realized performance; inputs it refuses."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from infertrail.estimation import CLASSIFICATION_METRICS, CbpeModel, MetricReference, fit_cbpe
from infertrail.estimation.metrics import (
    AUC_BUCKET_TOLERANCE,
    bucketed_roc_auc,
    expected_roc_auc,
    realized_metric,
    score_buckets,
)

from .conftest import calibrated_binary, calibrated_multiclass, miscalibrated_binary

REALIZED = {
    "accuracy": lambda y, p, s: accuracy_score(y, p),
    "f1": lambda y, p, s: f1_score(y, p),
    "precision": lambda y, p, s: precision_score(y, p),
    "recall": lambda y, p, s: recall_score(y, p),
    "roc_auc": lambda y, p, s: roc_auc_score(y, s),
}


def _uncalibrated_binary(metrics: dict[str, MetricReference] | None = None) -> CbpeModel:
    refs = metrics or {m: MetricReference(m, 0.2, 0.9, 0.5) for m in CLASSIFICATION_METRICS}
    return CbpeModel(("0", "1"), (None,), refs, reference_rows=100, chunk_size=10)


def test_the_expected_confusion_matrix_and_metrics_by_hand() -> None:
    estimate = _uncalibrated_binary().estimate([1, 1, 0, 0], [0.9, 0.6, 0.2, 0.4])
    # TP = .9 + .6, FP = .1 + .4, FN = .2 + .4, TN = .8 + .6
    assert estimate.confusion_matrix is not None
    np.testing.assert_allclose(estimate.confusion_matrix, [[1.4, 0.5], [0.6, 1.5]])
    assert estimate.value("accuracy") == pytest.approx((1.5 + 1.4) / 4)
    assert estimate.value("precision") == pytest.approx(1.5 / 2.0)
    assert estimate.value("recall") == pytest.approx(1.5 / 2.1)
    assert estimate.value("f1") == pytest.approx(1.5 / (1.5 + 0.5 * (0.5 + 0.6)))
    assert estimate.n == 4 and estimate.classes == ("0", "1")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1)).filter(lambda t: t[0] != 0.5),
        min_size=2,
        max_size=30,
        unique_by=lambda t: t[0],
    )
)
def test_expected_roc_auc_is_the_expected_pairwise_ordering(
    rows: list[tuple[float, float]],
) -> None:
    """Without ties, the area is E[#(positive above negative)] plus half of each row's own
    positive-negative mass, over E[#positives] * E[#negatives]."""
    scores = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    neg = 1.0 - p
    if p.sum() <= 1e-9 or neg.sum() <= 1e-9:
        return
    above = scores[:, None] > scores[None, :]
    pairs = np.sum(p[:, None] * neg[None, :] * above) + 0.5 * np.sum(p * neg)
    assert expected_roc_auc(scores, p) == pytest.approx(pairs / (p.sum() * neg.sum()), abs=1e-9)


def test_rows_with_equal_scores_are_one_step_whatever_their_order() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    p = np.array([0.8, 0.9, 0.1, 0.5, 0.3])
    orders = [np.array(o) for o in ([0, 1, 2, 3, 4], [0, 3, 2, 1, 4], [0, 2, 1, 3, 4])]
    values = {round(expected_roc_auc(scores[o], p[o]), 12) for o in orders}
    assert len(values) == 1


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    a=st.floats(0.5, 4.0),
    b=st.floats(0.5, 4.0),
)
def test_calibrated_scores_estimate_realized_performance_within_sampling_error(
    seed: int, a: float, b: float
) -> None:
    """Scores that are the true probabilities: under any covariate shift (another Beta), the
    realized metrics of a window lie within 4 standard errors of the estimates."""
    model = fit_cbpe(*calibrated_binary(4000, seed), classes=[0, 1])
    y, pred, score = calibrated_binary(3000, seed + 1, a, b)
    estimate = model.estimate(pred, score)
    for name, realized in REALIZED.items():
        if name in ("f1", "precision", "recall") and (pred.sum() < 50 or y.sum() < 50):
            continue  # the positive class's metrics are noise on a handful of rows
        metric = estimate.metrics[name]
        assert metric.value is not None and metric.sampling_error is not None
        # the SE scales as 1/sqrt(n) from the reference's relevant share; allow for the shift
        tolerance = 4 * metric.sampling_error + 0.03
        assert abs(metric.value - realized(y, pred, score)) <= tolerance, name


def test_calibration_corrects_a_miscalibrated_model_under_covariate_shift() -> None:
    model = fit_cbpe(*miscalibrated_binary(20_000, 1), classes=["0", "1"])
    assert model.calibrations[0] is not None
    y, pred, score = miscalibrated_binary(20_000, 2, shift=0.7)
    estimate = model.estimate(pred, score)
    uncalibrated = CbpeModel(
        model.classes, (None,), model.metrics, model.reference_rows, model.chunk_size
    ).estimate(pred, score)
    for name, realized in REALIZED.items():
        truth = realized(y, pred, score)
        assert estimate.value(name) == pytest.approx(truth, abs=0.015), name
    # without the calibration, accuracy is visibly off: calibration is doing the work
    assert abs(uncalibrated.value("accuracy") - accuracy_score(y, pred)) > 0.03


def test_multiclass_estimates_track_realized_macro_metrics() -> None:
    y, pred, proba = calibrated_multiclass(6000, 4, 3)
    classes = ["a", "b", "c", "d"]
    names = np.asarray(classes)
    model = fit_cbpe(names[y], names[pred], proba, classes)
    y2, pred2, proba2 = calibrated_multiclass(4000, 4, 4, concentration=1.5)
    estimate = model.estimate(names[pred2], proba2)
    assert estimate.value("accuracy") == pytest.approx(accuracy_score(y2, pred2), abs=0.03)
    assert estimate.value("f1") == pytest.approx(f1_score(y2, pred2, average="macro"), abs=0.03)
    realized_auc = roc_auc_score(y2, proba2, multi_class="ovr")
    assert estimate.value("roc_auc") == pytest.approx(realized_auc, abs=0.03)
    assert estimate.confusion_matrix is not None
    assert estimate.confusion_matrix.sum() == pytest.approx(len(y2))
    # columns: how many rows were predicted as each class, exactly
    np.testing.assert_allclose(
        estimate.confusion_matrix.sum(axis=0), np.bincount(pred2, minlength=4)
    )


def test_thresholds_are_three_sd_around_the_realized_chunk_metrics() -> None:
    y, pred, score = miscalibrated_binary(3000, 5)
    model = fit_cbpe(y, pred, score, [0, 1], chunk_size=500)
    for name, ref in model.metrics.items():
        chunks = [realized_metric(name, y[i : i + 500], pred[i : i + 500], score[i : i + 500], 2)
                  for i in range(0, 3000, 500)]  # fmt: skip
        assert list(ref.chunk_values) == pytest.approx(chunks)
        mean, sd = np.mean(chunks), np.std(chunks)
        assert ref.lower_threshold == pytest.approx(max(mean - 3 * sd, 0.0))
        assert ref.upper_threshold == pytest.approx(min(mean + 3 * sd, 1.0))


def test_a_window_far_off_the_reference_alerts_and_the_band_follows_n() -> None:
    model = fit_cbpe(*miscalibrated_binary(10_000, 6), classes=[0, 1], chunk_size=1000)
    _, pred, score = miscalibrated_binary(4000, 7, shift=-2.5)  # mostly confident negatives
    estimate = model.estimate(pred, score)
    assert estimate.alert
    small = model.estimate(pred[:400], score[:400]).metrics["accuracy"]
    large = estimate.metrics["accuracy"]
    assert small.sampling_error == pytest.approx(large.sampling_error * math.sqrt(10))
    assert large.lower_band == pytest.approx(large.value - 3 * large.sampling_error)


def test_a_threshold_model_derives_its_predictions_from_scores() -> None:
    y, pred, score = miscalibrated_binary(3000, 8)
    with_threshold = fit_cbpe(y, None, score, [0, 1], threshold=0.5)
    with_labels = fit_cbpe(y, pred, score, [0, 1])
    assert with_threshold.threshold == 0.5 and with_threshold.positive == "1"
    assert with_threshold.estimate(None, score) == with_labels.estimate(pred, score)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fit_cbpe([0, 1, 1], [0, 1], [0.1, 0.9, 0.8], [0, 1]), "y_pred has 2 rows"),
        (lambda: fit_cbpe([0, 1], [0, 1], [0.1, 0.9, 0.8], [0, 1]), "y_true has 2 rows"),
        (lambda: fit_cbpe([0, 1], [0, 1], [0.1, 1.2], [0, 1]), r"in \[0, 1\]; row 1"),
        (lambda: fit_cbpe([0, 1], [0, 1], [0.1, math.nan], [0, 1]), "row 1"),
        (lambda: fit_cbpe([0, 2], [0, 1], [0.1, 0.9], [0, 1]), r"not classes: \['2'\]"),
        (lambda: fit_cbpe([0, 1], [0, "x"], [0.1, 0.9], [0, 1]), r"not classes: \['x'\]"),
        (lambda: fit_cbpe([0, 0], [0, 1], [0.1, 0.9], [0, 1]), r"lack the classes \['1'\]"),
        (lambda: fit_cbpe([0], [0], [0.1], [0]), "at least two distinct"),
        (lambda: fit_cbpe([0, 1], [0, 1], [0.1, 0.9], [1, 1]), "at least two distinct"),
        (lambda: fit_cbpe([0, 1], None, [0.1, 0.9], [0, 1]), "y_pred is required"),
        (lambda: fit_cbpe([0, 1], [0, 1], [[0.1, 0.9]] * 2, [0, 1]), "must be 1-D"),
        (lambda: fit_cbpe([0, 1], [0, 1], [0.1, 0.9], [0, 1], metrics=["auc"]), "subset"),
        (lambda: fit_cbpe([0, 1], [1, 1], [0.1, 0.9], [0, 1], threshold=0.5), "disagrees"),
        (lambda: fit_cbpe([0, 1, 2], [0, 1, 2], np.eye(3), [0, 1, 2], threshold=0.5), "binary"),
        (lambda: fit_cbpe([0, 1, 2], [0, 1, 2], np.eye(3)[:, :2], [0, 1, 2]), r"n x 3"),
        (lambda: fit_cbpe([0, 1] * 5, [0, 1] * 5, [0.2, 0.8] * 5, [0, 1], chunk_size=6), "2 full"),
    ],
)
def test_bad_reference_input_is_refused_with_a_precise_message(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_window_input_is_refused() -> None:
    model = _uncalibrated_binary()
    with pytest.raises(ValueError, match="y_pred has 1 rows but the scores have 2"):
        model.estimate([1], [0.2, 0.4])
    with pytest.raises(ValueError, match="without rows"):
        model.estimate([], [])
    with pytest.raises(ValueError, match="no threshold"):
        model.estimate(None, [0.2])
    with pytest.raises(ValueError, match=r"not classes: \['7'\]"):
        model.estimate([7], [0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.estimate([1], [-0.1])


def test_a_chunk_where_a_metric_is_undefined_leaves_it_out_of_the_thresholds() -> None:
    y = np.array([0, 1] * 50 + [1] * 10)
    pred = y.copy()
    score = np.where(y == 1, 0.8, 0.3)
    model = fit_cbpe(y, pred, score, [0, 1], chunk_size=10)
    assert model.metrics["roc_auc"].chunk_values[-1] is None  # the last chunk has one class
    assert all(v is not None for v in model.metrics["roc_auc"].chunk_values[:-1])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5000))
def test_bucketed_roc_auc_is_the_sorted_one_within_its_tolerance(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    p = np.clip(scores + rng.normal(0, 0.2, n), 0, 1)
    bucketed = bucketed_roc_auc(score_buckets(scores), p)
    exact = expected_roc_auc(scores, p)
    if bucketed is None or math.isnan(exact):
        return
    assert bucketed == pytest.approx(exact, abs=AUC_BUCKET_TOLERANCE)


def test_a_crowded_bucket_falls_back_to_sorting() -> None:
    """Scores 1e-9 apart share a bucket but are not ties: the bound refuses the buckets and the
    estimate sorts them, ranking them as the model did."""
    scores = 0.5 + np.arange(1000) * 1e-9
    p = np.linspace(0.0, 1.0, 1000)
    assert bucketed_roc_auc(score_buckets(scores), p) is None
    estimate = _uncalibrated_binary().estimate((scores >= 0.5).astype(int), scores)
    assert estimate.value("roc_auc") == pytest.approx(expected_roc_auc(scores, scores))
