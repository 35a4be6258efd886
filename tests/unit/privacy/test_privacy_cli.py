"""``infertrail privacy``: erase, status, purge, break-glass, with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.verify import verify_log
from infertrail.config import Settings
from infertrail.privacy.cli import privacy
from infertrail.runtime.audit import AuditTrail
from tests.unit.privacy.conftest import CREDIT_INPUTS, JUSTIFICATION
from tests.unit.runtime.test_audit_privacy import event


@pytest.fixture
def settings(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A data dir holding decisions (with raw payloads) for two applicants; no server running."""
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INFERTRAIL_TELEMETRY_FILES", "false")
    s = Settings(raw_payloads_enabled=True)
    trail = AuditTrail.open(s, fsync=False)
    try:
        for i, subject in enumerate(["alice", "alice", "bob"]):
            ev = event(f"req-{i}", subject)
            trail(ev)
            ev.audit.result(timeout=30)
    finally:
        trail.close()
    return s


def run(*args: str) -> Result:
    return CliRunner().invoke(privacy, list(args))


def log_size(settings: Settings) -> int:
    vkey = verifier_key_path(settings.signing_key_file).read_text().strip()
    report = verify_log(settings.audit_log_dir, settings.lake_url, NoteVerifier.from_key(vkey))
    assert report.ok, report.finding
    return report.records


def test_status_erase_status(settings: Settings) -> None:
    before = run("status", "--subject", "alice", "--json")
    assert before.exit_code == 0, before.output
    data = json.loads(before.output)
    assert data["pseudonym"].startswith("p-") and data["erasure"] is None

    erased = run("erase", "--subject", "alice", "--actor", "staff-42", "--reason",
                 "GDPR Art. 17 request", "--json")  # fmt: skip
    assert erased.exit_code == 0, erased.output
    receipt = json.loads(erased.output)
    assert receipt["actor"] == {"id": "staff-42", "role": "compliance"}
    assert (receipt["mapping_rows"], receipt["data_keys"], receipt["payloads"]) == (1, 1, 2)
    assert receipt["receipt_seq"] == 3 == log_size(settings) - 1

    again = run("erase", "--subject", "alice", "--actor", "staff-42", "--reason", "again")
    assert again.exit_code == 0 and f"receipt seq {receipt['receipt_seq']}" in again.output
    assert log_size(settings) == 4  # idempotent: nothing appended

    after = run("status", "--subject", "alice")
    assert after.exit_code == 0
    assert "no pseudonym held" in after.output
    assert f"erased at {receipt['erased_at']} by staff-42 (role compliance)" in after.output


def test_break_glass_prints_the_input_and_is_logged(settings: Settings) -> None:
    result = run("break-glass", "--request-id", "req-2", "--actor", "staff-17",
                 "--justification", JUSTIFICATION)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == CREDIT_INPUTS
    assert "recorded at seq 3" in result.stderr
    assert log_size(settings) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "auditor", "--justification", JUSTIFICATION], "needs role admin"),
        (["--justification", "debug"], "justification must be 10 to 1000 characters, got 5"),
    ],
)
def test_break_glass_refusals_exit_1_and_log_nothing(
    settings: Settings, args: list[str], message: str
) -> None:
    result = run("break-glass", "--request-id", "req-2", "--actor", "staff-17", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert log_size(settings) == 3


def test_refusals_exit_1(settings: Settings) -> None:
    unknown = run("erase", "--subject", "nobody", "--actor", "staff-42", "--reason", "Art. 17")
    assert unknown.exit_code == 1 and "nothing to erase" in unknown.output
    auditor = run("erase", "--subject", "bob", "--actor", "s", "--role", "auditor",
                  "--reason", "Art. 17")  # fmt: skip
    assert auditor.exit_code == 1 and "needs role admin or compliance" in auditor.output
    missing = run("break-glass", "--request-id", "req-404", "--actor", "staff-17",
                  "--justification", JUSTIFICATION)  # fmt: skip
    assert missing.exit_code == 1 and "no raw payload for request 'req-404'" in missing.output
    assert log_size(settings) == 3


def test_usage_errors_exit_2(settings: Settings) -> None:
    assert run("erase", "--subject", "bob").exit_code == 2  # missing options
    empty_actor = run("erase", "--subject", "bob", "--actor", "", "--reason", "Art. 17")
    assert empty_actor.exit_code == 2 and "bad --actor/--role" in empty_actor.output
    too_long = run("erase", "--subject", "x" * 300, "--actor", "s", "--reason", "Art. 17")
    assert too_long.exit_code == 2 and "1 to 256 characters, got 300" in too_long.output


def test_a_running_server_holds_the_log(settings: Settings) -> None:
    trail = AuditTrail.open(settings, fsync=False)
    try:
        result = run("erase", "--subject", "bob", "--actor", "staff-42", "--reason", "Art. 17")
        assert result.exit_code == 1
        assert "already open for writing" in result.output and "use its API" in result.output
    finally:
        trail.close()
    assert run("status", "--subject", "bob").exit_code == 0  # read-only: no lock needed


def test_purge(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = run("purge", "--json")
    assert fresh.exit_code == 0 and json.loads(fresh.output)["payloads"] == 0
    assert log_size(settings) == 3
    # 1e-9 days is 86 us: every payload stored while building the fixture has expired.
    monkeypatch.setenv("INFERTRAIL_RAW_PAYLOADS_RETENTION_DAYS", "1e-9")
    result = run("purge")
    assert result.exit_code == 0, result.output
    assert "purged 3 payload(s) and 2 data key(s)" in result.output
    assert log_size(settings) == 4


def test_without_any_privacy_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "empty"))
    assert "nothing to purge" in run("purge").output
    status = run("status", "--subject", "x")
    assert status.exit_code == 0 and "never erased" in status.output
    erased = run("erase", "--subject", "x", "--actor", "s", "--reason", "Art. 17")
    assert erased.exit_code == 1 and "no pseudonym table" in erased.output
    glass = run("break-glass", "--request-id", "r", "--actor", "s", "--justification", "x" * 12)
    assert glass.exit_code == 1 and "no raw payload store" in glass.output
    assert not (tmp_path / "empty").exists()  # nothing was created
