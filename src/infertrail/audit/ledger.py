"""The audit ledger: durable appends by group commit, a Merkle tree and signed checkpoints.

Request threads only number, canonicalize, hash and enqueue a record (under one lock, so queue
order is seq order). One writer thread takes batches off the bounded queue, writes them to the
WAL with one write and one fdatasync, extends the hash store and the compact range, and only
then acknowledges them. Signed C2SP checkpoints follow at an interval, on flush and on close.
On open, a crash is repaired: a torn WAL tail is cut, the hash store is brought back in line with
the WAL, and the checkpoint history must still match the recovered tree (no rollback).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from infertrail.audit.hashstore import HashStore
from infertrail.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof_by,
    inclusion_proof_by,
    leaf_hash,
    verify_consistency,
)
from infertrail.audit.wal import (
    FRAME_HEADER,
    MAX_PAYLOAD,
    LogCorruptedError,
    SegmentWriter,
    TornTail,
    WalState,
    encode_frame,
    fsync_dir,
    iter_records,
    read_frames,
    scan_wal,
    write_all,
)

__all__ = [
    "AuditLog",
    "LedgerStats",
    "LogClosedError",
    "LogCorruptedError",
    "LogFailedError",
    "LogLockedError",
    "Receipt",
    "RecoveryReport",
]

LOG_FORMAT = 1
# Checkpoints at the end of the history whose signatures and consistency proofs are re-checked
# on every open; older entries get the cheap checks (framing, origin, sizes never shrink).
# Checking all of them is `verify`'s job: the history grows by one entry per interval.
HISTORY_RECHECK = 32
_COMPARE_CHUNK = 65536  # leaf hashes compared or appended per step during recovery


class LogLockedError(RuntimeError):
    """Another process (or handle) already has this log open for writing."""


class LogClosedError(RuntimeError):
    """The log was closed; it accepts no more records."""


class LogFailedError(RuntimeError):
    """The writer hit an I/O error; the log accepts no more records until it is reopened."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """Acknowledgement that a record is durable: its position and leaf hash in the log."""

    seq: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``AuditLog.open`` found after an unclean shutdown and repaired."""

    wal_tail: TornTail | None  # torn end of the last WAL segment, cut off
    history_tail: TornTail | None  # torn end of checkpoints/history.log, cut off
    leaves_rebuilt: int  # leaf hashes re-derived from the WAL (the hash store lagged)
    leaves_dropped: int  # hash store leaves beyond the end of the WAL, cut off


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Writer counters since open: for benchmarks and metrics."""

    records: int
    commits: int  # group commits, i.e. WAL fdatasyncs
    largest_batch: int
    checkpoints: int


@dataclass(frozen=True, slots=True)
class _Options:
    batch_max: int
    batch_wait: float  # seconds
    queue_max: int
    checkpoint_interval: float  # seconds
    fsync: bool


class _CheckpointWriter:
    """Signs checkpoints, appends them to the history and atomically replaces ``latest``."""

    def __init__(self, cp_dir: Path, signer: NoteSigner, origin: str, fsync: bool) -> None:
        self._latest = cp_dir / "latest"
        self._signer = signer
        self._origin = origin
        self._fsync = fsync
        self._fd = os.open(cp_dir / "history.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, tree: CompactRange) -> bytes:
        """Sign a checkpoint of ``tree``, make it durable in both places, return the note."""
        note = sign_checkpoint(Checkpoint(self._origin, tree.size, tree.root()), self._signer)
        write_all(self._fd, encode_frame(note))
        if self._fsync:
            os.fdatasync(self._fd)
        _replace_file(self._latest, note, self._fsync)
        return note

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class AuditLog:
    """An append-only, verifiable audit log in one directory, written by one process.

    Use :meth:`open` (also a context manager). ``append`` returns once the record is durable;
    ``append_async`` returns a future. A full queue blocks appenders (backpressure, never a drop).
    """

    def __init__(
        self,
        log_dir: Path,
        origin: str,
        options: _Options,
        lock_fd: int,
        wal: SegmentWriter,
        hashes: HashStore,
        tree: CompactRange,
        checkpoints: _CheckpointWriter,
        latest_note: bytes,
        recovery: RecoveryReport | None,
    ) -> None:
        """Internal: use :meth:`open`, which takes the lock and recovers the parts first."""
        self.log_dir = log_dir
        self.origin = origin
        self.recovery = recovery
        self._opts = options
        self._lock_fd = lock_fd
        self._wal = wal
        self._hashes = hashes
        self._tree = tree
        self._checkpoints = checkpoints
        # Producer side, guarded by _lock: the seq counter and the bounded queue.
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._pending: list[tuple[bytes, bytes, Future[Receipt] | None]] = []
        self._next_seq = tree.size
        self._blocked = 0  # appenders waiting for queue space
        self._flush_target = 0
        self._closing = False
        self._failure: BaseException | None = None
        # Writer side, guarded by _committed: what is durable and checkpointed.
        self._committed = threading.Condition()
        self._size = tree.size
        self._checkpoint_size = tree.size
        self._latest_note = latest_note
        self._last_checkpoint = time.monotonic()
        self._stats = LedgerStats(0, 0, 0, 0)
        self._released = False
        self._pid = os.getpid()
        self._writer = threading.Thread(target=self._run, name="infertrail-audit-writer")
        self._writer.daemon = True  # unacknowledged records may be lost at exit, never acked ones
        self._writer.start()

    @classmethod
    def open(
        cls,
        log_dir: Path,
        *,
        signer: NoteSigner,
        origin: str,
        batch_max: int = 4096,
        batch_wait_ms: float = 2.0,
        queue_max: int = 65536,
        segment_bytes: int = 64 << 20,
        checkpoint_interval_ms: float = 1000.0,
        fsync: bool = True,
    ) -> AuditLog:
        """Open (creating if needed) the log in ``log_dir`` for writing, recovering from a crash.

        Raises LogLockedError if another writer holds it, LogCorruptedError for damage recovery
        must not repair, ValueError for bad options or a log of another origin or key.
        """
        _check_options(origin, batch_max, batch_wait_ms, queue_max, checkpoint_interval_ms)
        options = _Options(
            batch_max, batch_wait_ms / 1000, queue_max, checkpoint_interval_ms / 1000, fsync
        )
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as cleanup:
            lock_fd = _acquire_lock(log_dir)
            cleanup.callback(os.close, lock_fd)
            _prepare_layout(log_dir, signer, origin)
            wal_state = scan_wal(log_dir / "wal")
            hashes = HashStore(log_dir / "tree")
            cleanup.callback(hashes.close)
            rebuilt, dropped = _reconcile(log_dir / "wal", wal_state, hashes)
            tree = _compact_range(hashes)
            checkpoints = _CheckpointWriter(log_dir / "checkpoints", signer, origin, fsync)
            cleanup.callback(checkpoints.close)
            history_tail, latest = _check_history(
                log_dir / "checkpoints", NoteVerifier.from_key(signer.verifier_key), origin, hashes
            )
            if latest is None or _note_size(latest) != tree.size:
                latest = checkpoints.write(tree)
            wal = SegmentWriter(
                log_dir / "wal", wal_state, segment_bytes=segment_bytes, fsync=fsync
            )
            cleanup.callback(wal.close)
            repaired = wal_state.torn_tail or history_tail or rebuilt or dropped
            report = (
                RecoveryReport(wal_state.torn_tail, history_tail, rebuilt, dropped)
                if repaired
                else None
            )
            log = cls(
                log_dir, origin, options, lock_fd, wal, hashes, tree, checkpoints, latest, report
            )
            cleanup.pop_all()
        return log

    # ---- request-thread side -------------------------------------------------------------

    def append(self, record: Mapping[str, Any], timeout: float | None = None) -> Receipt:
        """Append ``record`` (without "seq": the log assigns it); return once it is durable.

        ``timeout`` bounds the whole call: TimeoutError if the queue stays full (the record was
        not added) or if it is queued but not yet durable (it may still be committed).
        """
        self._check_not_writer("append")
        deadline = None if timeout is None else time.monotonic() + timeout
        seq, digest = self._enqueue(record, None, deadline)
        with self._committed:
            while self._size <= seq:
                if self._failure is not None:
                    raise self._failure
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"audit record seq {seq} was queued but not durable within {timeout} s; "
                        "it may still be committed"
                    )
                self._committed.wait(remaining)
        return Receipt(seq, digest)

    def append_async(
        self, record: Mapping[str, Any], timeout: float | None = None
    ) -> Future[Receipt]:
        """Queue ``record`` and return a future resolved with its Receipt once it is durable.

        Blocks only while the queue is full (up to ``timeout``, then TimeoutError). The future
        cannot be cancelled: a numbered record is always written or the log fails.
        """
        future: Future[Receipt] = Future()
        future.set_running_or_notify_cancel()
        self._enqueue(record, future, None if timeout is None else time.monotonic() + timeout)
        return future

    def _enqueue(
        self, record: Mapping[str, Any], future: Future[Receipt] | None, deadline: float | None
    ) -> tuple[int, bytes]:
        if not isinstance(record, Mapping):
            raise TypeError(f"audit record must be a mapping, got {type(record).__name__}")
        if "seq" in record:
            raise ValueError("audit record must not contain 'seq': the log assigns it")
        self._check_process()
        with self._lock:
            while len(self._pending) >= self._opts.queue_max:
                self._check_accepting()
                self._check_not_writer("append_async on a full queue")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"audit queue full ({self._opts.queue_max} records): the writer is not "
                        "keeping up; the record was NOT appended"
                    )
                self._blocked += 1
                try:
                    self._not_full.wait(remaining)
                finally:
                    self._blocked -= 1
            self._check_accepting()
            seq = self._next_seq
            numbered = dict(record)
            numbered["seq"] = seq
            payload = canonicalize(numbered)  # raises before seq is consumed on a bad record
            if len(payload) > MAX_PAYLOAD:
                raise ValueError(
                    f"audit record is {len(payload)} bytes canonicalized, over {MAX_PAYLOAD}"
                )
            digest = leaf_hash(payload)
            self._pending.append((payload, digest, future))
            self._next_seq = seq + 1
            queued = len(self._pending)
            if queued == 1 or queued == self._opts.batch_max:
                self._has_work.notify()
        return seq, digest

    def _check_not_writer(self, what: str) -> None:
        # Receipt callbacks run on the writer thread, which would then wait for itself.
        if threading.get_ident() == self._writer.ident:
            raise RuntimeError(f"{what} from a receipt callback would deadlock the audit writer")

    def _check_process(self) -> None:
        # A forked child inherits the lock but not the writer thread: its records would hang.
        if os.getpid() != self._pid:
            raise LogLockedError(
                f"audit log {self.log_dir} was opened by pid {self._pid}; this forked process "
                f"({os.getpid()}) must open its own log (e.g. after the worker fork)"
            )

    def _check_accepting(self) -> None:
        if self._closing:
            raise LogClosedError(f"audit log {self.log_dir} is closed")
        if self._failure is not None:
            raise LogFailedError(
                f"audit log {self.log_dir} failed and accepts no more records "
                f"(reopen it to recover): {self._failure!r}"
            ) from self._failure

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything appended so far is durable and covered by a checkpoint."""
        self._check_not_writer("flush")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._check_process()
        with self._lock:
            self._check_accepting()
            target = self._next_seq
            self._flush_target = max(self._flush_target, target)
            self._has_work.notify()
        with self._committed:
            while self._checkpoint_size < target:
                if self._failure is not None:
                    raise LogFailedError(f"audit log {self.log_dir} failed") from self._failure
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"flush of audit log {self.log_dir} took over {timeout} s")
                self._committed.wait(remaining)

    # ---- reading -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of committed (durable, acknowledged) records."""
        return self._size

    @property
    def latest_checkpoint(self) -> bytes:
        """The newest signed checkpoint note (C2SP tlog-checkpoint)."""
        with self._committed:
            return self._latest_note

    @property
    def stats(self) -> LedgerStats:
        """Writer counters since open."""
        return self._stats

    def read(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Committed records ``start <= seq < end`` as (seq, canonical bytes), from the WAL.

        LookupError if ``start`` is below the WAL (retired to the lake), ValueError if the range
        is not within the committed log.
        """
        size = self._size
        if not 0 <= start <= end <= size:
            raise ValueError(
                f"read range [{start}, {end}) not within the committed log [0, {size})"
            )
        oldest = self._wal.first_seq
        if start < oldest and start < end:
            raise LookupError(
                f"records below seq {oldest} were retired from the WAL; read them from the lake"
            )
        return iter_records(self.log_dir / "wal", start, end)

    def root(self, tree_size: int | None = None) -> bytes:
        """Merkle root of the first ``tree_size`` records (default: the committed log)."""
        size = self._checked_size(tree_size)
        return EMPTY_ROOT if size == 0 else self._hashes.subtree_root(0, size)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of record ``seq`` in the tree of ``tree_size`` records."""
        size = self._checked_size(tree_size)
        if not 0 <= seq < size:
            raise ValueError(f"seq {seq} is not in a tree of size {size}")
        return inclusion_proof_by(self._hashes.subtree_root, seq, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 proof that the tree of ``old_size`` records is a prefix of ``new_size``."""
        size = self._checked_size(new_size)
        if not 0 < old_size <= size:
            raise ValueError(f"need 0 < old_size <= {size}, got old_size {old_size}")
        return consistency_proof_by(self._hashes.subtree_root, old_size, size)

    def _checked_size(self, tree_size: int | None) -> int:
        if self._released:
            raise LogClosedError(f"audit log {self.log_dir} is closed")
        committed = self._size
        if tree_size is None:
            return committed
        if not 0 <= tree_size <= committed:
            raise ValueError(f"tree size {tree_size} not within the committed log [0, {committed}]")
        return tree_size

    def retire_through(self, seq: int) -> None:
        """Delete WAL segments whose records are all <= ``seq`` (sealed in the lake by then).

        The hash store is fsynced first: it is then the only local copy of those leaves.
        """
        if self._released:
            raise LogClosedError(f"audit log {self.log_dir} is closed")
        if not 0 <= seq < self._size:
            raise ValueError(f"can only retire committed records, seq {seq} >= {self._size}")
        self._hashes.sync()
        self._wal.retire_through(seq)

    # ---- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                taken = self._next_batch()
                if taken is None:
                    break
                first_seq, batch = taken
                if batch:
                    self._commit(first_seq, batch)
                if self._checkpoint_due():
                    self._write_checkpoint()
            if self._tree.size != self._checkpoint_size:
                self._write_checkpoint()
        except BaseException as exc:  # any writer error must fail the log, never vanish
            self._fail(exc)

    def _next_batch(self) -> tuple[int, list[tuple[bytes, bytes, Future[Receipt] | None]]] | None:
        """Wait for work; None once closing with nothing left. An empty batch means checkpoint."""
        opts = self._opts
        with self._lock:
            while not self._pending:
                if self._closing:
                    return None
                if self._flush_target > self._checkpoint_size:
                    return self._tree.size, []
                timeout = None
                if self._tree.size > self._checkpoint_size:
                    timeout = self._last_checkpoint + opts.checkpoint_interval - time.monotonic()
                    if timeout <= 0:
                        return self._tree.size, []
                self._has_work.wait(timeout)
            if opts.batch_wait > 0 and len(self._pending) < opts.batch_max:
                # Group commit: give concurrent appenders a moment to join this fdatasync.
                deadline = time.monotonic() + opts.batch_wait
                while (
                    len(self._pending) < opts.batch_max
                    and not self._closing
                    and self._flush_target <= self._checkpoint_size
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._has_work.wait(remaining)
            batch = self._pending[: opts.batch_max]
            del self._pending[: opts.batch_max]
            if self._blocked:
                self._not_full.notify_all()
            return self._tree.size, batch

    def _commit(
        self, first_seq: int, batch: list[tuple[bytes, bytes, Future[Receipt] | None]]
    ) -> None:
        pack = FRAME_HEADER.pack
        crc32 = zlib.crc32
        frames = b"".join([part for p, _, _ in batch for part in (pack(len(p), crc32(p)), p)])
        digests = [digest for _, digest, _ in batch]
        try:
            self._wal.write(first_seq, len(batch), frames)
            self._hashes.append(digests)
        except BaseException as exc:
            for _, _, future in batch:
                if future is not None:
                    future.set_exception(exc)
            raise
        self._tree.extend(digests)
        with self._committed:
            self._size = self._tree.size
            self._committed.notify_all()
        for offset, (_, digest, future) in enumerate(batch):
            if future is not None:
                future.set_result(Receipt(first_seq + offset, digest))
        stats = self._stats
        self._stats = LedgerStats(
            stats.records + len(batch),
            stats.commits + 1,
            max(stats.largest_batch, len(batch)),
            stats.checkpoints,
        )

    def _checkpoint_due(self) -> bool:
        size = self._tree.size
        if size == self._checkpoint_size:
            return False
        if size >= self._flush_target > self._checkpoint_size:
            return True
        return time.monotonic() - self._last_checkpoint >= self._opts.checkpoint_interval

    def _write_checkpoint(self) -> None:
        note = self._checkpoints.write(self._tree)
        self._last_checkpoint = time.monotonic()
        with self._committed:
            self._latest_note = note
            self._checkpoint_size = self._tree.size
            self._committed.notify_all()
        stats = self._stats
        self._stats = LedgerStats(
            stats.records, stats.commits, stats.largest_batch, stats.checkpoints + 1
        )

    def _fail(self, exc: BaseException) -> None:
        """Enter the failed state: fail every queued record, wake every waiter."""
        with self._lock:
            if self._failure is None:
                self._failure = exc
            pending, self._pending = self._pending, []
            self._not_full.notify_all()
        for _, _, future in pending:
            if future is not None:
                future.set_exception(exc)
        with self._committed:
            self._committed.notify_all()

    # ---- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Drain the queue, commit, write a final checkpoint, release the files and the lock.

        Idempotent. Raises LogFailedError if the writer fails while draining (an earlier failure
        was already reported to the appenders it affected).
        """
        with self._lock:
            already_failed = self._failure is not None
            self._closing = True
            self._has_work.notify()
        self._writer.join()
        with self._committed:
            if self._released:
                return
            self._released = True
        self._wal.close()
        self._hashes.close()
        self._checkpoints.close()
        os.close(self._lock_fd)
        if self._failure is not None and not already_failed:
            raise LogFailedError(
                f"audit log {self.log_dir} failed while closing"
            ) from self._failure

    def __repr__(self) -> str:
        return f"AuditLog({str(self.log_dir)!r}, origin={self.origin!r}, size={self._size})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---- opening and recovery ------------------------------------------------------------------


def _check_options(
    origin: str, batch_max: int, batch_wait_ms: float, queue_max: int, interval_ms: float
) -> None:
    Checkpoint(origin, 0, EMPTY_ROOT)  # ValueError naming a bad origin
    for name, value, low in (
        ("batch_max", batch_max, 1),
        ("queue_max", queue_max, 1),
        ("batch_wait_ms", batch_wait_ms, 0),
        ("checkpoint_interval_ms", interval_ms, 0),
    ):
        if not value >= low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")


def _acquire_lock(log_dir: Path) -> int:
    """Take the log's exclusive writer lock (flock: released by the kernel if we die)."""
    fd = os.open(log_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise LogLockedError(
            f"audit log {log_dir} is already open for writing"
            + (f" (LOCK held by pid {holder})" if holder else "")
            + "; a log has one writer: give each process its own log directory (shard)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _replace_file(path: Path, data: bytes, fsync: bool) -> None:
    """Atomically replace ``path`` with ``data`` (temp file, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    if fsync:
        fsync_dir(path.parent)


def _prepare_layout(log_dir: Path, signer: NoteSigner, origin: str) -> None:
    """Create the directories and log.json, or check log.json matches this origin and key."""
    for sub in ("wal", "tree", "checkpoints"):
        (log_dir / sub).mkdir(exist_ok=True)
    meta_path = log_dir / "log.json"
    if not meta_path.exists():
        meta = {"format": LOG_FORMAT, "origin": origin, "verifier_key": signer.verifier_key}
        _replace_file(meta_path, json.dumps(meta, sort_keys=True).encode() + b"\n", True)
        return
    try:
        meta = json.loads(meta_path.read_bytes())
    except ValueError as exc:
        raise LogCorruptedError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != LOG_FORMAT:
        raise LogCorruptedError(f"{meta_path}: unsupported log format {meta!r}")
    if meta.get("origin") != origin:
        raise ValueError(f"log {log_dir} has origin {meta.get('origin')!r}, not {origin!r}")
    if meta.get("verifier_key") != signer.verifier_key:
        raise ValueError(
            f"log {log_dir} is signed by {meta.get('verifier_key')!r}; the signer's verifier key "
            f"is {signer.verifier_key!r}"
        )


def _reconcile(wal_dir: Path, wal: WalState, hashes: HashStore) -> tuple[int, int]:
    """Bring the hash store in line with the WAL; return (leaves rebuilt, leaves dropped).

    Leaves present in both must agree. The store may lag (crash between WAL and store writes)
    or, if the WAL lost its tail, run ahead; it must cover everything below the WAL.
    """
    if not wal.segments and hashes.size:
        raise LogCorruptedError(
            f"{wal_dir} has no segments but the hash store has {hashes.size} leaves"
        )
    if hashes.size < wal.first_seq:
        raise LogCorruptedError(
            f"the hash store has {hashes.size} leaves but the WAL starts at seq {wal.first_seq}: "
            f"leaves {hashes.size}..{wal.first_seq - 1} exist nowhere"
        )
    overlap_end = min(hashes.size, wal.next_seq)
    dropped = hashes.size - overlap_end
    missing: list[bytes] = []
    stored: list[bytes] = []
    for seq, payload in iter_records(wal_dir, wal.first_seq, wal.next_seq):
        digest = leaf_hash(payload)
        if seq >= overlap_end:
            missing.append(digest)
            continue
        offset = (seq - wal.first_seq) % _COMPARE_CHUNK
        if offset == 0:
            stored = hashes.leaves(seq, min(seq + _COMPARE_CHUNK, overlap_end))
        if stored[offset] != digest:
            raise LogCorruptedError(
                f"leaf hash of seq {seq} in tree/leaves.bin does not match its WAL record"
            )
    if dropped:
        hashes.truncate(overlap_end)
    for start in range(0, len(missing), _COMPARE_CHUNK):
        hashes.append(missing[start : start + _COMPARE_CHUNK])
    return len(missing), dropped


def _compact_range(hashes: HashStore) -> CompactRange:
    """The compact range of the whole stored tree: roots of its perfect subtrees, left first."""
    size = hashes.size
    roots: list[bytes] = []
    begin = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            roots.append(hashes.subtree_root(begin, begin + (1 << bit)))
            begin += 1 << bit
    return CompactRange(size, roots)


def _note_text(note: bytes) -> bytes:
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    return note[: split + 1]


def _note_size(note: bytes) -> int:
    return Checkpoint.parse(_note_text(note)).size


def _check_history(
    cp_dir: Path, verifier: NoteVerifier, origin: str, hashes: HashStore
) -> tuple[TornTail | None, bytes | None]:
    """Check the checkpoint history against the recovered tree; return (torn tail, latest note).

    Every entry: well framed, parses, right origin, sizes never shrink. The last HISTORY_RECHECK:
    valid signature and a consistency proof from each to the next. The newest must not be larger
    than the tree (a rolled-back log) and its root must be the tree's root at its size.
    """
    history_path = cp_dir / "history.log"
    notes, tail = read_frames(history_path)
    checkpoints: list[Checkpoint] = []
    recheck_from = max(0, len(notes) - HISTORY_RECHECK)
    for index, note in enumerate(notes):
        where = f"{history_path} entry {index}"
        try:
            if index >= recheck_from:
                cp = open_checkpoint(note, verifier, expected_origin=origin)
            else:
                cp = Checkpoint.parse(_note_text(note))
        except NoteError as exc:
            raise LogCorruptedError(f"{where}: {exc}") from exc
        if cp.origin != origin:
            raise LogCorruptedError(f"{where}: origin {cp.origin!r}, expected {origin!r}")
        if checkpoints and cp.size < checkpoints[-1].size:
            raise LogCorruptedError(
                f"{where}: size {cp.size} is smaller than the previous {checkpoints[-1].size}"
            )
        checkpoints.append(cp)
    latest_path = cp_dir / "latest"
    latest = latest_path.read_bytes() if latest_path.exists() else None
    if not checkpoints:
        if latest is not None:
            raise LogCorruptedError(f"{latest_path} exists but {history_path} is empty")
        return tail, None
    newest = checkpoints[-1]
    if newest.size > hashes.size:
        raise LogCorruptedError(
            f"log rolled back: checkpoint says {newest.size} records, only {hashes.size} recovered"
        )
    root = EMPTY_ROOT if newest.size == 0 else hashes.subtree_root(0, newest.size)
    if root != newest.root:
        raise LogCorruptedError(
            f"the recovered tree's root at size {newest.size} differs from the signed checkpoint"
        )
    for old, new in zip(checkpoints[recheck_from:], checkpoints[recheck_from + 1 :], strict=False):
        if old.size == 0:
            continue
        proof = consistency_proof_by(hashes.subtree_root, old.size, new.size)
        if not verify_consistency(old.size, new.size, old.root, new.root, proof):
            raise LogCorruptedError(
                f"{history_path}: checkpoint at size {new.size} is not consistent with the one "
                f"at size {old.size}"
            )
    # The history is appended before latest is replaced, so a crash may leave latest one behind.
    if latest is not None and latest not in notes[-2:]:
        raise LogCorruptedError(f"{latest_path} is not one of the last two history entries")
    if latest != notes[-1]:
        _replace_file(latest_path, notes[-1], True)
    return tail, notes[-1]
