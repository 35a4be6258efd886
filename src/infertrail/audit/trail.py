"""The audit side of a service: the ledger, its sealer, and the sink that feeds them events.

``AuditTrail.open(settings)`` opens (or creates) the signing key, the keyring, the log under
``<data_dir>/audit/log`` and a background sealer into the lake. Used as a request-thread sink of
the :class:`~infertrail.monitor.Monitor`, it derives the audit record of every inference, hashes
the input under a keyed HMAC, pseudonymizes the subject, and queues the record; the event keeps
the future of its receipt (``event.extra["audit"]``) so that a caller can wait until the
decision is durable before answering.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from concurrent.futures import Future
from dataclasses import dataclass

from infertrail import __version__
from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.keys import generate_signing_key, load_signer
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog, LogClosedError, Receipt
from infertrail.audit.record import RetentionPolicy, derive_record, input_hmac_hex, retention_policy
from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.keyring import Keyring

_log = logging.getLogger("infertrail.audit")

INPUT_KEY_PURPOSE = "input-hmac"
SUBJECT_KEY_PURPOSE = "subject-hmac"
AUDIT_FUTURE = "audit"


def open_signer(settings: Settings) -> NoteSigner:
    """The log's checkpoint signer, created (0600) on first use with the log's origin."""
    path = settings.signing_key_file
    if not path.exists():
        vkey = generate_signing_key(path, settings.audit_origin)
        _log.warning("created audit signing key %s; verifier key: %s", path, vkey)
    return load_signer(path)


@dataclass
class AuditTrail:
    """Ledger + sealer + keys for one writer process."""

    log: AuditLog
    sealer: Sealer
    keyring: Keyring
    retention: RetentionPolicy
    producer: str

    @classmethod
    def open(cls, settings: Settings, *, fsync: bool = True) -> AuditTrail:
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
        sealer = Sealer(log, settings.lake_url, signer)
        sealer.start(settings.audit_seal_interval_s)
        return cls(
            log=log,
            sealer=sealer,
            keyring=Keyring(settings.keyring_file),
            retention=retention_policy(settings.audit_retention_class),
            producer=f"infertrail/{__version__}",
        )

    def pseudonym(self, subject: str) -> str:
        """Keyed pseudonym of a subject id (HMAC-SHA256 under the subject key, truncated)."""
        _, key = self.keyring.active(SUBJECT_KEY_PURPOSE)
        return "p-" + hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:32]

    def record(self, ev: InferenceEvent) -> Future[Receipt]:
        """Derive the event's audit record and queue it; the future resolves once durable."""
        key_id, key = self.keyring.active(INPUT_KEY_PURPOSE)
        inputs = ev.inputs
        if hasattr(inputs, "tolist"):  # numpy arrays: hash the same JSON a list would give
            inputs = inputs.tolist()
        record = derive_record(
            ev,
            input_hmac=None if inputs is None else input_hmac_hex(key, inputs),
            input_hmac_key_id=key_id,
            subject_pseudonym=None if ev.subject is None else self.pseudonym(ev.subject),
            retention=self.retention,
            producer=self.producer,
        )
        return self.log.append_async(record)

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
        ev.extra[AUDIT_FUTURE] = future

    def close(self) -> None:
        """Stop the sealer, seal what is committed, close the log (final checkpoint). Idempotent."""
        self.sealer.stop()
        try:
            self.log.flush()
            self.sealer.seal()
        except LogClosedError:
            pass  # already closed: what it committed stays in the WAL for the next seal
        finally:
            self.log.close()
