"""``infertrail audit monitor`` following the demo service's own log over tlog-tiles, on loopback.

A real ``infertrail serve`` answers decisions and serves its audit log at ``/tlog``; the monitor,
a separate process, remembers what it verified and alerts a local webhook through the alert
rules. The operator then restores an old backup of the data directory (a rollback: decisions
dropped), and later the restored log grows past what the monitor saw with other decisions (a
fork, signed by the same key). Both are caught and alerted; so is a log that stopped growing.
Without a remembered state (each look a first look) neither would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import LOOPBACK, free_port, poll
from tests.unit.alerting.fakes import FakeReceiver, webhook_receiver

pytestmark = pytest.mark.slow

RULES = """
[receivers.hook]
type = "webhook"
url = "{url}"

[[rules]]
name = "tlog-rollback"
signal = "tlog.rollback"
comparison = ">"
threshold = 0
severity = "critical"
receivers = ["hook"]

[[rules]]
name = "tlog-fork"
signal = "tlog.fork"
comparison = ">"
threshold = 0
severity = "critical"
receivers = ["hook"]

[[rules]]
name = "tlog-stalled"
signal = "tlog.seconds_since_growth"
comparison = ">"
threshold = 1
receivers = ["hook"]
"""


class Service:
    """``infertrail serve`` on a data directory, started and stopped as an operator would."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data = data
        self.env = env
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.decisions = 0

    @contextmanager
    def running(self) -> Iterator[httpx.Client]:
        server = subprocess.Popen(
            [sys.executable, "-m", "infertrail", "--data-dir", str(self.data), "serve",
             "--port", str(self.port), "--log-level", "warning"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=self.base, timeout=10.0) as http:
                poll(lambda: http.get("/readyz").status_code == 200 or None, timeout_s=90,
                     what="serve")  # fmt: skip
                yield http
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=60)
            assert server.returncode == 0, stderr

    def decide(self, http: httpx.Client, count: int) -> int:
        """Send ``count`` decisions; the size of the first checkpoint that covers them."""
        # Read before sending: a checkpoint published while they are sent may cover them all.
        before = self.size(http)
        for _ in range(count):
            self.decisions += 1
            answer = http.post("/v1/sentiment", json={"text": f"review {self.decisions}"})
            assert answer.status_code == 200, answer.text
        return poll(lambda: self.size(http) if self.size(http) >= before + count else None,
                    timeout_s=30, what="a checkpoint covering the decisions")  # fmt: skip

    @staticmethod
    def size(http: httpx.Client) -> int:
        return int(http.get("/tlog/checkpoint").text.split("\n")[1])


@pytest.fixture
def world(tmp_path: Path, trained_models: Path, clean_env: None) -> Iterator[dict[str, Any]]:
    data = tmp_path / "data"
    shutil.copytree(trained_models, data / "models")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))}
    with webhook_receiver() as hook:
        rules = tmp_path / "rules.toml"
        rules.write_text(RULES.format(url=hook.url))
        yield {"data": data, "env": env, "hook": hook, "rules": rules, "root": tmp_path}


def monitor(world: dict[str, Any], url: str, *args: str) -> subprocess.CompletedProcess[str]:
    vkey = (world["data"] / "keys/audit.key.pub").read_text().strip()
    return subprocess.run(
        [sys.executable, "-m", "infertrail", "audit", "monitor", url, "--key", vkey,
         "--state", str(world["root"] / "monitor-state.json"), *args],
        env=world["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def triggered(hook: FakeReceiver, rule: str) -> list[dict[str, Any]]:
    return [
        r.body for r in hook.accepted() if r.body["rule"] == rule and r.body["kind"] == "trigger"
    ]


def test_monitor_catches_a_restored_backup_and_the_fork_after_it(world: dict[str, Any]) -> None:
    data, hook, rules = world["data"], world["hook"], str(world["rules"])
    service = Service(data, world["env"])
    url = f"{service.base}/tlog"

    # 1. The log as first seen; then it stops growing: stalled, alerted.
    with service.running() as http:
        first_size = service.decide(http, 4)
        first = monitor(world, url, "--once", "--json", "--alert-rules", rules)
        assert first.returncode == 0, first.stdout + first.stderr
        look = json.loads(first.stdout)
        assert (look["kind"], look["size"], look["remembered"]) == ("ok", first_size, "created")
        assert look["tiles_fetched"]  # the tiles had to reproduce the checkpoint's root
        poll(lambda: True if service.size(http) == first_size else None, timeout_s=5,
             what="an idle log")  # fmt: skip
        time.sleep(1.5)
        stalled = monitor(world, url, "--once", "--stall-after", "1", "--alert-rules", rules)
        assert stalled.returncode == 1 and stalled.stdout.startswith("STALLED: "), stalled.stdout
        poll(lambda: triggered(hook, "tlog-stalled") or None, timeout_s=10, what="stall alert")
    backup = world["root"] / "backup"
    shutil.copytree(data, backup)  # the operator keeps a copy of the data directory

    # 2. The log grows; the monitor checks it extends what it saw.
    with service.running() as http:
        grown_size = service.decide(http, 6)
        grown = monitor(world, url, "--once", "--alert-rules", rules)
        assert grown.returncode == 0, grown.stdout + grown.stderr
        assert grown.stdout.startswith(f"OK: infertrail.local/infertrail-demo size {grown_size}")
        assert f"grew from {first_size} to {grown_size}, consistently" in grown.stdout
    assert grown_size > first_size

    # 3. The backup is restored: the decisions since are gone, every file validly signed.
    shutil.rmtree(data)
    shutil.copytree(backup, data)
    with service.running() as http:
        assert service.size(http) == first_size
        watching = subprocess.Popen(
            [sys.executable, "-m", "infertrail", "audit", "monitor", url, "--key",
             (data / "keys/audit.key.pub").read_text().strip(), "--state",
             str(world["root"] / "monitor-state.json"), "--interval", "0.3",
             "--alert-rules", rules],
            env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            alert = poll(lambda: triggered(hook, "tlog-rollback") or None, timeout_s=30,
                         what="the rollback alert")  # fmt: skip
        finally:
            watching.send_signal(signal.SIGTERM)
            out, err = watching.communicate(timeout=30)
        assert watching.returncode == 0, err
        assert "ROLLBACK: " in out and f"size {first_size}" in out and f"size {grown_size}" in out
        assert alert[0]["model"] == "infertrail.local/infertrail-demo"
        assert alert[0]["severity"] == "critical"
        # Without a remembered checkpoint the restored log looks fine.
        fresh = monitor(world, url, "--once", "--state", str(world["root"] / "fresh.json"))
        assert fresh.returncode == 0, fresh.stdout

        # 4. The restored log grows past what was seen, with other decisions: a fork.
        while service.size(http) <= grown_size:
            service.decide(http, grown_size - service.size(http) + 1)
        forked = monitor(world, url, "--once", "--json", "--alert-rules", rules)
        assert forked.returncode == 1
        look = json.loads(forked.stdout)
        assert look["kind"] == "fork" and look["remembered"] == "kept"
        evidence = look["evidence"]
        assert evidence["remembered_size"] == grown_size
        assert evidence["root_at_remembered_size"] != evidence["remembered_root"]
        assert evidence["consistency_proof"]
        poll(lambda: triggered(hook, "tlog-fork") or None, timeout_s=10, what="fork alert")

    state = json.loads((world["root"] / "monitor-state.json").read_text())
    assert state["size"] == grown_size  # never moved to the rolled-back or forked log
    assert [c["kind"] for c in state["conflicts"]][-1] == "fork"
    assert "rollback" in [c["kind"] for c in state["conflicts"]]


def test_monitor_refuses_garbage_and_the_wrong_key(world: dict[str, Any]) -> None:
    service = Service(world["data"], world["env"])
    with service.running() as http:
        service.decide(http, 1)
        url = f"{service.base}/tlog"
        # A URL that answers, but not with a checkpoint: the service's own metrics.
        garbage = monitor(world, f"{service.base}/metrics-not-a-log", "--once")
        assert garbage.returncode == 1 and garbage.stdout.startswith("UNREACHABLE: ")
        wrong = monitor(world, url, "--once", "--json", "--origin", "other.example/log")
        assert wrong.returncode == 1 and json.loads(wrong.stdout)["kind"] == "invalid"
    down = monitor(world, url, "--once")
    assert down.returncode == 1 and down.stdout.startswith("UNREACHABLE: ")
    bad_key = monitor(world, url, "--once", "--key", "not-a-key")
    assert bad_key.returncode == 2
