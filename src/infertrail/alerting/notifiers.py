"""Notifiers: what each receiver type is sent, as an HTTP request built from a transition.

One class per receiver type (PagerDuty Events API v2, Alertmanager API v2, Slack incoming
webhook, generic webhook); the bodies themselves come from ``payloads``. Sending, retrying and
counting live in ``delivery``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from infertrail.alerting import bodies
from infertrail.alerting.rules import (
    AlertmanagerReceiver,
    PagerDutyReceiver,
    Receiver,
    SlackReceiver,
    WebhookReceiver,
)
from infertrail.alerting.transitions import Transition


@dataclass(frozen=True)
class HttpRequest:
    """A JSON POST to make."""

    url: str
    body: Any


class Notifier(Protocol):
    """Turns a transition into the request one receiver expects (None: nothing to send)."""

    @property
    def name(self) -> str:
        """The receiver's name in the rules file."""
        ...

    @property
    def type(self) -> str:
        """The receiver type: pagerduty, alertmanager, slack or webhook."""
        ...

    def request(self, t: Transition, now: datetime) -> HttpRequest | None:
        """The request for ``t`` at time ``now``."""
        ...


@dataclass(frozen=True)
class PagerDutyNotifier:
    """PagerDuty Events API v2."""

    name: str
    url: str
    routing_key: str = field(repr=False)
    source: str
    group: str | None = None
    type: str = "pagerduty"

    def request(self, t: Transition, now: datetime) -> HttpRequest | None:
        """``POST /v2/enqueue`` with the trigger or resolve event."""
        body = bodies.pagerduty_event(
            t, routing_key=self.routing_key, source=self.source, group=self.group
        )
        return None if body is None else HttpRequest(self.url, body)


@dataclass(frozen=True)
class AlertmanagerNotifier:
    """Prometheus Alertmanager API v2."""

    name: str
    base_url: str
    expires_after_s: float = 3600.0
    generator_url: str | None = None
    type: str = "alertmanager"

    def request(self, t: Transition, now: datetime) -> HttpRequest:
        """``POST /api/v2/alerts`` with the alert (resolved: endsAt = now)."""
        body = bodies.alertmanager_alerts(
            t, now=now, expires_after_s=self.expires_after_s, generator_url=self.generator_url
        )
        return HttpRequest(f"{self.base_url.rstrip('/')}/api/v2/alerts", body)


@dataclass(frozen=True)
class SlackNotifier:
    """Slack incoming webhook."""

    name: str
    url: str = field(repr=False)
    type: str = "slack"

    def request(self, t: Transition, now: datetime) -> HttpRequest | None:
        """The message for ``t``."""
        body = bodies.slack_message(t)
        return None if body is None else HttpRequest(self.url, body)


@dataclass(frozen=True)
class WebhookNotifier:
    """Generic JSON webhook."""

    name: str
    url: str = field(repr=False)
    type: str = "webhook"

    def request(self, t: Transition, now: datetime) -> HttpRequest | None:
        """The transition as JSON."""
        body = bodies.webhook_body(t)
        return None if body is None else HttpRequest(self.url, body)


def notifier_for(receiver: Receiver, environ: Mapping[str, str] | None = None) -> Notifier:
    """The notifier for a configured receiver; secrets are read from the environment here."""
    match receiver:
        case PagerDutyReceiver():
            return PagerDutyNotifier(
                receiver.name,
                receiver.url,
                receiver.resolved_routing_key(environ),
                receiver.source or socket.gethostname(),
                receiver.group,
            )
        case AlertmanagerReceiver():
            return AlertmanagerNotifier(
                receiver.name, receiver.url, receiver.expires_after_s, receiver.generator_url
            )
        case SlackReceiver():
            return SlackNotifier(receiver.name, receiver.resolved_url(environ))
        case WebhookReceiver():
            return WebhookNotifier(receiver.name, receiver.resolved_url(environ))
