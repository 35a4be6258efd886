"""The privacy services of one process, opened from Settings: what the trail, API and CLI share.

:class:`PrivacyService` holds the pseudonym table, the raw-payload store (when enabled, or
when a store from an earlier run exists, so erasure and purges still reach it) and the recorder
that appends privacy events to the process's audit log.
"""

from __future__ import annotations

from datetime import timedelta

from infertrail import __version__
from infertrail.audit.record import Actor, RetentionPolicy, retention_policy
from infertrail.config import Settings
from infertrail.keyring import Keyring
from infertrail.privacy.crypto import KeyWrapper, load_key_wrapper
from infertrail.privacy.erasure import ErasureReceipt, erase, erasure_status
from infertrail.privacy.keys import open_keyring
from infertrail.privacy.pseudonyms import PseudonymTable, Tombstone
from infertrail.privacy.raw_payloads import PayloadStore
from infertrail.privacy.records import AuditRecorder, RecordAppender

__all__ = ["PAYLOADS_DB", "SUBJECTS_DB", "PrivacyService"]

SUBJECTS_DB = "subjects.db"
PAYLOADS_DB = "payloads.db"


class PrivacyService:
    """Pseudonyms, raw payloads and erasure for one process and its audit log."""

    def __init__(
        self, pseudonyms: PseudonymTable, payloads: PayloadStore | None, recorder: AuditRecorder
    ) -> None:
        self.pseudonyms = pseudonyms
        self.payloads = payloads
        self.recorder = recorder

    @classmethod
    def open(
        cls,
        settings: Settings,
        log: RecordAppender,
        *,
        keyring: Keyring | None = None,
        retention: RetentionPolicy | None = None,
        kek: KeyWrapper | None = None,
    ) -> PrivacyService:
        """Open the stores under ``<data_dir>/privacy`` and record privacy events to ``log``."""
        keyring = keyring or open_keyring(settings)
        recorder = AuditRecorder(
            log,
            retention or retention_policy(settings.audit_retention_class),
            f"infertrail/{__version__}",
            service=settings.service_name,
        )
        pseudonyms = PseudonymTable(settings.privacy_dir / SUBJECTS_DB, keyring, recorder)
        payloads = None
        payloads_path = settings.privacy_dir / PAYLOADS_DB
        try:
            if settings.raw_payloads_enabled or payloads_path.exists():
                payloads = PayloadStore(
                    payloads_path,
                    kek or load_key_wrapper(settings.raw_payloads_kek_source, keyring),
                    pseudonyms.is_live,
                    recorder,
                    retention=timedelta(days=settings.raw_payloads_retention_days),
                )
        except BaseException:
            pseudonyms.close()
            raise
        return cls(pseudonyms, payloads, recorder)

    def erase(self, subject_id: str, actor: Actor, reason: str) -> ErasureReceipt:
        """Erase a subject (see :func:`infertrail.privacy.erasure.erase`)."""
        return erase(
            subject_id,
            actor,
            reason,
            pseudonyms=self.pseudonyms,
            payloads=self.payloads,
            recorder=self.recorder,
        )

    def erasure_status(self, subject_id: str) -> Tombstone | None:
        """When and by whom the subject was last erased, or None."""
        return erasure_status(subject_id, self.pseudonyms)

    def close(self) -> None:
        """Stop the payload writer and purger, close both databases (before the log)."""
        try:
            if self.payloads is not None:
                self.payloads.close()
        finally:
            self.pseudonyms.close()
