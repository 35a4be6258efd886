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
    "infertrail.audit.checkpoint": ("Checkpoint", "NoteSigner", "NoteVerifier", "open_checkpoint"),
    "infertrail.audit.evidence": ("CheckResult", "check_consistency", "check_evidence"),
    "infertrail.audit.keys": ("open_signer",),
    "infertrail.audit.lake": ("Sealer",),
    "infertrail.audit.ledger": ("AuditLog", "LogClosedError", "LogFailedError"),
    "infertrail.audit.proofs": ("make_consistency", "make_evidence"),
    "infertrail.audit.receipts": ("AuditRefusedError", "AuditUnavailableError", "Receipt"),
    "infertrail.audit.record": ("AuditRecord", "derive_record", "event_record"),
    "infertrail.audit.verify": ("VerifyReport", "verify_log"),
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

__getattr__ = lazy_attributes(
    __name__, {name: module for module, names in _EXPORTS.items() for name in names}
)
