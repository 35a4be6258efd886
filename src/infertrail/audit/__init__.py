"""Tamper-evident audit trail: canonical records, Merkle log, checkpoints, ledger, lake.

The log (:class:`AuditLog`), its records and receipts, checkpoints and third-party evidence
checks need only the core install; sealing into the Parquet lake, verification of sealed files
and evidence building need the ``[lake]`` extra and are imported on first use.
"""

from typing import TYPE_CHECKING

from infertrail._lazy import lazy_attributes
from infertrail.audit.checkpoint import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
from infertrail.audit.evidence import CheckResult, check_consistency, check_evidence
from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import AuditLog, LogClosedError, LogFailedError
from infertrail.audit.receipts import AuditRefusedError, AuditUnavailableError, Receipt
from infertrail.audit.record import AuditRecord, derive_record, event_record

if TYPE_CHECKING:
    from infertrail.audit.lake import Sealer
    from infertrail.audit.proofs import make_consistency, make_evidence
    from infertrail.audit.verify import VerifyReport, verify_log

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
    __name__,
    {
        "Sealer": "infertrail.audit.lake",
        "make_consistency": "infertrail.audit.proofs",
        "make_evidence": "infertrail.audit.proofs",
        "VerifyReport": "infertrail.audit.verify",
        "verify_log": "infertrail.audit.verify",
    },
)
