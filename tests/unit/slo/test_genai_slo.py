"""LLM SLOs (time to first token, tokens per second) and the generation-outcome business signals.

Events carry a ``Generation`` built directly, with perf-counter readings chosen so that TTFT and
time per output token are known exactly.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import RuleSet, parse_rules
from infertrail.alerting.testing import RecordingDispatch
from infertrail.events import Generation, InferenceEvent, ModelInfo
from infertrail.runtime.slo import open_slos
from infertrail.slo.burnrate import evaluate_slo
from infertrail.slo.business import (
    DEFAULT_OUTCOME_THRESHOLDS,
    GenerationOutcomes,
    generation_outcome_rules,
    outcome_rate_promql,
)
from infertrail.slo.definitions import TOKENS_PER_SECOND_TARGETS, SLOError
from infertrail.slo.export import prometheus_slo_rules, sli_error_query
from infertrail.slo.sli import BAD, GOOD, SKIP, SLICounter, classifier
from infertrail.telemetry import conventions as c
from tests.unit.slo.helpers import T0, event, make_slo, slo_body, slo_set

LLM = ModelInfo("support-llm", "remote", "")
TTFT_SLI = {"kind": "ttft", "threshold_seconds": 0.5}
MS = 1_000_000


def generation(
    t_s: float,
    *,
    ttft_ms: int | None = 200,
    tpot_ms: int = 40,
    output_tokens: int | None = 11,
    finish: tuple[str, ...] = ("stop",),
    text: str | None = "an answer",
    status: str = "ok",
    model: ModelInfo = LLM,
) -> InferenceEvent:
    """A chat generation that ended at ``t_s``: first token after ``ttft_ms``, then one token
    every ``tpot_ms`` (``output_tokens`` in all)."""
    gen = Generation(
        operation="chat",
        provider="openai",
        request_model=model.name,
        response_model=model.name,
        finish_reasons=finish,
        response_text=text,
        input_tokens=20,
        output_tokens=output_tokens,
        started_ns=1_000 * MS,
    )
    if ttft_ms is not None:
        gen.first_token_ns = gen.started_ns + ttft_ms * MS
        gen.last_token_ns = gen.first_token_ns + tpot_ms * MS * ((output_tokens or 1) - 1)
    duration_s = 1.0
    ev = event(
        t_s,
        duration_s=duration_s,
        confidence=None,
        model=model,
        status="error" if status == "error" else "ok",
        error_type="APIError" if status == "error" else None,
    )
    ev.generation = gen
    return ev


# -- definitions --------------------------------------------------------------------------------


def test_llm_sli_kinds_validate_against_the_bucket_boundaries() -> None:
    ttft = make_slo(name="llm-ttft", model="support-llm", sli=TTFT_SLI)
    assert ttft.sli.kind == "ttft"
    speed = make_slo(name="llm-speed", sli={"kind": "tokens_per_second", "target": 20})
    assert speed.sli.seconds_per_token == 0.05  # type: ignore[union-attr]
    # 1 / 0.075 is 13.333...: six digits name it.
    third = make_slo(sli={"kind": "tokens_per_second", "target": 13.3333})
    assert third.sli.seconds_per_token == 0.075  # type: ignore[union-attr]
    assert sorted(TOKENS_PER_SECOND_TARGETS)[-1] == pytest.approx(100)


@pytest.mark.parametrize(
    ("sli", "message"),
    [
        (
            {"kind": "ttft", "threshold_seconds": 0.3},
            "sli.threshold_seconds must be a bucket boundary of the "
            "gen_ai.server.time_to_first_token histogram (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, "
            "0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10), got 0.3",
        ),
        (
            {"kind": "tokens_per_second", "target": 15},
            "sli.target must be 1 / a bucket boundary of the gen_ai.server.time_per_output_token "
            "histogram (100, 40, 20, 13.3333, 10, 6.66667, 5, 3.33333, 2.5, 2, 1.33333, 1, 0.4 "
            "tokens/s), got 15",
        ),
        ({"kind": "tokens_per_second", "target": 0}, "sli.target must be > 0.0, got 0"),
        ({"kind": "tokens_per_second"}, "sli.target is required"),
        ({"kind": "ttft", "threshold": 0.5}, "sli.threshold"),
    ],
)
def test_bad_llm_slis_name_the_field(sli: dict[str, Any], message: str) -> None:
    with pytest.raises(SLOError) as exc:
        make_slo(sli=sli)
    assert message in str(exc.value)


# -- counting -------------------------------------------------------------------------------------


def test_classifiers_follow_the_histograms() -> None:
    ttft = classifier(make_slo(sli={"kind": "ttft", "threshold_seconds": 0.25}))
    speed = classifier(make_slo(sli={"kind": "tokens_per_second", "target": 20}))
    assert ttft is not None and speed is not None
    assert ttft(generation(T0, ttft_ms=250)) == GOOD  # at the boundary: le counts it
    assert ttft(generation(T0, ttft_ms=251)) == BAD
    assert ttft(generation(T0, ttft_ms=None)) == SKIP  # no first token: not in the histogram
    assert ttft(generation(T0, status="error")) == SKIP  # failures record no server timing
    assert ttft(event(T0)) == SKIP  # not a generation
    assert speed(generation(T0, tpot_ms=50)) == GOOD  # 20 tokens/s exactly
    assert speed(generation(T0, tpot_ms=51)) == BAD
    assert speed(generation(T0, output_tokens=1)) == SKIP  # one token: no time per token


def test_counter_counts_llm_slos_per_model_and_the_evaluator_burns() -> None:
    slos = slo_set(
        slo_body(
            name="llm-ttft",
            model="support-llm",
            objective=90,
            sli={"kind": "ttft", "threshold_seconds": 0.5},
        ),
        slo_body(
            name="llm-speed",
            model="*",
            objective=90,
            sli={"kind": "tokens_per_second", "target": 10},
        ),
        slo_body(
            name="latency", model="support-llm", sli={"kind": "latency", "threshold_seconds": 2.5}
        ),
    )
    counter = SLICounter(slos.slos)
    other = ModelInfo("other-llm", "remote", "")
    for i in range(10):  # minute 0: 3 slow first tokens of 10, 2 slow streams
        counter(generation(T0 + 1 + i, ttft_ms=900 if i < 3 else 100, tpot_ms=150 if i < 2 else 80))
    counter(generation(T0 + 20, ttft_ms=900, model=other))  # other model: speed SLO only
    counter(generation(T0 + 21, ttft_ms=None))  # no first token: neither LLM SLO
    counter(generation(T0 + 22, status="error"))  # failed: no server timings
    counter(event(T0 + 23, model=LLM))  # a plain inference of the same model: latency only
    counter(generation(T0 + 61, ttft_ms=100))  # minute 1: starts the next bucket
    counter(generation(T0 + 5, ttft_ms=100))  # late (older bucket): counted on its own
    with counter.locked():
        assert counter.counts("llm-ttft").window(T0 // 60 + 1, 1) == (8, 11)
        assert counter.counts("llm-speed").window(T0 // 60 + 1, 1) == (10, 12)
        assert counter.counts("latency").window(T0 // 60 + 1, 1) == (14, 14)

    with counter.locked():
        st = evaluate_slo(slos.slo("llm-ttft"), counter.counts("llm-ttft"), T0 + 120)
    assert st.error_ratio(300) == pytest.approx(3 / 12)
    assert st.burn_rate(300) == pytest.approx((3 / 12) / 0.1)


def test_llm_slo_promql() -> None:
    ttft = make_slo(model="support-llm", sli={"kind": "ttft", "threshold_seconds": 0.5})
    assert sli_error_query(ttft, "5m") == (
        "1 - (\n"
        '  sum(rate(gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_request_model="support-llm",le="0.5"}[5m]))\n'  # noqa: E501
        "  /\n"
        '  sum(rate(gen_ai_server_time_to_first_token_seconds_count{gen_ai_request_model="support-llm"}[5m]))\n'  # noqa: E501
        ")"
    )
    speed = make_slo(model="*", sli={"kind": "tokens_per_second", "target": 1})
    q = sli_error_query(speed, "1h")
    assert 'gen_ai_server_time_per_output_token_seconds_bucket{le="1.0"}[1h]' in q
    assert "gen_ai_server_time_per_output_token_seconds_count[1h]" in q
    assert "infertrail_model_name" not in q  # the GenAI histograms carry gen_ai_* labels
    rules = prometheus_slo_rules([ttft, speed])
    assert rules.count("slo:sli_error:ratio_rate5m") >= 2 and "alert: SentimentLatencySLO" in rules


# -- outcomes -------------------------------------------------------------------------------------


def test_outcome_window_rates() -> None:
    window = GenerationOutcomes()
    for i in range(6):
        window(generation(T0 + 1 + i))  # ok
    window(generation(T0 + 10, finish=("length",)))
    window(generation(T0 + 11, finish=("length",)))
    window(generation(T0 + 12, finish=("content_filter",)))
    window(generation(T0 + 13, text=""))
    window(generation(T0 + 14, status="error", finish=("length",)))  # an error, not truncated
    window(event(T0 + 15, model=LLM))  # not a generation: not counted
    assert window.signals("support-llm", T0) == {}  # the bucket is not complete yet
    assert window.counts("support-llm", T0 + 60) == {
        "ok": 6, "empty": 1, "refused": 1, "truncated": 2, "cancelled": 0, "error": 1,
    }  # fmt: skip
    assert window.signals("support-llm", T0 + 60) == {
        "business.gen_ai_empty_rate": pytest.approx(1 / 11),
        "business.gen_ai_refused_rate": pytest.approx(1 / 11),
        "business.gen_ai_truncated_rate": pytest.approx(2 / 11),
    }
    # Ten minutes later the minute has left the window.
    assert window.signals("support-llm", T0 + 600) != {}
    assert window.signals("support-llm", T0 + 660) == {}
    assert window.models() == ["support-llm"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"window_s": 90}, "window_s must be whole minutes"), ({"bucket_s": 7}, "bucket_s")],
)
def test_outcome_window_settings_are_checked(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationOutcomes(**kwargs)


def test_default_rules_and_their_promql() -> None:
    rules = {r.signal: r for r in generation_outcome_rules("support-llm")}
    truncated = rules["business.gen_ai_truncated_rate"]
    assert (truncated.name, truncated.comparison, truncated.threshold) == (
        "support-llm-truncated-rate",
        ">",
        0.2,
    )
    assert truncated.promql == (
        "sum by (infertrail_model_name) (rate(infertrail_gen_ai_outcomes_total"
        '{infertrail_gen_ai_outcome="truncated",infertrail_model_name="support-llm"}[10m]))\n/\n'
        "sum by (infertrail_model_name) (rate(infertrail_gen_ai_outcomes_total"
        '{infertrail_model_name="support-llm"}[10m]))'
    )
    assert set(DEFAULT_OUTCOME_THRESHOLDS) == {"empty", "refused", "truncated"}
    every = generation_outcome_rules(thresholds={"empty": 0.1}, window_s=1800)
    assert [r.name for r in every] == ["gen-ai-empty-rate"]
    assert every[0].promql is not None and "[30m]" in every[0].promql
    assert "{infertrail_gen_ai_outcome=" in every[0].promql
    assert generation_outcome_rules("meta-llama/Llama-3")[0].name.startswith("meta-llama-Llama-3-")
    with pytest.raises(ValueError, match="no outcome-rate signal for 'cancelled'"):
        generation_outcome_rules(thresholds={"cancelled": 0.1})
    with pytest.raises(ValueError, match="unknown outcome 'late'"):
        outcome_rate_promql("late")
    with pytest.raises(ValueError, match="window_s must be whole minutes"):
        outcome_rate_promql("empty", window_s=30)


def test_a_truncated_rate_breach_fires_in_process() -> None:
    """Through the service's SLO sink: generations counted, the default rules fire."""
    rules = RuleSet(rules=tuple(generation_outcome_rules("*", for_windows=2)))
    dispatch = RecordingDispatch()
    engine = AlertEngine(rules, dispatch, None)
    meter = MeterProvider().get_meter("test")
    slos = slo_set(slo_body(name="llm-ttft", model="support-llm", sli=TTFT_SLI))
    service = open_slos(slos, engine, meter, start=False)
    assert service.outcomes is not None
    for minute in range(3):
        base = T0 + 60 * minute
        for i in range(10):  # 3 of 10 cut at max_tokens: 30 % > 20 %
            service(generation(base + 1 + i, finish=("length",) if i < 3 else ("stop",)))
        service.evaluator.evaluate(base + 60 + 2)
        firing = {(t.rule, t.model) for t in engine.firing()}
        if minute == 0:  # for_windows=2: the first breach is pending
            assert firing == set()
    assert firing == {("gen-ai-truncated-rate", "support-llm")}
    (trigger,) = engine.firing()
    assert trigger.value == pytest.approx(0.3)
    # The same stream with 1 truncated in 10 stays quiet.
    quiet = AlertEngine(rules, RecordingDispatch(), None)
    window = GenerationOutcomes()
    for i in range(10):
        window(generation(T0 + 1 + i, finish=("length",) if i < 1 else ("stop",)))
    for tick in (60, 120, 180):
        window.evaluate(quiet, T0 + tick)
    assert quiet.firing() == []


def test_without_an_engine_no_outcomes_are_kept() -> None:
    meter = MeterProvider().get_meter("test")
    service = open_slos(slo_set(), None, meter, start=False)
    assert service.outcomes is None
    service(generation(T0 + 1))  # still counted toward the SLOs, nothing else


# -- docs/slo.md ----------------------------------------------------------------------------------


def test_documented_llm_rule_and_boundaries_are_the_code() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "slo.md").read_text()
    flat = " ".join(doc.split())
    [toml] = [
        b
        for b in re.findall(r"^```toml\n(.*?)^```$", doc, flags=re.M | re.S)
        if "business.gen_ai_truncated_rate" in b
    ]
    (documented,) = parse_rules(tomllib.loads(toml)).rules
    default = {r.signal: r for r in generation_outcome_rules("support-llm")}[documented.signal]
    assert documented == default
    ttft = ", ".join(f"{b:g}" for b in c.GENAI_TTFT_BUCKETS_S)
    tpot = ", ".join(f"{b:g}" for b in c.GENAI_TPOT_BUCKETS_S)
    targets = ", ".join(f"{t:.6g}" for t in TOKENS_PER_SECOND_TARGETS)
    assert f"({ttft} s)" in flat and f"({tpot} s)" in flat and f"one of {targets} tokens/s" in flat
    for outcome, threshold in DEFAULT_OUTCOME_THRESHOLDS.items():
        assert f"{outcome} > {threshold:.0%}".replace("%", " %") in flat
