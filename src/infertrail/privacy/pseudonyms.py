"""The pseudonym table: subject id -> random pseudonym, with tombstones for erased subjects.

``<data_dir>/privacy/subjects.db`` maps ``subject_key = HMAC-SHA256(subject key, subject id)``
to a random pseudonym (``p-`` + 32 hex digits). The raw id is stored nowhere; the pseudonym is
not derivable from it, so deleting the row (erasure) unlinks the person from every record
that carries the pseudonym. A tombstone then blocks a silent new pseudonym for that subject.

Lookups on the request path hit an in-memory cache. Erasures in this process evict at once;
erasures by another process sharing the file are noticed within ``refresh_interval_s``. New
mappings are durable before ``pseudonym`` returns, group-committed (see ``_subjects``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from infertrail.audit.record import Actor
from infertrail.keyring import Keyring
from infertrail.privacy._subjects import PendingErasure, SubjectKeys, SubjectsDB, Tombstone
from infertrail.privacy.errors import PrivacyError
from infertrail.privacy.policy import (
    MIN_JUSTIFICATION_CHARS,
    RE_ENROLMENT_ROLES,
    require_role,
    require_text,
)
from infertrail.privacy.records import SUBJECT_RE_ENROLLED, AuditRecorder

__all__ = [
    "MAX_SUBJECT_ID_CHARS",
    "SUBJECT_KEY_PURPOSE",
    "PendingErasure",
    "PseudonymTable",
    "ReEnrolment",
    "Tombstone",
    "new_pseudonym",
    "subject_key",
]

SUBJECT_KEY_PURPOSE = "subject-hmac"
MAX_SUBJECT_ID_CHARS = 256


def subject_key(key: bytes, subject_id: str) -> bytes:
    """HMAC-SHA256 of the subject id: the table's key, useless without the keyring's secret."""
    return hmac.digest(key, subject_id.encode(), "sha256")


def new_pseudonym() -> str:
    """A fresh random pseudonym, ``p-`` + 32 hex digits (128 bits from the OS CSPRNG)."""
    return "p-" + secrets.token_hex(16)


def _check_subject_id(subject_id: object) -> str:
    # The message never echoes the id: it is personal data and errors end up in logs.
    if not isinstance(subject_id, str):
        raise TypeError(f"subject id must be a string, got {type(subject_id).__name__}")
    if not 1 <= len(subject_id) <= MAX_SUBJECT_ID_CHARS:
        raise ValueError(
            f"subject id must be 1 to {MAX_SUBJECT_ID_CHARS} characters, got {len(subject_id)}"
        )
    return subject_id


@dataclass(frozen=True, slots=True)
class ReEnrolment:
    """Permission to give an erased subject a new pseudonym: who decided, and why."""

    actor: Actor
    reason: str


class PseudonymTable:
    """The subject -> pseudonym mapping and its tombstones, in one SQLite file.

    Thread-safe. ``recorder`` appends re-enrolment records; without one (a read-only user such
    as the query service) re-enrolment is refused.
    """

    def __init__(
        self,
        path: Path,
        keyring: Keyring,
        recorder: AuditRecorder | None = None,
        *,
        cache_size: int = 100_000,
        refresh_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_size < 0 or refresh_interval_s <= 0:
            raise ValueError(
                f"cache_size must be >= 0 and refresh_interval_s > 0, got {cache_size}, "
                f"{refresh_interval_s}"
            )
        self.path = path
        self._keyring = keyring
        self._recorder = recorder
        self._cache_size = cache_size
        self._refresh_interval = refresh_interval_s
        self._monotonic = monotonic
        self._db = SubjectsDB(path)
        #: Held by :func:`infertrail.privacy.erasure.erase` so one subject is erased once.
        self.erasure_lock = threading.Lock()
        # Reads are lock-free (dict.get is atomic); writers replace or extend it under _lock.
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        self._epoch = self._db.erasure_epoch()
        self._next_refresh = monotonic() + refresh_interval_s

    # ---- the request path ----------------------------------------------------------------

    def pseudonym(self, subject_id: str, *, re_enrol: ReEnrolment | None = None) -> str:
        """The subject's pseudonym, created (durably) on first use.

        SubjectErasedError if the subject was erased, unless ``re_enrol`` is given: then a
        ``subject_re_enrolled`` record is durable in the audit log before the new pseudonym
        exists. ``re_enrol`` is ignored for a subject that was never erased.
        """
        found = self._cached(subject_id)
        if found is not None:
            return found
        keys = self._keys(_check_subject_id(subject_id), create=True)
        found = self._db.mapped(keys)
        if found is None:
            candidate = new_pseudonym()
            if re_enrol is not None:
                found = self._db.enrol_recorded(
                    keys, candidate, lambda tomb: self._record(re_enrol, candidate, tomb)
                )
            else:
                tomb = self._db.tombstone(keys)
                if tomb is not None:
                    raise tomb.refusal()
                found = self._db.enrol(keys, candidate).result()
        self._remember(subject_id, found)
        return found

    def lookup(self, subject_id: str) -> str | None:
        """The subject's pseudonym if one is held; never creates one (compliance look-ups)."""
        found = self._cached(subject_id)
        if found is not None:
            return found
        return self._db.mapped(self._keys(_check_subject_id(subject_id), create=False))

    def tombstone(self, subject_id: str) -> Tombstone | None:
        """The subject's latest erasure, or None if it was never erased."""
        return self._db.tombstone(self._keys(_check_subject_id(subject_id), create=False))

    def is_live(self, pseudonym: str) -> bool:
        """Whether ``pseudonym`` is still mapped to a subject (False once erased)."""
        return self._db.is_live(pseudonym)

    # ---- erasure steps (driven by infertrail.privacy.erasure) ------------------------------

    def begin_erasure(
        self, subject_id: str, actor: Actor, reason: str, erased_at: datetime
    ) -> PendingErasure | Tombstone:
        """Delete the mapping and write a pending tombstone, in one transaction.

        Returns the PendingErasure to finish; or, if the subject was erased already, its
        Tombstone (complete) or the interrupted PendingErasure to resume. UnknownSubjectError
        if the subject has neither a pseudonym nor a tombstone.
        """
        keys = self._keys(_check_subject_id(subject_id), create=False)
        stamp = erased_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        state = self._db.begin_erasure(keys, actor, reason, stamp)
        with self._lock:  # after the commit: a later miss finds the tombstone
            self._cache.pop(subject_id, None)
        return state

    def add_shred_counts(self, tombstone_id: int, data_keys: int, payloads: int) -> Tombstone:
        """Add what the payload store shredded to the pending tombstone's counts."""
        return self._db.add_shred_counts(tombstone_id, data_keys, payloads)

    def finish_erasure(self, tombstone_id: int, receipt_seq: int) -> Tombstone:
        """Store the erasure record's seq and forget the pseudonym: the erasure is complete."""
        return self._db.finish_erasure(tombstone_id, receipt_seq)

    def close(self) -> None:
        """Commit queued new mappings and close the database. Idempotent."""
        self._db.close()

    # ---- internals -----------------------------------------------------------------------

    def _keys(self, subject_id: str, *, create: bool) -> SubjectKeys:
        """(key id, subject_key) of the subject under every subject key, the active one first.

        Rows written under an older key stay reachable after rotation; new rows use the active
        key. Look-ups never create a key: no key means no subject was ever mapped.
        """
        ids = self._keyring.key_ids(SUBJECT_KEY_PURPOSE)
        if not ids and not create:
            self._keyring.reload()  # another process (the server) may have created it since
            ids = self._keyring.key_ids(SUBJECT_KEY_PURPOSE)
            if not ids:
                return []
        active = self._keyring.active(SUBJECT_KEY_PURPOSE)[0]
        ordered = [active, *(i for i in reversed(ids) if i != active)]
        return [(i, subject_key(self._keyring.get(i), subject_id)) for i in ordered]

    def _record(self, re_enrol: ReEnrolment, pseudonym: str, tomb: Tombstone) -> None:
        """Check the re-enrolment and append its record (durable) to the audit log."""
        require_role(re_enrol.actor, RE_ENROLMENT_ROLES, "re-enrolment of an erased subject")
        reason = require_text("re-enrolment reason", re_enrol.reason, MIN_JUSTIFICATION_CHARS)
        if self._recorder is None:
            raise PrivacyError(
                f"pseudonym table {self.path} has no audit log attached: re-enrolment of an "
                "erased subject must be recorded, so it is refused here"
            )
        self._recorder.append(
            SUBJECT_RE_ENROLLED,
            actor=re_enrol.actor,
            subject=pseudonym,
            details={
                "reason": reason,
                "erased_at": tomb.erased_at,
                "erasure_seq": tomb.receipt_seq,
            },
        )

    def _remember(self, subject_id: str, pseudonym: str) -> None:
        if self._cache_size == 0:
            return
        with self._lock:
            cache = self._cache
            if len(cache) >= self._cache_size:
                del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
            cache[subject_id] = pseudonym

    def _cached(self, subject_id: str) -> str | None:
        """The cached pseudonym, after dropping the cache if it may be stale (hot path)."""
        if self._monotonic() >= self._next_refresh:
            self._refresh()
        return self._cache.get(subject_id)

    def _refresh(self) -> None:
        """Drop the cache if any process erased a subject since the last check."""
        self._next_refresh = self._monotonic() + self._refresh_interval
        epoch = self._db.erasure_epoch()
        if epoch != self._epoch:
            with self._lock:
                self._cache = {}
                self._epoch = epoch
