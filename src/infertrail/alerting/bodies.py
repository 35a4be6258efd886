"""Request bodies for each receiver type, as pure functions of a transition.

* PagerDuty Events API v2 (``POST /v2/enqueue``): a trigger carries ``routing_key``,
  ``event_action``, ``dedup_key`` and ``payload`` (summary, source, severity, timestamp, component,
  group, class, custom_details); a resolve carries only ``routing_key``, ``event_action`` and
  ``dedup_key``, as in PagerDuty's documented examples.
* Alertmanager API v2 (``POST /api/v2/alerts``): a list of alerts with labels, annotations,
  startsAt, endsAt and generatorURL. Alertmanager names an alert by its label set, so trigger,
  refresh and resolve carry the same labels; a resolve is the same alert with ``endsAt`` = now.
* Slack incoming webhook: ``text`` (the notification fallback) and ``blocks``.
* Generic webhook: the transition as JSON, with a schema name.

Refreshes (re-assertions of a firing alert) only go to Alertmanager, which would otherwise
resolve the alert by itself at ``endsAt``; the other receivers get None (nothing to send).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from infertrail.alerting.rules import Severity
from infertrail.alerting.transitions import Transition, utc_iso

PAGERDUTY_SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")
PAGERDUTY_SUMMARY_MAX = 1024
WEBHOOK_SCHEMA = "infertrail.alert.transition/v1"


def pagerduty_event(
    t: Transition, *, routing_key: str, source: str, group: str | None = None
) -> dict[str, Any] | None:
    """The Events API v2 body for ``t`` (None for a refresh, which PagerDuty does not need)."""
    if t.kind == "refresh":
        return None
    if t.kind == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": t.dedup_key}
    details: dict[str, Any] = dict(t.custom_details)
    details["labels"] = dict(t.labels)
    details.update({k: v for k, v in t.annotations.items() if k != "summary"})
    payload: dict[str, Any] = {
        "summary": _clip(t.summary, PAGERDUTY_SUMMARY_MAX),
        "source": source,
        "severity": t.severity,  # our severities are PagerDuty's own four words
        "timestamp": utc_iso(t.at),
        "component": t.model,
        "class": t.signal,
        "custom_details": details,
    }
    group = group or t.labels.get("team")
    if group:
        payload["group"] = group
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": t.dedup_key,
        "payload": payload,
    }


def alertmanager_alerts(
    t: Transition,
    *,
    now: datetime,
    expires_after_s: float,
    generator_url: str | None = None,
) -> list[dict[str, Any]]:
    """The ``postableAlerts`` body for ``t``: one alert, resolved when ``t`` is a resolve."""
    if t.kind == "resolve":
        # Alertmanager refuses endsAt before startsAt (possible with a skewed clock).
        ends = max(now, t.started_at)
    else:
        ends = now + timedelta(seconds=expires_after_s)
    alert: dict[str, Any] = {
        "labels": dict(t.labels),
        "annotations": dict(t.annotations),
        "startsAt": utc_iso(t.started_at),
        "endsAt": utc_iso(ends),
    }
    if generator_url:
        alert["generatorURL"] = generator_url
    return [alert]


_SLACK_ICON = {
    "critical": ":red_circle:",
    "error": ":large_orange_circle:",
    "warning": ":large_yellow_circle:",
    "info": ":large_blue_circle:",
}


def slack_message(t: Transition) -> dict[str, Any] | None:
    """An incoming-webhook message for ``t`` (None for a refresh)."""
    if t.kind == "refresh":
        return None
    resolved = t.kind == "resolve"
    icon = ":white_check_mark:" if resolved else _SLACK_ICON[t.severity]
    status = "RESOLVED" if resolved else t.severity.upper()
    head = f"{icon} [{status}] {t.rule} on {t.model}"
    summary = _slack_escape(t.summary)
    fields = [
        ("Signal", t.signal),
        ("Value", f"{t.value:.6g}"),
        ("Threshold", f"{t.comparison} {t.threshold:g}"),
        ("Since", utc_iso(t.started_at)),
    ]
    return {
        "text": f"{_slack_escape(head)}: {summary}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{_slack_escape(head)}*\n{summary}"},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"}
                    for name, value in fields
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"dedup key `{_slack_escape(t.dedup_key)}`"}
                ],
            },
        ],
    }


def webhook_body(t: Transition) -> dict[str, Any] | None:
    """The transition as JSON for a generic webhook (None for a refresh)."""
    if t.kind == "refresh":
        return None
    return {"schema": WEBHOOK_SCHEMA, **t.to_json()}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reserves exactly these three characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
