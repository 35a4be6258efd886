"""The raw-payload store: encrypted at rest, break-glass reads logged first, purges logged."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit.canonical import canonicalize
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import Actor, validate_record
from infertrail.keyring import Keyring
from infertrail.privacy.crypto import KeyringKEK, WrappedKey
from infertrail.privacy.errors import (
    AccessRefusedError,
    PayloadIntegrityError,
    PayloadNotFoundError,
    PrivacyError,
)
from infertrail.privacy.pseudonyms import PseudonymTable
from infertrail.privacy.raw_payloads import PayloadStore
from infertrail.privacy.records import AuditRecorder
from tests.unit.privacy.conftest import (
    ADMIN,
    AUDITOR,
    COMPLIANCE,
    CREDIT_INPUTS,
    JUSTIFICATION,
    T0,
    Clock,
    raw_records,
    records,
)


def put(store: PayloadStore, table: PseudonymTable, subject: str, request_id: str) -> str:
    pseudonym = table.pseudonym(subject)
    store.store(pseudonym, request_id, CREDIT_INPUTS | {"request": request_id})
    return pseudonym


def db(store: PayloadStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


def test_round_trip_is_logged_as_break_glass(
    store: PayloadStore, table: PseudonymTable, audit_log: AuditLog
) -> None:
    pseudonym = put(store, table, "applicant-1", "req-1")
    store.flush()
    assert audit_log.size == 0  # storing is not an access
    payload = store.read("req-1", ADMIN, JUSTIFICATION)
    assert payload.inputs() == CREDIT_INPUTS | {"request": "req-1"}
    assert payload.plaintext == canonicalize(CREDIT_INPUTS | {"request": "req-1"})
    assert payload.pseudonym == pseudonym and payload.stored_at == "2026-11-02T09:30:00.000000Z"
    (record,) = records(audit_log)
    validate_record(record)
    assert payload.break_glass_seq == record["seq"] == 0
    assert record["event_type"] == "break_glass"
    assert record["actor"] == {"id": ADMIN.id, "role": "admin"}
    assert record["request_id"] == "req-1" and record["subject"] == pseudonym
    assert record["break_glass"] == {"justification": JUSTIFICATION, "store": "raw_payloads"}
    assert "4870" not in raw_records(audit_log)[0].decode()  # the log holds no raw input


def test_payloads_are_encrypted_at_rest(store: PayloadStore, table: PseudonymTable) -> None:
    store.store(table.pseudonym("a"), "req-1", {"note": "very-recognisable-plaintext"})
    store.flush()
    on_disk = b"".join(p.read_bytes() for p in store.path.parent.glob("payloads.db*"))
    assert b"very-recognisable-plaintext" not in on_disk
    (count,) = db(store).execute("SELECT count(*) FROM payloads").fetchone()
    assert count == 1


def test_one_data_key_per_subject(store: PayloadStore, table: PseudonymTable) -> None:
    for i in range(3):
        put(store, table, "a", f"a-{i}")
        put(store, table, "b", f"b-{i}")
    store.flush()
    rows = db(store).execute("SELECT pseudonym, kek_id FROM deks").fetchall()
    assert sorted(p for p, _ in rows) == sorted([table.pseudonym("a"), table.pseudonym("b")])
    assert {k for _, k in rows} == {"kek-1"}
    assert store.stats.stored == 6


class SpyKEK:
    """Notes the audit log's last record whenever a data key is unwrapped."""

    def __init__(self, keyring: Keyring, log: AuditLog) -> None:
        self.inner = KeyringKEK(keyring)
        self.log = log
        self.seen: list[str | None] = []

    def wrap(self, dek: bytes, context: bytes) -> WrappedKey:
        return self.inner.wrap(dek, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        self.seen.append(records(self.log)[-1]["event_type"] if self.log.size else None)
        return self.inner.unwrap(wrapped, context)


def test_the_break_glass_record_is_durable_before_anything_is_decrypted(
    tmp_path: Path,
    keyring: Keyring,
    table: PseudonymTable,
    recorder: AuditRecorder,
    audit_log: AuditLog,
) -> None:
    spy = SpyKEK(keyring, audit_log)
    store = PayloadStore(tmp_path / "spy.db", spy, table.is_live, recorder)
    try:
        put(store, table, "a", "req-1")
        store.flush()
        assert spy.seen == []  # writing only wraps
        store.read("req-1", ADMIN, JUSTIFICATION)
        assert spy.seen == ["break_glass"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("actor", "justification", "message"),
    [
        (AUDITOR, JUSTIFICATION, "needs role admin; actor 'staff-99' has role 'auditor'"),
        (COMPLIANCE, JUSTIFICATION, "has role 'compliance'"),
        (ADMIN, "", "justification must be 10 to 1000 characters, got 0"),
        (ADMIN, "   debug   ", "got 5"),
        (ADMIN, "x" * 1001, "got 1001"),
        (ADMIN, None, "justification must be text, got NoneType"),
    ],
)
def test_refused_reads_are_not_logged_and_decrypt_nothing(
    tmp_path: Path,
    keyring: Keyring,
    table: PseudonymTable,
    recorder: AuditRecorder,
    audit_log: AuditLog,
    actor: Actor,
    justification: Any,
    message: str,
) -> None:
    spy = SpyKEK(keyring, audit_log)
    store = PayloadStore(tmp_path / "spy.db", spy, table.is_live, recorder)
    try:
        put(store, table, "a", "req-1")
        store.flush()
        with pytest.raises(AccessRefusedError, match=message):
            store.read("req-1", actor, justification)
        assert audit_log.size == 0 and spy.seen == []
    finally:
        store.close()


def test_unknown_request_is_not_found_and_not_logged(
    store: PayloadStore, audit_log: AuditLog
) -> None:
    with pytest.raises(PayloadNotFoundError, match="no raw payload for request 'req-404'"):
        store.read("req-404", ADMIN, JUSTIFICATION)
    assert audit_log.size == 0


def flip_byte(conn: sqlite3.Connection, table: str, column: str, index: int) -> None:
    """Flip one bit of ``column`` (a BLOB) in every row of ``table`` (keyed by pseudonym)."""
    for key, blob in conn.execute(f"SELECT pseudonym, {column} FROM {table}").fetchall():
        tampered = blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE pseudonym = ?", (tampered, key))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda c: flip_byte(c, "payloads", "ciphertext", 3), "authentication failed"),
        (lambda c: flip_byte(c, "payloads", "ciphertext", -1), "authentication failed"),
        (lambda c: flip_byte(c, "payloads", "nonce", 0), "authentication failed"),
        (lambda c: c.execute("UPDATE payloads SET nonce = zeroblob(8)"), "nonce is 8 bytes"),
        (lambda c: flip_byte(c, "payloads", "aad", 5), "stored AAD does not match its row"),
        (lambda c: c.execute("UPDATE payloads SET ts = ts + 1"), "stored AAD does not match"),
        (lambda c: flip_byte(c, "deks", "wrapped_dek", 20), "wrapped data key under kek-1"),
        (lambda c: flip_byte(c, "deks", "wrapped_dek", 2), "wrapped data key under kek-1"),
        (lambda c: c.execute("DELETE FROM deks"), "its subject's data key is missing"),
    ],
)
def test_tampering_at_rest_is_detected(
    store: PayloadStore, table: PseudonymTable, tamper: Any, message: str
) -> None:
    put(store, table, "a", "req-1")
    store.flush()
    tamper(db(store))
    with pytest.raises(PayloadIntegrityError, match=message):
        store.read("req-1", ADMIN, JUSTIFICATION)


def test_the_tables_refuse_values_of_the_wrong_type(
    store: PayloadStore, table: PseudonymTable
) -> None:
    put(store, table, "a", "req-1")
    store.flush()
    with pytest.raises(sqlite3.IntegrityError, match="cannot store TEXT value in BLOB column"):
        db(store).execute("UPDATE payloads SET ciphertext = ciphertext || 'x'")


def test_a_ciphertext_moved_to_another_request_is_detected(
    store: PayloadStore, table: PseudonymTable
) -> None:
    put(store, table, "a", "req-1")
    put(store, table, "a", "req-2")
    store.flush()
    conn = db(store)
    (c1, n1, a1) = conn.execute(
        "SELECT ciphertext, nonce, aad FROM payloads WHERE request_id = 'req-1'"
    ).fetchone()
    conn.execute(
        "UPDATE payloads SET ciphertext = ?, nonce = ? WHERE request_id = 'req-2'", (c1, n1)
    )
    with pytest.raises(PayloadIntegrityError, match=r"req-2.*authentication failed"):
        store.read("req-2", ADMIN, JUSTIFICATION)
    conn.execute("UPDATE payloads SET aad = ? WHERE request_id = 'req-2'", (a1,))
    with pytest.raises(PayloadIntegrityError, match="stored AAD does not match"):
        store.read("req-2", ADMIN, JUSTIFICATION)


def test_purge_deletes_expired_payloads_and_logs_it(
    store: PayloadStore, table: PseudonymTable, clock: Clock, audit_log: AuditLog
) -> None:
    old = [put(store, table, f"old-{i}", f"old-{i}") for i in range(3)]
    clock.advance(timedelta(days=6))
    put(store, table, "old-0", "old-0-again")  # keeps old-0's data key alive
    put(store, table, "new", "new-1")
    store.flush()

    report = store.purge(T0 + timedelta(days=7, seconds=1))
    assert (report.payloads, report.data_keys) == (3, 2)
    assert report.oldest == report.newest == "2026-11-02T09:30:00.000000Z"
    assert report.cutoff == "2026-11-02T09:30:01.000000Z"
    (record,) = records(audit_log)
    validate_record(record)
    assert report.receipt_seq == record["seq"]
    assert record["event_type"] == "retention_purge" and record["actor"] is None
    assert record["retention_purge"] == {
        "store": "raw_payloads",
        "payloads": 3,
        "data_keys": 2,
        "cutoff": report.cutoff,
        "oldest": report.oldest,
        "newest": report.newest,
        "retention_days": 7,
    }
    raw = raw_records(audit_log)[0].decode()
    assert not any(p in raw for p in old) and "old-1" not in raw  # no personal data
    for request_id in ("old-0", "old-1", "old-2"):
        with pytest.raises(PayloadNotFoundError):
            store.read(request_id, ADMIN, JUSTIFICATION)
    assert store.read("old-0-again", ADMIN, JUSTIFICATION).inputs()["request"] == "old-0-again"
    assert store.read("new-1", ADMIN, JUSTIFICATION).pseudonym == table.pseudonym("new")


def test_purge_with_nothing_expired_appends_nothing(
    store: PayloadStore, table: PseudonymTable, audit_log: AuditLog
) -> None:
    put(store, table, "a", "req-1")
    store.flush()
    report = store.purge()
    assert (report.payloads, report.data_keys, report.receipt_seq) == (0, 0, None)
    assert audit_log.size == 0


def test_purge_refuses_a_naive_time(store: PayloadStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.purge(datetime(2026, 11, 10))


def test_the_background_purger_runs_and_logs(
    store: PayloadStore, table: PseudonymTable, clock: Clock, audit_log: AuditLog
) -> None:
    put(store, table, "a", "req-1")
    store.flush()
    clock.advance(timedelta(days=8))
    store.start_purger(0.02)
    with pytest.raises(RuntimeError, match="already has a purger"):
        store.start_purger(0.02)
    deadline = time.monotonic() + 30
    while audit_log.size == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert records(audit_log)[0]["event_type"] == "retention_purge"


def test_a_payload_queued_for_an_erased_pseudonym_is_not_written(
    store: PayloadStore, table: PseudonymTable
) -> None:
    store.store("p-" + "0" * 32, "req-ghost", CREDIT_INPUTS)  # mapped to no subject
    store.flush()
    assert store.stats.refused_erased == 1 and store.stats.stored == 0
    (count,) = db(store).execute("SELECT count(*) FROM deks").fetchone()
    assert count == 0


def test_a_duplicate_request_id_keeps_the_first_payload(
    store: PayloadStore, table: PseudonymTable
) -> None:
    pseudonym = table.pseudonym("a")
    store.store(pseudonym, "req-1", {"n": 1})
    store.store(pseudonym, "req-1", {"n": 2})
    store.flush()
    assert (store.stats.stored, store.stats.duplicates) == (1, 1)
    assert store.read("req-1", ADMIN, JUSTIFICATION).inputs() == {"n": 1}


@pytest.mark.parametrize(
    ("pseudonym", "request_id", "inputs", "error", "message"),
    [
        ("p-1", "", {}, ValueError, "must be non-empty"),
        ("", "req-1", {}, ValueError, "must be non-empty"),
        ("p-1", "req-1", {"x": float("nan")}, ValueError, r"at \$\.x"),
        ("p-1", "req-1", {"x": object()}, ValueError, r"no JSON form .* at \$\.x"),
    ],
)
def test_bad_payloads_are_refused_on_the_calling_thread(
    store: PayloadStore,
    pseudonym: str,
    request_id: str,
    inputs: Any,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        store.store(pseudonym, request_id, inputs)


def test_without_an_audit_log_reads_and_purges_are_refused(
    tmp_path: Path, keyring: Keyring, table: PseudonymTable
) -> None:
    store = PayloadStore(tmp_path / "p.db", KeyringKEK(keyring), table.is_live)
    try:
        with pytest.raises(PrivacyError, match="no audit log attached: break-glass reads"):
            store.read("req-1", ADMIN, JUSTIFICATION)
        with pytest.raises(PrivacyError, match="no audit log attached: purges"):
            store.purge()
        with pytest.raises(PrivacyError, match="no audit log attached: purges"):
            store.start_purger(60)
    finally:
        store.close()


def test_closed_store_refuses_new_payloads(store: PayloadStore, table: PseudonymTable) -> None:
    pseudonym = put(store, table, "a", "req-1")
    store.close()
    assert store.stats.stored == 1  # close wrote what was queued
    with pytest.raises(PrivacyError, match="is closed"):
        store.store(pseudonym, "req-2", {})
    store.close()  # idempotent


def test_bad_store_options(tmp_path: Path, keyring: Keyring, table: PseudonymTable) -> None:
    with pytest.raises(ValueError, match="retention must be positive"):
        PayloadStore(tmp_path / "p.db", KeyringKEK(keyring), table.is_live,
                     retention=timedelta(0))  # fmt: skip


def test_inputs_read_back_as_json(store: PayloadStore, table: PseudonymTable) -> None:
    nested = {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    store.store(table.pseudonym("a"), "req-1", nested)
    store.flush()
    payload = store.read("req-1", ADMIN, JUSTIFICATION)
    assert payload.inputs() == nested == json.loads(payload.plaintext)
