"""The pseudonym table: subject id -> random pseudonym, with tombstones for erased subjects.

``<data_dir>/privacy/subjects.db`` maps ``subject_key = HMAC-SHA256(subject key, subject id)``
to a random pseudonym (``p-`` + 32 hex digits). The raw id is stored nowhere; the pseudonym is
not derivable from it, so deleting the row (erasure) unlinks the person from every record
that carries the pseudonym. A tombstone then blocks a silent new pseudonym for that subject.

Lookups on the request path hit an in-memory cache. Erasures in this process evict at once;
erasures by another process sharing the file are noticed within ``refresh_interval_s``.
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
from typing import Any

from infertrail.audit.record import Actor
from infertrail.keyring import Keyring
from infertrail.privacy import _sqlite
from infertrail.privacy.errors import PrivacyError, SubjectErasedError, UnknownSubjectError
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
_SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE subjects (
        subject_key BLOB PRIMARY KEY,
        key_id TEXT NOT NULL,
        pseudonym TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID, STRICT""",
    # No pseudonym column once an erasure is complete: a tombstone keyed by the subject must
    # not re-link the subject to its records. pending_pseudonym lives only while shredding.
    """CREATE TABLE tombstones (
        id INTEGER PRIMARY KEY,
        subject_key BLOB NOT NULL,
        key_id TEXT NOT NULL,
        erased_at TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        actor_role TEXT NOT NULL,
        reason TEXT NOT NULL,
        receipt_seq INTEGER,
        mapping_rows INTEGER NOT NULL,
        data_keys INTEGER NOT NULL DEFAULT 0,
        payloads INTEGER NOT NULL DEFAULT 0,
        pending_pseudonym TEXT
    ) STRICT""",
    "CREATE INDEX tombstones_by_subject ON tombstones (subject_key, id)",
    # A counter every erasure bumps: other processes clear their caches when it moves.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID, STRICT",
    "INSERT INTO meta VALUES ('erasures', 0)",
)
_TOMBSTONE_COLUMNS = (
    "id, erased_at, actor_id, actor_role, reason, receipt_seq, mapping_rows, data_keys, "
    "payloads, pending_pseudonym"
)


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


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What remains of an erased subject: when, by whom, why, and the log receipt."""

    erased_at: str
    actor: Actor
    reason: str
    receipt_seq: int | None  # None while the erasure is in progress (or was interrupted)
    mapping_rows: int
    data_keys: int
    payloads: int

    @property
    def complete(self) -> bool:
        """True once the erasure record is durable in the audit log."""
        return self.receipt_seq is not None


@dataclass(frozen=True, slots=True)
class PendingErasure:
    """An erasure under way: the mapping is gone, the pseudonym is kept until shredding is done."""

    tombstone_id: int
    pseudonym: str
    tombstone: Tombstone
    resumed: bool  # an earlier attempt stopped before its receipt was written


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
        self._conn = _sqlite.connect(path, _SCHEMA, _SCHEMA_VERSION)
        self._lock = threading.Lock()  # the connection and cache writes
        #: Held by :func:`infertrail.privacy.erasure.erase` so one subject is erased once.
        self.erasure_lock = threading.Lock()
        # Reads are lock-free: dict.get is atomic, and writers replace or extend it under _lock.
        self._cache: dict[str, str] = {}
        self._epoch = self._erasure_epoch()
        self._next_refresh = monotonic() + refresh_interval_s

    # ---- the request path ----------------------------------------------------------------

    def pseudonym(self, subject_id: str, *, re_enrol: ReEnrolment | None = None) -> str:
        """The subject's pseudonym, created on first use.

        SubjectErasedError if the subject was erased, unless ``re_enrol`` is given: then a
        ``subject_re_enrolled`` record is durable in the audit log before the new pseudonym
        exists. ``re_enrol`` is ignored for a subject that was never erased.
        """
        if self._monotonic() >= self._next_refresh:
            self._refresh()
        found = self._cache.get(subject_id)
        if found is not None:
            return found
        _check_subject_id(subject_id)
        with self._lock:
            keys = self._keys(subject_id, create=True)
            found = self._mapped(keys)
            if found is None:
                found = self._enrol(keys, re_enrol)
            self._remember(subject_id, found)
        return found

    def lookup(self, subject_id: str) -> str | None:
        """The subject's pseudonym if one is held; never creates one (compliance look-ups)."""
        found = self._cache.get(subject_id)
        if found is not None:
            return found
        _check_subject_id(subject_id)
        with self._lock:
            return self._mapped(self._keys(subject_id, create=False))

    def tombstone(self, subject_id: str) -> Tombstone | None:
        """The subject's latest erasure, or None if it was never erased."""
        _check_subject_id(subject_id)
        with self._lock:
            row = self._latest_tombstone(self._keys(subject_id, create=False))
        return None if row is None else _tombstone(row)

    def is_live(self, pseudonym: str) -> bool:
        """Whether ``pseudonym`` is still mapped to a subject (False once erased)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM subjects WHERE pseudonym = ?", (pseudonym,)
            ).fetchone()
        return row is not None

    # ---- erasure steps (driven by infertrail.privacy.erasure) ------------------------------

    def begin_erasure(
        self, subject_id: str, actor: Actor, reason: str, erased_at: datetime
    ) -> PendingErasure | Tombstone:
        """Delete the mapping and write a pending tombstone, in one transaction.

        Returns the PendingErasure to finish; or, if the subject was erased already, its
        Tombstone (complete) or the interrupted PendingErasure to resume. UnknownSubjectError
        if the subject has neither a pseudonym nor a tombstone.
        """
        _check_subject_id(subject_id)
        with self._lock:
            keys = self._keys(subject_id, create=False)
            with _sqlite.transaction(self._conn) as conn:
                mapped = self._mapped_row(keys)
                if mapped is None:
                    row = self._latest_tombstone(keys)
                    if row is None:
                        raise UnknownSubjectError(
                            "no pseudonym is held for this subject and it was never erased: "
                            "there is nothing to erase"
                        )
                    tomb = _tombstone(row)
                    if tomb.complete:
                        return tomb
                    return PendingErasure(row[0], row[9], tomb, resumed=True)
                key, key_id, pseudonym = mapped
                conn.execute("DELETE FROM subjects WHERE subject_key = ?", (key,))
                stamp = erased_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                cursor = conn.execute(
                    "INSERT INTO tombstones (subject_key, key_id, erased_at, actor_id, "
                    "actor_role, reason, mapping_rows, pending_pseudonym) "
                    "VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                    (key, key_id, stamp, actor.id, actor.role, reason, pseudonym),
                )
                conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'erasures'")
                tombstone_id = cursor.lastrowid
            # Evicted under _lock, after the commit: a later miss finds the tombstone.
            self._cache.pop(subject_id, None)
        assert tombstone_id is not None
        tomb = Tombstone(stamp, actor, reason, None, 1, 0, 0)
        return PendingErasure(tombstone_id, pseudonym, tomb, resumed=False)

    def add_shred_counts(self, tombstone_id: int, data_keys: int, payloads: int) -> Tombstone:
        """Add what the payload store shredded to the pending tombstone's counts."""
        with self._lock, _sqlite.transaction(self._conn) as conn:
            conn.execute(
                "UPDATE tombstones SET data_keys = data_keys + ?, payloads = payloads + ? "
                "WHERE id = ?",
                (data_keys, payloads, tombstone_id),
            )
            return _tombstone(self._tombstone_row(tombstone_id))

    def finish_erasure(self, tombstone_id: int, receipt_seq: int) -> Tombstone:
        """Store the erasure record's seq and forget the pseudonym: the erasure is complete."""
        with self._lock:
            with _sqlite.transaction(self._conn) as conn:
                conn.execute(
                    "UPDATE tombstones SET receipt_seq = ?, pending_pseudonym = NULL WHERE id = ?",
                    (receipt_seq, tombstone_id),
                )
                row = self._tombstone_row(tombstone_id)
            _sqlite.scrub(self._conn)
        return _tombstone(row)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    # ---- internals (callers hold _lock) ---------------------------------------------------

    def _keys(self, subject_id: str, *, create: bool) -> list[tuple[str, bytes]]:
        """(key id, subject_key) of the subject under every subject key, the active one first.

        Rows written under an older key stay reachable after rotation; new rows use the active
        key. Look-ups never create a key: no key means no subject was ever mapped.
        """
        ids = self._keyring.key_ids(SUBJECT_KEY_PURPOSE)
        if not ids and not create:
            return []
        active = self._keyring.active(SUBJECT_KEY_PURPOSE)[0]
        ordered = [active, *(i for i in reversed(ids) if i != active)]
        return [(i, subject_key(self._keyring.get(i), subject_id)) for i in ordered]

    def _mapped_row(self, keys: list[tuple[str, bytes]]) -> tuple[bytes, str, str] | None:
        # The subject id itself never reaches SQLite, only its keyed hashes.
        for key_id, key in keys:
            row = self._conn.execute(
                "SELECT pseudonym FROM subjects WHERE subject_key = ?", (key,)
            ).fetchone()
            if row is not None:
                return key, key_id, row[0]
        return None

    def _mapped(self, keys: list[tuple[str, bytes]]) -> str | None:
        row = self._mapped_row(keys)
        return None if row is None else row[2]

    def _latest_tombstone(self, keys: list[tuple[str, bytes]]) -> tuple[Any, ...] | None:
        best: tuple[Any, ...] | None = None
        for _, key in keys:
            row = self._conn.execute(
                f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones WHERE subject_key = ? "  # noqa: S608
                "ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row is not None and (best is None or row[0] > best[0]):
                best = row
        return best

    def _tombstone_row(self, tombstone_id: int) -> tuple[Any, ...]:
        row = self._conn.execute(
            f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones WHERE id = ?",  # noqa: S608
            (tombstone_id,),
        ).fetchone()
        if row is None:
            raise PrivacyError(f"tombstone {tombstone_id} vanished from {self.path}")
        result: tuple[Any, ...] = row
        return result

    def _enrol(self, keys: list[tuple[str, bytes]], re_enrol: ReEnrolment | None) -> str:
        """Insert a new mapping under the active key, unless a tombstone forbids it."""
        key_id, key = keys[0]
        with _sqlite.transaction(self._conn) as conn:
            found = self._mapped(keys)  # another process may have enrolled the subject
            if found is not None:
                return found
            row = self._latest_tombstone(keys)
            pseudonym = new_pseudonym()
            if row is not None:
                tomb = _tombstone(row)
                if re_enrol is None:
                    raise SubjectErasedError(tomb.erased_at, tomb.actor.id, tomb.receipt_seq)
                if not tomb.complete:
                    raise PrivacyError(
                        f"the erasure of this subject started at {tomb.erased_at} has no "
                        "receipt yet: complete it (erase again) before re-enrolling"
                    )
                self._record_re_enrolment(re_enrol, pseudonym, tomb)
            conn.execute(
                "INSERT INTO subjects VALUES (?, ?, ?, ?)",
                (key, key_id, pseudonym, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            )
        return pseudonym

    def _record_re_enrolment(self, re_enrol: ReEnrolment, pseudonym: str, tomb: Tombstone) -> None:
        require_role(re_enrol.actor, RE_ENROLMENT_ROLES, "re-enrolment of an erased subject")
        reason = require_text("re-enrolment reason", re_enrol.reason, MIN_JUSTIFICATION_CHARS)
        if self._recorder is None:
            raise PrivacyError(
                f"pseudonym table {self.path} has no audit log attached: re-enrolment of an "
                "erased subject must be recorded, so it is refused here"
            )
        # Durable before the mapping row is committed: a crash leaves at worst a record of a
        # pseudonym never used, never a pseudonym without its record.
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
        cache = self._cache
        if len(cache) >= self._cache_size:
            del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
        cache[subject_id] = pseudonym

    def _erasure_epoch(self) -> int:
        with self._lock:
            value: int = self._conn.execute(
                "SELECT value FROM meta WHERE name = 'erasures'"
            ).fetchone()[0]
        return value

    def _refresh(self) -> None:
        """Drop the cache if any process erased a subject since the last check."""
        self._next_refresh = self._monotonic() + self._refresh_interval
        epoch = self._erasure_epoch()
        if epoch != self._epoch:
            with self._lock:
                self._cache = {}
                self._epoch = epoch


def _tombstone(row: tuple[Any, ...]) -> Tombstone:
    (_, erased_at, actor_id, role, reason, seq, mapping_rows, data_keys, payloads, _) = row
    return Tombstone(
        erased_at, Actor(id=actor_id, role=role), reason, seq, mapping_rows, data_keys, payloads
    )
