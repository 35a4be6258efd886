"""The arithmetic of CBPE: expected confusion matrices, metrics, sampling errors, thresholds.

Everything here is a pure function of numpy arrays; classes are integer codes ``0..k-1`` (a
binary model's positive class is 1). Definitions follow NannyML 0.13 so that our estimates can
be checked against its on the same data (tests/oracle):

- **Expected confusion matrix**: with calibrated probabilities ``P`` (n x k), the expected count
  of rows of true class i that the model predicted as j is ``sum over rows predicted j of
  P[row, i]``. Precision, recall, F1 and accuracy are read off it per class (one-vs-rest);
  multiclass values are macro averages, a class with an empty denominator counting 0.
- **Expected ROC AUC**: rows sorted by the model's own score, descending; the calibrated
  probabilities accumulate as expected true positives, their complements as false positives;
  the area under that curve (rows with equal scores form one step, as in scikit-learn's ROC).
- **Realized** metrics (on the labelled reference chunks, for the thresholds) are
  scikit-learn's, NaN where NannyML's are (a chunk with a single class, say).
- **Sampling error**: every metric's standard error at n rows is ``unit / sqrt(n)``; the unit is
  measured once on the labelled reference (:func:`sampling_error_unit`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from infertrail.estimation.calibration import BUCKETS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: The classification metrics CBPE estimates, in report order.
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall")
#: How many standard errors the sampling-error band spans on each side; NannyML's 3.
BAND_SIGMAS = 3.0
#: How many reference-chunk standard deviations the alert thresholds lie from their mean.
THRESHOLD_SIGMAS = 3.0
#: NannyML widens the multiclass ROC AUC sampling error by 20% (its experiments found the
#: per-class variance sum underestimated it by that much).
MULTICLASS_AUC_SE_FACTOR = 1.2


def expected_confusion_matrix(predicted: IntArray, by_class: FloatArray) -> FloatArray:
    """Expected counts (k x k): row i = true class, column j = predicted class.

    ``by_class``: k x n, row i holding each row's probability of being of class i.
    """
    k = len(by_class)
    return np.stack([np.bincount(predicted, weights=p, minlength=k) for p in by_class])


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """numerator / denominator, 0 where the denominator is 0 (NannyML's convention)."""
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def confusion_metrics(cm: FloatArray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of an (expected) confusion matrix.

    Binary (2 x 2): the positive class's; multiclass: the macro averages over the classes.
    """
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    per_class = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(tp, tp + 0.5 * (fp + fn)),
    }
    binary = cm.shape[0] == 2
    out = {name: float(v[1]) if binary else float(v.mean()) for name, v in per_class.items()}
    total = float(cm.sum())
    out["accuracy"] = float(tp.sum()) / total if total > 0 else math.nan
    return out


def sorted_roc_auc(scores: FloatArray, probabilities: FloatArray) -> float:
    """:func:`expected_roc_auc` of rows already sorted by ascending score."""
    s, p = scores[::-1], probabilities[::-1]  # descending: the most likely positives first
    # one point per distinct score (the last row of each run of equal scores): one step
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.r_[0.0, np.cumsum(p)[last]]
    fps = np.r_[0.0, np.cumsum(1.0 - p)[last]]
    if not (tps[-1] > 0 and fps[-1] > 0):
        return math.nan
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


#: The most a bucketed ROC AUC may differ from the exact one; beyond it the rows are sorted.
AUC_BUCKET_TOLERANCE = 1e-4


def score_buckets(scores: FloatArray) -> IntArray:
    """Each score's bucket of width 1/BUCKETS in [0, 1] (a score of 1 in the last one)."""
    return np.minimum((scores * BUCKETS).astype(np.int64), BUCKETS - 1)


def bucketed_roc_auc(buckets: IntArray, probabilities: FloatArray) -> float | None:
    """:func:`expected_roc_auc` with the rows of one score bucket taken as ties; None when that
    could move the area by more than AUC_BUCKET_TOLERANCE (then sort the rows instead).

    Taking a bucket's rows as one step changes the area by at most half the product of its
    expected positives and negatives over the whole curve's: the bound checked here. A window of
    continuous scores has a row or two per bucket and a bound near 1e-6; rows with equal scores
    are ties either way. It spares the sort that dominates the exact computation.
    """
    positives = np.bincount(buckets, weights=probabilities, minlength=BUCKETS)
    negatives = np.bincount(buckets, minlength=BUCKETS) - positives
    total_pos, total_neg = float(positives.sum()), float(negatives.sum())
    if not (total_pos > 0 and total_neg > 0):
        return math.nan
    if 0.5 * float(positives @ negatives) / (total_pos * total_neg) > AUC_BUCKET_TOLERANCE:
        return None
    tpr = np.cumsum(positives[::-1]) / total_pos  # from the top bucket down
    fpr = np.cumsum(negatives[::-1]) / total_neg
    # the trapezoids, the first one from (0, 0)
    return float(fpr[0] * tpr[0] + np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]))) / 2.0


def expected_roc_auc(scores: FloatArray, probabilities: FloatArray) -> float:
    """Expected ROC AUC of one class: ``scores`` rank the rows, ``probabilities`` (calibrated)
    say how likely each row is a positive. NaN when no positive or no negative is expected."""
    order = np.argsort(scores)
    return sorted_roc_auc(scores[order], probabilities[order])


# -- realized metrics of labelled chunks (thresholds) -----------------------------------------


def realized_metric(
    name: str, y_true: IntArray, y_pred: IntArray, scores: FloatArray, k: int
) -> float:
    """The metric on labelled rows, NaN where it is undefined (as NannyML has it).

    ``scores``: the positive class's (binary, 1-D) or every class's (n x k) uncalibrated
    scores. F1, precision and recall need at least two true and two predicted classes; so does
    multiclass accuracy; multiclass ROC AUC needs every class among the true labels.
    """
    binary = k == 2
    true_classes, pred_classes = np.unique(y_true).size, np.unique(y_pred).size
    if name == "roc_auc":
        if binary:
            return float(roc_auc_score(y_true, scores)) if true_classes > 1 else math.nan
        if true_classes < k:
            return math.nan
        return float(np.mean([roc_auc_score(y_true == j, scores[:, j]) for j in range(k)]))
    if name == "accuracy":
        if not binary and (true_classes < 2 or pred_classes < 2):
            return math.nan
        return float(accuracy_score(y_true, y_pred))
    if true_classes < 2 or pred_classes < 2:
        return math.nan
    scorer = {"f1": f1_score, "precision": precision_score, "recall": recall_score}[name]
    average = "binary" if binary else "macro"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class never predicted: 0, as NannyML counts it
        return float(
            scorer(y_true, y_pred, labels=list(range(k)), average=average, zero_division=0)
        )


def thresholds(
    chunk_values: Sequence[float], lower_limit: float | None, upper_limit: float | None
) -> tuple[float | None, float | None]:
    """Mean -/+ THRESHOLD_SIGMAS standard deviations of the chunks' values, within the limits.

    None for a side that cannot be computed (every chunk NaN).
    """
    values = np.asarray(chunk_values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    mean, std = float(values.mean()), float(values.std())
    lower, upper = mean - THRESHOLD_SIGMAS * std, mean + THRESHOLD_SIGMAS * std
    if lower_limit is not None and lower <= lower_limit:
        lower = lower_limit
    if upper_limit is not None and upper >= upper_limit:
        upper = upper_limit
    return lower, upper


# -- sampling error ---------------------------------------------------------------------------


def _bernoulli_variance(hits: int, total: int) -> float:
    """Variance of a 0/1 variable that is 1 ``hits`` times out of ``total`` (NaN if none)."""
    if total == 0:
        return math.nan
    p = hits / total
    return p * (1.0 - p)


def _auc_terms(outcome: BoolArray, score: FloatArray) -> tuple[float, float]:
    """AUROC as a Mann-Whitney statistic: the variance of each (minority-class) positive's share
    of the negatives scored below it, and the positives' share of the rows."""
    y, s = outcome.astype(np.int64), score
    if y.mean() > 0.5:  # measured on the minority class, as NannyML does
        y, s = 1 - y, 1.0 - s
    y = y[np.argsort(s, kind="stable")]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan, 0.0
    negatives_below = np.cumsum(1 - y)[y == 1] / n_neg
    return float(negatives_below.var()), n_pos / len(y)


def _class_terms(
    name: str, true: BoolArray, predicted: BoolArray, score: FloatArray | None
) -> tuple[float, float]:
    """(variance, share of the rows that count) of one class's one-vs-rest metric."""
    if name == "roc_auc":
        if score is None:
            raise ValueError("the ROC AUC sampling error needs the class's scores")
        return _auc_terms(true, score)
    tp = int(np.sum(true & predicted))
    relevant = {
        "precision": int(np.sum(predicted)),
        "recall": int(np.sum(true)),
        "f1": int(np.sum(true | predicted)),
    }[name]
    return _bernoulli_variance(tp, relevant), relevant / len(true)


def sampling_error_unit(
    name: str, y_true: IntArray, y_pred: IntArray, scores: FloatArray, k: int
) -> float:
    """The metric's standard error at one row: at n rows it is this over sqrt(n); NaN if unknown.

    Accuracy: the sd of "prediction right". The others: the sd of the rows that count for the
    metric (TP against FP for precision, TP against FN for recall, TP against both for F1;
    ROC AUC: each positive's share of negatives scored below it) over the square root of those
    rows' share of all rows. NannyML scales the binary F1 sd by ``N / (TP + (FP + FN) / 2)``
    (N = TP + FP + FN). Multiclass: the root of the per-class variance-over-share terms summed,
    over the number of classes (times 1.2 for ROC AUC).
    """
    if name == "accuracy":
        return float(np.std(y_true == y_pred))
    if k == 2:
        true, predicted = y_true == 1, y_pred == 1
        var, share = _class_terms(name, true, predicted, scores)
        if name == "f1":
            tp, wrong = int(np.sum(true & predicted)), int(np.sum(true != predicted))
            var *= ((tp + wrong) / (tp + wrong / 2)) ** 2 if tp + wrong else math.nan
        return math.sqrt(var / share) if share > 0 else math.nan
    total = 0.0
    for j in range(k):
        column = scores[:, j] if name == "roc_auc" else None
        var, share = _class_terms(name, y_true == j, y_pred == j, column)
        total += var / share if share > 0 else math.nan
    factor = MULTICLASS_AUC_SE_FACTOR if name == "roc_auc" else 1.0
    return math.sqrt(total) / k * factor
