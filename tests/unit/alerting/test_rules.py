"""Rule files: loading TOML and YAML, and one clear error per kind of mistake."""

from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from infertrail.alerting.rules import (
    AlertmanagerReceiver,
    PagerDutyReceiver,
    ReceiverSecretError,
    RuleError,
    SlackReceiver,
    load_rules,
    parse_rules,
)
from tests.unit.alerting.helpers import rule

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "alert-rules.toml"
GOOD: dict[str, Any] = {
    "name": "digits-drift",
    "signal": "drift.share_drifted",
    "model": "digits",
    "comparison": ">",
    "threshold": 0.3,
    "for_windows": 3,
    "resolve_after": 2,
    "severity": "critical",
    "receivers": ["pd"],
}
PD = {"pd": {"type": "pagerduty", "routing_key_env": "PD_ROUTING_KEY"}}


def problems_for(
    rule_overrides: dict[str, Any], receivers: dict[str, Any] | None = None
) -> list[str]:
    body = {k: v for k, v in {**GOOD, **rule_overrides}.items() if v is not ...}
    with pytest.raises(RuleError) as info:
        parse_rules({"rules": [body], "receivers": PD if receivers is None else receivers})
    return list(info.value.problems)


def test_the_brief_example_message_is_exact() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules({"rules": [{**GOOD, "for_windows": 0}], "receivers": PD})
    assert info.value.problems == ["rule 'digits-drift': for_windows must be >= 1, got 0"]
    assert "rule 'digits-drift': for_windows must be >= 1, got 0" in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"resolve_after": -2}, "rule 'digits-drift': resolve_after must be >= 1, got -2"),
        ({"for_windows": 2.5}, "rule 'digits-drift': for_windows: input should be a valid integer"),
        (
            {"for_windows": True},
            "rule 'digits-drift': for_windows: input should be a valid integer",
        ),
        (
            {"comparison": "=="},
            "rule 'digits-drift': comparison must be one of '>', '>=', '<' or '<=', got '=='",
        ),
        (
            {"severity": "page"},
            "rule 'digits-drift': severity must be one of "
            "'critical', 'error', 'warning' or 'info', got 'page'",
        ),
        ({"threshold": "high"}, "rule 'digits-drift': threshold: input should be a valid number"),
        (
            {"threshold": float("nan")},
            "rule 'digits-drift': threshold must be a finite number, got nan",
        ),
        ({"threshold": ...}, "rule 'digits-drift': threshold is required"),
        ({"signal": ...}, "rule 'digits-drift': signal is required"),
        ({"signal": "Drift Score"}, "rule 'digits-drift': signal must match"),
        ({"name": "bad name!"}, "rule 'bad name!': name must match"),
        ({"model": ""}, "rule 'digits-drift': model: string should have at least 1 character"),
        ({"for_window": 3}, "rule 'digits-drift': for_window is not a known field"),
        ({"labels": {"bad-name": "x"}}, "rule 'digits-drift': labels: name 'bad-name' must match"),
        ({"labels": {"__x": "x"}}, "rule 'digits-drift': labels: name '__x' must match"),
        (
            {"labels": {"team": 3}},
            "rule 'digits-drift': labels.team: input should be a valid string",
        ),
        (
            {"labels": {"severity": "x"}},
            "rule 'digits-drift': labels: label 'severity' is set by the engine",
        ),
        (
            {"annotations": {"summary": "{nope}"}},
            "rule 'digits-drift': annotations.summary: unknown placeholder {nope}",
        ),
        (
            {"annotations": {"summary": "{rule.__class__}"}},
            "rule 'digits-drift': annotations.summary: placeholder {rule.__class__}",
        ),
        (
            {"annotations": {"summary": "{value:q}"}},
            "rule 'digits-drift': annotations.summary: Unknown format code 'q'",
        ),
        (
            {"annotations": {"summary": "{labels[team]}"}},
            "rule 'digits-drift': annotations.summary: no value for 'team'",
        ),
        ({"annotations": {"x": "{"}}, "rule 'digits-drift': annotations.x: Single '{' encountered"),
        (
            {"annotations": {"x": "{}"}},
            "rule 'digits-drift': annotations.x: positional placeholders",
        ),
        (
            {"dedup_key": "{rule}/{value}"},
            "rule 'digits-drift': dedup_key: {value} changes between trigger and resolve",
        ),
        (
            {"dedup_key": ""},
            "rule 'digits-drift': dedup_key: string should have at least 1 character",
        ),
        (
            {"receivers": ["nobody"]},
            "rule 'digits-drift': receivers: unknown receiver 'nobody' (defined: pd)",
        ),
        ({"promql": ""}, "rule 'digits-drift': promql: string should have at least 1 character"),
    ],
)
def test_each_field_mistake_names_rule_and_field(override: dict[str, Any], expected: str) -> None:
    problems = problems_for(override)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_unnamed_rule_is_named_by_position() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(
            {"rules": [GOOD, {"signal": "x", "comparison": ">", "threshold": 1}], "receivers": PD}
        )
    assert info.value.problems == ["rule #2: name is required"]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(
            {
                "rules": [{**GOOD, "for_windows": 0, "severity": "x"}, GOOD],
                "receivers": {**PD, "chat": {"type": "slack"}},
                "rulez": [],
            }
        )
    text = str(info.value)
    assert "5 problems" in text
    assert "unknown top-level key 'rulez'" in text
    assert "receiver 'chat': exactly one of url and url_env must be set" in text
    assert "rule 'digits-drift': name is used by more than one rule" in text


@pytest.mark.parametrize(
    ("receiver", "expected"),
    [
        ({}, "receiver 'r': type is required (one of pagerduty, alertmanager, slack, webhook)"),
        (
            {"type": "email"},
            "receiver 'r': type must be one of "
            "pagerduty, alertmanager, slack, webhook, got 'email'",
        ),
        (
            {"type": "pagerduty"},
            "receiver 'r': exactly one of routing_key and routing_key_env must be set",
        ),
        (
            {"type": "pagerduty", "routing_key": "a", "routing_key_env": "B"},
            "receiver 'r': exactly one of routing_key",
        ),
        (
            {"type": "pagerduty", "routing_key": "a", "url": "ftp://x"},
            "receiver 'r': url: must start with http:// or https://, got 'ftp://x'",
        ),
        ({"type": "alertmanager"}, "receiver 'r': url is required"),
        (
            {"type": "alertmanager", "url": "http://a", "expires_after_s": 0},
            "receiver 'r': expires_after_s must be > 0.0, got 0",
        ),
        (
            {"type": "slack", "url": "hooks.slack.com/x"},
            "receiver 'r': must start with http:// or https://",
        ),
        (
            {"type": "webhook", "url_env": "A", "token": "x"},
            "receiver 'r': token is not a known field",
        ),
        ({"type": "webhook", "url_env": "A", "name": "x"}, "receiver 'r': name is not a field"),
        ("oops", "receiver 'r': must be a table, got str"),
    ],
)
def test_receiver_mistakes_name_receiver_and_field(receiver: Any, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules({"rules": [], "receivers": {"r": receiver}})
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0].startswith(expected), info.value.problems[0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "top level must be a table/mapping, got list"),
        ({"rules": {"a": 1}}, "rules must be a list ([[rules]] in TOML), got dict"),
        ({"rules": ["x"]}, "rule #1: must be a table, got str"),
        ({"receivers": ["x"]}, "receivers must be a table of named receivers, got list"),
    ],
)
def test_shape_mistakes(data: Any, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(data)
    assert info.value.problems == [expected]


def test_empty_document_is_an_empty_ruleset() -> None:
    assert parse_rules(None).rules == ()


def test_secrets_come_from_the_environment_only_when_resolved() -> None:
    rs = parse_rules(
        {
            "rules": [GOOD],
            "receivers": {**PD, "chat": {"type": "slack", "url_env": "SLACK_URL"}},
        }
    )
    pd = rs.receivers["pd"]
    chat = rs.receivers["chat"]
    assert isinstance(pd, PagerDutyReceiver) and isinstance(chat, SlackReceiver)
    assert pd.resolved_routing_key({"PD_ROUTING_KEY": "abc"}) == "abc"
    with pytest.raises(
        ReceiverSecretError, match="receiver 'pd': routing_key_env names PD_ROUTING_KEY"
    ):
        pd.resolved_routing_key({})
    with pytest.raises(ReceiverSecretError, match="SLACK_URL must hold an http"):
        chat.resolved_url({"SLACK_URL": "not-a-url"})
    assert chat.resolved_url({"SLACK_URL": "https://hooks.example/x"}) == "https://hooks.example/x"


def test_inline_secrets_are_not_in_repr() -> None:
    rs = parse_rules(
        {"rules": [], "receivers": {"pd": {"type": "pagerduty", "routing_key": "s3cr3t"}}}
    )
    assert "s3cr3t" not in repr(rs)


def test_example_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    rs = load_rules(EXAMPLE)
    assert {r.name for r in rs.rules} >= {"digits-input-drift", "confidence-drop", "ood-spike"}
    assert isinstance(rs.receivers["alertmanager"], AlertmanagerReceiver)
    assert rs.rule("digits-input-drift").for_windows == 3
    with pytest.raises(KeyError, match="no rule 'x'"):
        rs.rule("x")


def test_toml_and_yaml_give_the_same_rules(tmp_path: Path) -> None:
    rules: list[dict[str, Any]] = [GOOD, {**GOOD, "name": "two", "labels": {"team": "a"}}]
    data = {"rules": rules, "receivers": PD}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "r.yml").write_text(yaml.safe_dump(data))
    toml = "\n".join(
        [
            '[receivers.pd]\ntype = "pagerduty"\nrouting_key_env = "PD_ROUTING_KEY"',
            *("[[rules]]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in r.items()) for r in rules),
        ]
    )
    (tmp_path / "r.toml").write_text(toml)
    loaded = [load_rules(tmp_path / n) for n in ("r.toml", "r.yaml", "r.yml")]
    assert loaded[0] == loaded[1] == loaded[2]


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return repr(v)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("r.json", "{}", "unknown file type '.json'; use .toml, .yaml or .yml"),
        ("r.toml", "rules = [", "not valid TOML"),
        ("r.yaml", "rules: [", "not valid YAML"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, expected: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(RuleError, match=re.escape(expected)):
        load_rules(tmp_path / name)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")


def test_toml_nan_threshold_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text(
        '[[rules]]\nname = "a"\nsignal = "drift.score"\ncomparison = ">"\nthreshold = nan\n'
    )
    with pytest.raises(RuleError, match="rule 'a': threshold must be a finite number, got nan"):
        load_rules(tmp_path / "r.toml")


_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@given(
    comparison=st.sampled_from(sorted(_OPS)),
    threshold=st.floats(allow_nan=False, allow_infinity=False),
    value=st.floats(allow_nan=False),
)
def test_breached_is_the_comparison(comparison: str, threshold: float, value: float) -> None:
    r = rule(comparison=comparison, threshold=threshold)
    assert r.breached(value) is _OPS[comparison](value, threshold)


def test_applies_to() -> None:
    assert rule(model="*").applies_to("anything")
    assert rule(model="digits").applies_to("digits")
    assert not rule(model="digits").applies_to("sentiment")
