"""Model performance from outcomes joined to predictions, and the business KPI view.

How a model's output is read against its outcomes (:class:`OutcomeSpec`):

- **binary** (a ``positive`` label is given): the score is the probability of that outcome;
  the model predicts positive at ``score >= threshold``. Accuracy, precision, recall, ROC AUC,
  Brier score and reliability bins all use the score (rows without one are left out).
- **multiclass** (no positive label, outcomes are labels): the predicted label is compared with
  the outcome label; precision and recall are macro averages over the labels that occur. ROC AUC
  is null here (the estimated-versus-realized comparison has it, from the stored per-class
  probabilities). Brier score and reliability are *top-label*: the confidence against "was it
  right".
- **value** (outcomes are numbers only, e.g. revenue): no classification metrics; the mean.

Metrics come from scikit-learn; a metric that is undefined on the data (ROC AUC with one
class, precision with no predicted positive) is ``None``, never a made-up 0. Reliability bins
are scikit-learn's ``calibration_curve`` bins (uniform, each ``(lower, upper]``, the first
closed), with their counts. The KPI view gives, per score band and per latency bucket, the
outcome rate (positive share, accuracy or mean value, by mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from infertrail.config import Settings
from infertrail.outcomes.estimated import EstimatedPerformance, Estimators, estimate_group
from infertrail.outcomes.schema import DEFAULT_KIND
from infertrail.outcomes.store import JoinedRow, OutcomeStore
from infertrail.telemetry import conventions as c

__all__ = [
    "LATENCY_EDGES_MS",
    "Band",
    "GroupReport",
    "OutcomeSpec",
    "Performance",
    "PerformanceReport",
    "ReliabilityBin",
    "kpi_bands",
    "performance",
    "performance_report",
    "spec_from_settings",
    "unix_ns",
]

Mode = Literal["binary", "multiclass", "value"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Latency bucket upper bounds, ms: the inference duration histogram's own boundaries.
LATENCY_EDGES_MS: tuple[float, ...] = tuple(round(b * 1000, 6) for b in c.DURATION_BUCKETS_S)


@dataclass(frozen=True)
class OutcomeSpec:
    """How to read one model's predictions against its outcomes (see the module docstring)."""

    positive: str | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.positive is not None and not self.positive:
            raise ValueError("positive label must be non-empty (or None for multiclass)")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {self.threshold}")


def unix_ns(t: datetime) -> int:
    """An aware datetime as Unix nanoseconds (microsecond precision, exact)."""
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def spec_from_settings(settings: Settings) -> Callable[[str], OutcomeSpec]:
    """Per model name, its spec: the positive label from ``outcome_positive_labels``, if any."""
    labels = dict(settings.outcome_positive_labels)
    threshold = settings.outcome_threshold

    def spec(model: str) -> OutcomeSpec:
        return OutcomeSpec(labels.get(model), threshold)

    return spec


@dataclass(frozen=True)
class ReliabilityBin:
    """One calibration bin: predictions in (lower, upper], their mean, the observed rate."""

    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed: float


@dataclass(frozen=True)
class Performance:
    """Classification (or value) performance of one set of joined outcomes."""

    mode: Mode
    n: int  # joined outcomes
    n_used: int  # of which usable for the metrics (label and score/label present)
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    roc_auc: float | None = None
    brier: float | None = None
    positive_rate: float | None = None
    mean_value: float | None = None
    reliability: tuple[ReliabilityBin, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _defined(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int) -> tuple[ReliabilityBin, ...]:
    """Uniform bins over [0, 1] binned as ``sklearn.calibration.calibration_curve`` does."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=bins)
    sums = np.bincount(ids, weights=p, minlength=bins)
    hits = np.bincount(ids, weights=y, minlength=bins)
    return tuple(
        ReliabilityBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            count=int(counts[i]),
            mean_predicted=float(sums[i] / counts[i]),
            observed=float(hits[i] / counts[i]),
        )
        for i in range(bins)
        if counts[i]
    )


def performance(rows: Sequence[JoinedRow], spec: OutcomeSpec, *, bins: int = 10) -> Performance:
    """The metrics of ``rows`` (one model, one kind of outcome) under ``spec``."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    n = len(rows)
    labelled = [r for r in rows if r.outcome.label is not None]
    if not labelled:
        values = [r.outcome.value for r in rows if r.outcome.value is not None]
        mean = float(np.mean(values)) if values else None
        return Performance("value", n, len(values), mean_value=mean)
    if spec.positive is not None:
        used = [r for r in labelled if r.prediction.score is not None]
        if not used:
            return Performance("binary", n, 0)
        y = np.fromiter((r.outcome.label == spec.positive for r in used), bool, len(used))
        p = np.fromiter((r.prediction.score for r in used), float, len(used))
        y_int = y.astype(np.int64)
        pred = (p >= spec.threshold).astype(np.int64)
        both = 0 < y_int.sum() < len(used)
        return Performance(
            "binary",
            n,
            len(used),
            accuracy=float(accuracy_score(y_int, pred)),
            precision=_defined(precision_score(y_int, pred, zero_division=np.nan)),
            recall=_defined(recall_score(y_int, pred, zero_division=np.nan)),
            roc_auc=float(roc_auc_score(y_int, p)) if both else None,
            brier=float(brier_score_loss(y_int, np.clip(p, 0.0, 1.0), pos_label=1)),
            positive_rate=float(y.mean()),
            reliability=reliability_bins(y_int, np.clip(p, 0.0, 1.0), bins),
        )
    used = [r for r in labelled if r.prediction.label is not None]
    if not used:
        return Performance("multiclass", n, 0)
    truth = [str(r.outcome.label) for r in used]
    predicted = [str(r.prediction.label) for r in used]
    correct = np.fromiter((t == q for t, q in zip(truth, predicted, strict=True)), np.int64)
    confident = [i for i, r in enumerate(used) if r.prediction.confidence is not None]
    brier = None
    reliability: tuple[ReliabilityBin, ...] = ()
    if confident:
        conf = np.clip(np.array([used[i].prediction.confidence for i in confident], float), 0, 1)
        hit = correct[confident]
        brier = float(brier_score_loss(hit, conf, pos_label=1))
        reliability = reliability_bins(hit, conf, bins)
    return Performance(
        "multiclass",
        n,
        len(used),
        accuracy=float(accuracy_score(truth, predicted)),
        precision=_defined(
            precision_score(truth, predicted, average="macro", zero_division=np.nan)
        ),
        recall=_defined(recall_score(truth, predicted, average="macro", zero_division=np.nan)),
        brier=brier,
        reliability=reliability,
    )


@dataclass(frozen=True)
class Band:
    """One score band or latency bucket of the KPI view: (lower, upper], count, outcome rate."""

    lower: float
    upper: float
    count: int
    outcome_rate: float | None
    mean_score: float | None


def _rate(rows: Sequence[JoinedRow], spec: OutcomeSpec, mode: Mode) -> float | None:
    if mode == "value":
        values = [r.outcome.value for r in rows if r.outcome.value is not None]
        return float(np.mean(values)) if values else None
    labelled = [r for r in rows if r.outcome.label is not None]
    if not labelled:
        return None
    if mode == "binary":
        return sum(r.outcome.label == spec.positive for r in labelled) / len(labelled)
    return sum(r.outcome.label == r.prediction.label for r in labelled) / len(labelled)


def _band_score(r: JoinedRow, mode: Mode) -> float | None:
    # Binary models are banded by their score; others by their confidence.
    return r.prediction.score if mode == "binary" else r.prediction.confidence


def kpi_bands(
    rows: Sequence[JoinedRow],
    spec: OutcomeSpec,
    mode: Mode,
    *,
    by: Literal["score", "latency"],
    edges: Sequence[float],
) -> list[Band]:
    """The outcome rate per band of score (or confidence) or of latency, ``(lower, upper]``."""
    uppers = np.asarray(edges, dtype=float)
    if uppers.ndim != 1 or len(uppers) == 0 or np.any(np.diff(uppers) <= 0) or uppers[0] <= 0:
        raise ValueError(f"band edges must be positive and increasing, got {list(edges)}")
    if by == "latency":  # open-ended: the last bucket takes everything slower
        uppers = np.concatenate((uppers, [math.inf]))
    lowers = np.concatenate(([0.0], uppers[:-1]))
    members: list[list[JoinedRow]] = [[] for _ in uppers]
    for r in rows:
        x = r.prediction.latency_ms if by == "latency" else _band_score(r, mode)
        if x is not None:
            # (lower, upper] with the first band closed, as calibration_curve bins
            members[int(np.searchsorted(uppers[:-1], x))].append(r)
    out = []
    for lo, hi, band in zip(lowers, uppers, members, strict=True):
        scores = [s for r in band if (s := _band_score(r, mode)) is not None]
        mean = float(np.mean(scores)) if scores else None
        out.append(Band(float(lo), float(hi), len(band), _rate(band, spec, mode), mean))
    return out


@dataclass
class GroupReport:
    """Performance and KPI view of one model version (in one time window, if windowed).

    ``estimated``: CBPE's estimates over every prediction of the group beside the realized
    metrics (:mod:`infertrail.outcomes.estimated`); None when the report was made without
    estimators or for a business KPI kind (estimates are of the model's ground truth).
    """

    model: str
    version: str
    window_start_ns: int | None
    spec: OutcomeSpec
    performance: Performance
    by_score: list[Band]
    by_latency: list[Band]
    estimated: EstimatedPerformance | None = None


@dataclass
class PerformanceReport:
    """Every (model, version, window) group with outcomes of ``kind`` in the period."""

    kind: str
    start_ns: int | None
    end_ns: int | None
    every_s: int | None
    groups: list[GroupReport] = field(default_factory=list)


def performance_report(
    store: OutcomeStore,
    spec_for: Callable[[str], OutcomeSpec],
    *,
    kind: str = "label",
    model: str | None = None,
    version: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    every_s: int | None = None,
    bins: int = 10,
    estimators: Estimators | None = None,
) -> PerformanceReport:
    """Join, group by model, version (and window of ``every_s`` by prediction time), measure.

    With ``estimators`` and ``kind`` label, each group also gets CBPE's estimates over all its
    predictions, labelled or not, beside the realized metrics (``GroupReport.estimated``).
    """
    if every_s is not None and every_s < 1:
        raise ValueError(f"every_s must be >= 1 second, got {every_s}")
    rows = store.joined(kind=kind, model=model, version=version, start_ns=start_ns, end_ns=end_ns)
    groups: dict[tuple[str, str, int | None], list[JoinedRow]] = {}
    step = None if every_s is None else every_s * 1_000_000_000
    for r in rows:
        window = None if step is None else r.prediction.ts_ns // step * step
        groups.setdefault((r.prediction.model, r.prediction.version, window), []).append(r)
    report = PerformanceReport(kind, start_ns, end_ns, every_s)
    score_edges = list(np.linspace(0.0, 1.0, bins + 1)[1:])
    for (m, v, window), members in sorted(groups.items(), key=lambda kv: _order(kv[0])):
        spec = spec_for(m)
        perf = performance(members, spec, bins=bins)
        report.groups.append(
            GroupReport(
                model=m,
                version=v,
                window_start_ns=window,
                spec=spec,
                performance=perf,
                by_score=kpi_bands(members, spec, perf.mode, by="score", edges=score_edges),
                by_latency=kpi_bands(
                    members, spec, perf.mode, by="latency", edges=LATENCY_EDGES_MS
                ),
            )
        )
    if estimators is not None and kind == DEFAULT_KIND:
        _add_estimates(store, report, estimators, step)
    return report


def _add_estimates(
    store: OutcomeStore, report: PerformanceReport, estimators: Estimators, step: int | None
) -> None:
    """Fill each group's ``estimated``: one read of the store per model version."""
    by_version: dict[tuple[str, str], list[GroupReport]] = {}
    for g in report.groups:
        by_version.setdefault((g.model, g.version), []).append(g)
    for (model, version), groups in by_version.items():
        rows = store.scored_predictions(
            model=model,
            version=version,
            kind=DEFAULT_KIND,
            start_ns=report.start_ns,
            end_ns=report.end_ns,
        )
        members: dict[int | None, list[int]] = {}
        for i, ts in enumerate(rows.ts_ns):
            members.setdefault(None if step is None else ts // step * step, []).append(i)
        for g in groups:
            window_rows = rows.subset(members.get(g.window_start_ns, []))
            g.estimated = estimate_group(window_rows, estimators, model)


def _order(key: tuple[str, str, int | None]) -> tuple[str, str, int]:
    return key[0], key[1], -1 if key[2] is None else key[2]
