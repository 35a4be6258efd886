"""Tamper-evident audit trail: canonical records, Merkle log, checkpoints, ledger, lake.

Every name is imported on first use: a third party checking evidence (``check_evidence``) loads
only the checkpoint and Merkle code, and the lake's names (``Sealer``, ``verify_log``,
``make_evidence``) need the ``[lake]`` extra only when used.
"""

from typing import TYPE_CHECKING

from infertrail._lazy import lazy_attributes

if TYPE_CHECKING:
    from infertrail.audit.checkpoint import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
    from infertrail.audit.evidence import CheckResult, check_consistency, check_evidence
    from infertrail.audit.keys import open_signer
    from infertrail.audit.lake import Sealer
    from infertrail.audit.ledger import AuditLog, LogClosedError, LogFailedError
    from infertrail.audit.proofs import make_consistency, make_evidence
    from infertrail.audit.receipts import AuditRefusedError, AuditUnavailableError, Receipt
    from infertrail.audit.record import AuditRecord, derive_record, event_record
    from infertrail.audit.verify import VerifyReport, verify_log

_EXPORTS = {
    "Checkpoint": "infertrail.audit.checkpoint",
    "NoteSigner": "infertrail.audit.checkpoint",
    "NoteVerifier": "infertrail.audit.checkpoint",
    "open_checkpoint": "infertrail.audit.checkpoint",
    "CheckResult": "infertrail.audit.evidence",
    "check_consistency": "infertrail.audit.evidence",
    "check_evidence": "infertrail.audit.evidence",
    "open_signer": "infertrail.audit.keys",
    "Sealer": "infertrail.audit.lake",
    "AuditLog": "infertrail.audit.ledger",
    "LogClosedError": "infertrail.audit.ledger",
    "LogFailedError": "infertrail.audit.ledger",
    "make_consistency": "infertrail.audit.proofs",
    "make_evidence": "infertrail.audit.proofs",
    "AuditRefusedError": "infertrail.audit.receipts",
    "AuditUnavailableError": "infertrail.audit.receipts",
    "Receipt": "infertrail.audit.receipts",
    "AuditRecord": "infertrail.audit.record",
    "derive_record": "infertrail.audit.record",
    "event_record": "infertrail.audit.record",
    "VerifyReport": "infertrail.audit.verify",
    "verify_log": "infertrail.audit.verify",
}

__all__ = [
    "AuditLog",
    "AuditRecord",
    "AuditRefusedError",
    "AuditUnavailableError",
    "CheckResult",
    "Checkpoint",
    "LogClosedError",
    "LogFailedError",
    "NoteSigner",
    "NoteVerifier",
    "Receipt",
    "Sealer",
    "VerifyReport",
    "check_consistency",
    "check_evidence",
    "derive_record",
    "event_record",
    "make_consistency",
    "make_evidence",
    "open_checkpoint",
    "open_signer",
    "verify_log",
]

__getattr__ = lazy_attributes(__name__, _EXPORTS)
