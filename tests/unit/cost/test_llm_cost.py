"""LLM generations priced per token by provider and model, through the sink and the report."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infertrail.cost.attribution import CostAttribution
from infertrail.cost.prices import PriceError, parse_price_table
from infertrail.cost.report import cost_report, render
from infertrail.events import Generation, InferenceEvent

from .helpers import HOUR, FakeClocks, event

T0 = datetime.fromtimestamp(HOUR, UTC)

# Per million tokens: the hosted model by provider, the model name as the fallback.
LLM_PRICES: dict[str, Any] = {
    "versions": [
        {
            "version": "llm-2026",
            "effective_from": "2026-01-01T00:00:00Z",
            "cpu_core_hour": 0.0,
            "models": {
                "openai/gpt-4o-mini": {
                    "per_million_input_tokens": 0.15,
                    "per_million_output_tokens": 0.60,
                },
                "gpt-4o-mini": {"per_million_input_tokens": 1.0, "per_million_output_tokens": 2.0},
                "meta-llama/Llama-3.1-8B": {"per_million_output_tokens": 5.0},
            },
        }
    ]
}


def generation_event(
    *,
    provider: str,
    model: str = "gpt-4o-mini",
    team: str = "support",
    tenant: str | None = None,
    tokens: tuple[int, int] = (1000, 500),
    mirrored: bool = True,
) -> InferenceEvent:
    """A chat generation as the GenAI layer records it; ``mirrored=False`` leaves the event's
    own token counts unset (only the Generation carries them)."""
    ev = event(team=team, model=model, tenant=tenant, endpoint="/v1/chat")
    ev.generation = Generation(
        operation="chat",
        provider=provider,
        request_model=model,
        response_model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        response_text="hello",
    )
    if mirrored:
        ev.tokens_in, ev.tokens_out = tokens
    return ev


def test_provider_model_key_first_then_model_name() -> None:
    v = parse_price_table(LLM_PRICES).versions[0]
    usage: dict[str, Any] = {
        "requests": 1,
        "cpu_seconds": 0.0,
        "tokens_in": 1000,
        "tokens_out": 500,
    }
    hosted = v.cost_of("gpt-4o-mini", provider="openai", **usage)
    assert hosted.tokens == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    other = v.cost_of("gpt-4o-mini", provider="azure", **usage)
    assert other.tokens == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert v.model("gpt-4o-mini") == v.model("gpt-4o-mini", "azure")
    # A model name with a '/' of its own is a key like any other.
    assert v.model("meta-llama/Llama-3.1-8B").per_million_output_tokens == 5.0
    assert v.model("unknown", "openai").per_million_input_tokens == 0.0


@pytest.mark.parametrize("key", ["openai/", "/gpt-4o", "openai//gpt-4o", "open ai/gpt", "", "-x"])
def test_bad_model_keys_are_named(key: str) -> None:
    bad = json.loads(json.dumps(LLM_PRICES))
    bad["versions"][0]["models"] = {key: {"per_request": 0.1}}
    with pytest.raises(PriceError) as exc:
        parse_price_table(bad, source="prices.toml")
    msg = str(exc.value)
    assert msg.startswith("prices.toml: version 'llm-2026': models: model key ")
    assert repr(key) in msg and "provider/model (e.g. 'openai/gpt-4o-mini')" in msg
    assert "(got {" not in msg  # the table itself is not dumped into the message


def test_toml_provider_keys_are_quoted() -> None:
    text = """
[[versions]]
version = "v1"
effective_from = "2026-01-01T00:00:00Z"

[versions.models."openai/gpt-4o-mini"]
per_million_input_tokens = 0.15
per_million_output_tokens = 0.60
"""
    table = parse_price_table(tomllib.loads(text))
    assert table.versions[0].model("gpt-4o-mini", "openai").per_million_output_tokens == 0.60


def test_generations_through_the_sink_and_the_report(tmp_path: Path) -> None:
    clocks = FakeClocks()
    db = tmp_path / "cost.db"
    cost = CostAttribution(
        db,
        parse_price_table(LLM_PRICES),
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )
    cost(generation_event(provider="openai", tenant="acme", tokens=(1000, 500)))
    cost(generation_event(provider="openai", tenant="acme", tokens=(3000, 1500), mirrored=False))
    cost(generation_event(provider="self-hosted", tenant="globex", tokens=(2000, 0)))
    cost(generation_event(provider="openai", team="search", tokens=(100, 100)))
    cost.close()

    report = cost_report(db, start=T0, end=T0 + timedelta(hours=1), by=("team", "tenant", "model"))
    rows = {(r.group["team"], r.group["tenant"]): r for r in report.rows}
    acme = rows[("support", "acme")]
    # Both acme calls at the openai price; the second counted from its Generation alone.
    assert (acme.tokens_in, acme.tokens_out) == (4000, 2000)
    assert acme.token_cost == pytest.approx((4000 * 0.15 + 2000 * 0.60) / 1e6)
    assert acme.token_cost_per_1k == pytest.approx(acme.token_cost / 6000 * 1000)
    globex = rows[("support", "globex")]  # another provider: the model name's price
    assert (globex.tokens_in, globex.tokens_out) == (2000, 0)
    assert globex.token_cost == pytest.approx(2000 * 1.0 / 1e6)
    search = rows[("search", "")]
    assert search.token_cost == pytest.approx((100 * 0.15 + 100 * 0.60) / 1e6)

    table = render(report, "table")
    header = table.splitlines()[1].split()
    assert header[:3] == ["team", "tenant", "model"]
    assert {"tokens_in", "tokens_out", "token_cost", "cost_per_1k_tok"} <= set(header)
    assert "(none)" in table  # the search call named no tenant
    data = json.loads(render(report, "json"))
    by_tenant = {r["group"]["tenant"]: r for r in data["rows"]}
    assert by_tenant["acme"]["token_cost_per_1k"] == pytest.approx(acme.token_cost_per_1k)
    assert data["shared"][0]["token_cost_per_1k"] is None  # no tokens: no per-token cost
    csv_lines = render(report, "csv").splitlines()
    assert "cost_per_1k_tok" in csv_lines[0].split(",")


def test_events_without_tokens_cost_no_tokens(tmp_path: Path) -> None:
    clocks = FakeClocks()
    db = tmp_path / "cost.db"
    cost = CostAttribution(
        db,
        parse_price_table(LLM_PRICES),
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )
    ev = generation_event(provider="openai", mirrored=False)
    assert ev.generation is not None
    ev.generation.input_tokens = ev.generation.output_tokens = None  # usage unknown
    cost(ev)
    cost(event(team="risk", model="gpt-4o-mini"))  # a classic inference of the same name
    cost.close()
    report = cost_report(db, start=T0, end=T0 + timedelta(hours=1), by=("team",))
    assert all(r.tokens_in == r.tokens_out == 0 and r.token_cost == 0 for r in report.rows)
    assert all(r.token_cost_per_1k is None for r in report.rows)
