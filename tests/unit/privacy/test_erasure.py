"""Erasure: the four properties on a real audit log, idempotence, refusals, crash resume."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit.ledger import AuditLog, Receipt
from infertrail.audit.record import DEFAULT_RETENTION, derive_record, validate_record
from infertrail.audit.verify import verify_log
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.privacy.erasure import erase, erasure_status
from infertrail.privacy.errors import (
    AccessRefusedError,
    PayloadNotFoundError,
    SubjectErasedError,
    UnknownSubjectError,
)
from infertrail.privacy.pseudonyms import PseudonymTable, ReEnrolment
from infertrail.privacy.raw_payloads import PayloadStore
from infertrail.privacy.records import AuditRecorder
from tests.unit.privacy.conftest import (
    ADMIN,
    AUDITOR,
    COMPLIANCE,
    CREDIT_INPUTS,
    JUSTIFICATION,
    Keys,
    raw_records,
    records,
)

MODEL = ModelInfo("credit-logreg", "2026.11.1", "ab" * 32)
REASON = "GDPR Art. 17 request DSR-2026-0113"


def decide(log: AuditLog, table: PseudonymTable, store: PayloadStore, subject: str, n: int) -> str:
    """Append ``n`` inference records for ``subject`` and store their raw inputs."""
    pseudonym = table.pseudonym(subject)
    for i in range(n):
        ev = InferenceEvent(
            model=MODEL,
            request_id=f"{subject}-req-{i}",
            service="credit-api",
            team="risk",
            endpoint="/v1/credit/score",
            inputs=CREDIT_INPUTS,
            input_size=5,
            subject=subject,
            start_time_ns=time.time_ns(),
            duration_ns=1_500_000,
            decision="approve",
            score=0.8,
        )
        record = derive_record(
            ev,
            input_hmac=None,
            input_hmac_key_id=None,
            subject_pseudonym=pseudonym,
            retention=DEFAULT_RETENTION,
            producer="infertrail/0.1.0",
        )
        log.append(record)
        store.store(pseudonym, ev.request_id, CREDIT_INPUTS)
    store.flush()
    return pseudonym


def stored_bytes(path: Path) -> bytes:
    """Everything SQLite holds on disk for the database at ``path`` (file, WAL, SHM)."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_the_four_erasure_properties(
    tmp_path: Path,
    table: PseudonymTable,
    store: PayloadStore,
    recorder: AuditRecorder,
    audit_log: AuditLog,
    log_dir: Path,
    keys: Keys,
) -> None:
    alice = decide(audit_log, table, store, "alice", 3)
    bob = decide(audit_log, table, store, "bob", 2)
    before = raw_records(audit_log)
    (wrapped,) = store._conn.execute(
        "SELECT wrapped_dek FROM deks WHERE pseudonym = ?", (alice,)
    ).fetchone()

    receipt = erase("alice", COMPLIANCE, REASON, pseudonyms=table, payloads=store,
                    recorder=recorder)  # fmt: skip

    # The receipt and its record: who, when, why, what; no pseudonym that would re-link.
    assert (receipt.mapping_rows, receipt.data_keys, receipt.payloads) == (1, 1, 3)
    assert receipt.receipt_seq == len(before) == audit_log.size - 1
    record = records(audit_log)[-1]
    validate_record(record)
    assert record["event_type"] == "erasure" and record["seq"] == receipt.receipt_seq
    assert record["actor"] == {"id": COMPLIANCE.id, "role": "compliance"}
    assert record["subject"] is None
    assert record["erasure"]["reason"] == REASON
    assert record["erasure"]["erased_at"] == receipt.erased_at
    assert (record["erasure"]["payloads"], record["erasure"]["resumed"]) == (3, False)
    assert alice not in raw_records(audit_log)[-1].decode()

    # 1. The log is unchanged up to the receipt and still verifies.
    assert raw_records(audit_log)[: len(before)] == before
    audit_log.close()
    report = verify_log(log_dir, str(tmp_path / "lake"), keys.verifier)
    assert report.ok, report.finding
    assert report.records == len(before) + 1

    # 2. Queries for the subject find nothing, and say when and by whom it was erased.
    assert table.lookup("alice") is None
    status = erasure_status("alice", table)
    assert status is not None and status.complete
    assert (status.erased_at, status.actor, status.receipt_seq) == (
        receipt.erased_at, COMPLIANCE, receipt.receipt_seq,
    )  # fmt: skip
    assert table.lookup("bob") == bob and erasure_status("bob", table) is None

    # 3. The raw payloads cannot be decrypted: ciphertexts and data key are gone, and the
    #    wrapped key's bytes are overwritten in the file and the WAL (secure_delete + scrub).
    for i in range(3):
        with pytest.raises(PayloadNotFoundError):
            store.read(f"alice-req-{i}", ADMIN, JUSTIFICATION)
    assert (
        store._conn.execute("SELECT 1 FROM deks WHERE pseudonym = ?", (alice,)).fetchone() is None
    )
    assert wrapped not in stored_bytes(store.path)
    assert bob in {r[0] for r in store._conn.execute("SELECT pseudonym FROM deks")}

    # 4. No new pseudonym is created silently; the mapping table no longer holds the old one.
    with pytest.raises(SubjectErasedError, match=re.escape(receipt.erased_at)):
        table.pseudonym("alice")
    assert alice.encode() not in stored_bytes(table.path)


def test_erasing_twice_returns_the_first_receipt_and_appends_nothing(
    table: PseudonymTable, store: PayloadStore, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    decide(audit_log, table, store, "alice", 1)
    first = erase("alice", COMPLIANCE, REASON, pseudonyms=table, payloads=store,
                  recorder=recorder)  # fmt: skip
    size = audit_log.size
    again = erase("alice", ADMIN, "another reason", pseudonyms=table, payloads=store,
                  recorder=recorder)  # fmt: skip
    assert again == first
    assert audit_log.size == size


def test_an_unknown_subject_is_a_clear_error_and_writes_nothing(
    table: PseudonymTable, store: PayloadStore, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    table.pseudonym("someone-else")
    with pytest.raises(UnknownSubjectError, match="nothing to erase"):
        erase("never-seen", COMPLIANCE, REASON, pseudonyms=table, payloads=store,
              recorder=recorder)  # fmt: skip
    assert audit_log.size == 0
    assert erasure_status("never-seen", table) is None
    table.pseudonym("never-seen")  # no tombstone was written: enrolment still works


@pytest.mark.parametrize(
    ("actor", "reason", "message"),
    [
        (AUDITOR, REASON, "erasure needs role admin or compliance; actor 'staff-99'"),
        (COMPLIANCE, "   ", "erasure reason must be 1 to 1000 characters, got 0"),
        (COMPLIANCE, "r" * 1001, "got 1001"),
    ],
)
def test_refused_erasures_change_nothing(
    table: PseudonymTable,
    store: PayloadStore,
    recorder: AuditRecorder,
    audit_log: AuditLog,
    actor: Any,
    reason: str,
    message: str,
) -> None:
    alice = decide(audit_log, table, store, "alice", 1)
    size = audit_log.size
    with pytest.raises(AccessRefusedError, match=message):
        erase("alice", actor, reason, pseudonyms=table, payloads=store, recorder=recorder)
    assert audit_log.size == size
    assert table.lookup("alice") == alice
    assert store.read("alice-req-0", ADMIN, JUSTIFICATION).pseudonym == alice


class FailingOnce:
    """An appender whose first append fails like a full disk; later ones reach the log."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.failed = False

    def append(self, record: Mapping[str, Any], timeout: float | None = None) -> Receipt:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        return self.log.append(record, timeout)


def test_an_interrupted_erasure_blocks_the_subject_and_is_completed_by_erasing_again(
    table: PseudonymTable, store: PayloadStore, audit_log: AuditLog
) -> None:
    alice = decide(audit_log, table, store, "alice", 2)
    flaky = AuditRecorder(FailingOnce(audit_log), DEFAULT_RETENTION, "infertrail/0.1.0")
    size = audit_log.size
    with pytest.raises(OSError, match="No space left"):
        erase("alice", COMPLIANCE, REASON, pseudonyms=table, payloads=store, recorder=flaky)
    assert audit_log.size == size
    # Unlinked and shredded already; the tombstone says the receipt is pending.
    assert table.lookup("alice") is None
    with pytest.raises(SubjectErasedError, match="erasure receipt pending"):
        table.pseudonym("alice")
    pending = erasure_status("alice", table)
    assert pending is not None and not pending.complete and pending.payloads == 2
    with pytest.raises(PayloadNotFoundError):
        store.read("alice-req-0", ADMIN, JUSTIFICATION)
    with pytest.raises(Exception, match="has no receipt yet"):
        table.pseudonym("alice", re_enrol=ReEnrolment(ADMIN, "re-applied with consent"))

    receipt = erase("alice", ADMIN, "retry", pseudonyms=table, payloads=store, recorder=flaky)
    record = records(audit_log)[-1]
    assert record["event_type"] == "erasure" and record["erasure"]["resumed"] is True
    assert record["erasure"]["reason"] == REASON  # the reason the erasure was started with
    assert (receipt.payloads, receipt.data_keys, receipt.receipt_seq) == (2, 1, record["seq"])
    assert receipt.actor == COMPLIANCE  # who started it; the record names who completed it
    assert record["actor"]["id"] == ADMIN.id
    assert alice.encode() not in stored_bytes(table.path)


def test_erasure_without_a_payload_store(
    table: PseudonymTable, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    table.pseudonym("alice")
    receipt = erase("alice", COMPLIANCE, REASON, pseudonyms=table, payloads=None,
                    recorder=recorder)  # fmt: skip
    assert (receipt.mapping_rows, receipt.data_keys, receipt.payloads) == (1, 0, 0)
    assert json.loads(raw_records(audit_log)[-1])["erasure"]["data_keys"] == 0


def test_a_re_enrolled_subject_can_be_erased_again(
    table: PseudonymTable, store: PayloadStore, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    decide(audit_log, table, store, "alice", 1)
    first = erase("alice", COMPLIANCE, REASON, pseudonyms=table, payloads=store,
                  recorder=recorder)  # fmt: skip
    table.pseudonym("alice", re_enrol=ReEnrolment(ADMIN, "re-applied with new consent"))
    second = erase("alice", COMPLIANCE, "second request", pseudonyms=table, payloads=store,
                   recorder=recorder)  # fmt: skip
    assert second.receipt_seq > first.receipt_seq
    status = erasure_status("alice", table)
    assert status is not None and status.receipt_seq == second.receipt_seq
    assert table.lookup("alice") is None
