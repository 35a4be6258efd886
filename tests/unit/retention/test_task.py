"""The runtime's retention task: applies at start and every interval, survives a failed run,
stops before the audit log it records to."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infertrail.config import Settings
from infertrail.keyring import Keyring
from infertrail.privacy.keys import INPUT_KEY_PURPOSE, periodic_purposes
from infertrail.retention.task import RetentionTask
from infertrail.runtime import Runtime
from tests.unit.retention.conftest import World
from tests.unit.retention.test_service import AFTER_MARCH, two_months

PAST = datetime(2025, 1, 15, tzinfo=UTC).timestamp()  # its input key was due in 2025-08


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_the_first_run_is_at_start(world: World) -> None:
    two_months(world)
    world.clock.set(AFTER_MARCH)
    task = RetentionTask(world.service, interval_s=3600).start()
    try:
        assert task.flush(10)
        assert task.runs == 1 and task.last is not None and task.last.receipt_seq == 0
        assert [r["event_type"] for r in world.records()] == ["retention_purge"]
    finally:
        task.close(5)
    assert not task._thread.is_alive()


def test_a_failed_run_is_logged_and_the_next_interval_retries(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    two_months(world)
    world.clock.set(AFTER_MARCH)
    world.keyring.path.chmod(0o644)  # the keyring is refused while it is world-readable
    task = RetentionTask(world.service, interval_s=0.05)
    with caplog.at_level(logging.ERROR, logger="infertrail.retention"):
        task.start()
        try:
            assert task.flush(10) and task.last is None
            assert "retention run failed" in caplog.text and "mode 0644" in caplog.text
            world.keyring.path.chmod(0o600)
            assert wait_until(lambda: task.last is not None and task.last.receipt_seq is not None)
        finally:
            task.close(5)
    runs = task.runs
    time.sleep(0.2)
    assert task.runs == runs  # closed: no more runs
    task.close(1)  # idempotent


def test_a_bad_interval_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        RetentionTask(world.service, interval_s=0)


def runtime_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        telemetry_files=False,
        set_global_providers=False,
        drift_enabled=False,
        cost_enabled=False,
        outcomes_enabled=False,
        **overrides,
    )


@pytest.mark.usefixtures("clean_env")
def test_the_runtime_shreds_due_keys_at_start_and_records_it_in_its_log(tmp_path: Path) -> None:
    settings = runtime_settings(tmp_path)
    settings.ensure_dirs()
    # An earlier run of the service wrote records in January 2025 (kept until 2025-08-03).
    earlier = Keyring(settings.keyring_file, periodic=periodic_purposes(settings))
    key_id, _ = earlier.period_key(INPUT_KEY_PURPOSE, PAST)
    runtime = Runtime.start(settings)
    try:
        assert runtime.retention is not None and runtime.audit is not None
        assert runtime.retention.flush(10)
        records = [json.loads(raw) for _, raw in runtime.audit.log.read(0, runtime.audit.log.size)]
        (record,) = records
        assert record["event_type"] == "retention_purge"
        assert [k["key_id"] for k in record["retention_purge"]["keys"]] == [key_id]
    finally:
        runtime.shutdown()
    assert not runtime.retention._thread.is_alive()  # stopped by shutdown, before the log
    assert not Keyring(settings.keyring_file).period_keys()[0].live


@pytest.mark.usefixtures("clean_env")
def test_retention_enforce_false_runs_no_task(tmp_path: Path) -> None:
    settings = runtime_settings(tmp_path, retention_enforce=False)
    settings.ensure_dirs()
    Keyring(settings.keyring_file, periodic=periodic_purposes(settings)).period_key(
        INPUT_KEY_PURPOSE, PAST
    )
    runtime = Runtime.start(settings)
    try:
        assert runtime.retention is None
    finally:
        runtime.shutdown()
    assert Keyring(settings.keyring_file).period_keys()[0].live  # a legal hold holds
