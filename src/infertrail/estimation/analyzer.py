"""CBPE on every closed drift window: the ``estimated_performance`` section and its signals.

:class:`CbpeAnalyzer` is a :class:`~infertrail.drift.analysis.WindowAnalyzer`. Per window it
gathers what CBPE needs from the sampled inferences, estimates, and reports:

- binary models: the positive class's probability from the event's ``score``; where there is
  none, from its ``probabilities``, else from the predicted label and its ``confidence`` (the
  probability of the predicted label). Predictions are the labels, or ``score >= threshold``
  for a model fitted with a threshold (the credit demo's approve/refer/decline labels are not
  its classes; its score is);
- multiclass models: ``probabilities`` (every class's) and the predicted label.

Rows without what they need are skipped and counted by reason (a row may have more than one).
Signals: ``estimated.<metric>``
for every metric with a value, and ``estimated.alert`` (1 when any estimate lies outside its
reference thresholds). Windows with fewer than ``min_rows`` usable rows are reported without
estimates: their sampling error would make any alert noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from infertrail.drift.analysis import Analysis
from infertrail.drift.profile import category_key
from infertrail.estimation.calibration import FloatArray, IntArray
from infertrail.estimation.cbpe import CbpeModel
from infertrail.estimation.metrics import BoolArray

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftWindow

#: The section's key in a drift report; the signals are ``estimated.*``.
SECTION = "estimated_performance"
SIGNAL_PREFIX = "estimated."
#: Fewest usable rows a window needs for estimates (and alerts).
DEFAULT_MIN_ROWS = 30


class CbpeAnalyzer:
    """A fitted :class:`CbpeModel` judging each window of one model's traffic.

    ``labels``: the model's reference profile labels in code order
    (``profile.prediction.categories``): how the window's label codes and probability columns
    map to the estimator's classes. Every class must be among them, except for a binary model
    with a threshold, which needs only its scores.
    """

    name = SECTION

    def __init__(
        self, model: CbpeModel, labels: Sequence[Any] = (), *, min_rows: int = DEFAULT_MIN_ROWS
    ) -> None:
        if min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {min_rows}")
        self.model = model
        self.min_rows = min_rows
        self.labels = tuple(category_key(label) for label in labels)
        index = {c: i for i, c in enumerate(model.classes)}
        # window label code -> estimator class code; -1 for labels that are not classes
        self._class_of = np.array([index.get(label, -1) for label in self.labels], dtype=np.int64)
        missing = [c for c in model.classes if c not in self.labels]
        if missing and not (model.binary and model.threshold is not None):
            raise ValueError(
                f"the profile's labels {list(self.labels)} lack the estimator's classes "
                f"{missing}: predictions and probabilities could not be matched to them"
            )
        self._columns = [self.labels.index(c) if c in self.labels else -1 for c in model.classes]

    def inputs(self, window: DriftWindow) -> tuple[IntArray, FloatArray, BoolArray, dict[str, int]]:
        """What CBPE reads of each row: the predicted class code, the scores (binary: 1-D;
        multiclass: n x k in the estimator's order), which rows have both, and the skipped rows
        counted by reason. The outcomes report measures the realized metrics on these very rows.
        """
        predicted = self._label_classes(window)
        if self.model.binary:
            scores, skipped = self._binary_inputs(window, predicted)
            if self.model.threshold is not None:
                predicted = np.where(
                    np.isfinite(scores), scores >= self.model.threshold, -1
                ).astype(np.int64)
                skipped.pop("unknown_label")  # predictions come from the scores
        else:
            scores, skipped = self._multiclass_inputs(window, predicted)
        usable = predicted >= 0
        usable &= np.isfinite(scores).all(axis=1) if scores.ndim == 2 else np.isfinite(scores)
        return predicted, scores, usable, skipped

    def analyze(self, window: DriftWindow) -> Analysis:
        """Estimate the window's performance; skip the rows that lack scores or labels."""
        predicted, scores, usable, skipped = self.inputs(window)
        n = int(usable.sum())
        section: dict[str, Any] = {
            "method": "cbpe",
            "kind": "binary" if self.model.binary else "multiclass",
            "classes": list(self.model.classes),
            "n": n,
            "skipped": {"total": window.n_samples - n, **skipped},
            "min_rows": self.min_rows,
        }
        if n < self.min_rows:
            return Analysis({**section, "metrics": None, "alert": None, "confusion_matrix": None})
        estimate = self.model.estimate_codes(predicted[usable], scores[usable])
        report = estimate.as_dict()
        section.update(
            metrics=report["metrics"],
            alert=report["alert"],
            confusion_matrix=report["confusion_matrix"],
        )
        signals = {
            SIGNAL_PREFIX + name: m.value
            for name, m in estimate.metrics.items()
            if m.value is not None
        }
        signals[SIGNAL_PREFIX + "alert"] = 1.0 if estimate.alert else 0.0
        return Analysis(section, signals)

    def _label_classes(self, window: DriftWindow) -> IntArray:
        """Estimator class code of each row's predicted label; -1 where it is not a class."""
        n = window.n_samples
        if window.labels is None or not self.labels:
            return np.full(n, -1, dtype=np.int64)
        codes = window.labels
        known = (codes >= 0) & (codes < len(self._class_of))
        out = np.full(n, -1, dtype=np.int64)
        out[known] = self._class_of[codes[known]]
        return out

    def _binary_inputs(
        self, window: DriftWindow, predicted: IntArray
    ) -> tuple[FloatArray, dict[str, int]]:
        """The positive class's probability per row (NaN where none can be had), and counts."""
        n = window.n_samples
        p = np.full(n, np.nan) if window.scores is None else window.scores.astype(np.float64)
        column = self._columns[1]
        if window.probabilities is not None and column >= 0:
            p = np.where(np.isnan(p), window.probabilities[:, column], p)
        if window.confidences is not None:
            confidence = window.confidences
            from_label = np.where(predicted == 1, confidence, 1.0 - confidence)
            p = np.where(np.isnan(p) & (predicted >= 0), from_label, p)
        invalid = np.isfinite(p) & ((p < 0.0) | (p > 1.0))
        p[invalid] = np.nan
        counts = {
            "unknown_label": int(np.sum(predicted < 0)),
            "no_score": int(np.sum(np.isnan(p) & ~invalid)),
            "invalid_probability": int(np.sum(invalid)),
        }
        return p, counts

    def _multiclass_inputs(
        self, window: DriftWindow, predicted: IntArray
    ) -> tuple[FloatArray, dict[str, int]]:
        """Every class's probability per row in the estimator's order (NaN rows where missing)."""
        n, k = window.n_samples, len(self.model.classes)
        if window.probabilities is None:
            proba = np.full((n, k), np.nan)
        else:
            proba = window.probabilities[:, self._columns].astype(np.float64)
        missing = ~np.isfinite(proba).all(axis=1)
        invalid = ~missing & ((proba < 0.0) | (proba > 1.0)).any(axis=1)
        proba[invalid] = np.nan
        counts = {
            "unknown_label": int(np.sum(predicted < 0)),
            "no_probabilities": int(np.sum(missing)),
            "invalid_probability": int(np.sum(invalid)),
        }
        return proba, counts
