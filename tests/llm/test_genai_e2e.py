"""LLM inference end to end: the demo LLM served by infertrail, called through the real `openai`
client, its spans read back from a real Phoenix (as LLM spans), its metrics from a real
Prometheus, its audit records from the log, its cost from `infertrail cost report`, and the
subject's prompts erased."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from infertrail.audit.record import validate_record
from infertrail.privacy.stores import PAYLOADS_DB
from infertrail.telemetry import genai as genai_conventions
from tests.integration.conftest import (
    RunningService,
    isolated_environment,
    poll,
    process_launcher,
    serving,
    settings_for,
)
from tests.integration.test_otlp_export import Phoenix, phoenix  # noqa: F401 (the fixture)
from tests.integration.test_prometheus import Prometheus, start_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUBJECT = "cust-genai-4711"
OTHER = "cust-genai-0815"
PROMPTS = (
    "Write a positive review of a phone.",
    "Write a negative review of a restaurant.",
    "Write a review of the battery.",
    "Write a short review.",
)
PRICES = """
[[versions]]
version = "demo-llm-test"
effective_from = "2020-01-01T00:00:00Z"
currency = "USD"

[versions.models."infertrail/demo-llm"]
per_million_input_tokens = 150.0
per_million_output_tokens = 600.0
"""


@dataclass
class LlmRun:
    service: RunningService
    prometheus: Prometheus
    completions: list[Any]
    streamed: list[dict[str, Any]]
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """The CLI's environment now: this run's data, the test's own $XDG_CONFIG_HOME (where
        `audit verify` keeps its verifier state: never the real home's)."""
        return {**os.environ, "INFERTRAIL_DATA_DIR": str(self.data_dir)}


def _stream_once(client: openai.OpenAI, prompt: str, user: str) -> dict[str, Any]:
    pieces, last = [], None
    with client.chat.completions.create(
        model="demo-llm",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
        user=user,
        seed=7,
    ) as stream:
        for chunk in stream:
            last = chunk
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert last is not None
    return {"text": "".join(pieces), "last": last.model_dump()}


@pytest.fixture(scope="module")
def llm_run(
    phoenix: Phoenix,  # noqa: F811 (the imported fixture)
    trained_models: Path,
    llm_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LlmRun]:
    work = tmp_path_factory.mktemp("genai-e2e")
    models = work / "models"
    shutil.copytree(trained_models, models)
    shutil.copytree(llm_dir, models / "demo-llm")
    prices = work / "prices.toml"
    prices.write_text(PRICES)
    with pytest.MonkeyPatch.context() as mp, isolated_environment(work):
        mp.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
        genai_conventions.reset()
        settings = settings_for(
            work / "data",
            otlp_traces_endpoint=f"{phoenix.base_url}/v1/traces",
            raw_payloads_enabled=True,
            cost_prices_file=prices,
            cost_flush_interval_s=0.5,
        )
        with (
            serving(settings, models) as svc,
            process_launcher(work / "logs") as launcher,
        ):
            prom = start_prometheus(launcher, work, svc.base_url)
            proc = prom.process
            client = openai.OpenAI(
                base_url=f"{svc.base_url}/v1", api_key="unused", max_retries=0, timeout=30
            )
            completions = [
                client.chat.completions.create(
                    model="demo-llm",
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=24,
                    temperature=0.8,
                    user=SUBJECT if i % 2 == 0 else OTHER,
                )
                for i, prompt in enumerate(PROMPTS)
            ]
            streamed = [_stream_once(client, p, SUBJECT) for p in PROMPTS[:2]]
            svc.services.monitor.flush()
            # Wait for a scrape taken after the last call.
            total = len(PROMPTS) + len(streamed)
            poll(
                lambda: prom.scalar("sum(infertrail_gen_ai_outcomes_total)") == total or None,
                timeout_s=30,
                process=proc,
                what="every generation counted in Prometheus",
            )
            yield LlmRun(svc, prom, completions, streamed, settings.data_dir)
    genai_conventions.reset()


def test_answers_are_completions_with_usage_and_receipts(llm_run: LlmRun) -> None:
    for completion in llm_run.completions:
        assert completion.model == "demo-llm"
        assert completion.choices[0].finish_reason in ("stop", "length")
        assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
        receipt = completion.model_extra["audit_receipt"]
        assert receipt["seq"] >= 0
    for streamed in llm_run.streamed:
        last = streamed["last"]
        assert last["usage"]["completion_tokens"] > 0
        assert "audit_receipt" in last


def test_phoenix_shows_each_generation_as_an_llm_span(phoenix: Phoenix, llm_run: LlmRun) -> None:  # noqa: F811
    def arrived() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{phoenix.base_url}/v1/projects/default/spans", params={"limit": 1000}, timeout=5
        )
        if r.status_code == 404:
            return None
        spans = [s for s in r.json()["data"] if s["name"] == "chat demo-llm"]
        return spans if len(spans) >= len(PROMPTS) + 2 else None

    spans = poll(arrived, timeout_s=60, process=phoenix.process, what="chat spans in Phoenix")
    for span in spans:
        # Phoenix converts gen_ai.* at ingest: the operation chat makes it an LLM span.
        assert span["span_kind"] == "LLM", span
        attrs = span["attributes"]
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "infertrail"
        assert attrs["gen_ai.usage.output_tokens"] > 0
        # no content left the service: capture is off
        assert not any("review" in str(v).lower() for v in attrs.values()), attrs


def test_prometheus_has_the_genai_metrics(llm_run: LlmRun) -> None:
    prom = llm_run.prometheus
    total = len(PROMPTS) + 2
    ops = prom.scalar(
        'sum(gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat"})'
    )
    assert ops == total
    out_tokens = prom.scalar('sum(gen_ai_client_token_usage_sum{gen_ai_token_type="output"})')
    expected = sum(c.usage.completion_tokens for c in llm_run.completions) + sum(
        s["last"]["usage"]["completion_tokens"] for s in llm_run.streamed
    )
    assert out_tokens == expected
    ttft = prom.scalar("sum(gen_ai_server_time_to_first_token_seconds_count)")
    assert ttft is not None and ttft >= 2  # the streamed calls
    outcomes = prom.scalar("sum(infertrail_gen_ai_outcomes_total)")
    assert outcomes == total


def test_each_generation_is_one_audit_record_with_digests_only(llm_run: LlmRun) -> None:
    llm_run.service.services.monitor.flush()
    runtime = llm_run.service.services.runtime
    assert runtime.audit is not None
    log = runtime.audit.log
    records = []
    seqs = [c.model_extra["audit_receipt"]["seq"] for c in llm_run.completions]
    seqs += [s["last"]["audit_receipt"]["seq"] for s in llm_run.streamed]
    for seq in seqs:
        ((_, raw),) = list(log.read(seq, seq + 1))
        records.append(json.loads(raw))
    assert len(set(seqs)) == len(seqs)  # one record per generation
    for record in records:
        validate_record(record)
        gen = record["generation"]
        assert gen["provider"] == "infertrail" and gen["request_model"] == "demo-llm"
        assert gen["output_tokens"] > 0 and len(gen["response_hmac"]) == 64
        text = json.dumps(record)
        assert SUBJECT not in text and OTHER not in text
        assert not any(p in text for p in PROMPTS)
    texts = [c.choices[0].message.content for c in llm_run.completions]
    raw_all = json.dumps(records)
    assert not any(t and len(t) > 8 and t in raw_all for t in texts)


def test_cost_report_prices_the_tokens(llm_run: LlmRun) -> None:
    llm_run.service.services.monitor.flush()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertrail",
            "cost",
            "report",
            "--by",
            "team,model",
            "--from",
            "2020-01-01",
            "--to",
            "2100-01-01",
            "--format",
            "json",
        ],
        env=llm_run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    rows = [r for r in report["rows"] if r["group"].get("model") == "demo-llm"]
    assert rows, report
    tokens_in = sum(r["tokens_in"] for r in rows)
    tokens_out = sum(r["tokens_out"] for r in rows)
    assert tokens_out > 0 and tokens_in > 0
    cost = sum(r["token_cost"] for r in rows)
    assert cost == pytest.approx((tokens_in * 150.0 + tokens_out * 600.0) / 1e6, rel=1e-6)


def test_erasing_the_subject_erases_its_prompts(llm_run: LlmRun) -> None:
    llm_run.service.stop()  # the CLI takes the stores the service held
    payloads_db = llm_run.service.services.settings.privacy_dir / PAYLOADS_DB
    assert payloads_db.exists()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertrail",
            "privacy",
            "erase",
            "--subject",
            SUBJECT,
            "--actor",
            "dpo-1",
            "--reason",
            "art17 request",
            "--json",
        ],
        env=llm_run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    receipt = json.loads(out.stdout)
    # two completions and two streams of SUBJECT had their prompts and answers stored
    assert receipt["payloads"] == 4, receipt
    verify = subprocess.run(
        [sys.executable, "-m", "infertrail", "audit", "verify"],
        env=llm_run.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
