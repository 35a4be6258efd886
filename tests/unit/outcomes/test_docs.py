"""docs/outcomes.md stays true: its python example runs, its JSON example validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

from infertrail.outcomes.schema import parse_outcomes

DOC = (Path(__file__).resolve().parents[3] / "docs" / "outcomes.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC, flags=re.M | re.S)


def test_python_examples_run() -> None:
    found = blocks("python")
    assert found
    for code in found:
        exec(compile(code, "docs/outcomes.md", "exec"), {})


def test_json_example_is_a_valid_batch() -> None:
    [example] = [json.loads(b) for b in blocks("json")]
    parsed = parse_outcomes(example, batch_max=10)
    assert [(o.label, o.value, o.kind) for o in parsed] == [
        ("0", 0.0, "label"),
        ("positive", None, "label"),
        (None, 129.9, "revenue"),
    ]
