"""The LLM SLO rules (ttft, tokens_per_second) and the generation-outcome alert rules, checked
and unit-tested by the real promtool over series shaped as infertrail writes them on /metrics.

Each scenario must fire or stay quiet as the in-process engine does; inverted expectations
must make promtool fail (its exit code is the verdict).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infertrail.alerting.export import prometheus_rules
from infertrail.events import Generation, InferenceEvent, ModelInfo
from infertrail.slo.alerts import alert_spec
from infertrail.slo.burnrate import SEVERITIES
from infertrail.slo.business import GenerationOutcomes, generation_outcome_rules
from infertrail.slo.definitions import SLO, SLOSet, parse_slos
from infertrail.slo.export import prometheus_slo_rules
from tests.integration.test_slo_promtool import counter, expected_alert, metric, run_promtool

pytestmark = pytest.mark.integration

SLO_RULES = "llm-slo-rules.yml"
OUTCOME_RULES = "llm-outcome-rules.yml"
TTFT = "gen_ai_server_time_to_first_token_seconds"
TPOT = "gen_ai_server_time_per_output_token_seconds"
OUTCOMES = "infertrail_gen_ai_outcomes_total"
# The GenAI attributes a generation's histograms carry (monitor._record_generation).
GENAI = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai"}


def llm_slos() -> SLOSet:
    return parse_slos(
        {
            "service": "support",
            "slos": [
                {
                    "name": "llm-ttft",
                    "model": "support-llm",
                    "objective": 99,
                    "sli": {"kind": "ttft", "threshold_seconds": 0.5},
                },
                {
                    "name": "llm-speed",
                    "objective": 95,
                    "sli": {"kind": "tokens_per_second", "target": 20},
                    "alerting": {"page_alert": {"disable": True}},
                },
            ],
        }
    )


def histogram(name: str, model: str, le: str, good_per_min: float) -> list[dict[str, str]]:
    labels = {**GENAI, "gen_ai_request_model": model, "gen_ai_response_model": model}
    return [
        {"series": metric(f"{name}_count", **labels), "values": counter(100)},
        {"series": metric(f"{name}_bucket", **labels, le=le), "values": counter(good_per_min)},
    ]


def slo_scenario(
    slo: SLO, series: list[dict[str, str]], fires: bool, invert: bool
) -> dict[str, Any]:
    severities = [sev for sev in SEVERITIES if not alert_spec(slo, sev).disable]
    firing = [expected_alert(slo, sev) for sev in severities] if fires != invert else []
    return {
        "name": f"{slo.name} {'fires' if fires else 'stays quiet'}",
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "70m", "alertname": slo.alert_name, "exp_alerts": firing}
        ],
    }


def slo_tests(slos: SLOSet, *, invert: bool = False) -> dict[str, Any]:
    ttft, speed = slos.slo("llm-ttft"), slos.slo("llm-speed")
    tests = [
        # 50 % of first tokens later than 0.5 s = 50x a 1 % budget; another model's slow first
        # tokens are not this SLO's.
        slo_scenario(
            ttft,
            histogram(TTFT, "support-llm", "0.5", 50) + histogram(TTFT, "other-llm", "0.5", 0),
            True,
            invert,
        ),
        slo_scenario(ttft, histogram(TTFT, "support-llm", "0.5", 99.8), False, invert),
        # Every model: 40 % slower than 20 tokens/s (0.05 s per token) = 8x a 5 % budget.
        slo_scenario(
            speed,
            histogram(TPOT, "support-llm", "0.05", 60) + histogram(TPOT, "other-llm", "0.05", 60),
            True,
            invert,
        ),
        slo_scenario(speed, histogram(TPOT, "support-llm", "0.05", 99), False, invert),
    ]
    return {"rule_files": [SLO_RULES], "evaluation_interval": "1m", "tests": tests}


def test_llm_slo_rules_pass_promtool(tmp_path: Path) -> None:
    slos = llm_slos()
    (tmp_path / SLO_RULES).write_text(prometheus_slo_rules(slos))
    result = run_promtool("check", "rules", SLO_RULES, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Per SLO: 8 SLI recordings, 7 meta recordings, and its enabled alerts (3 in all).
    assert "SUCCESS: 33 rules found" in result.stdout

    (tmp_path / "tests.yml").write_text(yaml.safe_dump(slo_tests(slos), sort_keys=False))
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_llm_slo_negative_control_fails(tmp_path: Path) -> None:
    slos = llm_slos()
    (tmp_path / SLO_RULES).write_text(prometheus_slo_rules(slos))
    inverted = slo_tests(slos, invert=True)
    for i, test in enumerate(inverted["tests"]):
        one = copy.deepcopy(inverted)
        one["tests"] = [test]
        (tmp_path / f"inverted-{i}.yml").write_text(yaml.safe_dump(one, sort_keys=False))
        result = run_promtool("test", "rules", f"inverted-{i}.yml", cwd=tmp_path)
        assert result.returncode != 0, f"{test['name']}: promtool accepted the inversion"


# -- generation outcomes --------------------------------------------------------------------------


def outcome_series(model: str, per_min: dict[str, float]) -> list[dict[str, str]]:
    base = {
        "infertrail_model_name": model,
        "infertrail_model_version": "remote",
        "infertrail_team": "t",
    }
    return [
        {
            "series": metric(OUTCOMES, **base, infertrail_gen_ai_outcome=outcome),
            "values": counter(n),
        }
        for outcome, n in per_min.items()
    ]


def truncated_alert(model: str, percent: str) -> dict[str, Any]:
    return {
        "exp_labels": {
            "severity": "warning",
            "signal": "business.gen_ai_truncated_rate",
            "model": model,
            "infertrail_model_name": model,
        },
        "exp_annotations": {
            "summary": f"{model}: {percent} of generations truncated over the last 10 minutes "
            "(fires above 20%)"
        },
    }


def outcome_tests(*, invert: bool = False) -> dict[str, Any]:
    # support-llm: 30 of 100 a minute cut at max_tokens (> 20 %); other-llm: 5 of 100.
    series = outcome_series(
        "support-llm", {"ok": 68, "truncated": 30, "empty": 2}
    ) + outcome_series("other-llm", {"ok": 95, "truncated": 5})
    fires = [truncated_alert("support-llm", "30%")]
    return {
        "rule_files": [OUTCOME_RULES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "truncated rate over 20 % fires for that model only",
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "gen-ai-truncated-rate",
                        "exp_alerts": [] if invert else fires,
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "gen-ai-empty-rate",  # 2 % < 5 %
                        "exp_alerts": fires if invert else [],
                    },
                ],
                "promql_expr_test": [
                    {
                        # The rate PromQL computes is the in-process one (below): 0.3.
                        "expr": f'abs(sum(rate({OUTCOMES}{{infertrail_gen_ai_outcome="truncated",infertrail_model_name="support-llm"}}[10m])) / sum(rate({OUTCOMES}{{infertrail_model_name="support-llm"}}[10m])) - 0.3) < bool 1e-9',  # noqa: E501
                        "eval_time": "30m",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                ],
            }
        ],
    }


def generation(t_s: float, finish: str) -> InferenceEvent:
    ev = InferenceEvent(
        model=ModelInfo("support-llm", "remote", ""),
        request_id="r",
        service="support",
        team="t",
        endpoint="/chat",
        inputs=[{"role": "user", "content": "hi"}],
        input_size=2,
        start_time_ns=round(t_s * 1e9),
    )
    ev.generation = Generation(
        operation="chat",
        provider="openai",
        request_model="support-llm",
        finish_reasons=(finish,),
        response_text="" if finish == "empty" else "text",
    )
    return ev


def test_outcome_rules_pass_promtool_and_agree_in_process(tmp_path: Path) -> None:
    rules = generation_outcome_rules("*")
    (tmp_path / OUTCOME_RULES).write_text(prometheus_rules(rules, 60))
    result = run_promtool("check", "rules", OUTCOME_RULES, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rules found" in result.stdout
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(outcome_tests(), sort_keys=False))
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "inverted.yml").write_text(yaml.safe_dump(outcome_tests(invert=True)))
    result = run_promtool("test", "rules", "inverted.yml", cwd=tmp_path)
    assert result.returncode != 0, "promtool accepted the inverted expectations"

    # The same minute mix in process: 68 ok, 30 truncated, 2 empty per minute.
    window = GenerationOutcomes()
    t0 = 1_800_000_000
    for minute in range(10):
        for i, finish in enumerate(["stop"] * 68 + ["length"] * 30 + ["empty"] * 2):
            window(generation(t0 + 60 * minute + i * 0.5, finish))
    rates = window.signals("support-llm", t0 + 600)
    assert rates["business.gen_ai_truncated_rate"] == pytest.approx(0.3)
    assert rates["business.gen_ai_empty_rate"] == pytest.approx(0.02)
