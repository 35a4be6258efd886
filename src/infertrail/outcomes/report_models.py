"""The JSON of ``GET /v1/outcomes/performance`` (and ``outcomes report --format json``) as
pydantic models: the OpenAPI document's description of the answer, field by field.

:func:`~infertrail.outcomes.render.report_as_dict` builds the data; these models only describe
(and, as the route's response model, check) it. A metric that is undefined on the data is null.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BandOut",
    "EstimatedOut",
    "GroupOut",
    "MetricComparisonOut",
    "PerformanceReportOut",
    "ReliabilityBinOut",
]


class ReliabilityBinOut(BaseModel):
    lower: float = Field(description="Bin's lower edge (exclusive, but for the first bin).")
    upper: float = Field(description="Bin's upper edge (inclusive).")
    count: int
    mean_predicted: float = Field(description="Mean score (binary) or confidence in the bin.")
    observed: float = Field(description="Observed positive share (binary) or accuracy.")


class BandOut(BaseModel):
    lower: float
    upper: float | None = Field(description="Inclusive upper edge; null: no upper bound.")
    count: int
    outcome_rate: float | None = Field(description="The rate `kpi_rate` names, in the band.")
    mean_score: float | None


class MetricComparisonOut(BaseModel):
    estimated: float | None = Field(description="CBPE's estimate over the group's predictions.")
    sampling_error: float | None = Field(description="Standard error of the estimate.")
    lower_band: float | None = Field(description="Estimate - 3 standard errors (within 0..1).")
    upper_band: float | None = Field(description="Estimate + 3 standard errors (within 0..1).")
    lower_threshold: float | None = Field(description="Alert threshold from the reference.")
    upper_threshold: float | None = Field(description="Alert threshold from the reference.")
    alert: bool = Field(description="The estimate lies outside the thresholds.")
    realized: float | None = Field(
        description="The metric on the estimated predictions that have a label outcome, by "
        "the estimator's definitions."
    )
    realized_sampling_error: float | None = Field(
        description="Standard error of the realized value (its n_realized rows)."
    )
    difference: float | None = Field(description="estimated - realized.")
    beyond_sampling_error: bool | None = Field(
        description="|difference| exceeds 3 standard errors of the difference: more than "
        "noise, the estimator's premise fails (concept shift); trust the realized value."
    )


class EstimatedOut(BaseModel):
    method: Literal["cbpe"]
    status: Literal["estimated", "no_estimator", "estimator_unusable", "too_few_predictions"]
    reason: str | None = Field(description="Why there are no estimates (status not estimated).")
    kind: Literal["binary", "multiclass"] | None
    classes: list[str] = Field(description="The estimator's classes (binary: negative, positive).")
    threshold: float | None = Field(description="Binary: predicted positive at score >= this.")
    n_predictions: int = Field(description="The group's predictions, with outcomes or not.")
    n_estimated: int = Field(description="Of them, those CBPE could read (its artifact, scored).")
    n_realized: int = Field(description="Of the estimated, those with a label outcome.")
    unmatched_outcomes: int = Field(description="Estimated ones whose outcome is not a class.")
    min_rows: int = Field(description="Fewest estimated predictions for estimates.")
    skipped: dict[str, int] = Field(
        description="Predictions not estimated, by reason: total, other_artifact, "
        "unknown_artifact (indexed before sha256s were kept), unknown_label, no_score, "
        "no_probabilities, invalid_probability."
    )
    alert: bool | None = Field(description="Any estimate outside its thresholds.")
    metrics: dict[str, MetricComparisonOut] = Field(
        description="By metric: roc_auc, accuracy, f1, precision, recall (as fitted)."
    )


class GroupOut(BaseModel):
    model: str
    version: str
    window_start: str | None = Field(description="RFC 3339 start of the window (with every_s).")
    positive: str | None = Field(description="Binary: the outcome label the score predicts.")
    threshold: float
    mode: Literal["binary", "multiclass", "value"]
    n: int = Field(description="Joined outcomes.")
    n_used: int = Field(description="Joined outcomes usable for the metrics.")
    accuracy: float | None
    precision: float | None
    recall: float | None
    roc_auc: float | None
    brier: float | None
    positive_rate: float | None
    mean_value: float | None
    reliability: list[ReliabilityBinOut]
    kpi_rate: str = Field(description="What the bands' outcome_rate is.")
    by_score: list[BandOut]
    by_latency_ms: list[BandOut]
    estimated: EstimatedOut | None = Field(
        description="CBPE's estimates over all the group's predictions beside the realized "
        "metrics; null for business KPI kinds."
    )


class PerformanceReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    kind: str
    start: str | None = Field(alias="from", description="RFC 3339, inclusive; null: no bound.")
    end: str | None = Field(alias="to", description="RFC 3339, exclusive; null: no bound.")
    every_s: int | None
    groups: list[GroupOut]
