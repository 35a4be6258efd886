"""The engine's alerts in a real Alertmanager (Debian's prometheus-alertmanager) on loopback.

A trigger becomes an active alert visible through GET /api/v2/alerts (and Alertmanager notifies
its own webhook receiver); refreshes keep it one alert; the resolve ends it (endsAt in the past:
it leaves the active list and Alertmanager sends "resolved").
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from infertrail.alerting.delivery import NotifierDispatch, RetryPolicy
from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import parse_rules
from infertrail.alerting.transitions import parse_utc
from tests.integration.conftest import (
    ManagedProcess,
    ProcessLauncher,
    assert_loopback_only,
    free_port,
    poll,
    wait_http_ok,
)
from tests.unit.alerting.fakes import FakeReceiver

pytestmark = pytest.mark.integration

AM_CONFIG = """\
route:
  receiver: hook
  group_by: ['alertname', 'model']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: '{hook}/hook'
        send_resolved: true
"""


def am_webhook_problems(body: Any) -> list[str]:
    """Alertmanager's webhook body (version 4) must carry a status and alerts."""
    if not isinstance(body, dict) or body.get("version") != "4":
        return ["not an Alertmanager webhook v4 body"]
    return [] if body.get("status") in ("firing", "resolved") and body.get("alerts") else ["empty"]


@pytest.fixture
def am_hook() -> Iterator[FakeReceiver]:
    with FakeReceiver(am_webhook_problems) as hook:
        yield hook


@pytest.fixture
def alertmanager(
    launcher: ProcessLauncher, tmp_path: Path, am_hook: FakeReceiver
) -> tuple[str, ManagedProcess]:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager is not installed; run scripts/test-services.sh")
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(hook=am_hook.url))
    port = free_port()
    proc = launcher.start(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no HA gossip port on 0.0.0.0:9094
        ],
    )
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/-/ready", timeout_s=30, process=proc)
    assert_loopback_only(port, proc)
    return base, proc


def our_alerts(base: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v2/alerts", params={"filter": 'alertname="digits-drift"'}, timeout=5)
    r.raise_for_status()
    alerts: list[dict[str, Any]] = r.json()
    return alerts


def test_trigger_is_visible_and_resolve_ends_it(
    alertmanager: tuple[str, ManagedProcess], am_hook: FakeReceiver, tmp_path: Path
) -> None:
    base, proc = alertmanager
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "digits-drift",
                    "signal": "drift.share_drifted",
                    "model": "digits",
                    "comparison": ">",
                    "threshold": 0.3,
                    "for_windows": 2,
                    "resolve_after": 2,
                    "severity": "critical",
                    "labels": {"team": "vision"},
                    "receivers": ["am"],
                }
            ],
            "receivers": {
                "am": {
                    "type": "alertmanager",
                    "url": base,
                    "generator_url": "http://127.0.0.1/infertrail/alerts",
                }
            },
        }
    )
    dispatch = NotifierDispatch.from_rules(rules, policy=RetryPolicy(base_delay_s=0.2, timeout_s=5))
    engine = AlertEngine(rules, dispatch, tmp_path / "alerts.json")
    try:

        def evaluate(share: float) -> list[str]:
            return [
                t.kind
                for t in engine.evaluate(
                    {"drift.share_drifted": share}, "digits", datetime.now(UTC)
                )
            ]

        assert evaluate(0.9) == []
        assert evaluate(0.9) == ["trigger"]

        def active() -> dict[str, Any] | None:
            found = [a for a in our_alerts(base) if a["status"]["state"] == "active"]
            return found[0] if found else None

        alert = poll(
            active, timeout_s=30, process=proc, what="the alert to be active in Alertmanager"
        )
        assert alert["labels"] == {
            "alertname": "digits-drift",
            "model": "digits",
            "severity": "critical",
            "signal": "drift.share_drifted",
            "team": "vision",
        }
        assert alert["annotations"]["summary"].startswith(
            "digits-drift firing: drift.share_drifted = 0.9"
        )
        assert alert["generatorURL"] == "http://127.0.0.1/infertrail/alerts"
        assert parse_utc(alert["endsAt"]) > datetime.now(UTC)  # not resolved by itself soon
        started = alert["startsAt"]

        # Still breaching: refreshed, never a second alert; one clean window does not resolve.
        assert evaluate(0.95) == []
        assert evaluate(0.1) == []
        poll(
            lambda: True if dispatch.stats()["am"].delivered == 3 else None,
            timeout_s=30,
            process=proc,
            what="the refreshes to be delivered",
        )
        assert [a["startsAt"] for a in our_alerts(base)] == [started]

        firing = poll(
            lambda: [r for r in am_hook.accepted() if r.body["status"] == "firing"] or None,
            timeout_s=30,
            process=proc,
            what="Alertmanager to notify its webhook of the firing alert",
        )
        assert firing[0].body["alerts"][0]["labels"]["alertname"] == "digits-drift"

        assert evaluate(0.1) == ["resolve"]
        poll(
            lambda: (
                True
                if not [a for a in our_alerts(base) if a["status"]["state"] == "active"]
                else None
            ),
            timeout_s=30,
            process=proc,
            what="the alert to leave Alertmanager's active alerts",
        )
        resolved = poll(
            lambda: [r for r in am_hook.accepted() if r.body["status"] == "resolved"] or None,
            timeout_s=30,
            process=proc,
            what="Alertmanager to notify its webhook of the resolve",
        )
        sent = resolved[0].body["alerts"][0]
        assert sent["status"] == "resolved"
        assert parse_utc(sent["endsAt"]) <= datetime.now(UTC)
        assert sent["startsAt"].startswith(started[:19])
    finally:
        dispatch.close()
    stats = dispatch.stats()["am"]
    assert (stats.delivered, stats.failed, stats.failures) == (4, 0, {})
    assert engine.pending_deliveries() == []
