"""Retention end to end: decisions in two months; once the first month's retention is over,
``infertrail retention apply`` shreds its keys; ``audit verify`` still passes; a compliance
query shows the old decisions as expired and the new ones not; break-glass can no longer
decrypt the old month's raw inputs, and nobody can recompute the old records' input HMACs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infertrail import monitor as monitor_module
from infertrail.audit.canonical import canonicalize
from infertrail.cli import main
from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.keyring import KeyDestroyedError, Keyring, month_of
from infertrail.runtime import Runtime

MODEL = ModelInfo("credit-lr", "2026.12.0", "c" * 64)
NOW = datetime.now(UTC)
#: The first month: its records (kept 184 days after their day) and payloads (7) are all due.
OLD = NOW - timedelta(days=300)
#: The second month: nothing of it is due.
RECENT = NOW - timedelta(days=1)
JUSTIFICATION = "INC-7731: reproduce a disputed decline for this applicant"


class _Clock:
    """Stands in for the ``time`` module inside infertrail.monitor: a settable wall clock."""

    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def time_ns(self) -> int:
        return self.now_ns

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class Decision:
    request_id: str
    at: datetime
    inputs: dict[str, Any]


@dataclass
class Decided:
    settings: Settings
    old: list[Decision]
    recent: list[Decision]


def cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])


@pytest.fixture
def decided(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Decided]:
    """A service that decided for three applicants ~300 days ago and yesterday, then stopped."""
    settings = Settings(
        data_dir=tmp_path / "data",
        set_global_providers=False,
        raw_payloads_enabled=True,
        retention_enforce=False,  # the test applies retention itself, with the CLI
        drift_enabled=False,
        outcomes_enabled=False,
    )
    clock = _Clock()
    monkeypatch.setattr(monitor_module, "time", clock)
    old: list[Decision] = []
    recent: list[Decision] = []
    schedule = [
        ("applicant-1", OLD, old),
        ("applicant-2", OLD + timedelta(minutes=5), old),
        ("applicant-1", RECENT, recent),  # the same person, active again
        ("applicant-3", RECENT + timedelta(minutes=5), recent),
    ]
    runtime = Runtime.start(settings, [MODEL])
    try:
        for i, (subject, at, bucket) in enumerate(schedule):
            clock.now_ns = int(at.timestamp() * 1e9)
            inputs = {"amount": 1000 + i, "duration_months": 12 + i}
            with runtime.observe(MODEL, inputs, subject=subject) as ev:
                ev.score, ev.decision = 0.4, "decline"
            runtime.audit_receipt(ev, 30)
            bucket.append(Decision(ev.request_id, at, inputs))
        assert runtime.audit is not None and runtime.audit.privacy.payloads is not None
        runtime.audit.privacy.payloads.flush(30)
    finally:
        runtime.shutdown()
    yield Decided(settings, old, recent)


def query_inference_rows(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every inference record of both months through the compliance query, by request id."""
    added = cli(settings, "users", "add", "compliance-officer", "--role", "compliance")
    assert added.exit_code == 0, added.output
    window = ((OLD - timedelta(days=1)).date().isoformat(), (NOW + timedelta(days=1)).date())
    result = cli(
        settings, "audit", "query", "--from", window[0], "--to", window[1].isoformat(),
        "--event-type", "inference", "--actor", "compliance-officer", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return {row["request_id"]: row for row in json.loads(result.output)["rows"]}


def test_an_expired_month_is_shredded_and_the_log_still_verifies(decided: Decided) -> None:
    s = decided.settings
    old_month, recent_month = month_of(OLD.timestamp()), month_of(RECENT.timestamp())
    old_key, recent_key = f"input-hmac@{old_month}", f"input-hmac@{recent_month}"

    # -- status: what is due and what apply would shred -----------------------------------
    status = cli(s, "retention", "status", "--json")
    assert status.exit_code == 0, status.output
    plan = json.loads(status.output)
    assert plan["would_destroy"] == [old_key]
    assert plan["would_shred"] == {"data_keys": 2, "payloads": 2}  # two applicants' old inputs
    assert cli(s, "audit", "verify").exit_code == 0

    # -- apply shreds the old month, once -------------------------------------------------
    applied = cli(s, "retention", "apply", "--json")
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.output)
    assert [k["key_id"] for k in report["destroyed"]] == [old_key]
    assert report["shredded"] == {"data_keys": 2, "payloads": 2}
    again = cli(s, "retention", "apply")
    assert again.exit_code == 0 and "nothing due" in again.output

    # -- the log still verifies: nothing in it changed, one record was added --------------
    verify = cli(s, "audit", "verify")
    assert verify.exit_code == 0, verify.output
    assert "5 records verified" in verify.output  # 4 decisions + the shredding

    # -- compliance sees the old decisions as expired, the recent ones not -----------------
    rows = query_inference_rows(s)
    assert {rid: rows[rid]["expired"] for rid in rows} == {
        **{d.request_id: True for d in decided.old},
        **{d.request_id: False for d in decided.recent},
    }
    old_record = json.loads(rows[decided.old[0].request_id]["record"])
    recent_record = json.loads(rows[decided.recent[0].request_id]["record"])
    assert old_record["input_hmac_key_id"] == old_key
    assert recent_record["input_hmac_key_id"] == recent_key
    # The same applicant keeps one pseudonym across months (see docs/retention.md).
    assert old_record["subject"] == recent_record["subject"]

    # -- the old month's inputs can no longer be linked to its records ----------------------
    keyring = Keyring(s.keyring_file)
    with pytest.raises(KeyDestroyedError):
        keyring.get(old_key)
    recent_hmac = hmac.new(
        keyring.get(recent_key), canonicalize(decided.recent[0].inputs), hashlib.sha256
    ).hexdigest()
    assert recent_record["input_hmac"] == recent_hmac  # the recent month stays checkable

    # -- break-glass: the old month's raw inputs are gone, the recent ones readable --------
    for d in decided.old:
        glass = cli(
            s, "privacy", "break-glass", "--request-id", d.request_id, "--actor", "staff-17",
            "--justification", JUSTIFICATION,
        )  # fmt: skip
        assert glass.exit_code == 1, glass.output
        assert "no raw payload" in glass.output
    d = decided.recent[0]
    glass = cli(
        s, "privacy", "break-glass", "--request-id", d.request_id, "--actor", "staff-17",
        "--justification", JUSTIFICATION,
    )  # fmt: skip
    assert glass.exit_code == 0, glass.output
    assert json.loads(glass.stdout) == d.inputs
    assert cli(s, "audit", "verify").exit_code == 0
