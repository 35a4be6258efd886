"""docs/cost.md stays true: its price table parses, its error example is the real message."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from infertrail.cost.prices import OPENCOST_DEFAULTS, PriceError, parse_price_table

DOC = (Path(__file__).resolve().parents[3] / "docs" / "cost.md").read_text()


def test_toml_example_is_a_valid_table() -> None:
    [toml] = re.findall(r"^```toml\n(.*?)^```$", DOC, flags=re.M | re.S)
    table = parse_price_table(tomllib.loads(toml))
    h2 = table.version("2026-h2")
    assert h2.cpu_core_hour == 0.035 and h2.ram_gib_hour == OPENCOST_DEFAULTS["ram_gib_hour"]
    assert h2.model("support-llm").gpu_hour == 1.90
    assert table.versions[0].model("support-llm").per_request == 0.0002


def test_documented_defaults_and_error() -> None:
    for key, value in OPENCOST_DEFAULTS.items():
        assert f"| `{key}` | {value} per" in DOC
    [quoted] = re.findall(r"`(prices\.toml: version '2026-h2': cpu_core_hour: [^`]*)`", DOC)
    data = {
        "versions": [
            {"version": "2026-h2", "effective_from": "2026-07-01T00:00:00Z", "cpu_core_hour": -1}
        ]
    }
    with pytest.raises(PriceError) as info:
        parse_price_table(data, source="prices.toml")
    assert str(info.value) == quoted
