"""``infertrail keys`` and ``infertrail audit`` through click's CliRunner, on real logs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infertrail.audit.cli import audit, keys
from infertrail.audit.keys import load_signer
from infertrail.audit.ledger import AuditLog
from tests.unit.audit.test_lake import make_record

ORIGIN = "cli.example/log"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray infertrail.toml
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INFERTRAIL_AUDIT_ORIGIN", ORIGIN)
    return tmp_path / "data"


def invoke(group: object, *args: str) -> Result:
    return CliRunner().invoke(group, list(args), catch_exceptions=False)  # type: ignore[arg-type]


@pytest.fixture
def vkey(data_dir: Path) -> str:
    result = invoke(keys, "init")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def log_dir(data_dir: Path, vkey: str) -> Path:
    """A closed log of 40 records with its signing key in the default places."""
    signer = load_signer(data_dir / "keys/audit.key")
    path = data_dir / "audit/log"
    with AuditLog.open(path, signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(40):
            log.append(make_record(i, hour=10 + i // 25))
            if i == 9:
                log.flush()
                shutil.copyfile(path / "checkpoints/latest", data_dir.parent / "old.checkpoint")
    return path


def test_keys_init_prints_the_verifier_key_and_never_overwrites(data_dir: Path, vkey: str) -> None:
    assert vkey.startswith(ORIGIN + "+")
    assert (data_dir / "keys/audit.key.pub").read_text().strip() == vkey
    again = invoke(keys, "init")
    assert again.exit_code == 2 and "refusing" in again.output
    named = invoke(keys, "init", "--name", "other.example/log", "--key-file", str(data_dir / "k2"))
    assert named.exit_code == 0 and named.stdout.startswith("other.example/log+")
    bad = invoke(keys, "init", "--name", "bad name", "--key-file", str(data_dir / "k3"))
    assert bad.exit_code == 2


def test_seal_then_verify(log_dir: Path, data_dir: Path) -> None:
    sealed = invoke(audit, "seal")
    assert sealed.exit_code == 0, sealed.output
    assert "40 records sealed into 2 files" in sealed.stdout
    result = invoke(audit, "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: {ORIGIN}: 40 records verified (40 sealed in 2 lake files")
    report = json.loads(invoke(audit, "verify", "--json", "--workers", "2").stdout)
    assert report["ok"] is True and report["records"] == 40
    deep = invoke(audit, "verify", "--deep")
    assert deep.exit_code == 0, deep.output
    assert "40 records verified" in deep.stdout


def test_verify_reports_tampering_with_exit_1(log_dir: Path) -> None:
    segment = sorted((log_dir / "wal").iterdir())[0]
    data = bytearray(segment.read_bytes())
    data[20] ^= 1
    segment.write_bytes(bytes(data))
    result = invoke(audit, "verify")
    assert result.exit_code == 1
    assert result.stdout.startswith("TAMPERED: wal_corrupt at seq 0, wal/")
    report = json.loads(invoke(audit, "verify", "--json").stdout)
    assert report["finding"]["kind"] == "wal_corrupt" and report["finding"]["seq"] == 0


def test_verify_rollback_against_a_kept_checkpoint(log_dir: Path, data_dir: Path) -> None:
    newer = data_dir.parent / "newer.checkpoint"
    shutil.copyfile(log_dir / "checkpoints/latest", newer)
    assert invoke(audit, "verify", "--from-checkpoint", str(newer)).exit_code == 0
    shutil.copyfile(data_dir.parent / "old.checkpoint", log_dir / "checkpoints/latest")
    history = log_dir / "checkpoints/history.log"
    history.write_bytes(b"")  # the operator hides the newer checkpoints
    (log_dir / "checkpoints/commit").unlink()  # the group commits' too
    result = invoke(audit, "verify", "--from-checkpoint", str(newer))
    assert result.exit_code == 1 and "rollback" in result.stdout


def test_verify_usage_errors_exit_2(data_dir: Path, vkey: str, log_dir: Path) -> None:
    missing = invoke(audit, "--log-dir", str(data_dir / "nowhere"), "verify")
    assert missing.exit_code == 2 and "log.json is missing" in missing.output
    assert invoke(audit, "verify", "--workers", "0").exit_code == 2
    assert invoke(audit, "verify", "--key", "garbage").exit_code == 2
    assert invoke(audit, "verify", "--from-checkpoint", str(data_dir / "none")).exit_code == 2
    (data_dir / "keys/audit.key.pub").unlink()
    no_key = invoke(audit, "verify")
    assert no_key.exit_code == 2 and "pass --key" in no_key.output
    assert invoke(audit, "verify", "--key", vkey).exit_code == 0


def test_prove_and_check_proof(log_dir: Path, data_dir: Path, vkey: str) -> None:
    out = data_dir.parent / "proof.json"
    result = invoke(audit, "prove", "--seq", "7", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["seq"] == 7
    ok = invoke(audit, "check-proof", str(out), "--key", vkey)
    assert ok.exit_code == 0 and ok.stdout.startswith("VALID")
    by_file = invoke(audit, "check-proof", str(out), "--key", str(data_dir / "keys/audit.key.pub"))
    assert by_file.exit_code == 0
    evidence = json.loads(out.read_text())
    evidence["record"] = evidence["record"].replace("req-7", "req-8")
    out.write_text(json.dumps(evidence))
    bad = invoke(audit, "check-proof", str(out), "--key", vkey)
    assert bad.exit_code == 1 and bad.stdout.startswith("INVALID")
    stdout = invoke(audit, "prove", "--seq", "3")
    assert json.loads(stdout.stdout)["seq"] == 3
    beyond = invoke(audit, "prove", "--seq", "40")
    assert beyond.exit_code == 1 and "not covered" in beyond.output
    assert invoke(audit, "check-proof", str(data_dir / "none.json"), "--key", vkey).exit_code == 2
    out.write_text("[]")
    assert invoke(audit, "check-proof", str(out), "--key", vkey).exit_code == 2


def test_consistency_and_check(log_dir: Path, data_dir: Path, vkey: str) -> None:
    old = data_dir.parent / "old.checkpoint"
    result = invoke(audit, "consistency", "--old", str(old))
    assert result.exit_code == 0, result.output
    out = data_dir.parent / "consistency.json"
    out.write_text(result.stdout)
    ok = invoke(audit, "check-consistency", str(out), "--key", vkey)
    assert ok.exit_code == 0 and ok.stdout.startswith("VALID")
    other = invoke(keys, "init", "--name", "x.example/log", "--key-file", str(data_dir / "other"))
    wrong = invoke(audit, "check-consistency", str(out), "--key", other.stdout.strip())
    assert wrong.exit_code == 1
    assert invoke(audit, "consistency", "--old", str(data_dir / "none")).exit_code == 2


def test_seal_refuses_while_the_writer_runs(log_dir: Path, data_dir: Path) -> None:
    signer = load_signer(data_dir / "keys/audit.key")
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN, fsync=False):
        result = invoke(audit, "seal")
    assert result.exit_code == 1 and "already open for writing" in result.output


def test_seal_without_key_is_a_usage_error(log_dir: Path, data_dir: Path) -> None:
    result = invoke(audit, "--key-file", str(data_dir / "nokey"), "seal")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_wired_under_the_infertrail_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the lead wires it: `infertrail --data-dir D keys init` / `audit verify` use D."""
    import click

    from infertrail.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INFERTRAIL_DATA_DIR", raising=False)
    group = click.Group(
        "infertrail",
        commands={"audit": audit, "keys": keys},
        callback=main.callback,
        params=main.params,
    )
    data = tmp_path / "elsewhere"
    created = invoke(group, "--data-dir", str(data), "keys", "init", "--name", ORIGIN)
    assert created.exit_code == 0, created.output
    assert (data / "keys/audit.key").is_file()
    missing = invoke(group, "--data-dir", str(data), "audit", "verify")
    assert missing.exit_code == 2 and str(data / "audit/log") in missing.output


# ---- audit compact ------------------------------------------------------------------

# Months long closed whatever today is, and one that will not be for a while.
TIMES = ["2025-03-02T10:00:00.000001Z", "2025-03-30T23:59:59.999999Z", "2025-04-01T00:00:00Z",
         "2025-04-17T08:30:00.5Z", "2099-01-01T00:00:00Z"]  # fmt: skip


@pytest.fixture
def sealed(data_dir: Path, vkey: str) -> Path:
    """A log of 25 records over 2025-03, 2025-04 and 2099-01, sealed."""
    signer = load_signer(data_dir / "keys/audit.key")
    path = data_dir / "audit/log"
    with AuditLog.open(path, signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(25):
            log.append(make_record(i, ts=TIMES[i // 5], subject=f"p-{i % 3}"))
    assert invoke(audit, "seal").exit_code == 0
    return path


def test_compact_closed_months_once_then_verify(sealed: Path, data_dir: Path) -> None:
    first = invoke(audit, "compact", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert [m["month"] for m in summary["months"]] == ["2025-03", "2025-04"]
    assert [m["records"] for m in summary["months"]] == [10, 10]
    assert summary["records"] == 20 and summary["seconds"] >= 0
    for m in summary["months"]:
        assert (data_dir / "audit/lake" / m["file"]).is_file()
    again = invoke(audit, "compact")
    assert again.exit_code == 0
    assert again.stdout.strip().splitlines()[-1].startswith("0 months compacted, 0 records")
    verified = invoke(audit, "verify")
    assert verified.exit_code == 0, verified.output
    assert "compacted months: 2" in verified.stdout


def test_compact_text_output(sealed: Path) -> None:
    result = invoke(audit, "compact", "--grace", "36h")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("compacted 2025-03: 10 records -> compacted/month=2025-03/")
    assert lines[-1].startswith("2 months compacted, 20 records, ")


@pytest.mark.parametrize("grace", ["5x", "-1d", "1.5", "d", ""])
def test_bad_grace_is_a_usage_error(sealed: Path, grace: str) -> None:
    result = invoke(audit, "compact", "--grace", grace)
    assert result.exit_code == 2
    assert (
        "--grace" in result.output and "must be a duration like 1d, 36h, 30m or 0s" in result.output
    )


def test_compact_without_a_log_is_a_usage_error(data_dir: Path, vkey: str) -> None:
    result = invoke(audit, "compact")
    assert result.exit_code == 2
    assert "no audit log at" in result.output


def test_a_damaged_source_fails_and_names_it(sealed: Path, data_dir: Path) -> None:
    hour = next((data_dir / "audit/lake").glob("dt=2025-04-01/hour=00/*.parquet"))
    hour.chmod(0o644)
    hour.write_bytes(hour.read_bytes() + b"x")
    result = invoke(audit, "compact")
    assert result.exit_code == 1
    assert "cannot compact 2025-04" in result.output and "sha256" in result.output
