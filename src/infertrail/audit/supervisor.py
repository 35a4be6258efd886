"""A service's audit log: an :class:`AuditLog` that reopens itself after a write failure.

An AuditLog fails for good on its first write error (a full disk, a directory made read-only,
an I/O error): every record not yet durable fails with it and it accepts nothing more, so a
service would refuse every decision until restarted. :class:`SupervisedLog` keeps one open and,
once it has failed, reopens the directory on a background thread: close the failed handle
(releasing the writer lock), then ``AuditLog.open``, which recovers it exactly as after a crash
(a torn WAL tail cut, the hash store reconciled, the checkpoint history checked against the
tree) and also cuts any record that reached the WAL but was refused to its caller
(``acknowledged_size``: the failed handle's size). Only then is the new handle swapped in.

Guarantees:

- nothing acknowledged is lost: the reopened log must hold every record the failed one
  acknowledged (LogCorruptedError otherwise, and it is not swapped in);
- a refused record (its future failed: the caller answered 503) is never acknowledged later:
  it is cut from the WAL, and its seq goes to the next record appended;
- the signed checkpoints stay one consistent history: the reopened tree extends the
  acknowledged one, which every checkpoint before the failure covers a prefix of.

While the log is down every append fails at once with LogFailedError (nothing is queued). A
reopen is tried ``retry_s`` after the failure, then after each failed try at twice the last
interval up to ``max_retry_s``; an append made while down asks for a try sooner, but never more
than one per ``retry_s``. A log that fails again within ``max_retry_s`` of a reopen keeps the
longer interval (a fault that comes back, e.g. a directory that stays read-only while the open
segment still takes writes), so a flapping fault is not reopened in a tight loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.commitqueue import LogClosedError, LogFailedError
from infertrail.audit.ledger import AuditLog, LedgerStats
from infertrail.audit.receipts import Receipt
from infertrail.audit.recovery import RecoveryReport

__all__ = ["LogStatus", "SupervisedLog", "retry_delay"]

_log = logging.getLogger("infertrail.audit")

LogState = Literal["open", "failed", "closed"]


def retry_delay(strikes: int, base_s: float, max_s: float) -> float:
    """Seconds before the next try after ``strikes`` failures in a row: doubling, capped."""
    return min(max_s, base_s * 2.0 ** min(strikes, 64))


@dataclass(frozen=True, slots=True)
class LogStatus:
    """What the supervised log is doing now (for health reports)."""

    state: LogState  # open: takes writes; failed: refuses them while reopening; closed
    failure: BaseException | None  # the write error that failed the log (None while open)
    down_s: float  # seconds since that failure (0 while open)
    attempts: int  # reopen tries that failed since then
    attempt_error: BaseException | None  # why the newest of them failed
    reopens: int  # successful reopens since the log was opened


class SupervisedLog:
    """An audit log for a long-running writer: reopens itself after a write failure.

    It offers AuditLog's methods (appending, flushing, reading, proofs, retiring) on whichever
    handle is current, so that every component holding it sees the reopened log. See the module
    docstring for the recovery and its guarantees; :meth:`status` for health checks.
    """

    def __init__(
        self,
        log_dir: Path,
        signer: NoteSigner,
        origin: str,
        options: Mapping[str, Any],
        retry_s: float,
        max_retry_s: float,
    ) -> None:
        """Internal: use :meth:`open`."""
        if not 0 < retry_s <= max_retry_s:
            raise ValueError(f"need 0 < retry_s <= max_retry_s, got {retry_s} and {max_retry_s}")
        self.log_dir = Path(log_dir)
        self.origin = origin
        self._signer = signer
        self._options = dict(options)
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        # Guards the fields below; request threads read _log without it (one attribute read).
        self._cond = threading.Condition()
        self._closed = False
        self._down: BaseException | None = None  # why writes are refused now
        self._down_at = 0.0
        self._strikes = 0  # failures in a row, of the log or of reopen tries: the interval
        self._attempts = 0  # failed reopen tries in this outage
        self._attempt_error: BaseException | None = None
        self._last_try = 0.0
        self._next_try = math.inf
        self._kicked = False  # an append was refused: try sooner
        self._reopens = 0
        self._log = self._open_log(None)
        self._opened_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._supervise, name="infertrail-audit-reopen", daemon=True
        )
        self._thread.start()

    @classmethod
    def open(
        cls,
        log_dir: Path,
        *,
        signer: NoteSigner,
        origin: str,
        retry_s: float = 1.0,
        max_retry_s: float = 10.0,
        **options: Any,
    ) -> SupervisedLog:
        """Open the log in ``log_dir`` (``AuditLog.open`` with ``options``) under supervision.

        Raises what AuditLog.open raises: a log that cannot be opened at start is an error for
        the caller, not something to wait for.
        """
        return cls(log_dir, signer, origin, options, retry_s, max_retry_s)

    def _open_log(self, acknowledged_size: int | None) -> AuditLog:
        return AuditLog.open(
            self.log_dir,
            signer=self._signer,
            origin=self.origin,
            acknowledged_size=acknowledged_size,
            on_failure=self._failed,
            **self._options,
        )

    # ---- failure and reopening -------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        """The current handle's writer failed (called on its thread): schedule a reopen."""
        now = time.monotonic()
        with self._cond:
            if self._closed or self._down is not None:
                return
            if now - self._opened_at >= self._max_retry_s:
                self._strikes = 0  # it had worked for a while: a new outage
            self._down, self._down_at = exc, now
            self._attempts, self._attempt_error = 0, None
            self._last_try = now
            self._next_try = now + retry_delay(self._strikes, self._retry_s, self._max_retry_s)
            self._cond.notify_all()
        _log.error("audit log %s failed; refusing records until it is reopened: %r", self, exc)

    def _supervise(self) -> None:
        while self._wait_for_try():
            self._reopen()

    def _wait_for_try(self) -> bool:
        """Sleep until a reopen try is due; False once closed."""
        with self._cond:
            while not self._closed:
                due = self._next_try
                if self._kicked:
                    due = min(due, self._last_try + self._retry_s)
                wait = due - time.monotonic()
                if wait <= 0:
                    self._kicked = False
                    return True
                self._cond.wait(None if math.isinf(wait) else wait)
            return False

    def _reopen(self) -> None:
        """One try: release the failed handle, open the directory again, swap it in."""
        old = self._log
        try:
            old.close()  # its writer has ended; this releases the files and the lock
        except Exception as exc:  # released anyway (LogParts.close); recovery repairs the rest
            _log.warning("audit log %s: closing the failed handle: %r", self, exc)
        try:
            new = self._open_log(old.size)
        except Exception as exc:
            self._tried(exc)
            _log.warning("audit log %s: reopening failed, will retry: %r", self, exc)
            return
        with self._cond:
            self._log = new
            failure = new.failure  # it may have failed already (its callback saw _down set)
            if failure is None:
                self._down = None
                self._attempts, self._attempt_error = 0, None
                self._next_try = math.inf
                self._reopens += 1
                self._opened_at = time.monotonic()
        if failure is not None:
            self._tried(failure)
            return
        down_s = time.monotonic() - self._down_at
        _log.warning(
            "audit log %s reopened after %.1f s at %d records (recovery: %s)",
            self,
            down_s,
            new.size,
            new.recovery,
        )

    def _tried(self, exc: BaseException) -> None:
        """Note a failed reopen try and when to try next."""
        now = time.monotonic()
        with self._cond:
            self._attempts += 1
            self._attempt_error = exc
            self._strikes += 1
            self._last_try = now
            self._next_try = now + retry_delay(self._strikes, self._retry_s, self._max_retry_s)

    def _refusal(self, exc: LogClosedError | LogFailedError) -> NoReturn:
        """Raise why the current handle refused work: closed, or failed and being reopened."""
        with self._cond:
            if self._closed:
                raise LogClosedError(f"audit log {self.log_dir} is closed") from None
            down = self._down
            if down is None:  # its failure callback has not run yet; it wakes the reopener
                raise exc
            self._kicked = True
            self._cond.notify_all()
        raise LogFailedError(
            f"audit log {self.log_dir} failed ({down!r}) and is being reopened; records are "
            "refused until then"
        ) from down

    def status(self) -> LogStatus:
        """The log's state now: open, failed (reopening) or closed, and why."""
        with self._cond:
            down = self._down if self._down is not None else self._log.failure
            if self._closed:
                state: LogState = "closed"
            elif down is None:
                state = "open"
            else:
                state = "failed"
            down_s = 0.0 if self._down is None else time.monotonic() - self._down_at
            return LogStatus(
                state, down, down_s, self._attempts, self._attempt_error, self._reopens
            )

    @property
    def failure(self) -> BaseException | None:
        """Why records are refused now (the current handle's write error), else None."""
        return self.status().failure

    # ---- appending (AuditLog's contract) ---------------------------------------------------

    def append(self, record: Mapping[str, Any], timeout: float | None = None) -> Receipt:
        """:meth:`AuditLog.append` on the current handle; LogFailedError while reopening."""
        try:
            return self._log.append(record, timeout)
        except (LogClosedError, LogFailedError) as exc:
            self._refusal(exc)

    def append_async(
        self, record: Mapping[str, Any], timeout: float | None = None
    ) -> Future[Receipt]:
        """:meth:`AuditLog.append_async` on the current handle; LogFailedError while reopening."""
        try:
            return self._log.append_async(record, timeout)
        except (LogClosedError, LogFailedError) as exc:
            self._refusal(exc)

    def flush(self, timeout: float | None = None) -> None:
        """:meth:`AuditLog.flush` on the current handle; LogFailedError while reopening."""
        try:
            self._log.flush(timeout)
        except (LogClosedError, LogFailedError) as exc:
            self._refusal(exc)

    # ---- reading ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of committed (durable, acknowledged) records."""
        return self._log.size

    @property
    def latest_checkpoint(self) -> bytes:
        """The newest signed checkpoint note."""
        return self._log.latest_checkpoint

    @property
    def stats(self) -> LedgerStats:
        """Writer counters of the current handle (since it was opened)."""
        return self._log.stats

    @property
    def recovery(self) -> RecoveryReport | None:
        """What the current handle's open repaired (None: nothing)."""
        return self._log.recovery

    def read(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Committed records ``start <= seq < end`` (:meth:`AuditLog.read`)."""
        return self._log.read(start, end)

    def root(self, tree_size: int | None = None) -> bytes:
        """Merkle root of the first ``tree_size`` records (:meth:`AuditLog.root`)."""
        try:
            return self._log.root(tree_size)
        except LogClosedError as exc:
            self._refusal(exc)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof (:meth:`AuditLog.inclusion_proof`)."""
        try:
            return self._log.inclusion_proof(seq, tree_size)
        except LogClosedError as exc:
            self._refusal(exc)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof (:meth:`AuditLog.consistency_proof`)."""
        try:
            return self._log.consistency_proof(old_size, new_size)
        except LogClosedError as exc:
            self._refusal(exc)

    def retire_through(self, seq: int) -> None:
        """Delete sealed WAL segments (:meth:`AuditLog.retire_through`)."""
        try:
            self._log.retire_through(seq)
        except LogClosedError as exc:
            self._refusal(exc)

    # ---- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reopening and close the log (final checkpoint). Idempotent.

        A log still down gets one last reopen first, so that records it refused are cut and a
        final checkpoint is signed now rather than at the next start; if that fails too, what
        was acknowledged stays in the WAL for the next start to recover.
        """
        with self._cond:
            first = not self._closed
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        if first and self._down is not None:
            self._reopen()
        self._log.close()

    def __repr__(self) -> str:
        return f"SupervisedLog({str(self.log_dir)!r}, origin={self.origin!r})"
