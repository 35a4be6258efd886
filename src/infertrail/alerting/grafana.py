"""A Grafana dashboard for the inference and drift metrics, built with grafana-foundation-sdk.

Panels: drift score, share of drifted features, per-feature drift, prediction drift, confidence
(mean and low-confidence share), out-of-distribution rate, latency p50/p99, error rate. Each
rule on a panel's signal draws its threshold there as a dashed line (coloured by severity) and
is listed in the panel's description; rules on other signals (with their own ``promql``) get a
panel each. A ``model`` variable filters every query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

from infertrail.alerting.rules import AlertRule, RuleSet, rule_list
from infertrail.alerting.signals import FEATURE_LABEL, MODEL_LABEL, SIGNALS

DASHBOARD_UID = "infertrail-inference"
_MATCHER = f'{MODEL_LABEL}=~"$model"'
_WINDOW = "$__rate_interval"
_MODEL = f"{{{{{MODEL_LABEL}}}}}"  # legend: the series' model label
_SEVERITY_COLOUR = {"critical": "red", "error": "orange", "warning": "yellow", "info": "blue"}


@dataclass(frozen=True)
class _PanelSpec:
    title: str
    signals: tuple[str, ...]  # alert rules on these signals draw thresholds here
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str
    description: str


def _signals_panel(
    title: str, unit: str, *signals: str, legends: tuple[str, ...] = ()
) -> _PanelSpec:
    """A panel plotting the given signals, each as the table in ``signals`` defines it."""
    targets = tuple(
        (SIGNALS[s].render(_MATCHER, _WINDOW), f"{prefix}{_MODEL}")
        for s, prefix in zip(signals, legends or ("",) * len(signals), strict=True)
    )
    description = " ".join(f"{s}: {SIGNALS[s].description}" for s in signals)
    return _PanelSpec(title, signals, targets, unit, description)


def _standard_panels() -> list[_PanelSpec]:
    feature = _PanelSpec(
        "Per-feature drift distance",
        ("drift.feature_distance_max",),
        (
            (
                f"infertrail_drift_feature_distance{{{_MATCHER}}}",
                f"{_MODEL} {{{{{FEATURE_LABEL}}}}}",
            ),
        ),
        "none",
        "Drift distance of each feature in the last closed window.",
    )
    return [
        _signals_panel("Drift score", "none", "drift.score"),
        _signals_panel("Share of drifted features", "percentunit", "drift.share_drifted"),
        feature,
        _signals_panel(
            "Prediction drift", "none",
            "drift.prediction_label_distance", "drift.prediction_confidence_distance",
            legends=("label ", "confidence "),
        ),
        _signals_panel(
            "Confidence", "percentunit",
            "prediction.confidence_mean", "prediction.low_confidence_rate",
            legends=("mean ", "low-confidence share "),
        ),
        _signals_panel("Out-of-distribution rate", "percentunit", "ood.rate"),
        _signals_panel(
            "Inference latency p50 / p99", "s", "latency.p50", "latency.p99",
            legends=("p50 ", "p99 "),
        ),
        _signals_panel("Error rate", "percentunit", "error.rate"),
    ]  # fmt: skip


def grafana_dashboard(
    rules: RuleSet | Sequence[AlertRule],
    *,
    title: str = "infertrail: inference and drift",
    datasource_uid: str = "prometheus",
) -> dict[str, Any]:
    """The dashboard as Grafana JSON (a dict ready for ``json.dumps`` or the HTTP API)."""
    rules = rule_list(rules)
    ds = DataSourceRef(type_val="prometheus", uid=datasource_uid)
    dash = (
        dashboard_builders.Dashboard(title)
        .uid(DASHBOARD_UID)
        .tags(["infertrail", "ml", "drift"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(
            dashboard_builders.QueryVariable("model")
            .label("Model")
            .datasource(ds)
            .query(f"label_values(infertrail_predictions_total, {MODEL_LABEL})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    panels = _standard_panels()
    covered = {s for p in panels for s in p.signals}
    for rule in rules:
        if rule.signal not in covered and rule.promql:
            panels.append(
                _PanelSpec(f"Rule {rule.name}: {rule.signal}", (rule.signal,),
                           ((rule.promql, _MODEL),), "none",
                           f"The PromQL of alert rule {rule.name}.")
            )  # fmt: skip
    for spec in panels:
        dash = dash.with_panel(_panel(spec, [r for r in rules if r.signal in spec.signals], ds))
    encoded: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(dash.build()))
    return encoded


def _panel(spec: _PanelSpec, rules: list[AlertRule], ds: DataSourceRef) -> timeseries.Panel:
    description = spec.description
    if rules:
        listed = "; ".join(
            f"{r.name} ({r.model}): {r.comparison} {r.threshold:g} for {r.for_windows} "
            f"window(s), {r.severity}"
            for r in rules
        )
        description += f" Alert rules: {listed}."
    panel = (
        timeseries.Panel()
        .title(spec.title)
        .description(description)
        .unit(spec.unit)
        .datasource(ds)
        .height(8)
        .span(12)
    )
    for i, (expr, legend) in enumerate(spec.targets):
        panel = panel.with_target(
            prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        )
    if rules:
        steps = [Threshold(value=None, color="green")] + [
            Threshold(value=r.threshold, color=_SEVERITY_COLOUR[r.severity])
            for r in sorted(rules, key=lambda r: r.threshold)
        ]
        panel = panel.thresholds(
            dashboard_builders.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)
        ).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    return panel
