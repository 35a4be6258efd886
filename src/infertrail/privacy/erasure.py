"""Erasure (GDPR Art. 17 by crypto-shredding): unlink a subject, shred its data key, log it.

Steps, each durable before the next: (1) in subjects.db, delete the mapping row and write a
pending tombstone; (2) in payloads.db, delete the subject's data keys and ciphertexts; (3) append
the ``erasure`` record to the audit log; (4) store its seq in the tombstone and drop the
pseudonym from it. A crash anywhere leaves a state that ``erase`` resumes; from step 1 on the
subject gets no new pseudonym. Nothing already in the log is changed, so it still verifies.

The erasure record and the completed tombstone hold no pseudonym: the tombstone is found from
the subject id, so a pseudonym in either would re-link the subject to its decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from infertrail.audit.record import Actor
from infertrail.privacy.policy import ERASURE_ROLES, require_role, require_text
from infertrail.privacy.pseudonyms import PseudonymTable, Tombstone
from infertrail.privacy.raw_payloads import PayloadStore, ShredCounts
from infertrail.privacy.records import AuditRecorder

__all__ = ["ErasureReceipt", "erase", "erasure_status"]


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """Proof an erasure is complete: when, who, why, what was deleted, and its log seq."""

    erased_at: str
    actor: Actor
    reason: str
    receipt_seq: int
    mapping_rows: int
    data_keys: int
    payloads: int


def erase(
    subject_id: str,
    actor: Actor,
    reason: str,
    *,
    pseudonyms: PseudonymTable,
    payloads: PayloadStore | None,
    recorder: AuditRecorder,
) -> ErasureReceipt:
    """Erase ``subject_id``: delete its mapping and data key, tombstone it, log the receipt.

    Idempotent: a subject erased already gets its first receipt back and nothing is appended;
    an interrupted erasure is completed. UnknownSubjectError if no pseudonym was ever held for
    the subject (nothing is written); AccessRefusedError unless the actor is compliance/admin.
    """
    require_role(actor, ERASURE_ROLES, "erasure")
    reason = require_text("erasure reason", reason, 1)
    with pseudonyms.erasure_lock:
        state = pseudonyms.begin_erasure(subject_id, actor, reason, datetime.now(UTC))
        if isinstance(state, Tombstone):
            return _receipt(state)
        shredded = ShredCounts(0, 0) if payloads is None else payloads.shred(state.pseudonym)
        tomb = pseudonyms.add_shred_counts(
            state.tombstone_id, shredded.data_keys, shredded.payloads
        )
        receipt = recorder.append(
            "erasure",
            actor=actor,
            details={
                "reason": tomb.reason,
                "erased_at": tomb.erased_at,
                "mapping_rows": tomb.mapping_rows,
                "data_keys": tomb.data_keys,
                "payloads": tomb.payloads,
                "resumed": state.resumed,
                "method": "mapping row and per-subject data key deleted (crypto-shredding)",
            },
        )
        return _receipt(pseudonyms.finish_erasure(state.tombstone_id, receipt.seq))


def erasure_status(subject_id: str, pseudonyms: PseudonymTable) -> Tombstone | None:
    """The subject's latest erasure (when, by whom, receipt seq), or None if never erased.

    A subject re-enrolled after an erasure has both a tombstone and a live pseudonym.
    """
    return pseudonyms.tombstone(subject_id)


def _receipt(tomb: Tombstone) -> ErasureReceipt:
    assert tomb.receipt_seq is not None, "only complete tombstones make receipts"
    return ErasureReceipt(
        tomb.erased_at,
        tomb.actor,
        tomb.reason,
        tomb.receipt_seq,
        tomb.mapping_rows,
        tomb.data_keys,
        tomb.payloads,
    )
