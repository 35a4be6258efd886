"""The exported SLO rules, checked and unit-tested by the real promtool.

The rule file is the one ``infertrail export slo-rules`` writes for examples/slos.yaml. Each
SLI kind gets a fixture that must fire and one that must not, over the series names and labels
infertrail writes on /metrics; a negative control with inverted expectations must make promtool
fail (its exit code is the verdict). ``histogram_quantile`` in :mod:`infertrail.slo.business`
is checked against PromQL's on the same buckets, and the example business-impact rules
(examples/slo-alert-rules.toml) are exported and tested the same way.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.export import prometheus_rules
from infertrail.alerting.rules import RuleSet, load_rules
from infertrail.slo.alerts import alert_labels, alert_severity, alert_spec
from infertrail.slo.burnrate import AlertSeverity
from infertrail.slo.business import histogram_quantile
from infertrail.slo.definitions import SLO, SLOSet, load_slos
from infertrail.slo.export import prometheus_slo_rules
from infertrail.telemetry.conventions import CONFIDENCE_BUCKETS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "slos.yaml"
RULES_FILE = "slo-rules.yml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed; run scripts/test-services.sh", pytrace=False)
    return path


def run_promtool(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run promtool; its exit code is the verdict (FAILED text may follow the status line)."""
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def write_rules(tmp_path: Path, slos: SLOSet) -> Path:
    path = tmp_path / RULES_FILE
    path.write_text(prometheus_slo_rules(slos, source="slos.yaml"))
    return path


def expected_alert(slo: SLO, severity: AlertSeverity) -> dict[str, Any]:
    """The labels and annotations Prometheus gives the firing alert."""
    labels = {
        **slo.labels,
        "sloth_id": slo.slo_id,
        "sloth_service": slo.service,
        "sloth_slo": slo.name,
        **alert_labels(slo, severity),
        "severity": alert_severity(slo, severity),
    }
    annotations = {
        "title": f"({severity}) {slo.service} {slo.name} SLO error budget burn rate is too fast.",
        **slo.alerting.annotations,
        **alert_spec(slo, severity).annotations,
    }
    return {"exp_labels": labels, "exp_annotations": annotations}


def metric(name: str, **labels: str) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{body}}}"


def counter(per_minute: float, minutes: int = 80) -> str:
    return f"0+{per_minute:g}x{minutes}"


DURATION = "infertrail_inference_duration_seconds"
CONF = "infertrail_prediction_confidence"


def latency_series(good_per_min: float) -> list[dict[str, str]]:
    ok = {"infertrail_model_name": "sentiment", "infertrail_status": "ok"}
    return [
        {"series": metric(f"{DURATION}_count", **ok), "values": counter(100)},
        {"series": metric(f"{DURATION}_bucket", **ok, le="0.25"), "values": counter(good_per_min)},
        # Another model's slow requests are not this SLO's.
        {
            "series": metric(f"{DURATION}_count", infertrail_model_name="credit"),
            "values": counter(100),
        },
        {
            "series": metric(f"{DURATION}_bucket", infertrail_model_name="credit", le="0.25"),
            "values": counter(0),
        },
    ]


def availability_series(runtime_errors: float) -> list[dict[str, str]]:
    return [
        {
            "series": metric("infertrail_predictions_total", infertrail_model_name=m),
            "values": counter(500),
        }
        for m in ("sentiment", "credit")
    ] + [
        # Half of all requests are rejected as invalid input: excluded, not counted at all.
        {
            "series": metric(
                "infertrail_inference_errors_total",
                infertrail_model_name="credit",
                error_type="invalid_input",
            ),
            "values": counter(1000),
        },
        {
            "series": metric(
                "infertrail_inference_errors_total",
                infertrail_model_name="sentiment",
                error_type="RuntimeError",
            ),
            "values": counter(runtime_errors),
        },
    ]


def confidence_series(low_per_min: float) -> list[dict[str, str]]:
    labels = {"infertrail_model_name": "credit", "infertrail_status": "ok"}
    return [
        {"series": metric(f"{CONF}_count", **labels), "values": counter(100)},
        {"series": metric(f"{CONF}_bucket", **labels, le="0.6"), "values": counter(low_per_min)},
    ]


def ood_series(rate: float) -> list[dict[str, str]]:
    return [
        {
            "series": metric("infertrail_drift_ood_rate", infertrail_model_name="digits"),
            "values": f"{rate:g}x80",
        }
    ]


def scenario(
    slos: SLOSet, slo_name: str, series: list[dict[str, str]], fires: bool, invert: bool
) -> dict[str, Any]:
    """One promtool test: at 70m the SLO's enabled alerts fire (or none does)."""
    slo = slos.slo(slo_name)
    severities: list[AlertSeverity] = [
        sev for sev in ("page", "ticket") if not alert_spec(slo, sev).disable
    ]
    firing = [expected_alert(slo, sev) for sev in severities] if fires != invert else []
    return {
        "name": f"{slo_name} {'fires' if fires else 'stays quiet'}",
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "70m", "alertname": slo.alert_name, "exp_alerts": firing},
        ],
    }


def rule_tests(slos: SLOSet, *, invert: bool = False) -> dict[str, Any]:
    s = slos
    tests = [
        # 50 % slow = 50x; 0.5 % slow = 0.5x, under every factor.
        scenario(s, "sentiment-latency", latency_series(50), True, invert),
        scenario(s, "sentiment-latency", latency_series(99.5), False, invert),
        # 1 % runtime errors among 1000 counted requests a minute = 10x a 0.1 % budget... and
        # 0.05 % stays under it, however many invalid-input rejections there are.
        scenario(s, "inference-availability", availability_series(10), True, invert),
        scenario(s, "inference-availability", availability_series(0.5), False, invert),
        # 30 % at or below 0.6 = 6x a 5 % budget (page disabled: only the ticket).
        scenario(s, "credit-confidence", confidence_series(30), True, invert),
        scenario(s, "credit-confidence", confidence_series(2), False, invert),
        scenario(s, "digits-in-distribution", ood_series(0.2), True, invert),
        scenario(s, "digits-in-distribution", ood_series(0.001), False, invert),
    ]
    # The recorded ratios and budget of the latency SLO, checked at the same time.
    ids = '{sloth_slo="sentiment-latency"}'
    tests[0]["promql_expr_test"] = [
        {
            "expr": f"slo:sli_error:ratio_rate5m{ids}",
            "eval_time": "70m",
            "exp_samples": [
                {"labels": recorded_labels(s.slo("sentiment-latency"), "5m"), "value": 0.5}
            ],
        },
        {
            "expr": f"slo:period_error_budget_remaining:ratio{ids}",
            "eval_time": "70m",
            "exp_samples": [
                {
                    "labels": meta_labels(
                        s.slo("sentiment-latency"),
                        "slo:period_error_budget_remaining:ratio",
                        sloth_window="28d",
                    ),
                    # 50 % bad against a 1 % budget: 50 budgets spent.
                    "value": -49,
                }
            ],
        },
    ]
    return {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": tests}


def recorded_labels(slo: SLO, window: str) -> str:
    labels = {
        **slo.labels,
        "sloth_id": slo.slo_id,
        "sloth_service": slo.service,
        "sloth_slo": slo.name,
        "sloth_window": window,
    }
    return metric("slo:sli_error:ratio_rate" + window, **labels)


def meta_labels(slo: SLO, name: str, **extra: str) -> str:
    labels = {
        **extra,
        **slo.labels,
        "sloth_id": slo.slo_id,
        "sloth_service": slo.service,
        "sloth_slo": slo.name,
    }
    return metric(name, **labels)


def test_example_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = write_rules(tmp_path, load_slos(EXAMPLE))
    result = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 66 rules found" in result.stdout


@pytest.mark.slow
def test_fixtures_fire_and_stay_quiet(tmp_path: Path) -> None:
    slos = load_slos(EXAMPLE)
    write_rules(tmp_path, slos)
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(rule_tests(slos), sort_keys=False))
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_negative_control_fails(tmp_path: Path) -> None:
    """Inverted expectations must fail: promtool really checks these fixtures."""
    slos = load_slos(EXAMPLE)
    write_rules(tmp_path, slos)
    inverted = rule_tests(slos, invert=True)
    for test in inverted["tests"]:
        test.pop("promql_expr_test", None)
    for i, test in enumerate(inverted["tests"]):
        one = copy.deepcopy(inverted)
        one["tests"] = [test]
        (tmp_path / f"inverted-{i}.yml").write_text(yaml.safe_dump(one, sort_keys=False))
        result = run_promtool("test", "rules", f"inverted-{i}.yml", cwd=tmp_path)
        assert result.returncode != 0, f"{test['name']}: promtool accepted the inversion"


def test_histogram_quantile_matches_promql(tmp_path: Path) -> None:
    bounds = CONFIDENCE_BUCKETS
    per_bucket = [3, 7, 0, 11, 25, 40, 9, 5]  # per minute, the last one +Inf
    cumulative = [sum(per_bucket[: i + 1]) for i in range(len(per_bucket))]
    les = [repr(float(b)) for b in bounds] + ["+Inf"]
    series = [
        {
            "series": metric(f"{CONF}_bucket", infertrail_model_name="m", le=le),
            "values": counter(n, 10),
        }
        for le, n in zip(les, cumulative, strict=True)
    ]
    tests = []
    for q in (0.05, 0.1, 0.5, 0.9, 0.99):
        ours = histogram_quantile(q, bounds, per_bucket)
        tests.append(
            {
                "expr": (
                    f"abs(histogram_quantile({q}, sum by (le) (rate({CONF}_bucket[5m]))) "
                    f"- {ours!r}) < bool 1e-9"
                ),
                "eval_time": "8m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            }
        )
    doc = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "quantile.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_promtool("test", "rules", "quantile.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def business_rule_tests(rules: RuleSet, *, invert: bool = False) -> dict[str, Any]:
    """The confidence-drop rule of examples/slo-alert-rules.toml, on /metrics-shaped series."""
    rule = rules.rule("digits-confidence-drop")
    engine = AlertEngine([rule.model_copy(update={"for_windows": 1})], None, None)
    (fired,) = engine.evaluate({rule.signal: 0.6 - 0.8838}, "digits", datetime.now(UTC))
    firing = [
        {
            "exp_labels": {"severity": "warning", "signal": rule.signal, "model": "digits"},
            "exp_annotations": dict(fired.annotations),
        }
    ]

    def series(mean: float) -> list[dict[str, str]]:
        labels = {"infertrail_model_name": "digits", "infertrail_status": "ok"}
        return [
            {"series": metric(f"{CONF}_count", **labels), "values": counter(100)},
            {"series": metric(f"{CONF}_sum", **labels), "values": counter(100 * mean)},
        ]

    def check(at: str, fires: bool) -> dict[str, Any]:
        return {
            "eval_time": at,
            "alertname": rule.name,
            "exp_alerts": firing if fires != invert else [],
        }

    return {
        "rule_files": ["business.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "mean confidence 0.6 against 0.88: fires once held for 5 minutes",
                "interval": "1m",
                "input_series": series(0.6),
                # The 1h rate needs two samples; then for: 5m.
                "alert_rule_test": [check("5m", False), check("7m", True), check("70m", True)],
            },
            {
                "name": "mean confidence as in training stays quiet",
                "interval": "1m",
                "input_series": series(0.88),
                "alert_rule_test": [check("70m", False)],
            },
        ],
    }


def test_example_business_rules_with_promtool(tmp_path: Path) -> None:
    rules = load_rules(REPO / "examples" / "slo-alert-rules.toml")
    (tmp_path / "business.yml").write_text(prometheus_rules(rules, 60))
    result = run_promtool("check", "rules", "business.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, invert in (("business-tests.yml", False), ("business-inverted.yml", True)):
        (tmp_path / name).write_text(yaml.safe_dump(business_rule_tests(rules, invert=invert)))
        result = run_promtool("test", "rules", name, cwd=tmp_path)
        assert (result.returncode == 0) != invert, result.stdout + result.stderr
