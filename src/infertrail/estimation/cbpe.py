"""Confidence-based performance estimation (CBPE): a classifier's performance without labels.

Fit on a labelled reference (:func:`fit_cbpe`): the model's scores are calibrated there
(:mod:`.calibration`), the metrics are realized on consecutive reference chunks for the alert
thresholds, and each metric's sampling error is measured (:mod:`.metrics`). Then for any window
of predictions and scores, :meth:`CbpeModel.estimate` gives the *expected* confusion matrix and
the metrics read off it, with their sampling-error bands and alerts (:class:`.Estimate`).

The premise: P(correct | score) on the live traffic is what it was on the reference. Covariate
shift is fine (the scores move, the estimate follows); concept shift is not, and leaves the
estimate silently wrong. docs/estimation.md says what that means in practice.

A binary model's scores are the probability of its *positive* class, ``classes[1]``; a
multiclass model's are one probability per class, in ``classes`` order. A binary model that
turns a score into a prediction by a threshold (the credit demo: ``score >= 0.5``) records it as
``threshold``, so the window analyzer can derive predictions from scores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infertrail.drift.profile import category_key
from infertrail.estimation import cbpe_io
from infertrail.estimation.calibration import (
    CALIBRATION_MODES,
    FloatArray,
    IntArray,
    IsotonicMap,
    fit_calibration,
)
from infertrail.estimation.estimate import Estimate, MetricReference, finite_or_none
from infertrail.estimation.metrics import (
    CLASSIFICATION_METRICS,
    bucketed_roc_auc,
    confusion_metrics,
    expected_confusion_matrix,
    expected_roc_auc,
    realized_metric,
    sampling_error_unit,
    score_buckets,
    thresholds,
)

#: NannyML's default: the reference is cut into 10 chunks for the thresholds.
DEFAULT_CHUNKS = 10


@dataclass(frozen=True)
class CbpeModel:
    """A fitted CBPE estimator: what the labelled reference taught, ready for any window.

    ``calibrations``: one isotonic map per class scored (binary: the positive class only; None
    where calibration did not help). ``metrics``: each estimated metric's thresholds and
    sampling error. ``model_name``/``model_sha256`` name the artifact it was fitted for.
    """

    classes: tuple[str, ...]
    calibrations: tuple[IsotonicMap | None, ...]
    metrics: dict[str, MetricReference]
    reference_rows: int
    chunk_size: int
    threshold: float | None = None
    model_name: str = ""
    model_sha256: str = ""

    def __post_init__(self) -> None:
        k = len(self.classes)
        if k < 2 or len(set(self.classes)) != k:
            raise ValueError(f"classes must be at least two distinct labels, got {self.classes}")
        if len(self.calibrations) != (1 if k == 2 else k):
            raise ValueError(
                f"{k} classes need {1 if k == 2 else k} calibration(s), got "
                f"{len(self.calibrations)}"
            )
        unknown = set(self.metrics) - set(CLASSIFICATION_METRICS)
        if unknown or not self.metrics:
            raise ValueError(
                f"metrics must be a non-empty subset of {list(CLASSIFICATION_METRICS)}, got "
                f"{list(self.metrics)}"
            )
        if self.threshold is not None and (k != 2 or not 0.0 <= self.threshold <= 1.0):
            raise ValueError(
                f"threshold is a binary model's score cut in [0, 1]; got {self.threshold} "
                f"with {k} classes"
            )

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive(self) -> str | None:
        """The positive class of a binary model (its scores are this class's probability)."""
        return self.classes[1] if self.binary else None

    # -- estimation ----------------------------------------------------------------------------
    def estimate(self, y_pred: Any | None, scores_or_proba: Any) -> Estimate:
        """The estimated performance on one window of predictions and scores.

        ``y_pred``: the predicted labels (each one of ``classes``); None for a binary model with
        a ``threshold``, whose predictions are then ``score >= threshold``.
        ``scores_or_proba``: binary, the positive class's probability per row; multiclass, an
        n x k matrix of class probabilities in ``classes`` order. ValueError on bad input.
        """
        scores = check_scores(scores_or_proba, len(self.classes), "scores_or_proba")
        predicted = self.predictions(y_pred, scores)
        if len(scores) == 0:
            raise ValueError("cannot estimate performance on a window without rows")
        return self.estimate_codes(predicted, scores)

    def predictions(self, y_pred: Any | None, scores: FloatArray) -> IntArray:
        """Class codes of ``y_pred``, or ``score >= threshold`` when y_pred is None."""
        if y_pred is not None:
            predicted = class_codes(y_pred, self.classes, "y_pred")
            if len(predicted) != len(scores):
                raise ValueError(
                    f"y_pred has {len(predicted)} rows but the scores have {len(scores)}"
                )
            return predicted
        if self.threshold is None:
            raise ValueError("y_pred is required: this model has no threshold to derive it")
        return (scores >= self.threshold).astype(np.int64)

    def probabilities(self, scores: FloatArray) -> FloatArray:
        """Calibrated class probabilities, n x k (a binary model's: [1 - p, p])."""
        by_class = self._by_class(scores)
        return self._calibrated(by_class, score_buckets(by_class)).T

    def _by_class(self, scores: FloatArray) -> FloatArray:
        """The scores one class per contiguous row (binary: the positive class only)."""
        return scores[None, :] if self.binary else np.ascontiguousarray(scores.T)

    def _calibrated(self, by_class: FloatArray, buckets: IntArray) -> FloatArray:
        """Every class's calibrated probability, k x n, rows renormalised (multiclass)."""
        calibrated = np.empty_like(by_class)
        for j, fitted in enumerate(self.calibrations):
            scores = by_class[j]
            calibrated[j] = fitted.on_buckets(scores, buckets[j]) if fitted else scores
        if self.binary:
            return np.concatenate([1.0 - calibrated, calibrated])
        total = calibrated.sum(axis=0)
        uniform = np.full_like(calibrated, 1.0 / len(calibrated))
        normalised: FloatArray = np.divide(calibrated, total, out=uniform, where=total > 0)
        return normalised

    def estimate_codes(self, predicted: IntArray, scores: FloatArray) -> Estimate:
        """:meth:`estimate` on checked input: class codes and scores of the same n > 0 rows."""
        by_class = self._by_class(scores)
        buckets = score_buckets(by_class)
        calibrated = self._calibrated(by_class, buckets)
        cm = expected_confusion_matrix(predicted, calibrated)
        values = confusion_metrics(cm)
        if "roc_auc" in self.metrics:
            # binary: the positive class's curve; multiclass: the mean of one-vs-rest curves
            scored = calibrated[1:] if self.binary else calibrated
            values["roc_auc"] = float(
                np.mean([self._roc_auc(by_class[j], buckets[j], p) for j, p in enumerate(scored)])
            )
        n = len(predicted)
        judged = {name: ref.judge(values[name], n) for name, ref in self.metrics.items()}
        return Estimate(n, judged, self.classes, cm)

    @staticmethod
    def _roc_auc(scores: FloatArray, buckets: IntArray, probabilities: FloatArray) -> float:
        """One class's expected ROC AUC: by score buckets, or sorted when they are too coarse."""
        bucketed = bucketed_roc_auc(buckets, probabilities)
        return expected_roc_auc(scores, probabilities) if bucketed is None else bucketed

    # -- persistence (cbpe.json) ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (:mod:`.cbpe_io` describes it); :meth:`from_dict` reads it back."""
        return cbpe_io.encode(self)

    @classmethod
    def from_dict(cls, data: Any) -> CbpeModel:
        """Parse :meth:`to_dict`'s form; ValueError naming the field that is wrong."""
        return cls(**cbpe_io.decode(data))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as versioned JSON at ``path``, atomically."""
        cbpe_io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> CbpeModel:
        """Read and validate ``path``; ``expected_sha256`` must be the sha256 it was fitted for.

        CbpeFileError (a ValueError) naming the file and what is wrong with it.
        """
        try:
            model = cls.from_dict(cbpe_io.read_json(path))
        except cbpe_io.CbpeFileError:
            raise
        except ValueError as exc:
            raise cbpe_io.CbpeFileError(f"estimator file {path}: {exc}") from None
        if expected_sha256 is not None and model.model_sha256 != expected_sha256:
            raise cbpe_io.CbpeFileError(
                f"estimator file {path} was fitted for model sha256 {model.model_sha256!r}, "
                f"not {expected_sha256!r}: refit it for the served model"
            )
        return model


# -- input checks ------------------------------------------------------------------------------


def check_classes(classes: Sequence[Any]) -> tuple[str, ...]:
    """``classes`` as distinct strings, at least two."""
    names = tuple(category_key(c) for c in classes)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"classes must be at least two distinct labels, got {list(names)}")
    return names


def class_codes(values: Any, classes: Sequence[str], what: str) -> IntArray:
    """Each of ``values`` as the index of its class; ValueError naming labels that are none."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one label per row (1-D), got shape {array.shape}")
    comparable = _comparable_classes(classes, array.dtype)
    if comparable is not None:
        # one vectorised comparison per class beats sorting the labels (np.unique)
        codes = np.full(len(array), -1, dtype=np.int64)
        for j, name in enumerate(comparable):
            if name is not None:
                codes[array == name] = j
        unknown = [category_key(u) for u in np.unique(array[codes < 0])]
    else:
        uniques, inverse = np.unique(array, return_inverse=True)
        index = {c: i for i, c in enumerate(classes)}
        lookup = np.array([index.get(category_key(u), -1) for u in uniques], dtype=np.int64)
        codes = lookup[inverse.reshape(-1)]
        unknown = [category_key(u) for u, c in zip(uniques, lookup, strict=True) if c < 0]
    if unknown:
        raise ValueError(
            f"{what} holds labels that are not classes: {unknown[:5]}; classes: {list(classes)}"
        )
    return codes


def _comparable_classes(
    classes: Sequence[str], dtype: np.dtype[Any]
) -> list[str | float | None] | None:
    """The classes as values of ``dtype`` to compare labels with directly: the strings for
    string labels, the numbers for integer or float labels (None for a class that is not a
    number); None when labels of this dtype go through :func:`category_key` instead."""
    if dtype.kind == "U":
        return list(classes)
    if dtype.kind not in "iuf":
        return None
    numbers: list[str | float | None] = []
    for name in classes:
        try:
            number = float(name)
        except ValueError:
            number = None
        # "1" and 1.0 name the same class; "1.50" does not name 1.5 (category_key says "1.5")
        numbers.append(number if number is not None and category_key(number) == name else None)
    return numbers


def check_scores(values: Any, k: int, what: str) -> FloatArray:
    """Scores as float64: binary 1-D, multiclass n x k; all finite and within [0, 1]."""
    scores = np.asarray(values, dtype=np.float64)
    expected = "1-D (the positive class's probability)" if k == 2 else f"n x {k}"
    if (k == 2 and scores.ndim != 1) or (k > 2 and (scores.ndim != 2 or scores.shape[1] != k)):
        raise ValueError(f"{what} must be {expected}, got shape {scores.shape}")
    bad = ~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{what} must be probabilities in [0, 1]; row {row} has {scores[row].tolist()}"
        )
    return scores


# -- fitting -----------------------------------------------------------------------------------


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """Consecutive chunks of ``chunk_size`` rows; a shorter tail is a chunk of its own."""
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def fit_cbpe(
    y_true: Any,
    y_pred: Any | None,
    scores_or_proba: Any,
    classes: Sequence[Any],
    *,
    metrics: Sequence[str] = CLASSIFICATION_METRICS,
    chunk_size: int | None = None,
    threshold: float | None = None,
    calibration: str = "auto",
    model_name: str = "",
    model_sha256: str = "",
) -> CbpeModel:
    """Fit CBPE on a labelled reference the model never trained on (a held-out split).

    ``y_true``/``y_pred``: true and predicted labels, each one of ``classes``; ``y_pred`` may be
    None for a binary model given a ``threshold`` (predictions ``score >= threshold``).
    ``scores_or_proba``: see :meth:`CbpeModel.estimate`. ``chunk_size``: rows per reference
    chunk for the thresholds (default a tenth of the reference; best near the live window
    size). ``calibration``: "auto" (NannyML's rule: per class, where it lowers the held-out
    calibration error), "always" or "never"; see docs/estimation.md for when "always" is the
    better choice. Every class must occur among the true labels. ValueError on bad input.
    """
    names = check_classes(classes)
    k = len(names)
    chosen = tuple(dict.fromkeys(metrics))
    unknown = [m for m in chosen if m not in CLASSIFICATION_METRICS]
    if unknown or not chosen:
        raise ValueError(
            f"metrics must be a non-empty subset of {list(CLASSIFICATION_METRICS)}, got "
            f"{list(metrics)}"
        )
    if threshold is not None and (k != 2 or not 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold applies to binary models and lies in [0, 1], got {threshold}")
    if calibration not in CALIBRATION_MODES:
        raise ValueError(
            f"calibration must be one of {list(CALIBRATION_MODES)}, got {calibration!r}"
        )
    scores = check_scores(scores_or_proba, k, "scores_or_proba")
    truth = class_codes(y_true, names, "y_true")
    n = len(scores)
    if len(truth) != n:
        raise ValueError(f"y_true has {len(truth)} rows but the scores have {n}")
    if y_pred is None and threshold is None:
        raise ValueError("y_pred is required unless a binary threshold derives it")
    predicted = (
        (scores >= threshold).astype(np.int64)
        if y_pred is None and threshold is not None
        else class_codes(y_pred, names, "y_pred")
    )
    if len(predicted) != n:
        raise ValueError(f"y_pred has {len(predicted)} rows but the scores have {n}")
    if threshold is not None and y_pred is not None:
        differ = np.flatnonzero(predicted != (scores >= threshold))
        if differ.size:
            raise ValueError(
                f"y_pred disagrees with score >= {threshold} on {differ.size} rows (first: row "
                f"{int(differ[0])}); the threshold must be how the model predicts"
            )
    missing = [names[j] for j in range(k) if not np.any(truth == j)]
    if missing:
        raise ValueError(
            f"the reference's true labels lack the classes {missing}: CBPE calibrates and "
            "thresholds every class on the reference, so each must occur there"
        )
    size = max(n // DEFAULT_CHUNKS, 1) if chunk_size is None else chunk_size
    if size < 1 or n // size < 2:
        raise ValueError(
            f"chunk_size {size} leaves fewer than 2 full chunks in {n} reference rows; "
            "thresholds need the metric's spread over chunks"
        )
    if k == 2:
        calibrations: tuple[IsotonicMap | None, ...] = (
            fit_calibration(truth, scores, calibration),
        )
    else:
        calibrations = tuple(
            fit_calibration((truth == j).astype(np.int64), scores[:, j], calibration)
            for j in range(k)
        )
    chunks = chunk_bounds(n, size)
    references = {}
    for name in chosen:
        values = [
            realized_metric(name, truth[lo:hi], predicted[lo:hi], scores[lo:hi], k)
            for lo, hi in chunks
        ]
        lower, upper = thresholds(values, 0.0, 1.0)
        unit = sampling_error_unit(name, truth, predicted, scores, k)
        references[name] = MetricReference(
            name,
            lower,
            upper,
            unit if math.isfinite(unit) else None,
            tuple(finite_or_none(v) for v in values),
        )
    return CbpeModel(
        classes=names,
        calibrations=calibrations,
        metrics=references,
        reference_rows=n,
        chunk_size=size,
        threshold=threshold,
        model_name=model_name,
        model_sha256=model_sha256,
    )
