"""docs/slo.md stays true: its ```python examples run, its numbers match the code.

Blocks fenced as ```py are sketches that need a running service and are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

from infertrail.slo.burnrate import WORKBOOK_POLICY
from infertrail.telemetry import conventions as c

REPO = Path(__file__).resolve().parents[3]
DOC = (REPO / "docs" / "slo.md").read_text()
FLAT = " ".join(DOC.split())


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC, flags=re.M | re.S)


def test_python_examples_run() -> None:
    found = blocks("python")
    assert found
    for code in found:
        exec(compile(code, "docs/slo.md", "exec"), {})


def test_policy_table_is_the_code() -> None:
    for a in WORKBOOK_POLICY:
        long, short = (
            f"{s // 86400}d" if s >= 86400 else f"{s // 3600}h" if s >= 3600 else f"{s // 60}m"
            for s in (a.long_s, a.short_s)
        )
        assert f"| {a.severity} | {long} | {short} | {a.factor:g} |" in DOC


def test_listed_boundaries_are_the_histograms() -> None:
    durations = ", ".join(f"{b:g}" for b in c.DURATION_BUCKETS_S)
    assert f"({durations} s)" in FLAT
    assert "(" + ", ".join(f"{b:g}" for b in c.CONFIDENCE_BUCKETS) + ")" in FLAT
