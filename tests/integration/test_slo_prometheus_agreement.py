"""The in-process evaluator and Prometheus agree, minute by minute, on the same event stream.

One synthetic stream (11 hours: a latency burn, an error burst with rejected requests, a
confidence drop, clean traffic between) goes two ways:

* in process: every event through the ``SLICounter`` sink, the ``SLOEvaluator`` at each minute;
* to Prometheus: every event through the Monitor's own metric derivation into the OpenTelemetry
  SDK, ``/metrics`` rendered by the real exporter after each minute, and those scrapes fed as
  the input series of ``promtool test rules`` over the exported rules.

The in-process results are promtool's expectations: at every minute, which alerts fire (with
their labels and annotations), and every five minutes, each recorded error ratio and the error
budget left. promtool runs the Prometheus rule engine and PromQL itself, evaluating at exact
times over exact samples; that is why this is the check of record, rather than a Prometheus
server fed by a backfill (``promtool tsdb create-blocks-from openmetrics``): a server evaluates
recording rules only from the time it starts, on its own schedule, so backfilled history would
need the rules backfilled too (``create-blocks-from rules`` against the live server), and every
comparison would carry scheduling jitter. A negative control flips one expectation.

One deliberate input choice: a series appears on /metrics only once its first event is counted,
and Prometheus' ``rate()`` cannot see the events that happened before its first sample. The test
writes such a series as 0 in the scrapes before it appeared (what a counter registered at start
would show), so that both sides count every event; docs/slo.md describes the real-world effect.
OOD SLIs are left out: Prometheus reads them from a gauge (the time average of the per-window
OOD rate), which equals the in-process count only for equal drift windows.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.monitor import Monitor
from infertrail.slo.burnrate import (
    RATIO_WINDOWS_S,
    WORKBOOK_POLICY,
    SLOStatus,
    alert_threshold,
)
from infertrail.slo.definitions import SLOSet, format_duration, parse_slos
from infertrail.slo.evaluator import SLOEvaluator
from infertrail.slo.sli import SLICounter
from tests.integration.test_slo_promtool import (
    RULES_FILE,
    expected_alert,
    metric,
    run_promtool,
    write_rules,
)
from tests.unit.slo.helpers import T0

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINUTES = 660
SENTIMENT = ModelInfo("sentiment", "1", "ab" * 32)
CREDIT = ModelInfo("credit", "2", "cd" * 32)
READ_BY_RULES = (
    "infertrail_inference_duration_seconds_bucket",
    "infertrail_inference_duration_seconds_count",
    "infertrail_prediction_confidence_bucket",
    "infertrail_prediction_confidence_count",
    "infertrail_predictions_total",
    "infertrail_inference_errors_total",
)

SLOS = {
    "service": "demo",
    "labels": {"owner": "ml"},
    "slos": [
        {
            "name": "sentiment-latency",
            "model": "sentiment",
            "objective": 99,
            "sli": {"kind": "latency", "threshold_seconds": 0.25},
        },
        {
            "name": "availability",
            "objective": 99.9,
            "sli": {"kind": "availability", "exclude_error_types": ["invalid_input"]},
            "alerting": {"labels": {"team": "platform"}},
        },
        {
            "name": "sentiment-confidence",
            "model": "sentiment",
            "objective": 95,
            "sli": {"kind": "confidence", "threshold": 0.6},
        },
    ],
}


def make_event(
    model: ModelInfo,
    end_s: float,
    *,
    duration_s: float = 0.01,
    confidence: float = 0.9,
    error: str | None = None,
    rejected: bool = False,
) -> InferenceEvent:
    ns = round(duration_s * 1e9) if not rejected else 0
    return InferenceEvent(
        model=model,
        request_id="r",
        service="demo",
        team="t",
        endpoint="/predict",
        inputs=None if rejected else "x",
        input_size=1,
        start_time_ns=round(end_s * 1e9) - ns,
        duration_ns=ns,
        label=None if error else "pos",
        confidence=None if error else confidence,
        status="error" if error else "ok",
        error_type=error,
    )


def minute_events(m: int) -> list[InferenceEvent]:
    """The events that end within minute ``m`` (counted from T0)."""
    out = []
    start = T0 + m * 60
    # 37 a minute, with 11 slow, 4 failed or 31 unsure: counts that put no error ratio exactly
    # on a threshold, where rounding alone would decide (near_ties checks that).
    for i in range(37):
        end = start + (i + 0.5) * 60 / 37
        if 60 <= m < 90 and i < 11:  # 30 % slow
            out.append(make_event(SENTIMENT, end, duration_s=0.5))
        elif 120 <= m < 150 and i < 4:  # 11 % fail
            out.append(make_event(SENTIMENT, end, error="RuntimeError"))
        elif 210 <= m < 270 and i < 31:  # 84 % unsure
            out.append(make_event(SENTIMENT, end, confidence=0.55))
        else:
            out.append(make_event(SENTIMENT, end))
    for i in range(10):
        end = start + (i + 0.25) * 6
        out.append(make_event(CREDIT, end, duration_s=0.02, confidence=0.8))
        if 120 <= m < 150 and i < 5:  # rejected as invalid input: excluded from availability
            out.append(make_event(CREDIT, end + 1, error="invalid_input", rejected=True))
    return out


def scrape(monitor: Monitor) -> dict[str, float]:
    """The rules' input series on /metrics now, as written by the real exporter."""
    text = generate_latest(monitor.telemetry.prometheus_registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in READ_BY_RULES:
                # Prometheus drops empty label values on ingestion: error_type="" (which the
                # exporter pads in once some point has an error type) is no label at all.
                labels = {k: v for k, v in sorted(sample.labels.items()) if v}
                out[metric(sample.name, **labels)] = sample.value
    return out


def run_both(tmp_path: Path, slos: SLOSet) -> tuple[list[dict[str, float]], list[list[SLOStatus]]]:
    """Feed the stream both ways; scrapes[i] and statuses[i] are at T0 + i minutes."""
    monitor = Monitor(Settings(data_dir=tmp_path / "data", telemetry_files=False))
    counter = SLICounter(slos.slos)
    evaluator = SLOEvaluator(counter)
    scrapes: list[dict[str, float]] = [{}]
    statuses: list[list[SLOStatus]] = [evaluator.evaluate(T0)]
    try:
        for m in range(MINUTES):
            for ev in minute_events(m):
                counter(ev)
                # The function the Monitor's worker applies to every event: the same points.
                monitor._record_metrics(ev)
            scrapes.append(scrape(monitor))
            statuses.append(evaluator.evaluate(T0 + (m + 1) * 60))
    finally:
        monitor.shutdown()
    return scrapes, statuses


def input_series(scrapes: list[dict[str, float]]) -> list[dict[str, str]]:
    keys = sorted({k for s in scrapes for k in s})
    return [{"series": k, "values": " ".join(f"{s.get(k, 0.0):g}" for s in scrapes)} for k in keys]


def expectations(
    slos: SLOSet, statuses: list[list[SLOStatus]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    alerts, exprs = [], []
    for i, at in enumerate(statuses):
        for st in at:
            slo = st.slo
            firing = [expected_alert(slo, sev) for sev in ("page", "ticket") if st.firing[sev]]
            alerts.append({"eval_time": f"{i}m", "alertname": slo.alert_name, "exp_alerts": firing})
            if i % 5:
                continue
            ids = f'sloth_slo="{slo.name}"'
            base = {
                **slo.labels,
                "sloth_id": slo.slo_id,
                "sloth_service": slo.service,
                "sloth_slo": slo.name,
            }
            for w in RATIO_WINDOWS_S:
                ratio = st.error_ratio(w)
                if math.isnan(ratio):
                    continue
                window = format_duration(w)
                exprs.append(
                    {
                        "expr": f"abs(slo:sli_error:ratio_rate{window}{{{ids}}} - {ratio!r}) "
                        "< bool 1e-9",
                        "eval_time": f"{i}m",
                        "exp_samples": [
                            {"labels": metric("", **base, sloth_window=window), "value": 1}
                        ],
                    }
                )
            if st.period.total:
                exprs.append(
                    {
                        "expr": f"abs(slo:period_error_budget_remaining:ratio{{{ids}}} - "
                        f"{st.budget_remaining!r}) < bool 1e-9",
                        "eval_time": f"{i}m",
                        "exp_samples": [
                            {"labels": metric("", **base, sloth_window="28d"), "value": 1}
                        ],
                    }
                )
    return alerts, exprs


def near_ties(statuses: list[list[SLOStatus]]) -> list[str]:
    """Evaluations where an error ratio sits on an alert threshold (up to rounding)."""
    out = []
    for i, at in enumerate(statuses):
        for st in at:
            for a in WORKBOOK_POLICY:
                threshold = alert_threshold(st.slo, a.factor)
                for w in (a.long_s, a.short_s):
                    if abs(st.error_ratio(w) - threshold) <= 1e-9:
                        out.append(f"{st.slo.name} at {i}m: {format_duration(w)} ratio")
    return out


def test_in_process_and_prometheus_agree_minute_by_minute(tmp_path: Path) -> None:
    slos = parse_slos(SLOS)
    scrapes, statuses = run_both(tmp_path, slos)
    # At an exact tie the two sides' float rounding (Δ/Δ here, rate/rate there) decides: the
    # stream is built to have none.
    assert near_ties(statuses) == []
    # The stream exercises what it should: every SLO pages and tickets, and everything
    # resolves before the end.
    for j, slo in enumerate(slos.slos):
        pages = [i for i, at in enumerate(statuses) if at[j].firing["page"]]
        tickets = [i for i, at in enumerate(statuses) if at[j].firing["ticket"]]
        assert pages and tickets, slo.name
        assert not statuses[-1][j].firing["page"] and not statuses[-1][j].firing["ticket"]
    write_rules(tmp_path, slos)
    alerts, exprs = expectations(slos, statuses)
    doc: dict[str, Any] = {
        "rule_files": [RULES_FILE],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "in-process evaluation as expectations",
                "interval": "1m",
                "input_series": input_series(scrapes),
                "alert_rule_test": alerts,
                "promql_expr_test": exprs,
            }
        ],
    }
    (tmp_path / "agreement.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_promtool("test", "rules", "agreement.yml", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]

    # Negative control: expect silence at the first minute the latency SLO pages.
    first_page = next(i for i, at in enumerate(statuses) if at[0].firing["page"])
    flipped = copy.deepcopy(doc)
    test = flipped["tests"][0]
    test.pop("promql_expr_test")
    test["alert_rule_test"] = [
        {**a, "exp_alerts": []}
        for a in alerts
        if a["eval_time"] == f"{first_page}m" and a["alertname"] == "SentimentLatencySLO"
    ]
    (tmp_path / "flipped.yml").write_text(yaml.safe_dump(flipped, sort_keys=False))
    result = run_promtool("test", "rules", "flipped.yml", cwd=tmp_path, timeout=600)
    assert result.returncode != 0, "promtool accepted an expectation the evaluator contradicts"
