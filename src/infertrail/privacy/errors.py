"""Errors of the privacy layer: each names the subject state, value or rule that was broken."""

from __future__ import annotations

from infertrail.audit.receipts import AuditRefusedError

__all__ = [
    "AccessRefusedError",
    "PayloadIntegrityError",
    "PayloadNotFoundError",
    "PrivacyError",
    "SubjectErasedError",
    "UnknownSubjectError",
]


class PrivacyError(RuntimeError):
    """Base class of the errors below."""


class SubjectErasedError(PrivacyError, AuditRefusedError):
    """The subject was erased: a new pseudonym needs an explicit, recorded re-enrolment."""

    kind = "subject_erased"

    def __init__(self, erased_at: str, actor_id: str, receipt_seq: int | None) -> None:
        self.erased_at = erased_at
        self.actor_id = actor_id
        self.receipt_seq = receipt_seq
        receipt = "pending" if receipt_seq is None else f"seq {receipt_seq}"
        super().__init__(
            f"subject was erased at {erased_at} by {actor_id!r} (erasure receipt {receipt}); "
            "a new pseudonym is only issued with re_enrol=ReEnrolment(actor, reason)"
        )


class UnknownSubjectError(PrivacyError, LookupError):
    """No pseudonym is held for the subject and it was never erased: nothing to erase."""


class AccessRefusedError(PrivacyError, PermissionError):
    """The actor's role or the justification does not allow the privileged action."""


class PayloadNotFoundError(PrivacyError, LookupError):
    """No raw payload is stored for the request id (never stored, purged or erased)."""


class PayloadIntegrityError(PrivacyError):
    """A stored payload, its AAD or its wrapped data key failed authentication: tampering."""
