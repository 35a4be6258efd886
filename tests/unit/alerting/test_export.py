"""Export: Prometheus rule files and the Grafana dashboard from the same rules; the CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from infertrail.alerting.cli import export
from infertrail.alerting.export import (
    ExportError,
    format_duration,
    grafana_dashboard,
    prometheus_rules,
)
from infertrail.alerting.rules import load_rules
from infertrail.alerting.signals import SIGNALS, UnknownSignalError, model_matcher, signal_promql
from tests.unit.alerting.helpers import rule

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "alert-rules.toml"


def exported(*rules: Any, window: int = 60) -> list[dict[str, Any]]:
    doc = yaml.safe_load(prometheus_rules(list(rules), window))
    assert [g["name"] for g in doc["groups"]] == ["infertrail"]
    out: list[dict[str, Any]] = doc["groups"][0]["rules"]
    return out


def test_drift_rule_becomes_an_alert_held_for_n_windows() -> None:
    [alert] = exported(rule(labels={"team": "vision"}), window=300)
    assert alert == {
        "alert": "digits-drift",
        "expr": '(infertrail_drift_share_drifted{infertrail_model_name="digits"}) > 0.3',
        "for": "15m",
        "keep_firing_for": "10m",
        "labels": {
            "severity": "critical",
            "signal": "drift.share_drifted",
            "model": "digits",
            "team": "vision",
        },
        "annotations": {
            "summary": 'digits-drift firing: drift.share_drifted = {{ printf "%.4g" $value }} '
            "on model digits (fires when > 0.3)"
        },
    }


def test_wildcard_model_reads_the_series_label() -> None:
    [alert] = exported(rule(model="*", annotations={"summary": "{model} at {value}"}))
    assert alert["expr"] == "(infertrail_drift_share_drifted) > 0.3"
    assert alert["labels"]["model"] == "{{ $labels.infertrail_model_name }}"
    assert alert["annotations"]["summary"] == "{{ $labels.infertrail_model_name }} at {{ $value }}"


@pytest.mark.parametrize(
    ("template", "go"),
    [
        ("{value:.2f}", '{{ printf "%.2f" $value }}'),
        ("{value:.3}", '{{ printf "%.3g" $value }}'),
        ("{value:.0%}", "{{ humanizePercentage $value }}"),
        ("{threshold:.1f} {comparison} {severity}", "0.3 > critical"),
        ("{labels[team]}!", "vision!"),
        ("{{ one brace }}", "{ one brace }"),
        ("{{{{ x }}}}", '{{ "{{" }} x }}'),
        ("{{{value}}}", '{{ "{" }}{{ $value }}}'),
        ("{status}", "firing"),
    ],
)
def test_annotation_templates_become_go_templates(template: str, go: str) -> None:
    [alert] = exported(rule(labels={"team": "vision"}, annotations={"x": template}))
    assert alert["annotations"]["x"] == go


def test_value_format_without_a_prometheus_equivalent_is_an_error() -> None:
    with pytest.raises(
        ExportError, match=r"rule 'digits-drift': annotations.x: \{value\} format ',' has no"
    ):
        exported(rule(annotations={"x": "{value:,}"}))
    with pytest.raises(ExportError, match="format 'r' has no"):
        exported(rule(annotations={"x": "{value!r}"}))


def test_signal_without_metric_needs_promql() -> None:
    with pytest.raises(
        UnknownSignalError, match=r"rule 'burn': signal 'slo\.burn_rate' has no Prometheus metric"
    ):
        exported(rule(name="burn", signal="slo.burn_rate"))
    [alert] = exported(
        rule(
            name="burn",
            signal="slo.burn_rate",
            promql="slo:burn:1h",
            comparison=">=",
            threshold=14.4,
        )
    )
    assert alert["expr"] == "(slo:burn:1h) >= 14.4"


@pytest.mark.parametrize("window", [0, -5, 1.5, True])
def test_bad_window(window: Any) -> None:
    with pytest.raises(ExportError, match="window_seconds"):
        prometheus_rules([rule()], window)


def test_every_known_signal_renders_with_window_and_model() -> None:
    for key, metric in SIGNALS.items():
        q = signal_promql(key, "digits", 120)
        assert "$" not in q and 'infertrail_model_name="digits"' in q, key
        if "rate(" in metric.promql:
            assert "[120s]" in q
    assert "histogram_quantile(0.99" in signal_promql("latency.p99", "*", 60)
    assert "infertrail_inference_duration_seconds_bucket[60s]" in signal_promql(
        "latency.p99", "*", 60
    )
    with pytest.raises(ValueError, match="window_seconds must be >= 1"):
        signal_promql("drift.score", "*", 0)


def test_model_matchers_are_quoted_and_merge_with_fixed_ones() -> None:
    assert model_matcher("*") == ""
    assert model_matcher('we"ird') == 'infertrail_model_name="we\\"ird"'
    label = "drift.prediction_label_distance"
    assert signal_promql(label, "*", 60) == 'infertrail_drift_prediction_distance{output="label"}'
    assert signal_promql(label, "m", 60) == (
        'infertrail_drift_prediction_distance{output="label",infertrail_model_name="m"}'
    )
    assert signal_promql("drift.score", "*", 60) == "infertrail_drift_score"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (120, "2m"), (5400, "90m"), (7200, "2h")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


def test_grafana_dashboard_has_the_panels_and_rule_thresholds() -> None:
    rules = [
        rule(),
        rule(
            name="conf",
            signal="prediction.confidence_mean",
            comparison="<",
            threshold=0.7,
            severity="warning",
        ),
        rule(name="burn", signal="slo.burn_rate", promql="slo:burn:1h", threshold=14.4),
    ]
    dash = grafana_dashboard(rules, datasource_uid="prom")
    json.dumps(dash)  # plain JSON
    assert dash["uid"] == "infertrail-inference"
    panels = {p["title"]: p for p in dash["panels"]}
    assert set(panels) == {
        "Drift score",
        "Share of drifted features",
        "Per-feature drift distance",
        "Prediction drift",
        "Confidence",
        "Out-of-distribution rate",
        "Inference latency p50 / p99",
        "Error rate",
        "Rule burn: slo.burn_rate",
    }
    assert all(p["type"] == "timeseries" for p in panels.values())
    assert all(p["datasource"] == {"type": "prometheus", "uid": "prom"} for p in panels.values())
    latency = panels["Inference latency p50 / p99"]
    assert [t["refId"] for t in latency["targets"]] == ["A", "B"]
    assert all(
        "infertrail_inference_duration_seconds_bucket" in t["expr"] for t in latency["targets"]
    )
    assert "histogram_quantile(0.5," in latency["targets"][0]["expr"]
    assert "$__rate_interval" in latency["targets"][1]["expr"]
    assert 'infertrail_model_name=~"$model"' in panels["Drift score"]["targets"][0]["expr"]
    share = panels["Share of drifted features"]["fieldConfig"]["defaults"]
    assert share["thresholds"]["steps"] == [
        {"color": "green", "value": None},
        {"color": "red", "value": 0.3},
    ]
    assert (
        "digits-drift (digits): > 0.3 for 3 window(s), critical"
        in panels["Share of drifted features"]["description"]
    )
    assert "thresholds" not in panels["Drift score"]["fieldConfig"]["defaults"]
    assert panels["Rule burn: slo.burn_rate"]["targets"][0]["expr"] == "slo:burn:1h"
    [var] = dash["templating"]["list"]
    assert var["name"] == "model" and var["includeAll"] is True


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_writes_rules_and_dashboard(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out" / "rules.yml"
    r = runner.invoke(
        export,
        ["prometheus-rules", "--rules", str(EXAMPLE), "--out", str(out), "--window-seconds", "300"],
    )
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith(
        "# Generated by `infertrail export prometheus-rules` from alert-rules.toml"
    )
    assert len(yaml.safe_load(text)["groups"][0]["rules"]) == len(load_rules(EXAMPLE).rules)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["rules.yml"]

    r = runner.invoke(export, ["grafana-dashboard", "--rules", str(EXAMPLE)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["title"] == "infertrail: inference and drift"


def test_cli_reports_bad_rules_and_unexportable_rules(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rules]]\nname = "a"\nsignal = "drift.score"\ncomparison = ">"\n'
        "threshold = 1\nfor_windows = 0\n"
    )
    r = CliRunner().invoke(export, ["prometheus-rules", "--rules", str(bad)])
    assert r.exit_code == 1
    assert "rule 'a': for_windows must be >= 1, got 0" in r.output
    custom = tmp_path / "custom.yaml"
    custom.write_text(
        yaml.safe_dump(
            {"rules": [{"name": "b", "signal": "my.signal", "comparison": ">", "threshold": 1}]}
        )
    )
    r = CliRunner().invoke(export, ["prometheus-rules", "--rules", str(custom)])
    assert r.exit_code == 1
    assert "rule 'b': signal 'my.signal' has no Prometheus metric" in r.output
    r = CliRunner().invoke(
        export, ["prometheus-rules", "--rules", str(custom), "--window-seconds", "0"]
    )
    assert r.exit_code == 2


def test_window_analyzer_signals_read_the_window_signal_gauge() -> None:
    assert signal_promql("estimated.accuracy", "credit", 60) == (
        'infertrail_drift_window_signal{signal="estimated.accuracy",slice="",'
        'infertrail_model_name="credit"}'
    )
    assert signal_promql("quality.missing_share_max", "*", 60) == (
        'infertrail_drift_window_signal{signal="quality.missing_share_max",slice=""}'
    )
    for bad in ('estimated.x"} or vector(1)', "estimated.", "other.accuracy"):
        with pytest.raises(UnknownSignalError, match="window analyzer's"):
            signal_promql(bad, "credit", 60)
