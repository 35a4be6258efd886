"""The bounded queue between request threads and the audit writer, and its group-commit batching.

``put`` numbers a record under the queue lock (so queue order is seq order) and blocks while the
queue is full (backpressure, never a drop). ``take`` hands the writer everything queued, up to a
batch, after waiting ``batch_wait`` for concurrent appenders to join the same fdatasync, and
joins each record's canonical bytes around its seq there, on the writer thread. Records are kept
as three parallel lists (heads, tails, futures): no tuple per record, and a whole queue is taken
by swapping lists.

The lock is held for a few attribute and list operations only. A thread that loses the GIL while
holding it makes every other appender block on it, and each then needs the GIL back to go on: a
convoy that cut 4 and 8 producer threads to 30-40k records per CPU-second when the record was
also formatted and its future built under the lock (75-90k without).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path

from infertrail.audit.framing import MAX_PAYLOAD
from infertrail.audit.receipts import RecordFuture

__all__ = ["CommitQueue", "LogClosedError", "LogFailedError"]

Batch = tuple[list[bytes], list[RecordFuture]]
_SEQ_DIGITS = 16  # of the largest seq the log can reach (2**53, RFC 8785's integer limit)
_MAX_FIRST_SEQ = 1 << 62  # what join_numbered accepts: C adds a batch's index to it in 64 bits


def _py_join_numbered(heads: list[bytes], tails: list[bytes], first: int) -> list[bytes]:
    """``heads[i] + b"%d" % (first + i) + tails[i]`` for every i (C: ~0.6 against ~0.95 us).

    ValueError, as in C, for lists of different lengths or a first seq outside [0, 2**62].
    """
    if len(heads) != len(tails):
        raise ValueError(f"{len(heads)} heads but {len(tails)} tails")
    if not 0 <= first <= _MAX_FIRST_SEQ:
        raise ValueError(f"first seq must be in [0, 2**62], got {first}")
    seqs = range(first, first + len(heads))
    return list(map(bytes.__mod__, repeat(b"%b%d%b"), zip(heads, seqs, tails, strict=True)))


def _load_join_numbered() -> Callable[[list[bytes], list[bytes], int], list[bytes]]:
    try:
        from infertrail._native import join_numbered
    except ImportError:  # built without a C compiler
        return _py_join_numbered
    return join_numbered


_join_numbered = _load_join_numbered()


class LogClosedError(RuntimeError):
    """The log was closed; it accepts no more records."""


class LogFailedError(RuntimeError):
    """The writer hit an I/O error; the log accepts no more records until it is reopened."""


class CommitQueue:
    """Records waiting for the writer: numbered in order, bounded, taken in batches."""

    def __init__(
        self,
        log_dir: Path,
        next_seq: int,
        *,
        batch_max: int,
        batch_wait: float,
        queue_max: int,
    ) -> None:
        self._log_dir = log_dir
        # What every record future waits on, notified by the writer once per batch (reentrant).
        self.committed = threading.Condition()
        self._batch_max = batch_max
        self._batch_wait = batch_wait
        self._queue_max = queue_max
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._heads: list[bytes] = []  # each queued record is head + b"%d" % seq + tail
        self._tails: list[bytes] = []
        self._futures: list[RecordFuture] = []
        self._next_seq = next_seq
        self._blocked = 0  # appenders waiting for space
        self.flush_target = 0  # seq the newest flush waits to see checkpointed
        self.writer: threading.Thread | None = None  # must never block here: it drains the queue
        self.closing = False
        self.failure: BaseException | None = None

    @property
    def next_seq(self) -> int:
        """The seq the next record will get."""
        return self._next_seq

    def put(self, head: bytes, tail: bytes, deadline: float | None) -> RecordFuture:
        """Number and queue one record (``head + seq + tail``); its future.

        TimeoutError if the queue stays full until ``deadline``; ValueError if the numbered
        record is too large; LogClosedError / LogFailedError once the log stops accepting.
        """
        size = len(head) + len(tail) + _SEQ_DIGITS
        if size > MAX_PAYLOAD:  # checked before a seq is consumed
            raise ValueError(
                f"audit record is {size} bytes canonicalized (counting {_SEQ_DIGITS} for its "
                f"seq), over {MAX_PAYLOAD}"
            )
        # Outside the lock: the less runs under it, the rarer a thread switch while holding it.
        future = RecordFuture(self.committed, -1)
        with self._lock:
            if len(self._heads) >= self._queue_max:
                self._wait_for_space(deadline)
            if self.closing or self.failure is not None:
                self.check_accepting()
            future.seq = seq = self._next_seq
            self._heads.append(head)
            self._tails.append(tail)
            self._futures.append(future)
            self._next_seq = seq + 1
            queued = len(self._heads)
            if queued == 1 or queued == self._batch_max:
                self._has_work.notify()
        return future

    def _wait_for_space(self, deadline: float | None) -> None:
        """Block (holding the lock) until the queue has room; TimeoutError at ``deadline``."""
        while len(self._heads) >= self._queue_max:
            self.check_accepting()
            if threading.current_thread() is self.writer:  # identity: thread ids are reused
                # Receipt callbacks run on the writer thread, which would wait for itself.
                raise RuntimeError(
                    "append_async on a full queue from a receipt callback would deadlock the "
                    "audit writer"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"audit queue full ({self._queue_max} records): the writer is not "
                    "keeping up; the record was NOT appended"
                )
            self._blocked += 1
            try:
                self._not_full.wait(remaining)
            finally:
                self._blocked -= 1

    def check_accepting(self) -> None:
        """Raise LogClosedError or LogFailedError if records are no longer accepted."""
        if self.closing:
            raise LogClosedError(f"audit log {self._log_dir} is closed")
        if self.failure is not None:
            raise LogFailedError(
                f"audit log {self._log_dir} failed and accepts no more records "
                f"(reopen it to recover): {self.failure!r}"
            ) from self.failure

    def request_flush(self) -> int:
        """Ask the writer for a checkpoint covering everything queued; the seq it must reach."""
        with self._lock:
            self.check_accepting()
            target = self._next_seq
            self.flush_target = max(self.flush_target, target)
            self._has_work.notify()
        return target

    def take(self, checkpoint_in: Callable[[], float | None]) -> Batch | None:
        """The next batch for the writer; None once closing with nothing left.

        ``checkpoint_in()`` (called with the lock held) says when the writer owes a checkpoint:
        None for never, <= 0 for now. When one is due an empty batch is returned if nothing is
        queued, and the group-commit wait is cut short otherwise.
        """
        with self._lock:
            while not self._heads:
                if self.closing:
                    return None
                timeout = checkpoint_in()
                if _now(timeout):
                    return [], []
                self._has_work.wait(timeout)
            if self._batch_wait > 0 and len(self._heads) < self._batch_max:
                # Group commit: give concurrent appenders a moment to join this fdatasync.
                deadline = time.monotonic() + self._batch_wait
                while len(self._heads) < self._batch_max and not self.closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or _now(checkpoint_in()):
                        break
                    self._has_work.wait(remaining)
            first = self._next_seq - len(self._heads)
            if len(self._heads) <= self._batch_max:
                heads, self._heads = self._heads, []
                tails, self._tails = self._tails, []
                futures, self._futures = self._futures, []
            else:
                heads = self._heads[: self._batch_max]
                tails = self._tails[: self._batch_max]
                futures = self._futures[: self._batch_max]
                del self._heads[: self._batch_max], self._tails[: self._batch_max]
                del self._futures[: self._batch_max]
            if self._blocked:
                self._not_full.notify_all()
        # The records are numbered here, by the writer, out of the appenders' way.
        return _join_numbered(heads, tails, first), futures

    def close(self) -> bool:
        """Accept no more records and wake the writer to drain; whether it had failed already."""
        with self._lock:
            self.closing = True
            self._has_work.notify()
            return self.failure is not None

    def fail(self, exc: BaseException) -> list[RecordFuture]:
        """Enter the failed state; the futures of everything still queued (to be failed)."""
        with self._lock:
            if self.failure is None:
                self.failure = exc
            futures, self._futures, self._heads, self._tails = self._futures, [], [], []
            self._not_full.notify_all()
        return futures


def _now(wait: float | None) -> bool:
    """Whether a checkpoint owed in ``wait`` seconds (None: none owed) is due now."""
    return wait is not None and wait <= 0
