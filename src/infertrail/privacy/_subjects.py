"""subjects.db: the SQL of the pseudonym table, and group commit of new mappings.

A new mapping must be durable (fsync) before a record carrying its pseudonym is, or a crash
could leave records whose subject can no longer be found. One fsync per new subject would cap a
service at a few hundred new subjects a second, so new mappings are inserted by one writer
thread, in batches that share a transaction and its fsync (as the audit ledger does).

Two connections: request threads read on one while the writer, erasures and re-enrolments
write on the other, so a read never waits behind an fsync (WAL readers do not block).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infertrail.audit.record import Actor
from infertrail.privacy import _sqlite
from infertrail.privacy.errors import PrivacyError, SubjectErasedError, UnknownSubjectError

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

#: (key id, subject_key) of one subject under each subject key, the active key first.
SubjectKeys = list[tuple[str, bytes]]


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

    def refusal(self) -> SubjectErasedError:
        """The error that refuses this subject a new pseudonym."""
        return SubjectErasedError(self.erased_at, self.actor.id, self.receipt_seq)


@dataclass(frozen=True, slots=True)
class PendingErasure:
    """An erasure under way: the mapping is gone, the pseudonym is kept until shredding is done."""

    tombstone_id: int
    pseudonym: str
    tombstone: Tombstone
    resumed: bool  # an earlier attempt stopped before its receipt was written


@dataclass(frozen=True, slots=True)
class _Enrolment:
    keys: SubjectKeys
    candidate: str
    future: Future[str]


def _utc_seconds() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SubjectsDB:
    """All reads and writes of subjects.db (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read = _sqlite.connect(path, _SCHEMA, _SCHEMA_VERSION)
        try:
            self._write = _sqlite.connect(path, _SCHEMA, _SCHEMA_VERSION)
        except BaseException:
            self._read.close()
            raise
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()  # _pending, _closing, _writer
        self._pending: dict[bytes, _Enrolment] = {}
        self._closing = False
        self._writer: threading.Thread | None = None

    # ---- reads ---------------------------------------------------------------------------

    def mapped(self, keys: SubjectKeys) -> str | None:
        """The subject's pseudonym, or None."""
        with self._read_lock:
            row = _mapped(self._read, keys)
        return None if row is None else row[2]

    def tombstone(self, keys: SubjectKeys) -> Tombstone | None:
        """The subject's latest tombstone, or None."""
        with self._read_lock:
            row = _latest_tombstone(self._read, keys)
        return None if row is None else _tombstone(row)

    def is_live(self, pseudonym: str) -> bool:
        """Whether ``pseudonym`` is still mapped to a subject."""
        with self._read_lock:
            row = self._read.execute(
                "SELECT 1 FROM subjects WHERE pseudonym = ?", (pseudonym,)
            ).fetchone()
        return row is not None

    def erasure_epoch(self) -> int:
        """How many erasures any process has begun on this file."""
        with self._read_lock:
            value: int = self._read.execute(
                "SELECT value FROM meta WHERE name = 'erasures'"
            ).fetchone()[0]
        return value

    # ---- new mappings --------------------------------------------------------------------

    def enrol(self, keys: SubjectKeys, candidate: str) -> Future[str]:
        """Queue a new mapping under ``keys[0]``; the future gives the durable pseudonym.

        That is ``candidate``, or the pseudonym another thread or process enrolled first; or
        SubjectErasedError if the subject is tombstoned by the time the batch commits.
        """
        with self._cond:
            if self._closing:
                raise PrivacyError(f"pseudonym table {self.path} is closed")
            queued = self._pending.get(keys[0][1])
            if queued is not None:  # concurrent first uses of one subject share one row
                return queued.future
            future: Future[str] = Future()
            future.set_running_or_notify_cancel()
            self._pending[keys[0][1]] = _Enrolment(keys, candidate, future)
            if self._writer is None:  # started on first use: read-only users need no thread
                self._writer = threading.Thread(target=self._run, name="infertrail-enrol")
                self._writer.daemon = True
                self._writer.start()
            self._cond.notify()
        return future

    def enrol_recorded(
        self, keys: SubjectKeys, candidate: str, record: Callable[[Tombstone], None]
    ) -> str:
        """Enrol a subject that may be tombstoned: ``record(tombstone)`` runs first if it is.

        ``record`` appends the re-enrolment to the audit log (durable) inside the transaction,
        before the row is committed: at worst a crash leaves a record of an unused pseudonym.
        """
        with self._write_lock, _sqlite.transaction(self._write) as conn:
            row = _mapped(conn, keys)
            if row is not None:
                return row[2]
            tomb_row = _latest_tombstone(conn, keys)
            if tomb_row is not None:
                tomb = _tombstone(tomb_row)
                if not tomb.complete:
                    raise PrivacyError(
                        f"the erasure of this subject started at {tomb.erased_at} has no "
                        "receipt yet: complete it (erase again) before re-enrolling"
                    )
                record(tomb)
            _insert(conn, keys, candidate)
        return candidate

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return  # closing, drained
                batch = list(self._pending.values())
                self._pending.clear()
            results: list[str | BaseException] = []
            try:
                with self._write_lock, _sqlite.transaction(self._write) as conn:
                    results = [self._enrol_one(conn, item) for item in batch]
            except Exception as exc:  # the whole batch failed (disk full): tell every waiter
                results = [exc] * len(batch)
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    @staticmethod
    def _enrol_one(conn: sqlite3.Connection, item: _Enrolment) -> str | BaseException:
        row = _mapped(conn, item.keys)
        if row is not None:
            return str(row[2])
        tomb = _latest_tombstone(conn, item.keys)
        if tomb is not None:
            return _tombstone(tomb).refusal()
        _insert(conn, item.keys, item.candidate)
        return item.candidate

    # ---- erasure steps -------------------------------------------------------------------

    def begin_erasure(
        self, keys: SubjectKeys, actor: Actor, reason: str, erased_at: str
    ) -> PendingErasure | Tombstone:
        """Delete the mapping and write a pending tombstone in one transaction (see erasure)."""
        with self._write_lock, _sqlite.transaction(self._write) as conn:
            mapped = _mapped(conn, keys)
            if mapped is None:
                row = _latest_tombstone(conn, keys)
                if row is None:
                    raise UnknownSubjectError(
                        "no pseudonym is held for this subject and it was never erased: "
                        "there is nothing to erase"
                    )
                tomb = _tombstone(row)
                return tomb if tomb.complete else PendingErasure(row[0], row[9], tomb, True)
            key, key_id, pseudonym = mapped
            conn.execute("DELETE FROM subjects WHERE subject_key = ?", (key,))
            cursor = conn.execute(
                "INSERT INTO tombstones (subject_key, key_id, erased_at, actor_id, actor_role, "
                "reason, mapping_rows, pending_pseudonym) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (key, key_id, erased_at, actor.id, actor.role, reason, pseudonym),
            )
            conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'erasures'")
            tombstone_id = cursor.lastrowid
        assert tombstone_id is not None
        tomb = Tombstone(erased_at, actor, reason, None, 1, 0, 0)
        return PendingErasure(tombstone_id, pseudonym, tomb, resumed=False)

    def add_shred_counts(self, tombstone_id: int, data_keys: int, payloads: int) -> Tombstone:
        """Add what the payload store shredded to the pending tombstone's counts."""
        with self._write_lock, _sqlite.transaction(self._write) as conn:
            conn.execute(
                "UPDATE tombstones SET data_keys = data_keys + ?, payloads = payloads + ? "
                "WHERE id = ?",
                (data_keys, payloads, tombstone_id),
            )
            return _tombstone(self._tombstone_row(conn, tombstone_id))

    def finish_erasure(self, tombstone_id: int, receipt_seq: int) -> Tombstone:
        """Store the receipt seq and forget the pseudonym (overwritten on disk: scrub)."""
        with self._write_lock:
            with _sqlite.transaction(self._write) as conn:
                conn.execute(
                    "UPDATE tombstones SET receipt_seq = ?, pending_pseudonym = NULL WHERE id = ?",
                    (receipt_seq, tombstone_id),
                )
                row = self._tombstone_row(conn, tombstone_id)
            _sqlite.scrub(self._write)
        return _tombstone(row)

    def _tombstone_row(self, conn: sqlite3.Connection, tombstone_id: int) -> tuple[Any, ...]:
        row = conn.execute(
            f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones WHERE id = ?",  # noqa: S608
            (tombstone_id,),
        ).fetchone()
        if row is None:
            raise PrivacyError(f"tombstone {tombstone_id} vanished from {self.path}")
        result: tuple[Any, ...] = row
        return result

    def close(self) -> None:
        """Commit what is queued, stop the writer, close both connections. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join()
        with self._read_lock, self._write_lock:
            self._read.close()
            self._write.close()


# ---- SQL on a given connection (its caller holds the connection's lock) -------------------


def _mapped(conn: sqlite3.Connection, keys: SubjectKeys) -> tuple[bytes, str, str] | None:
    # The subject id itself never reaches SQLite, only its keyed hashes.
    for key_id, key in keys:
        row = conn.execute("SELECT pseudonym FROM subjects WHERE subject_key = ?", (key,))
        found = row.fetchone()
        if found is not None:
            return key, key_id, found[0]
    return None


def _latest_tombstone(conn: sqlite3.Connection, keys: SubjectKeys) -> tuple[Any, ...] | None:
    best: tuple[Any, ...] | None = None
    for _, key in keys:
        row = conn.execute(
            f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones WHERE subject_key = ? "  # noqa: S608
            "ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is not None and (best is None or row[0] > best[0]):
            best = row
    return best


def _insert(conn: sqlite3.Connection, keys: SubjectKeys, pseudonym: str) -> None:
    key_id, key = keys[0]
    conn.execute(
        "INSERT INTO subjects VALUES (?, ?, ?, ?)", (key, key_id, pseudonym, _utc_seconds())
    )


def _tombstone(row: tuple[Any, ...]) -> Tombstone:
    (_, erased_at, actor_id, role, reason, seq, mapping_rows, data_keys, payloads, _) = row
    return Tombstone(
        erased_at, Actor(id=actor_id, role=role), reason, seq, mapping_rows, data_keys, payloads
    )
