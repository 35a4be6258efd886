"""Drift to page, end to end: corrupted digits -> drift windows -> one PagerDuty trigger and an
active alert in a real Alertmanager -> clean digits -> exactly one resolve.

Everything is real and on loopback: the service (uvicorn, audit trail on), the simulator
driving it over HTTP, the drift monitor closing windows of 200 samples, the alert engine with
the rules file from Settings, a local PagerDuty Events API v2 receiver that checks the
documented schema (answers 400 otherwise), and Debian's prometheus-alertmanager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infertrail.demo.simulate import simulate_traffic
from tests.e2e.conftest import DriftService, alertmanager_alerts, drift_service
from tests.integration.conftest import ManagedProcess, poll, settings_for
from tests.unit.alerting.fakes import FakeReceiver, Received, pagerduty_receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 200
FOR_WINDOWS = 3  # N
RESOLVE_AFTER = 2  # M
RULE = "digits-input-drift"
ROUTING_KEY = "R0UT1NGKEYE2E0123456789ABCDEF012"

RULES = """\
[receivers.oncall]
type = "pagerduty"
url = "{pd}/v2/enqueue"
routing_key = "{routing_key}"
source = "infertrail-e2e"

[receivers.alertmanager]
type = "alertmanager"
url = "{am}"
expires_after_s = 600

[[rules]]
name = "{rule}"
signal = "drift.share_drifted"
model = "digits"
comparison = ">"
threshold = 0.3
for_windows = {n}
resolve_after = {m}
severity = "critical"
receivers = ["oncall", "alertmanager"]
labels = {{ team = "vision" }}
annotations = {{ summary = "{{model}}: {{value:.0%}} of features drifted" }}
"""


class Run:
    """Sends one full window at a time and waits until the service has judged it."""

    def __init__(self, service: DriftService, pd: FakeReceiver) -> None:
        self.service = service
        self.pd = pd
        self.windows = 0
        alerting = service.runtime.alerting
        assert alerting is not None, "alerting must be configured"
        self.engine = alerting.engine
        self.dispatch = alerting.dispatch

    def window(self, scenario: str, severity: int = 5) -> float:
        """One window of ``scenario`` traffic; returns its share of drifted features."""
        result = simulate_traffic(
            self.service.base_url,
            model="digits",
            scenario=scenario,
            severity=severity,
            windows=1,
            window_size=WINDOW,
            concurrency=8,
            seed=self.windows,
        )
        assert (result.ok, result.failed) == (WINDOW, 0), result.summary()
        self.windows += 1
        reports = self.service.judged("digits")
        assert len(reports) == self.windows, "each batch must fill exactly one window"
        assert reports[-1].n_samples == WINDOW
        return reports[-1].share_drifted

    def firing(self) -> bool:
        return bool(self.engine.firing())

    def settle(self) -> None:
        """Wait until every notification submitted so far was delivered or given up."""

        def settled() -> bool | None:
            stats = self.dispatch.stats().values()
            return True if all(s.delivered + s.failed == s.submitted for s in stats) else None

        poll(settled, timeout_s=30, what="the notifications to be delivered")

    def pages(self, action: str) -> list[Received]:
        return [r for r in self.pd.received if r.body.get("event_action") == action]


def active(base: str) -> list[dict[str, Any]]:
    return [a for a in alertmanager_alerts(base, RULE) if a["status"]["state"] == "active"]


def test_corrupted_digits_page_once_and_clean_traffic_resolves_once(
    isolated_env: None,
    tmp_path: Path,
    drift_models: Path,
    alertmanager: tuple[str, ManagedProcess],
) -> None:
    am_base, am_proc = alertmanager
    with pagerduty_receiver() as pd:
        rules = tmp_path / "alert-rules.toml"
        rules.write_text(
            RULES.format(
                pd=pd.url,
                am=am_base,
                routing_key=ROUTING_KEY,
                rule=RULE,
                n=FOR_WINDOWS,
                m=RESOLVE_AFTER,
            )
        )
        settings = settings_for(
            tmp_path / "data",
            drift_window_size=WINDOW,
            drift_window_seconds=None,
            drift_sample_rate=1.0,
            alert_rules_file=rules,
            metric_export_interval_ms=60_000,
        )
        with drift_service(settings, drift_models) as service:
            run = Run(service, pd)

            # Clean traffic for several windows: no drift, no page, nothing in Alertmanager.
            clean_shares = [run.window("clean") for _ in range(4)]
            assert max(clean_shares) <= 0.3, clean_shares
            assert pd.received == []
            assert alertmanager_alerts(am_base, RULE) == []

            # Corrupted traffic: one trigger within N + 1 windows, and never a second one.
            corrupted_shares: list[float] = []
            while not run.firing() and len(corrupted_shares) < FOR_WINDOWS + 1:
                corrupted_shares.append(run.window("gaussian_noise"))
            assert run.firing(), f"no alert after {len(corrupted_shares)} corrupted windows"
            assert min(corrupted_shares) > 0.3, corrupted_shares
            run.window("gaussian_noise")  # still drifting: the alert stays, no second page
            run.settle()
            triggers = run.pages("trigger")
            assert len(triggers) == 1, [r.body for r in pd.received]
            trigger = triggers[0]
            assert trigger.status == 202 and trigger.problems == []
            assert trigger.path == "/v2/enqueue"
            event = trigger.body
            assert event["routing_key"] == ROUTING_KEY
            assert event["dedup_key"] == f"infertrail/{RULE}/digits"
            payload = event["payload"]
            assert payload["severity"] == "critical"
            assert payload["source"] == "infertrail-e2e"
            assert payload["component"] == "digits"
            assert payload["group"] == "vision"
            assert payload["summary"].startswith("digits: ")
            assert payload["custom_details"]["rule"] == RULE
            assert payload["custom_details"]["value"] > 0.3

            alert = poll(
                lambda: active(am_base) or None,
                timeout_s=30,
                process=am_proc,
                what="the drift alert to be active in Alertmanager",
            )
            assert len(alert) == 1
            assert alert[0]["labels"] == {
                "alertname": RULE,
                "model": "digits",
                "severity": "critical",
                "signal": "drift.share_drifted",
                "team": "vision",
            }

            # Back to clean: exactly one resolve, after M clean windows.
            clean_after: list[float] = []
            while run.firing() and len(clean_after) < RESOLVE_AFTER + 1:
                clean_after.append(run.window("clean"))
            assert not run.firing(), f"still firing after {len(clean_after)} clean windows"
            assert len(clean_after) == RESOLVE_AFTER, clean_after
            run.window("clean")
            run.settle()
            resolves = run.pages("resolve")
            assert [r.body for r in resolves] == [
                {
                    "routing_key": ROUTING_KEY,
                    "event_action": "resolve",
                    "dedup_key": f"infertrail/{RULE}/digits",
                }
            ]
            assert resolves[0].status == 202 and resolves[0].problems == []
            poll(
                lambda: True if not active(am_base) else None,
                timeout_s=30,
                process=am_proc,
                what="the drift alert to leave Alertmanager's active alerts",
            )
        # After shutdown: nothing more was sent, nothing left undelivered.
        assert [r.body["event_action"] for r in pd.received] == ["trigger", "resolve"]
        assert all(r.problems == [] for r in pd.received)
        stats = run.dispatch.stats()
        assert stats["oncall"].failed == 0 and stats["alertmanager"].failed == 0
        assert run.engine.pending_deliveries() == []
