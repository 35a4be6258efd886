"""RetentionService: each month's keys destroyed once everything under them has expired,
recorded once, and the audit log untouched and verifiable."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infertrail.audit.record import validate_record
from infertrail.audit.verify import verify_log
from infertrail.keyring import KeyDestroyedError, Keyring
from infertrail.privacy.crypto import KeyringKEK, WrappedKey
from infertrail.privacy.errors import PayloadNotFoundError
from infertrail.privacy.keys import INPUT_KEY_PURPOSE
from infertrail.privacy.raw_payloads import ShredCounts
from infertrail.retention.service import RETENTION_EVENT, RetentionService
from tests.unit.retention.conftest import ADMIN, JUSTIFICATION, MARCH, World

APRIL = datetime(2026, 4, 2, 8, tzinfo=UTC)
AFTER_MARCH_PAYLOADS = datetime(2026, 4, 8, 0, 0, 1, tzinfo=UTC)  # kek@2026-03: until 04-07
LAST_MARCH_DAY_KEPT = datetime(2026, 10, 1, 23, 59, tzinfo=UTC)  # input-hmac@2026-03: 10-01
AFTER_MARCH = datetime(2026, 10, 2, 0, 0, 1, tzinfo=UTC)


def two_months(world: World) -> None:
    """Decisions in March (alice, bob) and April (alice), as the audit trail makes them."""
    world.decide("alice", "r-march-alice", {"amount": 100})
    world.decide("bob", "r-march-bob", {"amount": 200})
    world.clock.set(APRIL)
    world.decide("alice", "r-april-alice", {"amount": 300})


def state(world: World) -> dict[str, str]:
    status = world.service.status()
    return {key.key_id: s for key, s in status.keys}


def test_nothing_due_nothing_changes_and_nothing_is_appended(world: World) -> None:
    two_months(world)
    report = world.service.apply()
    assert report.receipt_seq is None and report.destroyed == []
    assert world.log.size == 0
    assert set(state(world).values()) == {"live"}
    status = world.service.status()
    assert status.next_due is not None and status.next_due.isoformat() == "2026-04-08"
    assert status.would_shred == ShredCounts(0, 0) and status.due == []


def test_each_month_and_purpose_is_shredded_when_its_own_period_ends(world: World) -> None:
    two_months(world)
    world.clock.set(AFTER_MARCH_PAYLOADS)
    status = world.service.status()
    assert [k.key_id for k in status.due] == ["kek@2026-03"]
    assert status.would_shred == ShredCounts(2, 2)  # March's payloads go after 7 days
    report = world.service.apply()
    assert [k.key_id for k in report.destroyed] == ["kek@2026-03"]
    assert report.payload_periods == ["2026-03"] and report.shredded == ShredCounts(2, 2)
    with pytest.raises(PayloadNotFoundError):
        world.payloads.read("r-march-alice", ADMIN, JUSTIFICATION)
    assert world.payloads.read("r-april-alice", ADMIN, JUSTIFICATION).inputs() == {"amount": 300}
    # March's decision records are kept 184 days: their input key is still live.
    assert state(world)["input-hmac@2026-03"] == "live"
    world.clock.set(LAST_MARCH_DAY_KEPT)
    report = world.service.apply()
    assert [k.key_id for k in report.destroyed] == ["kek@2026-04"]  # April's payloads: 05-07
    assert state(world)["input-hmac@2026-03"] == "live"  # kept through its last day
    world.clock.set(AFTER_MARCH)
    report = world.service.apply()
    assert [k.key_id for k in report.destroyed] == ["input-hmac@2026-03"]
    assert state(world) == {
        "input-hmac@2026-03": "destroyed",
        "kek@2026-03": "destroyed",
        "input-hmac@2026-04": "live",  # April's records are kept until 2026-10-31
        "kek@2026-04": "destroyed",
    }


def test_the_shredding_is_recorded_once_and_the_log_still_verifies(world: World) -> None:
    two_months(world)
    world.recorder.append("break_glass", actor=ADMIN, details={"justification": "x" * 12})
    before = [raw for _, raw in world.log.read(0, world.log.size)]
    world.clock.set(AFTER_MARCH)
    report = world.service.apply()
    assert world.service.apply().receipt_seq is None  # idempotent: nothing more due
    records = world.records()
    assert len(records) == len(before) + 1
    assert [raw for _, raw in world.log.read(0, len(before))] == before  # nothing rewritten
    record = records[-1]
    validate_record(record)
    assert record["seq"] == report.receipt_seq and record["event_type"] == RETENTION_EVENT
    details = record[RETENTION_EVENT]
    assert details == {
        "store": "period_keys",
        "method": "crypto-shredding",
        "as_of": "2026-10-02",
        "keys": [
            {"key_id": k, "purpose": p, "period": m, "keep_until": u}
            for k, p, m, u in (
                ("input-hmac@2026-03", "input-hmac", "2026-03", "2026-10-01"),
                ("kek@2026-03", "kek", "2026-03", "2026-04-07"),
                ("kek@2026-04", "kek", "2026-04", "2026-05-07"),
            )
        ],
        "resumed": [],
        "payload_periods": ["2026-03", "2026-04"],
        "data_keys": 3,
        "payloads": 3,
    }
    assert record["subject"] is None and record["request_id"] is None  # no pseudonyms
    assert {k.receipt_seq for k in report.destroyed} == {None}  # the report is pre-record
    assert {k.receipt_seq for k in world.keyring.period_keys() if not k.live} == {record["seq"]}
    world.log.flush()
    assert verify_log(world.log.log_dir, str(world.log.log_dir / "lake"), world.verifier).ok


def test_a_copy_of_the_store_taken_before_cannot_be_decrypted_after(
    world: World, tmp_path: Path
) -> None:
    world.decide("alice", "r-march", {"amount": 100})
    world.payloads.flush(10)
    backup = sqlite3.connect(tmp_path / "backup.db")
    sqlite3.connect(world.payloads.path).backup(backup)  # an online backup, as an operator's
    kek_id, blob = backup.execute("SELECT kek_id, wrapped_dek FROM deks").fetchone()
    context = f"{world.table.pseudonym('alice')}\x002026-03".encode()
    kek = KeyringKEK(world.keyring)
    assert len(kek.unwrap(WrappedKey(kek_id, blob), context)) == 32  # readable before
    world.clock.set(AFTER_MARCH_PAYLOADS)
    world.service.apply()
    with pytest.raises(KeyDestroyedError, match="kek@2026-03"):
        kek.unwrap(WrappedKey(kek_id, blob), context)


def test_a_run_stopped_before_its_record_is_completed_by_the_next(world: World) -> None:
    two_months(world)
    world.clock.set(AFTER_MARCH_PAYLOADS)
    # What a crash after step 2 leaves: the key destroyed, no record of it.
    assert world.keyring.destroy("kek@2026-03", today=world.service.today())
    assert state(world)["kek@2026-03"] == "unrecorded"
    status = world.service.status()
    assert [k.key_id for k in status.unrecorded] == ["kek@2026-03"] and status.due == []
    assert status.to_dict()["would_record"] == ["kek@2026-03"]
    report = world.service.apply()
    assert report.destroyed == [] and [k.key_id for k in report.resumed] == ["kek@2026-03"]
    (record,) = world.records()
    assert record[RETENTION_EVENT]["resumed"] == ["kek@2026-03"]
    assert record[RETENTION_EVENT]["payload_periods"] == ["2026-03"]  # rows shredded now
    assert state(world)["kek@2026-03"] == "destroyed"
    assert world.service.apply().receipt_seq is None


def test_a_month_past_its_retention_takes_no_more_records(world: World) -> None:
    two_months(world)
    world.clock.set(AFTER_MARCH)
    world.service.apply()
    with pytest.raises(KeyDestroyedError, match="input-hmac@2026-03"):
        world.keyring.period_key(INPUT_KEY_PURPOSE, MARCH.timestamp())


def test_shredding_without_an_audit_log_is_refused(world: World) -> None:
    two_months(world)
    blind = RetentionService(world.keyring, world.payloads, None, payload_days=7, clock=world.clock)
    assert blind.apply().receipt_seq is None  # nothing due: nothing to record
    world.clock.set(AFTER_MARCH)
    assert len(blind.status().due) == 3  # status needs no log
    with pytest.raises(RuntimeError, match="shredding must be recorded"):
        blind.apply()
    assert set(state(world).values()) == {"live", "due"}  # nothing was destroyed


def test_status_names_keys_retention_never_destroys(world: World) -> None:
    legacy = Keyring(world.keyring.path)  # a keyring from before key periods
    legacy.active(INPUT_KEY_PURPOSE)
    world.decide("alice", "r-march", {"amount": 1})
    status = world.service.status()
    assert status.unperiodic_keys == ["input-hmac-1"]
    assert status.to_dict()["unperiodic_keys"] == ["input-hmac-1"]


def test_negative_payload_days_are_refused(world: World) -> None:
    with pytest.raises(ValueError, match="payload_days must be >= 0"):
        RetentionService(world.keyring, None, None, payload_days=-1)
