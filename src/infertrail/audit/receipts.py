"""Receipts of appended audit records and the futures that deliver them.

``AuditLog.append_async`` returns one future per record. A plain ``concurrent.futures.Future``
costs a Condition (a lock and two lists) to create and a lock round trip plus a wake-up to
resolve: several microseconds per record, more than the rest of the request-thread work. A
:class:`RecordFuture` shares the log's commit condition instead, and the writer resolves a whole
batch under one acquisition of it with a single ``notify_all``.

It is still a real ``concurrent.futures.Future`` (``asyncio.wrap_future``,
``concurrent.futures.wait`` and ``as_completed`` accept it): it keeps the attributes those
functions read (``_condition``, ``_state``, ``_waiters``) consistent, and waits in a loop on the
predicate because the shared condition also wakes it for other records' batches.

A future resolves only once the record is durable *and* the writer has signed the checkpoint of
its group commit, so its :class:`Receipt` proves, to anyone with the log's public key, that the
log held the record then (:mod:`infertrail.audit.receipt_check`). The writer resolves a whole
batch with one :class:`~infertrail.audit.committree.CommitTree`; a receipt computes its
inclusion proof from it only when serialized (:meth:`Receipt.to_dict`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from infertrail.audit.committree import CommitTree
from infertrail.audit.receipt_check import RECEIPT_FORMAT, format_tlog_proof

__all__ = [
    "AuditRefusedError",
    "AuditUnavailableError",
    "Receipt",
    "RecordFuture",
    "fail_futures",
    "receipt_of",
    "receipt_of_async",
    "resolve_futures",
    "run_callbacks",
]

_log = logging.getLogger("infertrail.audit")

# The states concurrent.futures.wait and as_completed compare against (concurrent.futures._base).
_RUNNING = "RUNNING"
_FINISHED = "FINISHED"


class AuditUnavailableError(RuntimeError):
    """An audit record could not be made durable: the decision it records must not be given."""


class AuditRefusedError(RuntimeError):
    """The audit trail refused to record a decision for a reason its caller must answer.

    Unlike :class:`AuditUnavailableError` this is not an outage: e.g. the decision's subject
    was erased, so it gets no new pseudonym silently. ``kind`` is the error's machine name.
    """

    kind = "audit_refused"


def receipt_of(future: Future[Receipt] | None, timeout_s: float | None = None) -> Receipt | None:
    """Wait for an audit record's future: its receipt once durable, None if there is none.

    Raises :class:`AuditRefusedError` (a refusal), TimeoutError, or
    :class:`AuditUnavailableError` wrapping any other failure.
    """
    if future is None:
        return None
    try:
        return future.result(timeout_s)
    except (TimeoutError, AuditRefusedError):
        raise
    except Exception as exc:
        raise AuditUnavailableError(f"the audit log could not record the decision: {exc}") from exc


async def receipt_of_async(future: Future[Receipt] | None) -> Receipt | None:
    """:func:`receipt_of` for a coroutine: awaits the future without blocking the loop."""
    if future is None:
        return None
    try:
        return await asyncio.wrap_future(future)
    except AuditRefusedError:
        raise
    except Exception as exc:
        raise AuditUnavailableError(f"the audit log could not record the decision: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Receipt:
    """Acknowledgement that a record is durable: its position and leaf hash in the log, and the
    log's signature over a tree that holds it.

    ``commit`` is the group commit that made the record durable (set by the log's writer; None
    for a receipt made by hand): the signed checkpoint and the nodes of the record's inclusion
    proof. Two receipts are equal when they name the same leaf at the same seq.
    """

    seq: int
    leaf_hash: bytes
    commit: CommitTree | None = field(default=None, compare=False, repr=False)

    def _signed(self) -> CommitTree:
        if self.commit is None:
            raise ValueError(f"the receipt of seq {self.seq} carries no signed checkpoint")
        return self.commit

    @property
    def origin(self) -> str:
        """The log's origin, as its checkpoints name it."""
        return self._signed().origin

    @property
    def shard(self) -> str:
        """Which log of a fleet wrote the record (``"0"`` for a single log)."""
        return self._signed().shard

    @property
    def tree_size(self) -> int:
        """The size of the tree the checkpoint signs (the record's commit included)."""
        return self._signed().size

    @property
    def checkpoint(self) -> bytes:
        """The C2SP checkpoint (a signed note) of the record's group commit."""
        return self._signed().note

    def inclusion_proof(self) -> list[bytes]:
        """RFC 9162 inclusion proof of the record in the checkpoint's tree (computed now)."""
        return self._signed().inclusion_proof(self.seq)

    def to_dict(self) -> dict[str, Any]:
        """The receipt document (``infertrail-receipt/1``), JSON-ready: what a response carries.

        ``tlog_proof`` is a C2SP tlog-proof of the record's leaf hash: its index, inclusion
        proof and the signed checkpoint (:mod:`infertrail.audit.receipt_check` checks it).
        """
        commit = self._signed()
        return {
            "format": RECEIPT_FORMAT,
            "origin": commit.origin,
            "shard": commit.shard,
            "seq": self.seq,
            "leaf_hash": self.leaf_hash.hex(),
            "tlog_proof": format_tlog_proof(
                self.seq, commit.inclusion_proof(self.seq), commit.note
            ),
        }


class RecordFuture(Future[Receipt]):
    """The future of one queued record: resolved by the log's writer, never by its holder.

    It cannot be cancelled (a numbered record is always written or the log fails), and
    ``set_result`` / ``set_exception`` are refused: only the writer settles it.
    """

    seq: int
    # Class-level defaults: one fewer attribute store per record for what is rarely set.
    _exception: BaseException | None = None
    _callbacks: tuple[()] | list[Callable[[Future[Receipt]], object]] = ()
    _commit: CommitTree | None = None

    def __init__(self, condition: threading.Condition, seq: int) -> None:
        """Internal: made by the log under its queue lock; ``condition`` is its commit condition."""
        # Future.__init__ is skipped on purpose: it would create a Condition per record.
        self._condition = condition
        self._state = _RUNNING
        self._waiters = []
        self.seq = seq

    def cancel(self) -> bool:
        """Always False: a queued record is written or the log fails."""
        return False

    def cancelled(self) -> bool:
        """Always False (see :meth:`cancel`)."""
        return False

    def running(self) -> bool:
        """True until the record is durable or has failed."""
        return self._state == _RUNNING

    def done(self) -> bool:
        """True once the record is durable or has failed."""
        # Unlocked reads are enough: the writer sets the state last, under the GIL.
        return self._state == _FINISHED

    def result(self, timeout: float | None = None) -> Receipt:
        """The record's Receipt once durable; its failure raised; TimeoutError after ``timeout``."""
        if self._state != _FINISHED:
            with self._condition:
                self._await(timeout)
        if self._exception is not None:
            raise self._exception
        # Built per call, not kept: a sixth instance attribute would grow the future's dict.
        commit = self._commit
        assert commit is not None  # a finished future without an exception has its commit
        return Receipt(self.seq, commit.leaf(self.seq), commit)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error that failed the record, None once durable; TimeoutError after ``timeout``."""
        if self._state != _FINISHED:
            with self._condition:
                self._await(timeout)
        return self._exception

    def _await(self, timeout: float | None) -> None:
        """Wait (holding the condition) until finished; the condition also wakes for others."""
        if self._state == _FINISHED:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state != _FINISHED:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"audit record seq {self.seq} is not durable yet")
            self._condition.wait(remaining)

    def add_done_callback(self, fn: Callable[[Future[Receipt]], object]) -> None:
        """Call ``fn(future)`` once settled: now if it already is, else on the writer thread."""
        with self._condition:
            if self._state != _FINISHED:
                if not self._callbacks:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        _call(fn, self)

    def set_running_or_notify_cancel(self) -> bool:
        """Refused: the log runs the record from the moment it is queued."""
        raise RuntimeError("an audit record future is running from the moment it is queued")

    def set_result(self, result: Receipt) -> None:
        """Refused: only the log's writer settles a record."""
        raise RuntimeError("only the audit log's writer can settle a record future")

    def set_exception(self, exception: BaseException | None) -> None:
        """Refused: only the log's writer settles a record."""
        raise RuntimeError("only the audit log's writer can settle a record future")

    def __repr__(self) -> str:
        state = "running" if self._state == _RUNNING else "finished"
        if self._state == _FINISHED and self._exception is not None:
            state = f"failed: {self._exception!r}"
        return f"<RecordFuture seq={self.seq} {state}>"


def resolve_futures(
    condition: threading.Condition, futures: Iterable[RecordFuture], commit: CommitTree
) -> list[RecordFuture]:
    """Mark a batch's records durable under its signed ``commit``; return those with callbacks.

    One acquisition of ``condition`` (the futures' shared one, reentrant) and one notify_all for
    the whole batch; the caller runs :func:`run_callbacks` on the result after releasing it.
    """
    with condition:
        pending = []
        for future in futures:
            future._commit = commit
            future._state = _FINISHED
            if future._waiters:  # concurrent.futures.wait / as_completed are watching
                for waiter in future._waiters:
                    waiter.add_result(future)
            if future._callbacks:
                pending.append(future)
        condition.notify_all()
    return pending


def fail_futures(
    condition: threading.Condition, futures: Iterable[RecordFuture], exc: BaseException
) -> list[RecordFuture]:
    """Mark records failed with ``exc`` (skipping settled ones); return those with callbacks."""
    with condition:
        pending = []
        for future in futures:
            if future._state == _FINISHED:
                continue
            future._exception = exc
            future._state = _FINISHED
            for waiter in future._waiters:
                waiter.add_exception(future)
            if future._callbacks:
                pending.append(future)
        condition.notify_all()
    return pending


def run_callbacks(futures: Iterable[RecordFuture]) -> None:
    """Run the done callbacks of settled futures, in the order they were added."""
    for future in futures:
        callbacks, future._callbacks = future._callbacks, ()
        for fn in callbacks:
            _call(fn, future)


def _call(fn: Callable[[Future[Receipt]], object], future: RecordFuture) -> None:
    try:
        fn(future)
    except Exception:  # as concurrent.futures does: a bad callback must not stop the writer
        _log.exception("exception calling callback for %r", future)
