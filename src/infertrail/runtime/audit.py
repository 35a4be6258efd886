"""The audit side of a service: the ledger, its sealer, and the sink that feeds them events.

``AuditTrail.open(settings)`` opens (or creates) the signing key, the keyring, the log under
``<data_dir>/audit/log``, a background sealer into the lake (which then compacts closed months,
``audit_compact``), and the privacy services (pseudonym table, raw-payload store when
enabled). Used as a request-thread sink of the :class:`~infertrail.monitor.Monitor`, it derives
the audit record of every inference, hashes the input under a keyed HMAC, replaces the subject
by its pseudonym from the mapping table, queues the record and, if raw payloads are on, queues
the encrypted input; the event keeps the future of its receipt (``event.audit``) so that the
caller can wait until the decision is durable before answering
(:meth:`infertrail.runtime.Runtime.audit_receipt`).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import TYPE_CHECKING

from infertrail import __version__
from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import AuditLog, LogClosedError, Receipt
from infertrail.audit.record import RetentionPolicy, derive_record, input_hmac_hex, retention_policy
from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.keyring import Keyring
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S, Deadline
from infertrail.privacy.keys import INPUT_KEY_PURPOSE, open_keyring
from infertrail.privacy.pseudonyms import SUBJECT_KEY_PURPOSE
from infertrail.privacy.stores import PrivacyService
from infertrail.runtime.extras import optional

if TYPE_CHECKING:
    from infertrail.audit.lake import Sealer

_log = logging.getLogger("infertrail.audit")

__all__ = [
    "INPUT_KEY_PURPOSE",
    "SUBJECT_KEY_PURPOSE",
    "AuditTrail",
]


@dataclass
class AuditTrail:
    """Ledger + sealer + keys for one writer process."""

    log: AuditLog
    #: None without the [lake] extra: records stay in the WAL (durable, signed, verifiable).
    sealer: Sealer | None
    keyring: Keyring
    retention: RetentionPolicy
    producer: str
    privacy: PrivacyService
    store_payloads: bool = False  # settings.raw_payloads_enabled

    @classmethod
    def open(cls, settings: Settings, *, fsync: bool = True) -> AuditTrail:
        """Open the log, start the sealer, open the privacy services (and the payload purger)."""
        signer = open_signer(settings)
        log = AuditLog.open(
            settings.audit_log_dir,
            signer=signer,
            origin=settings.audit_origin,
            batch_max=settings.audit_batch_max,
            batch_wait_ms=settings.audit_batch_wait_ms,
            queue_max=settings.audit_queue_max,
            fsync=fsync,
        )
        if log.recovery is not None:
            _log.warning("audit log recovered after a crash: %s", log.recovery)
        keyring = open_keyring(settings)  # input-hmac and kek: one key per month (retention)
        retention = retention_policy(settings.audit_retention_class)
        try:
            privacy = PrivacyService.open(settings, log, keyring=keyring, retention=retention)
        except BaseException:
            log.close()
            raise
        try:
            if settings.raw_payloads_enabled and privacy.payloads is not None:
                privacy.payloads.start_purger(settings.raw_payloads_purge_interval_s)
            sealer = None
            lake = optional("sealing the audit log into the Parquet lake", "infertrail.audit.lake")
            if lake is not None:
                compactor = None
                if settings.audit_compact:
                    grace = timedelta(seconds=settings.audit_compact_grace_s)
                    compaction = import_module("infertrail.audit.compaction")
                    compactor = compaction.Compactor(
                        settings.lake_url, signer, settings.audit_origin, grace=grace
                    )
                sealer = lake.Sealer(
                    log,
                    settings.lake_url,
                    signer,
                    after_round=None if compactor is None else compactor.compact,
                )
                sealer.start(settings.audit_seal_interval_s)
        except BaseException:
            privacy.close()
            log.close()
            raise
        return cls(
            log=log,
            sealer=sealer,
            keyring=keyring,
            retention=retention,
            producer=f"infertrail/{__version__}",
            privacy=privacy,
            store_payloads=settings.raw_payloads_enabled,
        )

    def pseudonym(self, subject: str) -> str:
        """The subject's pseudonym from the mapping table (created on first use).

        SubjectErasedError if the subject was erased: re-enrolment is an explicit, recorded
        step (``privacy.pseudonyms.pseudonym(subject, re_enrol=...)``), never a side effect.
        """
        return self.privacy.pseudonyms.pseudonym(subject)

    def record(self, ev: InferenceEvent) -> Future[Receipt]:
        """Derive the event's audit record and queue it; the future resolves once durable."""
        # Its own month's key (by ts): kept until the month's last record expires (retention).
        key_id, key = self.keyring.period_key(INPUT_KEY_PURPOSE, ev.start_time_ns / 1e9)
        inputs = ev.inputs
        if hasattr(inputs, "tolist"):  # numpy arrays: hash the same JSON a list would give
            inputs = inputs.tolist()
        pseudonym = None if ev.subject is None else self.pseudonym(ev.subject)
        record = derive_record(
            ev,
            input_hmac=None if inputs is None else input_hmac_hex(key, inputs),
            input_hmac_key_id=key_id,
            subject_pseudonym=pseudonym,
            retention=self.retention,
            producer=self.producer,
        )
        receipt = self.log.append_async(record)
        # Raw payloads are kept per subject (the data key is the subject's): no subject, none.
        payloads = self.privacy.payloads
        if self.store_payloads and payloads is not None and pseudonym and inputs is not None:
            payloads.store(pseudonym, ev.request_id, inputs, at_ns=ev.start_time_ns)
        return receipt

    def __call__(self, ev: InferenceEvent) -> None:
        """Monitor sink (request thread): queue the record, keep its future on the event.

        A record that cannot even be queued (closed or failed log, bad input) becomes a failed
        future: the caller decides (the server answers 503 rather than an unrecorded decision).
        """
        try:
            future = self.record(ev)
        except Exception as exc:
            future = Future()
            future.set_exception(exc)
        ev.audit = future

    def flush(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> bool:
        """Return once every record so far is durable and under a signed checkpoint."""
        try:
            self.log.flush(timeout_s)
        except TimeoutError:
            return False
        except LogClosedError:
            pass  # closed: its final checkpoint covers everything it took
        return True

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Sign a final checkpoint, seal what is committed if time allows, close. Idempotent.

        The signature comes first: it is what proves later that every acknowledged record was
        in the log, while sealing can be finished by the next start (the WAL keeps the records).
        The privacy services close before the log: their purger appends to it.
        """
        deadline = Deadline(timeout_s)
        if self.sealer is not None:
            self.sealer.stop(deadline.remaining())
        self.privacy.close()
        try:
            self.log.flush(deadline.remaining())
            if self.sealer is not None and not deadline.expired:
                self.sealer.seal()
        except LogClosedError:
            pass  # already closed: what it committed stays in the WAL for the next seal
        except TimeoutError:
            _log.warning("audit log: final flush did not finish in %.1f s", timeout_s)
        finally:
            self.log.close()
