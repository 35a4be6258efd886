"""Estimated beside realized performance: CBPE over every prediction, outcomes over the joined.

Outcomes arrive late and for some predictions only. For each group of the performance report
(model, version, time window) :func:`estimate_group` estimates the model's performance with its
CBPE estimator (``<models_dir>/<model>/cbpe.json``, :mod:`infertrail.estimation`) over *all*
the predictions of the group in the store, labelled or not, and measures the same metrics,
by the estimator's own definitions, on those of them that have a ``label`` outcome. So
``estimated - realized`` is the estimation error plus sampling noise, not a difference of
definitions: when it exceeds the combined sampling error, P(y | score) has moved (concept
shift) and the realized column is the truth.

Rows become CBPE inputs exactly as in the drift windows: the predictions are laid out as a
:class:`~infertrail.drift.detector.DriftWindow` and read by
:meth:`~infertrail.estimation.analyzer.CbpeAnalyzer.inputs` (binary: the score, else the
positive class's probability, else label and confidence; multiclass: every class's probability).
Only predictions made by the artifact the estimator was fitted for (the sha256 in cbpe.json)
are estimated; the others are counted as skipped.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from infertrail.drift.detector import DriftWindow
from infertrail.estimation.analyzer import DEFAULT_MIN_ROWS, CbpeAnalyzer
from infertrail.estimation.calibration import FloatArray, IntArray
from infertrail.estimation.cbpe import CbpeModel
from infertrail.estimation.cbpe_io import CbpeFileError, cbpe_path
from infertrail.estimation.estimate import MetricEstimate, finite_or_none
from infertrail.estimation.metrics import BAND_SIGMAS, realized_metric
from infertrail.outcomes.store import ScoredPredictions

__all__ = [
    "EstimatedPerformance",
    "Estimators",
    "LoadedEstimator",
    "MetricComparison",
    "estimate_group",
    "prediction_window",
]

Status = Literal["estimated", "no_estimator", "estimator_unusable", "too_few_predictions"]


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one group: CBPE's estimate with its band, the realized value, the gap.

    ``beyond_sampling_error``: ``|difference|`` exceeds BAND_SIGMAS (3) standard errors of the
    difference (estimate's and realized value's combined): more than noise, so the estimator's
    premise does not hold on this traffic. None when a part is missing.
    """

    name: str
    estimate: MetricEstimate
    realized: float | None
    realized_sampling_error: float | None

    @property
    def difference(self) -> float | None:
        """Estimated minus realized, where both exist."""
        if self.estimate.value is None or self.realized is None:
            return None
        return self.estimate.value - self.realized

    @property
    def beyond_sampling_error(self) -> bool | None:
        gap, se, se_real = (
            self.difference,
            self.estimate.sampling_error,
            self.realized_sampling_error,
        )
        if gap is None or se is None or se_real is None:
            return None
        return abs(gap) > BAND_SIGMAS * math.hypot(se, se_real)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the estimate's fields (``value`` as ``estimated``) and the comparison."""
        e = self.estimate
        return {
            "estimated": e.value,
            "sampling_error": e.sampling_error,
            "lower_band": e.lower_band,
            "upper_band": e.upper_band,
            "lower_threshold": e.lower_threshold,
            "upper_threshold": e.upper_threshold,
            "alert": e.alert,
            "realized": self.realized,
            "realized_sampling_error": self.realized_sampling_error,
            "difference": self.difference,
            "beyond_sampling_error": self.beyond_sampling_error,
        }


@dataclass(frozen=True)
class EstimatedPerformance:
    """CBPE's view of one group, with the realized metrics of its labelled predictions.

    ``n_predictions``: the group's predictions in the store; ``n_estimated``: those CBPE read
    (of the estimator's artifact, with a score or probabilities); ``n_realized``: of these, the
    ones with a ``label`` outcome that is one of the estimator's classes
    (``unmatched_outcomes``: with another label). ``skipped``: predictions not estimated, by
    reason (a prediction may have several). ``reason`` says why there are no estimates when
    ``status`` is not ``estimated``.
    """

    status: Status
    reason: str | None = None
    classes: tuple[str, ...] = ()
    threshold: float | None = None
    n_predictions: int = 0
    n_estimated: int = 0
    n_realized: int = 0
    unmatched_outcomes: int = 0
    min_rows: int = DEFAULT_MIN_ROWS
    skipped: dict[str, int] = field(default_factory=dict)
    metrics: tuple[MetricComparison, ...] = ()

    @property
    def alert(self) -> bool | None:
        """True when an estimate lies outside its reference thresholds; None without estimates."""
        return any(m.estimate.alert for m in self.metrics) if self.metrics else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``estimated`` object of a report group)."""
        return {
            "method": "cbpe",
            "status": self.status,
            "reason": self.reason,
            "kind": None
            if not self.classes
            else "binary"
            if len(self.classes) == 2
            else "multiclass",
            "classes": list(self.classes),
            "threshold": self.threshold,
            "n_predictions": self.n_predictions,
            "n_estimated": self.n_estimated,
            "n_realized": self.n_realized,
            "unmatched_outcomes": self.unmatched_outcomes,
            "min_rows": self.min_rows,
            "skipped": dict(self.skipped),
            "alert": self.alert,
            "metrics": {m.name: m.as_dict() for m in self.metrics},
        }


@dataclass(frozen=True)
class LoadedEstimator:
    """What a model's cbpe.json gave: the estimator, or why there is none."""

    model: CbpeModel | None
    status: Status
    reason: str | None


class Estimators:
    """The CBPE estimators of the models under ``models_dir``, read when first needed and again
    when their file changes (a refit under a running service is picked up). Thread-safe.

    ``min_rows``: fewest usable predictions a group needs for estimates (the drift windows'
    rule: below it the sampling error would swamp any comparison).
    """

    def __init__(self, models_dir: str | Path, *, min_rows: int = DEFAULT_MIN_ROWS) -> None:
        if min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {min_rows}")
        self.models_dir = Path(models_dir)
        self.min_rows = min_rows
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int] | None, LoadedEstimator]] = {}

    def load(self, model_name: str) -> LoadedEstimator:
        """The estimator of ``model_name``, or the status and reason why there is none."""
        path = cbpe_path(self.models_dir, model_name)
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._lock:
            cached = self._cache.get(model_name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        loaded = self._read(model_name, path, stamp)
        with self._lock:
            self._cache[model_name] = (stamp, loaded)
        return loaded

    @staticmethod
    def _read(model_name: str, path: Path, stamp: tuple[int, int] | None) -> LoadedEstimator:
        if stamp is None:
            return LoadedEstimator(
                None,
                "no_estimator",
                f"no estimator fitted: model {model_name!r} has no {path.name} (`infertrail "
                "train` fits the demos'; fit_cbpe(...).save(...) beside your model's profile)",
            )
        try:
            return LoadedEstimator(CbpeModel.load(path), "estimated", None)
        except CbpeFileError as exc:
            # The file's location is the operator's business, not the API client's.
            where = f"{model_name}/{path.name}"
            return LoadedEstimator(None, "estimator_unusable", str(exc).replace(str(path), where))


def prediction_window(rows: ScoredPredictions, classes: tuple[str, ...]) -> DriftWindow:
    """The predictions as the drift windows lay them out for ``classes`` (the estimator's):
    label codes (-1: not a class), scores and confidences (NaN: none) and every class's
    probability (NaN where a prediction has none for that class)."""
    n = len(rows)
    index = {c: j for j, c in enumerate(classes)}
    labels = np.fromiter((index.get(x, -1) if x else -1 for x in rows.label), np.int64, n)
    scores = np.array([np.nan if s is None else s for s in rows.score], dtype=np.float64)
    confidences = np.array([np.nan if c is None else c for c in rows.confidence], dtype=np.float64)
    probabilities = None
    if rows.labels_of:
        probabilities = np.full((n, len(classes)), np.nan)
        set_ids = np.array([-1 if i is None else i for i in rows.probability_labels], np.int64)
        for set_id, set_labels in rows.labels_of.items():
            width = len(set_labels) * 8  # float64 values, one per label
            whole = [
                i
                for i in np.flatnonzero(set_ids == set_id)
                if len(rows.probabilities[i] or b"") == width
            ]
            if not whole:
                continue
            blob = b"".join(rows.probabilities[i] or b"" for i in whole)
            values = np.frombuffer(blob, dtype="<f8").reshape(len(whole), len(set_labels))
            for k, label in enumerate(set_labels):
                if label in index:
                    probabilities[whole, index[label]] = values[:, k]
    return DriftWindow(
        rows=np.empty((n, 0)),
        labels=labels,
        confidences=confidences,
        scores=scores,
        probabilities=probabilities,
    )


def _artifact_rows(rows: ScoredPredictions, sha256: str) -> tuple[IntArray, dict[str, int]]:
    """The rows predicted by the artifact ``sha256`` (every row when it is ""), and the others
    counted: of another artifact, or indexed before the store kept sha256s."""
    if not sha256:
        return np.arange(len(rows), dtype=np.int64), {}
    shas = rows.model_sha256
    mine = np.fromiter((s == sha256 for s in shas), bool, len(shas))
    unknown = sum(s is None for s in shas)
    return np.flatnonzero(mine).astype(np.int64), {
        "other_artifact": len(shas) - int(mine.sum()) - unknown,
        "unknown_artifact": unknown,
    }


def estimate_group(
    rows: ScoredPredictions, estimators: Estimators, model_name: str
) -> EstimatedPerformance:
    """CBPE over ``rows`` (every prediction of one group) beside the realized metrics of the
    ones with a ``label`` outcome (see the module docstring)."""
    loaded = estimators.load(model_name)
    n_all = len(rows)
    model = loaded.model
    if model is None:
        return EstimatedPerformance(
            loaded.status, loaded.reason, n_predictions=n_all, min_rows=estimators.min_rows
        )
    base = EstimatedPerformance(
        "estimated",
        classes=model.classes,
        threshold=model.threshold,
        n_predictions=n_all,
        min_rows=estimators.min_rows,
    )
    mine, by_artifact = _artifact_rows(rows, model.model_sha256)
    if n_all and not mine.size:
        made_by = sorted({s[:12] + "..." for s in rows.model_sha256 if s})
        return replace(
            base,
            status="no_estimator",
            reason=(
                f"no estimator fitted for this artifact: {model_name}/cbpe.json was fitted for "
                f"sha256 {model.model_sha256[:12]}..., the predictions were made by "
                f"{', '.join(made_by) or 'artifacts the store did not record'}"
            ),
            skipped={"total": n_all, **by_artifact},
        )
    window = prediction_window(rows, model.classes).subset(mine)
    analyzer = CbpeAnalyzer(model, model.classes, min_rows=estimators.min_rows)
    predicted, scores, usable, unread = analyzer.inputs(window)
    n = int(usable.sum())
    skipped = {"total": n_all - n, **by_artifact, **unread}
    if n < estimators.min_rows:
        return replace(
            base,
            status="too_few_predictions",
            reason=(
                f"{n} predictions could be estimated, fewer than the {estimators.min_rows} an "
                "estimate needs"
            ),
            n_estimated=n,
            skipped=skipped,
        )
    estimate = model.estimate_codes(predicted[usable], scores[usable])
    index = {c: j for j, c in enumerate(model.classes)}
    outcomes = [rows.outcome_label[i] for i in mine]
    truth = np.fromiter((index.get(y, -1) if y else -1 for y in outcomes), np.int64, len(mine))
    has_outcome = np.fromiter((y is not None for y in outcomes), bool, len(mine))
    labelled = usable & (truth >= 0)
    m = int(labelled.sum())
    return replace(
        base,
        n_estimated=n,
        n_realized=m,
        unmatched_outcomes=int(np.sum(usable & has_outcome & (truth < 0))),
        skipped=skipped,
        metrics=tuple(
            _compare(model, name, e, truth[labelled], predicted[labelled], scores[labelled], m)
            for name, e in estimate.metrics.items()
        ),
    )


def _compare(
    model: CbpeModel,
    name: str,
    estimate: MetricEstimate,
    truth: IntArray,
    predicted: IntArray,
    scores: FloatArray,
    m: int,
) -> MetricComparison:
    """The metric realized on the ``m`` labelled rows, beside its estimate."""
    realized = (
        finite_or_none(realized_metric(name, truth, predicted, scores, len(model.classes)))
        if m
        else None
    )
    return MetricComparison(name, estimate, realized, model.metrics[name].sampling_error(m))
