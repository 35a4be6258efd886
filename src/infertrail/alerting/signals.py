"""Signal keys and the Prometheus series behind each: one table for the engine's docs and export.

In process, a signal is just a key in the values handed to ``AlertEngine.evaluate``; any key
works there. For Prometheus and Grafana the same key must become PromQL over the metrics on
``/metrics``. The table below gives that PromQL for the signals infertrail produces; a rule on
any other signal sets ``promql`` itself. Every series carries the model as the label
``infertrail_model_name`` (the OpenTelemetry attribute ``infertrail.model.name``).

PromQL templates use ``$sel`` for the label selector (the model filter, or nothing) and
``$window`` for the range of rate windows (the evaluation window, e.g. ``60s``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Template

MODEL_LABEL = "infertrail_model_name"
FEATURE_LABEL = "infertrail_feature_name"


@dataclass(frozen=True)
class SignalMetric:
    """How one signal reads on ``/metrics``."""

    key: str
    description: str
    promql: str
    unit: str = "none"

    def render(self, sel: str, window: str) -> str:
        """The PromQL with ``sel`` as label selector and ``window`` as rate range."""
        return Template(self.promql).substitute(sel=sel, window=window)


_RATE = "sum by (infertrail_model_name) (rate({metric}$sel[$window]))"
_P = (
    "histogram_quantile({q}, sum by (infertrail_model_name, le) "
    "(rate(infertrail_inference_duration_seconds_bucket$sel[$window])))"
)

SIGNALS: dict[str, SignalMetric] = {
    s.key: s
    for s in (
        SignalMetric(
            "drift.score",
            "Dataset drift score of the last closed window (summary distance).",
            "infertrail_drift_score$sel",
        ),
        SignalMetric(
            "drift.share_drifted",
            "Share of features that drifted in the last closed window, 0..1.",
            "infertrail_drift_share_drifted$sel",
            "percentunit",
        ),
        SignalMetric(
            "drift.feature_distance_max",
            "Largest per-feature drift distance in the last closed window.",
            "max by (infertrail_model_name) (infertrail_drift_feature_distance$sel)",
        ),
        SignalMetric(
            "ood.rate",
            "Share of inputs out of the reference distribution in the last window, 0..1.",
            "infertrail_ood_rate$sel",
            "percentunit",
        ),
        SignalMetric(
            "prediction.confidence_mean",
            "Mean confidence of the predicted label over the window.",
            _RATE.format(metric="infertrail_prediction_confidence_sum")
            + " / "
            + _RATE.format(metric="infertrail_prediction_confidence_count"),
            "percentunit",
        ),
        SignalMetric(
            "error.rate",
            "Failed or rejected requests over all requests in the window.",
            _RATE.format(metric="infertrail_inference_errors_total")
            + " / ("
            + _RATE.format(metric="infertrail_predictions_total")
            + " + "
            + _RATE.format(metric="infertrail_inference_errors_total")
            + ")",
            "percentunit",
        ),
        SignalMetric(
            "latency.p50", "Median inference duration over the window.", _P.format(q=0.5), "s"
        ),
        SignalMetric("latency.p99", "99th percentile inference duration.", _P.format(q=0.99), "s"),
    )
}


class UnknownSignalError(ValueError):
    """A rule's signal has no Prometheus form and the rule gives no ``promql``."""


def selector(model: str) -> str:
    """The PromQL label selector for ``model`` ("" for every model)."""
    if model == "*":
        return ""
    # PromQL string literals take Go escapes; JSON's are a compatible subset for names.
    return "{" + MODEL_LABEL + "=" + json.dumps(model) + "}"


def signal_promql(signal: str, model: str, window_seconds: int, *, rule: str = "") -> str:
    """PromQL for ``signal`` of ``model`` (``*``: every model) over rate windows of that length."""
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be >= 1, got {window_seconds}")
    metric = SIGNALS.get(signal)
    if metric is None:
        who = f"rule {rule!r}: " if rule else ""
        known = ", ".join(sorted(SIGNALS))
        raise UnknownSignalError(
            f"{who}signal {signal!r} has no Prometheus metric; set promql on the rule "
            f"or use one of: {known}"
        )
    return metric.render(selector(model), f"{window_seconds}s")
