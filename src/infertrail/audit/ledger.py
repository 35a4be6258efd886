"""The audit ledger: durable appends by group commit, a Merkle tree and signed checkpoints.

Request threads canonicalize a record around its ``seq`` member (no lock held), then, under the
queue lock (so queue order is seq order), number it by joining three byte strings and enqueue
it. One writer thread takes batches off the bounded queue, hashes their leaves, writes them to
the WAL with one write and one fdatasync, extends the hash store, signs the C2SP checkpoint of
the grown tree (kept in ``checkpoints/commit``, :mod:`infertrail.audit.commitnote`), and only
then acknowledges them: every record's future is settled under one lock acquisition per batch,
with a receipt carrying that checkpoint and the nodes of its inclusion proof
(:mod:`infertrail.audit.committree`). So no record is acknowledged before a signature covers it.
Published checkpoints follow at an interval, on flush and on close; each replaces
``checkpoints/latest``, and one every ``history_interval_ms`` (plus the last) is kept in the
append-only history. Opening a log recovers it from a crash (:mod:`infertrail.audit.recovery`).

The first write error fails the log for good: every record not yet durable fails with it, and
nothing more is accepted. Reopening the directory recovers it, as after a crash, and cuts any
record that reached the WAL but was refused (``acknowledged_size``);
:class:`~infertrail.audit.supervisor.SupervisedLog` does that by itself for a service.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from infertrail.audit.canonical import canonical_parts
from infertrail.audit.checkpoint import Checkpoint, NoteSigner
from infertrail.audit.commitqueue import CommitQueue, LogClosedError, LogFailedError
from infertrail.audit.committree import CommitTree, Frontier, commit
from infertrail.audit.framing import FRAME_HEADER, LogCorruptedError, crc32
from infertrail.audit.merkle import EMPTY_ROOT, consistency_proof_by, inclusion_proof_by
from infertrail.audit.receipts import (
    Receipt,
    RecordFuture,
    fail_futures,
    resolve_futures,
    run_callbacks,
)
from infertrail.audit.recovery import (
    LogLockedError,
    LogParts,
    RecoveryReport,
    open_parts,
    tree_root,
    write_sealed,
)
from infertrail.audit.subtrees import leaf_hashes
from infertrail.audit.wal import iter_records

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

# Records hashed per C-level call: between calls the interpreter may hand the GIL to request
# threads, which a whole batch (up to batch_max records, milliseconds of hashing) would block.
_HASH_CHUNK = 256
_SHARD_RE = re.compile(r"[!-~]{1,64}")  # printable ASCII, no spaces: a label receipts carry
_fork_generation = [0]  # bumped in a forked child: cheaper to compare than os.getpid()


def _after_fork_in_child() -> None:
    _fork_generation[0] += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Writer counters since open: for benchmarks and metrics."""

    records: int
    commits: int  # group commits, i.e. WAL fdatasyncs
    largest_batch: int
    checkpoints: int


class AuditLog:
    """An append-only, verifiable audit log in one directory, written by one process.

    Use :meth:`open` (also a context manager). ``append`` returns once the record is durable;
    ``append_async`` returns a future. A full queue blocks appenders (backpressure, never a drop).
    """

    def __init__(
        self,
        log_dir: Path,
        origin: str,
        parts: LogParts,
        queue: CommitQueue,
        checkpoint_interval: float,
        on_failure: Callable[[BaseException], object] | None = None,
        shard: str = "0",
    ) -> None:
        """Internal: use :meth:`open`, which takes the lock and recovers the parts first."""
        self.log_dir = log_dir
        self.origin = origin
        self.shard = shard
        self.recovery = parts.recovery
        self._parts = parts
        self._queue = queue
        self._interval = checkpoint_interval  # seconds
        self._wal = parts.wal
        self._hashes = parts.hashes
        self._checkpoints = parts.checkpoints
        # Writer side, guarded by _committed (reentrant; every record future waits on it too):
        # what is durable and checkpointed. _written is the writer thread's own count.
        self._committed = queue.committed
        self._written = self._size = self._checkpoint_size = parts.hashes.size
        # The writer's own: the tree as its perfect subtrees, grown by every commit.
        self._frontier = Frontier.of(parts.hashes.size, parts.hashes.subtree_root)
        self._latest_note = parts.latest_note
        self._last_checkpoint = time.monotonic()
        self._stats = LedgerStats(0, 0, 0, 0)
        self._on_failure = on_failure
        self._released = False
        self._pid = os.getpid()
        self._fork_generation = _fork_generation[0]
        self._writer = threading.Thread(target=self._run, name="infertrail-audit-writer")
        self._writer.daemon = True  # unacknowledged records may be lost at exit, never acked ones
        self._writer.start()
        queue.writer = self._writer

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
        history_interval_ms: float = 60_000.0,
        fsync: bool = True,
        acknowledged_size: int | None = None,
        on_failure: Callable[[BaseException], object] | None = None,
        shard: str = "0",
    ) -> AuditLog:
        """Open (creating if needed) the log in ``log_dir`` for writing, recovering from a crash.

        ``checkpoint_interval_ms``: how long a committed record may wait for a signed checkpoint.
        ``history_interval_ms``: the least time between checkpoints kept in the history (0: keep
        every one); the history is parsed on every open and checked entry by entry by verify.
        ``acknowledged_size``: when reopening, in this process, a log whose writer failed, how
        many records that handle acknowledged (its ``size``); records past them that reached the
        WAL were refused to their callers and are cut off. ``on_failure(exc)``: called once, on
        the writer thread, when a write error fails the log (after every affected future has
        failed); it must return quickly and not raise. ``shard``: which log of a fleet this is,
        as receipts name it (1-64 printable ASCII characters, no spaces).
        Raises LogLockedError if another writer holds it, LogCorruptedError for damage recovery
        must not repair, ValueError for bad options or a log of another origin or key.
        """
        _check_options(
            origin, batch_max, batch_wait_ms, queue_max, checkpoint_interval_ms, history_interval_ms
        )
        if not isinstance(shard, str) or not _SHARD_RE.fullmatch(shard):
            raise ValueError(
                f"shard must be 1-64 printable ASCII characters without spaces, got {shard!r}"
            )
        log_dir = Path(log_dir)
        parts = open_parts(
            log_dir,
            signer,
            origin,
            segment_bytes=segment_bytes,
            fsync=fsync,
            history_interval=history_interval_ms / 1000,
            acknowledged_size=acknowledged_size,
        )
        try:
            queue = CommitQueue(
                log_dir,
                parts.hashes.size,
                batch_max=batch_max,
                batch_wait=batch_wait_ms / 1000,
                queue_max=queue_max,
            )
            return cls(
                log_dir, origin, parts, queue, checkpoint_interval_ms / 1000, on_failure, shard
            )
        except BaseException:
            parts.close()
            raise

    # ---- request-thread side -------------------------------------------------------------

    def append(self, record: Mapping[str, Any], timeout: float | None = None) -> Receipt:
        """Append ``record`` (without "seq": the log assigns it); return once it is durable.

        ``timeout`` bounds the whole call: TimeoutError if the queue stays full (the record was
        not added) or if it is queued but not yet durable (it may still be committed).
        """
        self._check_not_writer("append")
        deadline = None if timeout is None else time.monotonic() + timeout
        head, tail = _encode(record)
        self._check_process()
        future = self._queue.put(head, tail, deadline)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        with self._committed:  # reentrant: done() and result() take it again, uncontended
            if not self._committed.wait_for(future.done, remaining):
                raise TimeoutError(
                    f"audit record seq {future.seq} was queued but not durable within "
                    f"{timeout} s; it may still be committed"
                )
            return future.result()

    def append_async(
        self, record: Mapping[str, Any], timeout: float | None = None
    ) -> Future[Receipt]:
        """Queue ``record`` and return a future resolved with its Receipt once it is durable.

        Blocks only while the queue is full (up to ``timeout``, then TimeoutError). The future
        cannot be cancelled: a numbered record is always written or the log fails.
        """
        head, tail = _encode(record)
        self._check_process()
        return self._queue.put(head, tail, None if timeout is None else time.monotonic() + timeout)

    def _check_not_writer(self, what: str) -> None:
        # Receipt callbacks run on the writer thread, which would then wait for itself.
        # Identity, not thread id: a thread started after the writer ended may reuse its id.
        if threading.current_thread() is self._writer:
            raise RuntimeError(f"{what} from a receipt callback would deadlock the audit writer")

    def _check_process(self) -> None:
        if self._fork_generation != _fork_generation[0]:
            self._refuse_fork()

    def _refuse_fork(self) -> None:
        # A forked child inherits the lock but not the writer thread: its records would hang.
        raise LogLockedError(
            f"audit log {self.log_dir} was opened by pid {self._pid}; this forked process "
            f"({os.getpid()}) must open its own log (e.g. after the worker fork)"
        )

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything appended so far is durable and covered by a checkpoint."""
        self._check_not_writer("flush")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._check_process()
        target = self._queue.request_flush()
        with self._committed:
            while self._checkpoint_size < target:
                failure = self._queue.failure
                if failure is not None:
                    raise LogFailedError(f"audit log {self.log_dir} failed") from failure
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
    def failure(self) -> BaseException | None:
        """The write error that failed the log (it then accepts nothing more), else None."""
        return self._queue.failure

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
        return iter_records(self.log_dir / "wal", start, end, index_dir=self.log_dir / "wal-index")

    def root(self, tree_size: int | None = None) -> bytes:
        """Merkle root of the first ``tree_size`` records (default: the committed log)."""
        return tree_root(self._hashes, self._checked_size(tree_size))

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

        The hash store is fsynced first: it is then the only local copy of those leaves. Then
        ``seq`` is recorded (``sealed``): should a WAL copy of a sealed record be damaged, the
        next open drops it instead of refusing the log (the lake holds the record).
        """
        if self._released:
            raise LogClosedError(f"audit log {self.log_dir} is closed")
        if not 0 <= seq < self._size:
            raise ValueError(f"can only retire committed records, seq {seq} >= {self._size}")
        self._hashes.sync()
        write_sealed(self.log_dir, seq, fsync=True)
        self._wal.retire_through(seq)

    # ---- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.take(self._checkpoint_in)
                if batch is None:
                    break
                payloads, futures = batch
                if payloads:
                    self._commit(payloads, futures)
                if self._checkpoint_due():
                    self._write_checkpoint()
            if self._written != self._checkpoint_size:
                self._write_checkpoint()
        except BaseException as exc:  # any writer error must fail the log, never vanish
            run_callbacks(fail_futures(self._committed, self._queue.fail(exc), exc))
            if self._on_failure is not None:
                self._on_failure(exc)

    def _checkpoint_in(self) -> float | None:
        """Seconds until the writer owes a checkpoint (<= 0: now); None while it owes none."""
        if self._queue.flush_target > self._checkpoint_size:
            return 0.0
        if self._written > self._checkpoint_size:
            return self._last_checkpoint + self._interval - time.monotonic()
        return None

    def _commit(self, payloads: list[bytes], futures: list[RecordFuture]) -> None:
        # map() over C functions: no Python frame per record for hashing and framing.
        leaves: list[bytes] = []
        for start in range(0, len(payloads), _HASH_CHUNK):
            leaves += leaf_hashes(payloads[start : start + _HASH_CHUNK])
        headers = map(FRAME_HEADER.pack, map(len, payloads), map(crc32, payloads))
        frames = b"".join(chain.from_iterable(zip(headers, payloads, strict=True)))
        joined = b"".join(leaves)
        grown: list[tuple[CommitTree, Frontier]] = []

        def sign() -> None:
            # While the disk writes the batch out, so the CPU work adds little latency. The
            # signature goes nowhere until the batch is durable: it never covers a record that
            # a crash could lose.
            tree = commit(self._frontier, joined)
            tree.note = self._checkpoints.sign_commit(tree.size, tree.root)
            grown.append((tree, tree.frontier()))

        try:
            self._wal.write(self._written, len(payloads), frames, meanwhile=sign)
            [(tree, frontier)] = grown
            try:
                self._hashes.append(joined)
                self._checkpoints.keep_commit(tree.note)
            except BaseException:
                # Durable in the WAL, yet refused below: take it back out now, so that not even
                # a crash before the reopen (which cuts it anyway) lets it join the log.
                self._wal.discard_last_batch(self._written)
                raise
        except BaseException as exc:
            run_callbacks(fail_futures(self._committed, futures, exc))
            raise
        tree.origin, tree.shard = self.origin, self.shard
        self._frontier = frontier
        self._written += len(payloads)
        with self._committed:
            self._size = self._written
            settled = resolve_futures(self._committed, futures, tree)
        run_callbacks(settled)
        stats = self._stats
        self._stats = LedgerStats(
            stats.records + len(payloads),
            stats.commits + 1,
            max(stats.largest_batch, len(payloads)),
            stats.checkpoints,
        )

    def _checkpoint_due(self) -> bool:
        size = self._written
        if size == self._checkpoint_size:
            return False
        if size >= self._queue.flush_target > self._checkpoint_size:
            return True
        return time.monotonic() - self._last_checkpoint >= self._interval

    def _write_checkpoint(self) -> None:
        size = self._written
        note = self._checkpoints.write(size, self._frontier.root())
        self._last_checkpoint = time.monotonic()
        with self._committed:
            self._latest_note = note
            self._checkpoint_size = size
            self._committed.notify_all()
        stats = self._stats
        self._stats = LedgerStats(
            stats.records, stats.commits, stats.largest_batch, stats.checkpoints + 1
        )

    # ---- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Drain the queue, commit, write a final checkpoint, release the files and the lock.

        Idempotent. Raises LogFailedError if the writer fails while draining (an earlier failure
        was already reported to the appenders it affected).
        """
        already_failed = self._queue.close()
        self._writer.join()
        with self._committed:
            if self._released:
                return
            self._released = True
        self._parts.close()
        failure = self._queue.failure
        if failure is not None and not already_failed:
            raise LogFailedError(f"audit log {self.log_dir} failed while closing") from failure

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


def _encode(record: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Canonical bytes of ``record`` around its future seq; raises before a seq is used."""
    if type(record) is not dict:
        if not isinstance(record, Mapping):
            raise TypeError(f"audit record must be a mapping, got {type(record).__name__}")
        record = dict(record)
    if "seq" in record:
        raise ValueError("audit record must not contain 'seq': the log assigns it")
    return canonical_parts(record, "seq")


def _check_options(
    origin: str,
    batch_max: int,
    batch_wait_ms: float,
    queue_max: int,
    interval_ms: float,
    history_interval_ms: float,
) -> None:
    Checkpoint(origin, 0, EMPTY_ROOT)  # ValueError naming a bad origin
    for name, value, low in (
        ("batch_max", batch_max, 1),
        ("queue_max", queue_max, 1),
        ("batch_wait_ms", batch_wait_ms, 0),
        ("checkpoint_interval_ms", interval_ms, 0),
        ("history_interval_ms", history_interval_ms, 0),
    ):
        if not value >= low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
