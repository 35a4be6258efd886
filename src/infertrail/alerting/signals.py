"""Signal keys and the Prometheus series behind each: one table for the engine's docs and export.

In process, a signal is just a key in the values handed to ``AlertEngine.evaluate``; any key
works there (``alerting.sources`` builds them from drift reports). For Prometheus and Grafana the
same key must become PromQL over the metrics on ``/metrics``: the table below gives it for the
signals infertrail produces (the drift gauges of ``monitoring.metrics`` and the inference
histograms of ``telemetry``); a rule on any other signal sets ``promql`` itself. Every series
carries the model as the label ``infertrail_model_name`` (attribute ``infertrail.model.name``).

PromQL templates use ``$sel`` for a whole model selector (``{...}`` or nothing), ``$and_sel``
for the model matcher after other matchers (``,...`` or nothing) and ``$window`` for the range
of rate windows (the evaluation window, e.g. ``60s``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from string import Template

MODEL_LABEL = "infertrail_model_name"
FEATURE_LABEL = "feature"  # per-feature drift gauges (monitoring.metrics.FEATURE)


@dataclass(frozen=True)
class SignalMetric:
    """How one signal reads on ``/metrics``."""

    key: str
    description: str
    promql: str
    unit: str = "none"

    def render(self, matcher: str, window: str) -> str:
        """The PromQL with ``matcher`` (e.g. ``infertrail_model_name="x"``, or "") filling in."""
        return Template(self.promql).substitute(
            sel=f"{{{matcher}}}" if matcher else "",
            and_sel=f",{matcher}" if matcher else "",
            window=window,
        )


_P = (
    "histogram_quantile({q}, sum by (infertrail_model_name, le) "
    "(rate(infertrail_inference_duration_seconds_bucket$sel[$window])))"
)
_RATE = "sum by (infertrail_model_name) (rate({metric}$sel[$window]))"

SIGNALS: dict[str, SignalMetric] = {
    s.key: s
    for s in (
        SignalMetric(
            "drift.score",
            "Mean per-feature drift distance of the last closed window.",
            "infertrail_drift_score$sel",
        ),
        SignalMetric(
            "drift.share_drifted",
            "Share of features judged drifted in the last closed window, 0..1.",
            "infertrail_drift_share_drifted$sel",
            "percentunit",
        ),
        SignalMetric(
            "drift.dataset_drift",
            "1 when the last window's share of drifted features reached the dataset threshold.",
            "infertrail_drift_dataset_drift$sel",
        ),
        SignalMetric(
            "drift.feature_distance_max",
            "Largest per-feature drift distance in the last closed window.",
            "max by (infertrail_model_name) (infertrail_drift_feature_distance$sel)",
        ),
        SignalMetric(
            "drift.prediction_label_distance",
            "Drift distance of the predicted label mix in the last window (label-mix shift).",
            'infertrail_drift_prediction_distance{output="label"$and_sel}',
        ),
        SignalMetric(
            "drift.prediction_confidence_distance",
            "Drift distance of the confidence distribution in the last window.",
            'infertrail_drift_prediction_distance{output="confidence"$and_sel}',
        ),
        SignalMetric(
            "ood.rate",
            "Share of inputs judged out of distribution in the last window, 0..1.",
            "infertrail_drift_ood_rate$sel",
            "percentunit",
        ),
        SignalMetric(
            "prediction.confidence_mean",
            "Mean prediction confidence in the last window.",
            "infertrail_drift_confidence_mean$sel",
            "percentunit",
        ),
        SignalMetric(
            "prediction.low_confidence_rate",
            "Share of predictions below the low-confidence threshold in the last window.",
            "infertrail_drift_confidence_low_rate$sel",
            "percentunit",
        ),
        SignalMetric(
            "error.rate",
            "Failed or rejected requests over all requests in the rate window.",
            _RATE.format(metric="infertrail_inference_errors_total")
            + " / ("
            + _RATE.format(metric="infertrail_predictions_total")
            + " + "
            + _RATE.format(metric="infertrail_inference_errors_total")
            + ")",
            "percentunit",
        ),
        SignalMetric("latency.p50", "Median inference duration.", _P.format(q=0.5), "s"),
        SignalMetric("latency.p99", "99th percentile inference duration.", _P.format(q=0.99), "s"),
    )
}


#: Signal key prefixes of the drift window analyzers (estimates, data quality, multivariate,
#: prompt embeddings).
ANALYZER_PREFIXES = ("estimated.", "quality.", "multivariate.", "embedding.")
_ANALYZER_KEY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")


class UnknownSignalError(ValueError):
    """A rule's signal has no Prometheus form and the rule gives no ``promql``."""


def model_matcher(model: str) -> str:
    """The PromQL label matcher for ``model`` ("" for every model, ``*``)."""
    if model == "*":
        return ""
    # PromQL string literals take Go escapes; JSON's are a compatible subset for names.
    return f"{MODEL_LABEL}={json.dumps(model)}"


def signal_promql(signal: str, model: str, window_seconds: int, *, rule: str = "") -> str:
    """PromQL for ``signal`` of ``model`` (``*``: every model) over rate windows of that length."""
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be >= 1, got {window_seconds}")
    metric = SIGNALS.get(signal) or analyzer_signal(signal)
    if metric is None:
        who = f"rule {rule!r}: " if rule else ""
        known = ", ".join(sorted(SIGNALS))
        raise UnknownSignalError(
            f"{who}signal {signal!r} has no Prometheus metric; set promql on the rule "
            f"or use one of: {known}, or a window analyzer's {', '.join(ANALYZER_PREFIXES)}*"
        )
    return metric.render(model_matcher(model), f"{window_seconds}s")


def analyzer_signal(signal: str) -> SignalMetric | None:
    """A window analyzer's signal (``estimated.accuracy``, ``quality.missing_share_max``, ...):
    the whole window's value on the ``infertrail_drift_window_signal`` gauge (a slice's carries
    a ``slice`` label, so ``slice=""`` leaves them out). None for any other key."""
    if not signal.startswith(ANALYZER_PREFIXES) or not _ANALYZER_KEY.fullmatch(signal):
        return None
    return SignalMetric(
        signal,
        "A window analyzer's signal of the last closed drift window.",
        f'infertrail_drift_window_signal{{signal="{signal}",slice=""$and_sel}}',
    )
