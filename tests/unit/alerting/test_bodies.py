"""Payload builders: exactly the documented shapes, from a transition alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from infertrail.alerting import bodies
from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import Severity
from infertrail.alerting.testing import RecordingDispatch
from infertrail.alerting.transitions import Transition
from tests.unit.alerting.fakes import validate_pagerduty, validate_slack, validate_webhook
from tests.unit.alerting.helpers import rule, window


@pytest.fixture
def trigger() -> Transition:
    r = rule(for_windows=1, labels={"team": "vision"}, annotations={"runbook": "http://rb/<x>&"})
    return AlertEngine([r], RecordingDispatch(), None).evaluate(
        {"drift.share_drifted": 0.75}, "digits", window(0)
    )[0]


def test_pagerduty_trigger_is_the_documented_event(trigger: Transition) -> None:
    body = bodies.pagerduty_event(trigger, routing_key="R" * 32, source="host-1")
    assert body is not None
    assert validate_pagerduty(body) == []
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload"}
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "infertrail/digits-drift/digits"
    p = body["payload"]
    assert set(p) == {
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    }
    assert (p["source"], p["severity"], p["component"], p["class"], p["group"]) == (
        "host-1", "critical", "digits", "drift.share_drifted", "vision",
    )  # fmt: skip
    assert p["timestamp"] == "2026-11-26T12:00:00.000000Z"
    assert p["custom_details"]["value"] == 0.75
    assert p["custom_details"]["threshold"] == 0.3
    assert p["custom_details"]["labels"]["team"] == "vision"
    assert p["custom_details"]["runbook"] == "http://rb/<x>&"


def test_pagerduty_resolve_has_only_key_action_and_dedup(trigger: Transition) -> None:
    resolve = replace(trigger, kind="resolve")
    body = bodies.pagerduty_event(resolve, routing_key="R", source="h")
    assert body == {"routing_key": "R", "event_action": "resolve", "dedup_key": trigger.dedup_key}
    assert validate_pagerduty(body) == []


def test_pagerduty_group_is_omitted_without_team_and_summary_is_clipped(
    trigger: Transition,
) -> None:
    t = replace(trigger, labels={}, annotations={"summary": "x" * 2000})
    body = bodies.pagerduty_event(t, routing_key="R", source="h")
    assert body is not None
    assert "group" not in body["payload"]
    assert len(body["payload"]["summary"]) == 1024
    assert validate_pagerduty(body) == []


@pytest.mark.parametrize("severity", ["critical", "error", "warning", "info"])
def test_every_severity_is_a_pagerduty_severity(trigger: Transition, severity: Severity) -> None:
    body = bodies.pagerduty_event(replace(trigger, severity=severity), routing_key="R", source="h")
    assert body is not None and body["payload"]["severity"] == severity


def test_refresh_goes_only_to_alertmanager(trigger: Transition) -> None:
    refresh = replace(trigger, kind="refresh")
    assert bodies.pagerduty_event(refresh, routing_key="R", source="h") is None
    assert bodies.slack_message(refresh) is None
    assert bodies.webhook_body(refresh) is None
    assert bodies.alertmanager_alerts(refresh, now=trigger.at, expires_after_s=60)


def test_alertmanager_alert_lifecycle(trigger: Transition) -> None:
    now = trigger.at + timedelta(minutes=5)
    [firing] = bodies.alertmanager_alerts(
        trigger, now=now, expires_after_s=3600, generator_url="http://infertrail/alerts"
    )
    assert firing == {
        "labels": dict(trigger.labels),
        "annotations": dict(trigger.annotations),
        "startsAt": "2026-11-26T12:00:00.000000Z",
        "endsAt": "2026-11-26T13:05:00.000000Z",
        "generatorURL": "http://infertrail/alerts",
    }
    [resolved] = bodies.alertmanager_alerts(
        replace(trigger, kind="resolve"), now=now, expires_after_s=3600
    )
    assert resolved["labels"] == firing["labels"]  # same alert for Alertmanager
    assert resolved["endsAt"] == "2026-11-26T12:05:00.000000Z"
    assert "generatorURL" not in resolved
    # A clock behind the start time must not make Alertmanager refuse the resolve.
    [skewed] = bodies.alertmanager_alerts(
        replace(trigger, kind="resolve"), now=trigger.at - timedelta(hours=1), expires_after_s=1
    )
    assert skewed["endsAt"] == skewed["startsAt"]


def test_slack_message_has_text_and_escaped_blocks(trigger: Transition) -> None:
    t = replace(trigger, annotations={"summary": "a <b> & c"})
    msg = bodies.slack_message(t)
    assert msg is not None and validate_slack(msg) == []
    assert msg["text"] == ":red_circle: [CRITICAL] digits-drift on digits: a &lt;b&gt; &amp; c"
    resolved = bodies.slack_message(replace(t, kind="resolve"))
    assert resolved is not None and resolved["text"].startswith(":white_check_mark: [RESOLVED]")


def test_webhook_body_is_the_transition(trigger: Transition) -> None:
    body = bodies.webhook_body(trigger)
    assert body is not None and validate_webhook(body) == []
    assert body["schema"] == bodies.WEBHOOK_SCHEMA
    assert Transition.from_json(body) == trigger
