"""The SLOs as Prometheus recording and alerting rules, in Sloth's shape.

Per SLO the recording and alerting rules ``sloth generate`` writes, with its record names and
labels, so Sloth's Grafana dashboards and routing work unchanged:

* SLI recordings ``slo:sli_error:ratio_rate<W>`` for W in 5m, 30m, 1h, 2h, 6h, 1d, 3d and the
  SLO window, labelled ``sloth_id``, ``sloth_service``, ``sloth_slo``, ``sloth_window`` and the
  SLO's labels;
* meta recordings: ``slo:objective:ratio``, ``slo:error_budget:ratio``,
  ``slo:time_period:days``, ``slo:current_burn_rate:ratio``, ``slo:period_burn_rate:ratio``,
  ``slo:period_error_budget_remaining:ratio`` and ``sloth_slo_info``;
* two alerts sharing the SLO's alert name, ``sloth_severity`` page (1h/5m at 14.4x or 6h/30m at
  6x) and ticket (1d/2h at 3x or 3d/6h at 1x).

One difference in layout: Sloth puts the SLI recordings, the meta recordings and the alerts in
three groups; here they are one group per SLO, in that order. Prometheus evaluates the rules
of a group one after the other at the same timestamp, so the alerts read this evaluation's
ratios; separate groups run on their own schedules and an alert can read ratios one
evaluation interval old.

The SLI queries read the series infertrail puts on ``/metrics``: the duration histogram
(latency), the prediction and error counters (availability), the confidence histogram
(confidence), the drift monitor's OOD-rate gauge (ood), and the GenAI server histograms
``gen_ai_server_time_to_first_token_seconds`` (ttft) and
``gen_ai_server_time_per_output_token_seconds`` (tokens_per_second). Those carry the GenAI
conventions' attributes, not infertrail's: an LLM SLO's model is matched as
``gen_ai_request_model``, the name the generation was asked of (the ``ModelInfo`` name of a
:mod:`infertrail.genai` call). Two more deliberate differences
from Sloth: the SLO-window ratio is computed from the counters over the whole window (by
occurrences, as the in-process evaluator does) rather than as the time average of the 5m ratio;
and an ``ood`` ratio is the time average of the per-window OOD rate gauge, which equals the
in-process count (OOD inputs over sampled inputs) when drift windows are of equal size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from infertrail.alerting.signals import model_matcher
from infertrail.slo.alerts import alert_labels, alert_severity, alert_spec
from infertrail.slo.burnrate import RATIO_WINDOWS_S, SEVERITIES, WORKBOOK_POLICY, AlertSeverity
from infertrail.slo.definitions import (
    SLO,
    AvailabilitySLI,
    ConfidenceSLI,
    LatencySLI,
    SLOSet,
    TimeToFirstTokenSLI,
    TokensPerSecondSLI,
    format_duration,
)

DURATION = "infertrail_inference_duration_seconds"
CONFIDENCE = "infertrail_prediction_confidence"
PREDICTIONS = "infertrail_predictions_total"
ERRORS = "infertrail_inference_errors_total"
OOD_RATE = "infertrail_drift_ood_rate"
TTFT = "gen_ai_server_time_to_first_token_seconds"
TPOT = "gen_ai_server_time_per_output_token_seconds"
GENAI_MODEL_LABEL = "gen_ai_request_model"
SPEC_VERSION = "infertrail/v1"
ID_LABELS = ("sloth_id", "sloth_service", "sloth_slo")


def _le(bound: float) -> str:
    """A bucket bound as the ``le`` label on /metrics (Go's shortest float form, e.g. ``1.0``)."""
    return repr(float(bound))


def _selector(*matchers: str) -> str:
    present = [m for m in matchers if m]
    return "{" + ",".join(present) + "}" if present else ""


def genai_model_matcher(model: str) -> str:
    """The matcher of ``model`` on the GenAI histograms ("" for every model, ``*``)."""
    return "" if model == "*" else f"{GENAI_MODEL_LABEL}={json.dumps(model)}"


def sli_error_query(slo: SLO, window: str) -> str:
    """PromQL for the SLO's error ratio over ``window`` (e.g. ``5m``), ``1 - good/total``."""
    m = model_matcher(slo.model)
    sli = slo.sli
    if isinstance(sli, TimeToFirstTokenSLI | TokensPerSecondSLI):
        # Thresholds are bucket boundaries (validated with the definitions), so le counts them.
        if isinstance(sli, TimeToFirstTokenSLI):
            metric, bound = TTFT, sli.threshold_seconds
        else:
            metric, bound = TPOT, sli.seconds_per_token
        g = genai_model_matcher(slo.model)
        le = f'le="{_le(bound)}"'
        good = f"sum(rate({metric}_bucket{_selector(g, le)}[{window}]))"
        total = f"sum(rate({metric}_count{_selector(g)}[{window}]))"
    elif isinstance(sli, LatencySLI):
        le = f'le="{_le(sli.threshold_seconds)}"'
        good = f"sum(rate({DURATION}_bucket{_selector(m, le)}[{window}]))"
        total = f"sum(rate({DURATION}_count{_selector(m)}[{window}]))"
    elif isinstance(sli, AvailabilitySLI):
        excluded = (
            f'error_type!~"{"|".join(sli.exclude_error_types)}"' if sli.exclude_error_types else ""
        )
        # A counter with no increment yet has no series: "or vector(0)" keeps the sum defined.
        good = f"(sum(rate({PREDICTIONS}{_selector(m)}[{window}])) or vector(0))"
        bad = f"(sum(rate({ERRORS}{_selector(m, excluded)}[{window}])) or vector(0))"
        total = f"({good} + {bad})"
    elif isinstance(sli, ConfidenceSLI):
        le = f'le="{_le(sli.threshold)}"'
        total = f"sum(rate({CONFIDENCE}_count{_selector(m)}[{window}]))"
        low = f"sum(rate({CONFIDENCE}_bucket{_selector(m, le)}[{window}]))"
        good = f"({total} - {low})"
    else:
        return f"avg(avg_over_time({OOD_RATE}{_selector(m)}[{window}]))"
    return f"1 - (\n  {good}\n  /\n  {total}\n)"


def _ids(slo: SLO) -> dict[str, str]:
    return {"sloth_id": slo.slo_id, "sloth_service": slo.service, "sloth_slo": slo.name}


def _id_selector(slo: SLO) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in _ids(slo).items()) + "}"


def _sli_rules(slo: SLO) -> list[dict[str, Any]]:
    rules = []
    for w in (*RATIO_WINDOWS_S, slo.window_s):
        window = format_duration(w)
        rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{window}",
                "expr": sli_error_query(slo, window),
                "labels": {**slo.labels, **_ids(slo), "sloth_window": window},
            }
        )
    return rules


def _meta_rules(slo: SLO) -> list[dict[str, Any]]:
    ids = _id_selector(slo)
    labels = {**slo.labels, **_ids(slo)}
    on = "on(sloth_id, sloth_slo, sloth_service) group_left"
    period = format_duration(slo.window_s)

    def rec(name: str, expr: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
        return {"record": name, "expr": expr, "labels": {**labels, **(extra or {})}}

    return [
        rec("slo:objective:ratio", f"vector({slo.target!r})"),
        rec("slo:error_budget:ratio", f"vector({slo.error_budget!r})"),
        rec("slo:time_period:days", f"vector({slo.window_s // 86400})"),
        rec(
            "slo:current_burn_rate:ratio",
            f"slo:sli_error:ratio_rate5m{ids}\n/ {on}\nslo:error_budget:ratio{ids}",
        ),
        rec(
            "slo:period_burn_rate:ratio",
            f"slo:sli_error:ratio_rate{period}{ids}\n/ {on}\nslo:error_budget:ratio{ids}",
        ),
        rec(
            "slo:period_error_budget_remaining:ratio",
            f"1 - slo:period_burn_rate:ratio{ids}",
        ),
        rec(
            "sloth_slo_info",
            "vector(1)",
            {
                "sloth_mode": "infertrail",
                "sloth_objective": f"{slo.objective:g}",
                "sloth_spec": SPEC_VERSION,
                "sloth_version": "infertrail",
            },
        ),
    ]


def alert_expr(slo: SLO, severity: AlertSeverity) -> str:
    """The alert condition: any pair of the severity with both windows over the threshold."""
    ids = _id_selector(slo)
    budget = repr(slo.error_budget)
    pairs = []
    for a in WORKBOOK_POLICY:
        if a.severity != severity:
            continue
        t = f"({a.factor:g} * {budget})"
        short, long = format_duration(a.short_s), format_duration(a.long_s)
        # max ... without (sloth_window): one alert identity whichever pair fires.
        pairs.append(
            "(\n"
            f"    max(slo:sli_error:ratio_rate{short}{ids} > {t}) without (sloth_window)\n"
            "    and\n"
            f"    max(slo:sli_error:ratio_rate{long}{ids} > {t}) without (sloth_window)\n"
            ")"
        )
    return "\nor\n".join(pairs)


def _alert_rules(slo: SLO) -> list[dict[str, Any]]:
    rules = []
    for sev in SEVERITIES:
        spec = alert_spec(slo, sev)
        if spec.disable:
            continue
        labels = {**alert_labels(slo, sev), "severity": alert_severity(slo, sev)}
        annotations = {
            "title": (
                f"({sev}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error "
                "budget burn rate is too fast."
            ),
            **{
                k: _go_literal(v)
                for k, v in {**slo.alerting.annotations, **spec.annotations}.items()
            },
        }
        rules.append(
            {
                "alert": slo.alert_name,
                "expr": alert_expr(slo, sev),
                "labels": labels,
                "annotations": annotations,
            }
        )
    return rules


def _go_literal(text: str) -> str:
    # Annotations in the definitions file are plain text; "{{" would open a Go action.
    return text.replace("{{", '{{ "{{" }}')


def prometheus_slo_rules(slos: SLOSet | Iterable[SLO], *, source: str | None = None) -> str:
    """A Prometheus rule file (YAML) with the recordings and alerts of every SLO."""
    groups = [
        {
            "name": f"infertrail-slo-{slo.slo_id}",
            "rules": [*_sli_rules(slo), *_meta_rules(slo), *_alert_rules(slo)],
        }
        for slo in (slos.slos if isinstance(slos, SLOSet) else slos)
    ]
    header = (
        f"# Generated by `infertrail export slo-rules`{f' from {source}' if source else ''}.\n"
        "# Sloth-compatible SLO rules; edit the SLO definitions, not this file.\n"
    )
    return header + yaml.dump(
        {"groups": groups}, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=1000
    )


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the PromQL) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)
