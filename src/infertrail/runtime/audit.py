"""The audit side of a service: the ledger, its sealer, and the sink that feeds them events.

``AuditTrail.open(settings)`` opens (or creates) the signing key, the keyring, the log under
``<data_dir>/audit/log``, a background sealer into the lake (which then compacts closed months,
``audit_compact``), and the privacy services (pseudonym table, raw-payload store when
enabled). Used as a request-thread sink of the :class:`~infertrail.monitor.Monitor`, it derives
the audit record of every inference, hashes the input under a keyed HMAC (a generation's
prompt and answer both: ``record["generation"]``), replaces the subject
by its pseudonym from the mapping table, queues the record and, if raw payloads are on, queues
the encrypted input; the event keeps the future of its receipt (``event.audit``) so that the
caller can wait until the decision is durable before answering
(:meth:`infertrail.runtime.Runtime.audit_receipt`).

Storage faults are not final: the log is a :class:`~infertrail.audit.supervisor.SupervisedLog`,
which reopens itself (with crash recovery) once a write error has failed it, and the sealer
retries a failed seal; ``audit_retry_s`` and ``audit_retry_max_s`` pace both. While either is
down, or the storage under the log, the lake or the privacy databases is full or not writable,
:meth:`AuditTrail.health` says so (``/readyz``).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from infertrail import __version__
from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import LogClosedError, LogFailedError, Receipt
from infertrail.audit.record import (
    RetentionPolicy,
    derive_record,
    generation_details,
    input_hmac_hex,
    retention_policy,
)
from infertrail.audit.supervisor import SupervisedLog
from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.keyring import Keyring
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S, Deadline
from infertrail.privacy.keys import INPUT_KEY_PURPOSE, open_keyring
from infertrail.privacy.pseudonyms import SUBJECT_KEY_PURPOSE
from infertrail.privacy.stores import PAYLOADS_DB, SUBJECTS_DB, PrivacyService
from infertrail.runtime.extras import optional
from infertrail.runtime.health import ComponentHealth, component, error_reason, storage_problems

if TYPE_CHECKING:
    from infertrail.audit.lake import Sealer

_log = logging.getLogger("infertrail.audit")

__all__ = [
    "INPUT_KEY_PURPOSE",
    "SUBJECT_KEY_PURPOSE",
    "AuditTrail",
]


#: Where a component of the trail writes: (label for health reasons, path), per component.
StoragePlaces = dict[str, list[tuple[str, Path]]]


@dataclass
class AuditTrail:
    """Ledger + sealer + keys for one writer process."""

    log: SupervisedLog
    #: None without the [lake] extra: records stay in the WAL (durable, signed, verifiable).
    sealer: Sealer | None
    keyring: Keyring
    retention: RetentionPolicy
    producer: str
    privacy: PrivacyService
    store_payloads: bool = False  # settings.raw_payloads_enabled
    #: What :meth:`health` checks for space and permissions (storage_places(settings)).
    storage: StoragePlaces = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, *, fsync: bool = True) -> AuditTrail:
        """Open the log, start the sealer, open the privacy services (and the payload purger)."""
        signer = open_signer(settings)
        log = SupervisedLog.open(
            settings.audit_log_dir,
            signer=signer,
            origin=settings.audit_origin,
            retry_s=settings.audit_retry_s,
            max_retry_s=settings.audit_retry_max_s,
            shard=settings.audit_shard,
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
                sealer.start(
                    settings.audit_seal_interval_s,
                    retry_s=settings.audit_retry_s,
                    max_retry_s=settings.audit_retry_max_s,
                )
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
            storage=storage_places(settings),
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
        gen = ev.generation
        if gen is not None:  # the answer as a digest under the prompt's key, never as text
            record["generation"] = generation_details(gen, key)
        receipt = self.log.append_async(record)
        # Raw payloads are kept per subject (the data key is the subject's): no subject, none.
        payloads = self.privacy.payloads
        if self.store_payloads and payloads is not None and pseudonym and inputs is not None:
            payload = inputs if gen is None else {"messages": inputs, "response": gen.response_text}
            payloads.store(pseudonym, ev.request_id, payload, at_ns=ev.start_time_ns)
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
        """Return once every record so far is durable and under a signed checkpoint.

        False if that took longer than ``timeout_s`` or the log is down (being reopened).
        """
        try:
            self.log.flush(timeout_s)
        except (TimeoutError, LogFailedError):
            return False
        except LogClosedError:
            pass  # closed: its final checkpoint covers everything it took
        return True

    def health(self, min_free_bytes: int) -> list[ComponentHealth]:
        """Whether the log, the lake and the privacy databases can take writes now.

        ``audit_log``: not while the log is down (reopening) or closed; ``audit_lake``: not
        while the newest seal failed; and for each, not while its storage is not writable or
        has less than ``min_free_bytes`` free. Reads state only: nothing is written.
        """
        status = self.log.status()
        log_problems = []
        if status.state == "closed":
            log_problems.append("closed")
        elif status.failure is not None:
            reason = (
                f"writes failed {status.down_s:.0f} s ago: {error_reason(status.failure)}; "
                "reopening"
            )
            if status.attempt_error is not None:
                reason += (
                    f", {status.attempts} tries failed, the last: "
                    f"{error_reason(status.attempt_error)}"
                )
            log_problems.append(reason)
        verdicts = [self._verdict("audit_log", log_problems, min_free_bytes)]
        if self.sealer is not None:
            error = self.sealer.last_seal_error
            lake_problems = [] if error is None else [f"sealing failed: {error_reason(error)}"]
            verdicts.append(self._verdict("audit_lake", lake_problems, min_free_bytes))
        verdicts.append(self._verdict("privacy", [], min_free_bytes))
        return verdicts

    def _verdict(self, name: str, problems: list[str], min_free_bytes: int) -> ComponentHealth:
        places = self.storage.get(name, [])
        return component(name, [*problems, *storage_problems(places, min_free_bytes)])

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
        except LogFailedError:
            # Closing tries one last reopen; what was acknowledged stays in the WAL regardless.
            _log.warning("audit log: down at shutdown; the next start recovers it")
        except TimeoutError:
            _log.warning("audit log: final flush did not finish in %.1f s", timeout_s)
        finally:
            self.log.close()


def storage_places(settings: Settings) -> StoragePlaces:
    """Where the log, the lake (when local) and the privacy databases write, per component.

    The labels name a place within its component, never a path: health reasons show them.
    """
    log_dir = settings.audit_log_dir
    places: StoragePlaces = {
        "audit_log": [
            ("log directory", log_dir),
            ("wal directory", log_dir / "wal"),
            ("tree directory", log_dir / "tree"),
            ("checkpoints directory", log_dir / "checkpoints"),
        ],
        "privacy": [
            ("privacy directory", settings.privacy_dir),
            ("subjects database", settings.privacy_dir / SUBJECTS_DB),
        ],
    }
    payloads = settings.privacy_dir / PAYLOADS_DB
    if settings.raw_payloads_enabled or payloads.exists():
        places["privacy"].append(("payloads database", payloads))
    lake = urlsplit(settings.lake_url)
    if lake.scheme in ("", "file"):  # an object store reports its faults through the sealer
        root = Path(lake.path) if lake.scheme else Path(settings.lake_url)
        places["audit_lake"] = [("lake directory", root)]
    return places
