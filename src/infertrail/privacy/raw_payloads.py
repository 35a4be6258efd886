"""The restricted raw-payload store: encrypted per subject, short retention, break-glass reads.

``<data_dir>/privacy/payloads.db`` holds each request's canonical input bytes (the same bytes
the record's ``input_hmac`` covers), AES-256-GCM encrypted under its subject's data key (DEK) for
the UTC month of the decision (its key period); the DEK is stored only wrapped by a
key-encryption key (KEK, see :mod:`.crypto`). Deleting a subject's DEK rows (erasure) makes every
copy of its ciphertexts undecryptable; deleting a month's DEKs, or destroying the KEK they are
wrapped under (retention), does the same for that month.

The request thread only canonicalizes and enqueues (:meth:`PayloadStore.store`); one writer
thread encrypts and inserts batches. Reading is break-glass only: an admin, a justification, and
a ``break_glass`` record durable in the audit log before anything is decrypted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from infertrail.audit.canonical import canonicalize
from infertrail.audit.record import Actor
from infertrail.keyring import month_of
from infertrail.privacy import _sqlite
from infertrail.privacy.crypto import (
    KeyWrapper,
    WrappedKey,
    new_data_key,
    open_sealed,
    payload_aad,
    seal,
)
from infertrail.privacy.errors import PayloadIntegrityError, PayloadNotFoundError, PrivacyError
from infertrail.privacy.policy import (
    BREAK_GLASS_ROLES,
    MIN_JUSTIFICATION_CHARS,
    require_role,
    require_text,
)
from infertrail.privacy.records import AuditRecorder

__all__ = [
    "DEFAULT_RETENTION",
    "PayloadStats",
    "PayloadStore",
    "PurgeReport",
    "RawPayload",
    "ShredCounts",
]

DEFAULT_RETENTION = timedelta(days=7)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_DEK_CACHE_MAX = 10_000  # unwrapped data keys kept by the writer
_SCHEMA_VERSION = 2
# One data key per subject and key period (the UTC month of the payloads it encrypts), so that
# retention can shred a month without touching the subject's later payloads. key_period '' is a
# data key from schema version 1, which had one per subject.
_DEKS = """CREATE TABLE {name} (
        pseudonym TEXT NOT NULL,
        key_period TEXT NOT NULL,
        wrapped_dek BLOB NOT NULL,
        kek_id TEXT NOT NULL,
        PRIMARY KEY (pseudonym, key_period)
    ) WITHOUT ROWID, STRICT"""
_SCHEMA = (
    """CREATE TABLE payloads (
        request_id TEXT PRIMARY KEY,
        pseudonym TEXT NOT NULL,
        ts INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        aad BLOB NOT NULL,
        key_period TEXT NOT NULL
    ) STRICT""",
    "CREATE INDEX payloads_by_subject ON payloads (pseudonym)",
    "CREATE INDEX payloads_by_ts ON payloads (ts)",
    _DEKS.format(name="deks"),
    "CREATE INDEX deks_by_kek ON deks (kek_id)",
)
_MIGRATIONS = {
    1: (
        "ALTER TABLE payloads ADD COLUMN key_period TEXT NOT NULL DEFAULT ''",
        _DEKS.format(name="deks_v2"),
        "INSERT INTO deks_v2 SELECT pseudonym, '', wrapped_dek, kek_id FROM deks",
        "DROP TABLE deks",
        "ALTER TABLE deks_v2 RENAME TO deks",
        "CREATE INDEX deks_by_kek ON deks (kek_id)",
    )
}
_LEGACY_PERIOD = ""
_log = logging.getLogger("infertrail.privacy")
_Item = tuple[str, str, int, bytes]  # pseudonym, request id, ts (us), canonical plaintext
_DekKey = tuple[str, str]  # pseudonym, key period


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"time must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return (moment - _EPOCH) // _US


def _rfc3339(ts_us: int) -> str:
    return (_EPOCH + ts_us * _US).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _key_period(ts_us: int) -> str:
    """The key period (UTC month) of a payload whose decision was at ``ts_us``."""
    return month_of(ts_us / 1e6)


def _dek_selection(kek_ids: Collection[str], periods: Collection[str]) -> tuple[str, list[str]]:
    """SQL predicate on ``deks`` (and its parameters): wrapped under ``kek_ids`` or of
    ``periods``; matches nothing when both are empty."""
    marks = ", ".join("?" * len(kek_ids))
    period_marks = ", ".join("?" * len(periods))
    where = f"kek_id IN ({marks}) OR key_period IN ({period_marks})"
    return where, [*kek_ids, *periods]


def _dek_context(pseudonym: str, period: str) -> bytes:
    """What a wrapped data key is bound to: its subject and, since schema 2, its key period."""
    if period == _LEGACY_PERIOD:
        return pseudonym.encode()
    return pseudonym.encode() + b"\x00" + period.encode()


@dataclass(frozen=True, slots=True)
class RawPayload:
    """A decrypted payload, returned by a break-glass read with the seq of its audit record."""

    request_id: str
    pseudonym: str
    stored_at: str
    plaintext: bytes  # canonical JSON (RFC 8785) of the request's inputs
    break_glass_seq: int

    def inputs(self) -> Any:
        """The inputs as JSON values."""
        return orjson.loads(self.plaintext)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one purge deleted; ``receipt_seq`` is its audit record (None if nothing expired)."""

    cutoff: str
    payloads: int
    data_keys: int
    oldest: str | None
    newest: str | None
    receipt_seq: int | None


@dataclass(frozen=True, slots=True)
class ShredCounts:
    """What an erasure or a retention shredding deleted from the payload store."""

    data_keys: int
    payloads: int


@dataclass(frozen=True, slots=True)
class PayloadStats:
    """Writer counters since open; nothing is dropped without being counted here."""

    stored: int
    refused_erased: int  # queued for a pseudonym erased before the write: not stored
    duplicates: int  # a payload for the request id existed: the first one is kept
    failed: int  # lost to a write error (logged)


class PayloadStore:
    """Encrypted raw payloads in one SQLite file, written by a background thread.

    ``is_live(pseudonym)`` (the pseudonym table's) is asked, inside the write transaction,
    before a subject gets a new data key, so a payload queued before an erasure is never
    written after it. ``recorder`` appends break-glass and purge records; reads and purges are
    refused without one.
    """

    def __init__(
        self,
        path: Path,
        kek: KeyWrapper,
        is_live: Callable[[str], bool],
        recorder: AuditRecorder | None = None,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = _utc_now,
        queue_max: int = 10_000,
        batch_max: int = 256,
    ) -> None:
        if retention <= timedelta(0) or queue_max < 1 or batch_max < 1:
            raise ValueError(
                f"retention must be positive and queue_max, batch_max >= 1, got {retention}, "
                f"{queue_max}, {batch_max}"
            )
        self.path = path
        self.retention = retention
        self._kek = kek
        self._is_live = is_live
        self._recorder = recorder
        self._clock = clock
        self._queue_max = queue_max
        self._batch_max = batch_max
        self._conn = _sqlite.connect(path, _SCHEMA, _SCHEMA_VERSION, _MIGRATIONS)
        self._db = threading.Lock()  # the connection: writer batches, reads, purges, shreds
        self._deks: dict[_DekKey, tuple[bytes, bytes]] = {}  # -> (wrapped, dek); writer only
        self._cond = threading.Condition()  # the queue and the counters below
        self._queue: deque[_Item] = deque()
        self._enqueued = 0
        self._done = 0
        self._closing = False
        self._stats = PayloadStats(0, 0, 0, 0)
        self._writer = threading.Thread(target=self._run, name="infertrail-payload-writer")
        self._writer.daemon = True
        self._writer.start()
        self._purger: threading.Thread | None = None
        self._stop_purger = threading.Event()

    # ---- request thread ------------------------------------------------------------------

    def store(
        self, pseudonym: str, request_id: str, inputs: Any, *, at_ns: int | None = None
    ) -> None:
        """Queue the request's inputs for encrypted storage (blocks only while the queue is full).

        ``at_ns`` is the decision's time (Unix ns; default now): the payload's key period and
        retention count from it, as its audit record's do. ValueError (CanonicalizationError,
        naming the JSON path) for inputs canonical JSON cannot hold: the caller's bug, raised
        here rather than lost in the writer.
        """
        if not pseudonym or not request_id:
            raise ValueError(
                f"pseudonym and request id must be non-empty, got {pseudonym!r}, {request_id!r}"
            )
        ts_us = _micros(self._clock()) if at_ns is None else at_ns // 1000
        item = (pseudonym, request_id, ts_us, canonicalize(inputs))
        with self._cond:
            while len(self._queue) >= self._queue_max and not self._closing:
                self._cond.wait()  # backpressure: a full queue never drops a payload
            if self._closing:
                raise PrivacyError(f"payload store {self.path} is closed")
            self._queue.append(item)
            self._enqueued += 1
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Return once every payload queued so far is written (or counted as not written)."""
        with self._cond:
            target = self._enqueued
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise TimeoutError(f"payload store {self.path} did not flush within {timeout} s")

    @property
    def stats(self) -> PayloadStats:
        """Writer counters since open."""
        return self._stats

    # ---- break-glass read ----------------------------------------------------------------

    def read(self, request_id: str, actor: Actor, justification: str) -> RawPayload:
        """Break-glass: decrypt the payload of ``request_id`` for an admin with a justification.

        The ``break_glass`` record (who, role, justification, request id, pseudonym) is durable
        in the audit log before the data key is unwrapped. Refusals (AccessRefusedError) and
        missing payloads (PayloadNotFoundError) append nothing; PayloadIntegrityError means the
        stored row or its wrapped key was altered.
        """
        require_role(actor, BREAK_GLASS_ROLES, "break-glass read of a raw payload")
        justification = require_text("justification", justification, MIN_JUSTIFICATION_CHARS)
        recorder = self._require_recorder("break-glass reads")
        with self._db:
            row = self._conn.execute(
                "SELECT p.pseudonym, p.ts, p.nonce, p.ciphertext, p.aad, p.key_period, d.kek_id, "
                "d.wrapped_dek FROM payloads p LEFT JOIN deks d USING (pseudonym, key_period) "
                "WHERE p.request_id = ?",
                (request_id,),
            ).fetchone()
        if row is None:
            raise PayloadNotFoundError(
                f"no raw payload for request {request_id!r} (never stored, purged after "
                f"{self.retention}, or erased)"
            )
        pseudonym, ts_us, nonce, ciphertext, aad, period, kek_id, wrapped = row
        receipt = recorder.append(
            "break_glass",
            actor=actor,
            subject=pseudonym,
            request_id=request_id,
            details={"justification": justification, "store": "raw_payloads"},
        )
        what = f"raw payload of request {request_id!r}"
        if aad != payload_aad(pseudonym, request_id, ts_us):
            raise PayloadIntegrityError(f"{what}: stored AAD does not match its row (tampered)")
        if wrapped is None:
            raise PayloadIntegrityError(f"{what}: its subject's data key is missing")
        dek = self._kek.unwrap(WrappedKey(kek_id, wrapped), _dek_context(pseudonym, period))
        plaintext = open_sealed(dek, nonce, ciphertext, aad, what)
        return RawPayload(request_id, pseudonym, _rfc3339(ts_us), plaintext, receipt.seq)

    # ---- retention and erasure -----------------------------------------------------------

    def purge(self, now: datetime | None = None) -> PurgeReport:
        """Delete payloads older than the retention, and data keys left without payloads.

        (A data key serves one subject and one key period: it goes once that month's payloads
        of the subject are purged.)

        The ``retention_purge`` record (counts and time range, no pseudonyms or request ids) is
        appended inside the delete transaction: a purge is never silent. Nothing expired:
        nothing deleted, nothing appended.
        """
        recorder = self._require_recorder("purges")
        cutoff_us = _micros(now or self._clock()) - self.retention // _US
        cutoff = _rfc3339(cutoff_us)
        with self._db, _sqlite.transaction(self._conn) as conn:
            count, oldest, newest = conn.execute(
                "SELECT count(*), min(ts), max(ts) FROM payloads WHERE ts < ?", (cutoff_us,)
            ).fetchone()
            conn.execute("DELETE FROM payloads WHERE ts < ?", (cutoff_us,))
            data_keys = conn.execute(
                "DELETE FROM deks WHERE NOT EXISTS (SELECT 1 FROM payloads p "
                "WHERE p.pseudonym = deks.pseudonym AND p.key_period = deks.key_period)"
            ).rowcount
            oldest_s = None if oldest is None else _rfc3339(oldest)
            newest_s = None if newest is None else _rfc3339(newest)
            if count == 0 and data_keys == 0:
                return PurgeReport(cutoff, 0, 0, None, None, None)
            receipt = recorder.append(
                "retention_purge",
                details={
                    "store": "raw_payloads",
                    "payloads": count,
                    "data_keys": data_keys,
                    "cutoff": cutoff,
                    "oldest": oldest_s,
                    "newest": newest_s,
                    "retention_days": self.retention / timedelta(days=1),
                },
            )
            self._deks.clear()
        return PurgeReport(cutoff, count, data_keys, oldest_s, newest_s, receipt.seq)

    def shred(self, pseudonym: str) -> ShredCounts:
        """Crypto-shred a subject: delete its data keys (every month) and ciphertexts (erasure)."""
        with self._db:
            with _sqlite.transaction(self._conn) as conn:
                payloads = conn.execute(
                    "DELETE FROM payloads WHERE pseudonym = ?", (pseudonym,)
                ).rowcount
                data_keys = conn.execute(
                    "DELETE FROM deks WHERE pseudonym = ?", (pseudonym,)
                ).rowcount
            self._deks = {k: v for k, v in self._deks.items() if k[0] != pseudonym}
            _sqlite.scrub(self._conn)
        return ShredCounts(data_keys, payloads)

    def periods(self) -> dict[str, ShredCounts]:
        """Data keys and payloads held per key period ('' for data keys of schema version 1)."""
        with self._db:
            keys = self._conn.execute(
                "SELECT key_period, count(*) FROM deks GROUP BY key_period"
            ).fetchall()
            payloads = dict(
                self._conn.execute(
                    "SELECT key_period, count(*) FROM payloads GROUP BY key_period"
                ).fetchall()
            )
        return {period: ShredCounts(n, payloads.get(period, 0)) for period, n in keys}

    def held(self, *, kek_ids: Collection[str] = (), periods: Collection[str] = ()) -> ShredCounts:
        """What :meth:`shred_keys` with these arguments would delete now."""
        where, params = _dek_selection(kek_ids, periods)
        with self._db:
            (data_keys,) = self._conn.execute(
                f"SELECT count(*) FROM deks WHERE {where}",  # noqa: S608
                params,
            ).fetchone()
            (payloads,) = self._conn.execute(
                "SELECT count(*) FROM payloads WHERE (pseudonym, key_period) IN "  # noqa: S608
                f"(SELECT pseudonym, key_period FROM deks WHERE {where})",
                params,
            ).fetchone()
        return ShredCounts(data_keys, payloads)

    def shred_keys(
        self, *, kek_ids: Collection[str] = (), periods: Collection[str] = ()
    ) -> ShredCounts:
        """Crypto-shred the data keys of ``periods`` and those wrapped under ``kek_ids``, with
        the payloads encrypted under them (retention; the caller records what was shredded).

        Retention runs this before it destroys the KEKs themselves, so that no row is left
        whose key is gone: a break-glass read then finds nothing, rather than failing after its
        record is appended.
        """
        where, params = _dek_selection(kek_ids, periods)
        with self._db:
            with _sqlite.transaction(self._conn) as conn:
                payloads = conn.execute(
                    "DELETE FROM payloads WHERE (pseudonym, key_period) IN "  # noqa: S608
                    f"(SELECT pseudonym, key_period FROM deks WHERE {where})",
                    params,
                ).rowcount
                data_keys = conn.execute(f"DELETE FROM deks WHERE {where}", params).rowcount  # noqa: S608
            if data_keys or payloads:
                self._deks.clear()
                _sqlite.scrub(self._conn)
        return ShredCounts(data_keys, payloads)

    def start_purger(self, interval_s: float) -> None:
        """Purge every ``interval_s`` seconds in a background thread until :meth:`close`."""
        if interval_s <= 0:
            raise ValueError(f"purge interval must be > 0 seconds, got {interval_s}")
        if self._purger is not None:
            raise RuntimeError(f"payload store {self.path} already has a purger")
        self._require_recorder("purges")
        self._purger = threading.Thread(
            target=self._purge_every, args=(interval_s,), name="infertrail-payload-purger"
        )
        self._purger.daemon = True
        self._purger.start()

    def close(self) -> None:
        """Stop the purger, write what is queued, close the database. Idempotent."""
        self._stop_purger.set()
        if self._purger is not None:
            self._purger.join()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._writer.join()
        with self._db:
            self._conn.close()

    # ---- internals -----------------------------------------------------------------------

    def _require_recorder(self, what: str) -> AuditRecorder:
        if self._recorder is None:
            raise PrivacyError(
                f"payload store {self.path} has no audit log attached: {what} must be recorded"
            )
        return self._recorder

    def _purge_every(self, interval_s: float) -> None:
        while not self._stop_purger.wait(interval_s):
            try:
                self.purge()
            except Exception:  # the next run retries; a dead purger would purge nothing
                _log.exception("raw payload purge failed")

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return  # closing and drained
                batch = [
                    self._queue.popleft() for _ in range(min(self._batch_max, len(self._queue)))
                ]
                self._cond.notify_all()  # room for blocked store() calls
            stats = self._stats
            try:
                stored, refused, duplicates = self._write(batch)
                self._stats = PayloadStats(
                    stats.stored + stored,
                    stats.refused_erased + refused,
                    stats.duplicates + duplicates,
                    stats.failed,
                )
            except Exception:  # one bad batch (disk full) must not stop the writer
                _log.exception("writing %d raw payloads failed", len(batch))
                self._stats = PayloadStats(
                    stats.stored, stats.refused_erased, stats.duplicates, stats.failed + len(batch)
                )
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[_Item]) -> tuple[int, int, int]:
        """Encrypt and insert one batch in one transaction; returns (stored, refused, dups)."""
        rows: list[tuple[str, str, int, bytes, bytes, bytes, str]] = []
        refused = 0
        with self._db, _sqlite.transaction(self._conn) as conn:
            keys: dict[_DekKey, bytes | None] = {}
            for pseudonym, request_id, ts_us, plaintext in batch:
                key = (pseudonym, _key_period(ts_us))
                if key not in keys:
                    keys[key] = self._data_key(conn, key)
                dek = keys[key]
                if dek is None:
                    refused += 1
                    continue
                aad = payload_aad(pseudonym, request_id, ts_us)
                nonce, ciphertext = seal(dek, plaintext, aad)
                rows.append((request_id, pseudonym, ts_us, nonce, ciphertext, aad, key[1]))
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO payloads (request_id, pseudonym, ts, nonce, ciphertext, "
                "aad, key_period) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            stored = conn.total_changes - before
        return stored, refused, len(rows) - stored

    def _data_key(self, conn: sqlite3.Connection, key: _DekKey) -> bytes | None:
        """The DEK of (subject, key period), created if the subject is still mapped; None if
        it was erased.

        A new DEK is wrapped under the KEK active now, whose own period is never earlier than
        the payload's: so the KEK is kept at least as long as the payloads it protects.
        """
        pseudonym, period = key
        row = conn.execute(
            "SELECT kek_id, wrapped_dek FROM deks WHERE pseudonym = ? AND key_period = ?", key
        ).fetchone()
        context = _dek_context(pseudonym, period)
        if row is not None:
            kek_id, wrapped = row
            cached = self._deks.get(key)
            if cached is not None and cached[0] == wrapped:
                return cached[1]
            dek = self._kek.unwrap(WrappedKey(kek_id, wrapped), context)
        elif self._is_live(pseudonym):
            dek = new_data_key()
            wrapped_key = self._kek.wrap(dek, context)
            conn.execute(
                "INSERT INTO deks VALUES (?, ?, ?, ?)",
                (pseudonym, period, wrapped_key.blob, wrapped_key.kek_id),
            )
            wrapped = wrapped_key.blob
        else:
            return None
        if len(self._deks) >= _DEK_CACHE_MAX:
            self._deks.clear()  # bounded: unwrapping again costs microseconds
        self._deks[key] = (wrapped, dek)
        return dek
