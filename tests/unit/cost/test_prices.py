"""The versioned price table: OpenCost defaults, versions by time, per-model prices, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infertrail.cost.prices import (
    OPENCOST_DEFAULTS,
    PriceError,
    default_price_table,
    load_price_table,
    parse_price_table,
)

NS = 1_000_000_000
T_2026 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
T_JUL = 1_782_864_000 * NS  # 2026-07-01T00:00:00Z

TABLE = """
[[versions]]
version = "2026-h1"
effective_from = "2026-01-01T00:00:00Z"
cpu_core_hour = 0.04
gpu_hour = 2.0
ram_gib_hour = 0.005

[versions.models.llm]
per_request = 0.001
per_million_input_tokens = 3.0
per_million_output_tokens = 15.0

[[versions]]
version = "2026-h2"
effective_from = "2026-07-01T00:00:00+00:00"
cpu_core_hour = 0.03

[versions.models.llm]
gpu_hour = 1.5
"""


def version(**over: Any) -> dict[str, Any]:
    return {"version": "v1", "effective_from": "2026-01-01T00:00:00Z", **over}


def test_default_table_is_opencosts_defaults() -> None:
    v = default_price_table().at(T_2026)
    assert (v.cpu_core_hour, v.ram_gib_hour, v.gpu_hour) == (0.031611, 0.004237, 0.95)
    assert dict(OPENCOST_DEFAULTS) == {
        "cpu_core_hour": 0.031611,
        "ram_gib_hour": 0.004237,
        "gpu_hour": 0.95,
    }
    assert v.currency == "USD" and v.model("anything").per_request == 0.0


def test_versions_apply_from_their_start(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(TABLE)
    table = load_price_table(path)
    assert table.at(T_2026 - 1).version == "2026-h1"  # before every start: the first one
    assert table.at(T_2026).version == "2026-h1"
    assert table.at(T_JUL - 1).version == "2026-h1"
    assert table.at(T_JUL).version == "2026-h2"
    assert table.next_change(T_2026) == T_JUL and table.next_change(T_JUL) is None
    h2 = table.version("2026-h2")
    assert h2.gpu_hour == OPENCOST_DEFAULTS["gpu_hour"]  # unset rates default to OpenCost's
    with pytest.raises(KeyError, match="2026-h1, 2026-h2"):
        table.version("2027")


def test_cost_of_by_component() -> None:
    table = parse_price_table(
        {
            "versions": [
                version(
                    cpu_core_hour=3.6,
                    gpu_hour=7.2,
                    models={
                        "llm": {
                            "per_request": 0.01,
                            "per_million_input_tokens": 2.0,
                            "per_million_output_tokens": 10.0,
                        },
                        "big": {"gpu_hour": 36.0},
                    },
                )
            ]
        }
    )
    v = table.at(T_2026)
    c = v.cost_of(
        "llm", requests=2, cpu_seconds=0.5, accelerator_seconds=3.0, tokens_in=1000, tokens_out=500
    )
    # 0.5 s at 3.6/h = 0.0005; 3 s at 7.2/h = 0.006; (1000*2 + 500*10)/1e6 = 0.007; 2 * 0.01
    assert c.cpu == pytest.approx(0.0005)
    assert c.gpu == pytest.approx(0.006)
    assert c.tokens == pytest.approx(0.007)
    assert c.request == pytest.approx(0.02)
    assert c.total == pytest.approx(0.0335)
    # the model's own GPU rate overrides the version's: 3 s at 36/h = 0.03
    assert v.cost_of("big", requests=1, cpu_seconds=0, accelerator_seconds=3.0).gpu == (
        pytest.approx(0.03)
    )


def test_json_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"versions": [version(cpu_core_hour=1.0)]}))
    assert load_price_table(path).at(0).cpu_core_hour == 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "exactly 'versions'"),
        ({"versions": [], "x": 1}, "exactly 'versions'"),
        ({"versions": []}, "non-empty list"),
        ({"versions": [version(cpu_core_hour=-1)]}, r"version 'v1': cpu_core_hour: .*-1"),
        ({"versions": [version(cpu_core_hour=float("nan"))]}, "cpu_core_hour"),
        ({"versions": [version(effective_from="yesterday")]}, "RFC 3339.*'yesterday'"),
        ({"versions": [version(effective_from="2026-01-01T00:00:00")]}, "UTC offset"),
        ({"versions": [version(cpu=1)]}, "version 'v1': cpu: is not a known field"),
        ({"versions": [version(currency="usd")]}, "currency"),
        ({"versions": [version(version="")]}, "version #1: version"),
        ({"versions": [version(models={"m": {"per_token": 1}})]}, "models.m.per_token: is not"),
        ({"versions": [{"version": "v1"}]}, "version 'v1': effective_from: is required"),
        ({"versions": ["v1"]}, "version #1: "),
        ({"versions": [version(), version()]}, "'v1' is listed more than once"),
        (
            {"versions": [version(), version(version="v0", effective_from="2025-01-01T00:00Z")]},
            "version 'v0': effective_from .* later",
        ),
    ],
)
def test_bad_tables_name_the_version_and_field(data: Any, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        parse_price_table(data, source="prices.toml")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match=r"use \.toml or \.json"):
        load_price_table(tmp_path / "prices.yaml")
    with pytest.raises(PriceError, match="cannot read"):
        load_price_table(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[versions]\n")
    with pytest.raises(PriceError, match="not valid TOML"):
        load_price_table(broken)
