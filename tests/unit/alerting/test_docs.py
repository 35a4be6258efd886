"""docs/alerting.md stays true: its ```python examples run, its YAML matches the export.

Blocks fenced as ```py are sketches that need a running service and are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infertrail.alerting.export import prometheus_rules
from infertrail.alerting.rules import load_rules

REPO = Path(__file__).resolve().parents[3]
DOC = (REPO / "docs" / "alerting.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC, flags=re.M | re.S)


def test_python_examples_run() -> None:
    found = blocks("python")
    assert found
    for code in found:
        exec(compile(code, "docs/alerting.md", "exec"), {})


def test_yaml_example_is_what_export_writes() -> None:
    [example] = [yaml.safe_load(b) for b in blocks("yaml")]
    exported = yaml.safe_load(
        prometheus_rules(load_rules(REPO / "examples" / "alert-rules.toml"), 300)
    )
    [actual] = [r for r in exported["groups"][0]["rules"] if r["alert"] == example[0]["alert"]]
    assert example == [actual]
