"""Privacy by design: pseudonym table, encrypted raw-payload store, erasure by crypto-shredding.

See docs/privacy.md for what is stored where, the key hierarchy, and what erasure does and does
not guarantee.
"""

from infertrail.privacy.crypto import KeyringKEK, KeyWrapper, WrappedKey
from infertrail.privacy.erasure import ErasureReceipt, erase, erasure_status
from infertrail.privacy.errors import (
    AccessRefusedError,
    PayloadIntegrityError,
    PayloadNotFoundError,
    PrivacyError,
    SubjectErasedError,
    UnknownSubjectError,
)
from infertrail.privacy.pseudonyms import PseudonymTable, ReEnrolment, Tombstone
from infertrail.privacy.raw_payloads import PayloadStore, PurgeReport, RawPayload
from infertrail.privacy.records import SUBJECT_RE_ENROLLED, AuditRecorder
from infertrail.privacy.stores import PrivacyService

__all__ = [
    "SUBJECT_RE_ENROLLED",
    "AccessRefusedError",
    "AuditRecorder",
    "ErasureReceipt",
    "KeyWrapper",
    "KeyringKEK",
    "PayloadIntegrityError",
    "PayloadNotFoundError",
    "PayloadStore",
    "PrivacyError",
    "PrivacyService",
    "PseudonymTable",
    "PurgeReport",
    "RawPayload",
    "ReEnrolment",
    "SubjectErasedError",
    "Tombstone",
    "UnknownSubjectError",
    "WrappedKey",
    "erase",
    "erasure_status",
]
