"""The Sloth-shaped rule file: groups, recordings, alerts, and queries over real /metrics names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.slo.export import alert_expr, prometheus_slo_rules, sli_error_query
from infertrail.telemetry import conventions as c
from tests.unit.slo.helpers import make_slo, slo_body, slo_set


def rules_of(*bodies: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(prometheus_slo_rules(slo_set(*bodies), source="s.yaml"))
    return doc


def test_sloth_shape() -> None:
    doc = rules_of(slo_body(labels={"tier": "1"}, alerting={"labels": {"team": "nlp"}}))
    # One group: the alerts read the ratios recorded at the same evaluation.
    (group,) = doc["groups"]
    assert group["name"] == "infertrail-slo-demo-sentiment-latency"
    rules = group["rules"]
    sli, meta, alerts = rules[:8], rules[8:15], rules[15:]
    assert [r["record"] for r in sli] == [
        f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d")
    ]
    assert sli[0]["labels"] == {
        "tier": "1",
        "sloth_id": "demo-sentiment-latency",
        "sloth_service": "demo",
        "sloth_slo": "sentiment-latency",
        "sloth_window": "5m",
    }
    assert [r["record"] for r in meta] == [
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:time_period:days",
        "slo:current_burn_rate:ratio",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "sloth_slo_info",
    ]
    assert meta[0]["expr"] == "vector(0.99)" and meta[1]["expr"] == "vector(0.01)"
    assert meta[2]["expr"] == "vector(28)"
    page, ticket = alerts
    assert page["alert"] == ticket["alert"] == "SentimentLatencySLO"
    assert page["labels"]["sloth_severity"] == "page" and page["labels"]["severity"] == "critical"
    assert (
        ticket["labels"]["sloth_severity"] == "ticket" and ticket["labels"]["severity"] == "warning"
    )
    assert page["labels"]["team"] == "nlp" and "for" not in page
    assert page["annotations"]["title"].startswith("(page) {{$labels.sloth_service}}")


def test_alert_expressions_follow_the_workbook_pairs() -> None:
    slo = make_slo(objective=99.9)
    page = alert_expr(slo, "page")
    budget = repr((100 - 99.9) / 100)
    assert "slo:sli_error:ratio_rate5m{" in page and f"> (14.4 * {budget})" in page
    assert "slo:sli_error:ratio_rate1h{" in page
    assert "slo:sli_error:ratio_rate30m{" in page and f"> (6 * {budget})" in page
    assert page.count(") without (sloth_window)") == 4
    assert page.count("\n    and\n") == 2 and page.count("\nor\n") == 1
    ticket = alert_expr(slo, "ticket")
    assert "ratio_rate2h{" in ticket and "ratio_rate1d{" in ticket and f"(3 * {budget})" in ticket
    assert "ratio_rate6h{" in ticket and "ratio_rate3d{" in ticket and f"(1 * {budget})" in ticket


def test_disabled_alerts_are_left_out() -> None:
    doc = rules_of(slo_body(alerting={"page_alert": {"disable": True}}))
    alerts = [r for r in doc["groups"][0]["rules"] if "alert" in r]
    assert [a["labels"]["sloth_severity"] for a in alerts] == ["ticket"]
    doc = rules_of(
        slo_body(alerting={"page_alert": {"disable": True}, "ticket_alert": {"disable": True}})
    )
    assert not [r for r in doc["groups"][0]["rules"] if "alert" in r]


def test_annotations_are_plain_text_for_go_templates() -> None:
    doc = rules_of(slo_body(alerting={"annotations": {"summary": "see {{docs}}"}}))
    summary = doc["groups"][0]["rules"][15]["annotations"]["summary"]
    assert summary == 'see {{ "{{" }}docs}}'


@pytest.mark.parametrize(
    ("sli", "model", "parts"),
    [
        (
            {"kind": "latency", "threshold_seconds": 1.0},
            "sentiment",
            [
                'infertrail_inference_duration_seconds_bucket{infertrail_model_name="sentiment",'
                'le="1.0"}[5m]',
                'infertrail_inference_duration_seconds_count{infertrail_model_name="sentiment"}[5m]',
            ],
        ),
        (
            {"kind": "availability", "exclude_error_types": ["invalid_input", "Bad"]},
            "*",
            [
                "(sum(rate(infertrail_predictions_total[5m])) or vector(0))",
                'infertrail_inference_errors_total{error_type!~"invalid_input|Bad"}[5m]',
            ],
        ),
        (
            {"kind": "confidence", "threshold": 0.6},
            "credit",
            [
                'infertrail_prediction_confidence_bucket{infertrail_model_name="credit",le="0.6"}',
                'infertrail_prediction_confidence_count{infertrail_model_name="credit"}[5m]',
            ],
        ),
        (
            {"kind": "ood"},
            "digits",
            ['avg(avg_over_time(infertrail_drift_ood_rate{infertrail_model_name="digits"}[5m]))'],
        ),
    ],
)
def test_sli_queries(sli: dict[str, Any], model: str, parts: list[str]) -> None:
    query = sli_error_query(make_slo(sli=sli, model=model), "5m")
    for part in parts:
        assert part in query, query


def test_le_labels_match_what_the_exporter_writes(tmp_path: Path) -> None:
    """Every bucket bound an SLO may name appears on /metrics exactly as the query spells it."""
    from prometheus_client import generate_latest

    monitor = Monitor(Settings(data_dir=tmp_path, telemetry_files=False))
    try:
        with monitor.observe(ModelInfo("m", "1", "ab"), "x") as ev:
            ev.label, ev.confidence = "a", 0.5
        with pytest.raises(RuntimeError), monitor.observe(ModelInfo("m", "1", "ab"), "x"):
            raise RuntimeError("boom")
        monitor.flush()
        text = generate_latest(monitor.telemetry.prometheus_registry).decode()
    finally:
        monitor.shutdown()
    for bound in c.DURATION_BUCKETS_S:
        q = sli_error_query(make_slo(sli={"kind": "latency", "threshold_seconds": bound}), "5m")
        le = q.split("le=")[1].split("}")[0]
        assert f"le={le}" in text, bound
    for bound in c.CONFIDENCE_BUCKETS:
        q = sli_error_query(make_slo(sli={"kind": "confidence", "threshold": bound}), "5m")
        le = q.split("le=")[1].split("}")[0]
        assert "infertrail_prediction_confidence_bucket{" in text
        assert f"le={le}" in text, bound
    for name in ("infertrail_predictions_total{", "infertrail_inference_errors_total{"):
        assert name in text
    assert 'error_type="RuntimeError"' in text
