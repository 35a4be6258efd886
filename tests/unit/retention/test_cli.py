"""``infertrail retention status / apply``: output, idempotence, exit codes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.verify import verify_log
from infertrail.cli import main
from infertrail.config import Settings
from infertrail.keyring import month_of
from infertrail.runtime.audit import AuditTrail
from tests.unit.runtime.test_audit_privacy import event

#: A decision time whose month (records kept 184 days, payloads 7) is past everything.
OLD = datetime.now(UTC) - timedelta(days=300)


@pytest.fixture
def settings(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Decisions (with raw payloads) ~300 days ago and now, written by the audit trail."""
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INFERTRAIL_TELEMETRY_FILES", "false")
    s = Settings(raw_payloads_enabled=True)
    trail = AuditTrail.open(s, fsync=False)
    try:
        for i, (subject, at_ns) in enumerate(
            [("alice", int(OLD.timestamp() * 1e9)), ("bob", time.time_ns())]
        ):
            ev = event(f"req-{i}", subject)
            ev.start_time_ns = at_ns
            trail(ev)
            ev.audit.result(timeout=30)
        assert trail.privacy.payloads is not None
        trail.privacy.payloads.flush(10)
    finally:
        trail.close()
    return s


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["retention", *args])


def verified_records(settings: Settings) -> int:
    vkey = verifier_key_path(settings.signing_key_file).read_text().strip()
    report = verify_log(settings.audit_log_dir, settings.lake_url, NoteVerifier.from_key(vkey))
    assert report.ok, report.finding
    return report.records


def test_status_says_what_apply_would_shred_and_apply_does_it_once(settings: Settings) -> None:
    old = month_of(OLD.timestamp())
    status = run("status")
    assert status.exit_code == 0, status.output
    assert f"input-hmac@{old}" in status.output and "DUE: apply destroys it" in status.output
    assert "apply would destroy 1 key(s) and delete 1 data key(s) and 1 payload(s)" in (
        status.output
    )
    data = json.loads(run("status", "--json").output)
    assert data["would_destroy"] == [f"input-hmac@{old}"]
    assert verified_records(settings) == 2

    applied = run("apply", "--json")
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.output)
    assert [k["key_id"] for k in report["destroyed"]] == [f"input-hmac@{old}"]
    assert report["shredded"] == {"data_keys": 1, "payloads": 1} and report["receipt_seq"] == 2
    assert verified_records(settings) == 3  # the record of the shredding; the log verifies

    again = run("apply")
    assert again.exit_code == 0 and "nothing due" in again.output
    assert verified_records(settings) == 3
    after = json.loads(run("status", "--json").output)
    states = {k["key_id"]: (k["state"], k["receipt_seq"]) for k in after["keys"]}
    assert states[f"input-hmac@{old}"] == ("destroyed", 2)
    assert {s for s, _ in states.values()} == {"destroyed", "live"}
    assert after["would_destroy"] == [] and after["next_due"] is not None


def test_apply_refuses_while_a_server_holds_the_log_status_still_reads(
    settings: Settings,
) -> None:
    trail = AuditTrail.open(settings, fsync=False)
    try:
        result = run("apply")
        assert result.exit_code == 1, result.output
        assert "already open for writing" in result.output and "retention task" in result.output
        assert run("status").exit_code == 0
    finally:
        trail.close()


def test_bad_settings_exit_2(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERTRAIL_AUDIT_RETENTION_CLASS", "forever")
    result = run("status")
    assert result.exit_code == 2 and "unknown retention class 'forever'" in result.output


def test_status_of_an_empty_data_dir_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "empty"))
    result = run("status")
    assert result.exit_code == 0 and "(none yet)" in result.output
    assert not (tmp_path / "empty").exists()
