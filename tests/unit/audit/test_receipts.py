"""Record futures: real concurrent.futures.Future objects, settled in bulk by the writer."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait
from pathlib import Path

import pytest

from infertrail.audit import merkle
from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.ledger import AuditLog, Receipt
from infertrail.audit.receipts import RecordFuture
from tests.unit.audit.test_ledger import ORIGIN, BlockedWriter, rec


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.from_key(NoteSigner.generate("test.infertrail-receipts")[0])


@pytest.fixture
def log(tmp_path: Path, signer: NoteSigner) -> Iterator[AuditLog]:
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, batch_wait_ms=0) as log:
        yield log


def test_future_is_a_concurrent_future_resolved_with_a_receipt(log: AuditLog) -> None:
    future = log.append_async(rec(0))
    assert isinstance(future, Future) and isinstance(future, RecordFuture)
    receipt = future.result(timeout=30)
    assert receipt == Receipt(0, merkle.leaf_hash(next(log.read(0, 1))[1]))
    assert future.result() == receipt  # an equal receipt on every call
    assert future.done() and not future.running() and not future.cancelled()
    assert future.exception() is None
    assert repr(future) == "<RecordFuture seq=0 finished>"


def test_pending_future_times_out_then_resolves(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = BlockedWriter(log, monkeypatch)
    future = log.append_async(rec(0))
    assert blocked.entered.wait(30)
    assert future.running() and not future.done()
    assert repr(future) == "<RecordFuture seq=0 running>"
    with pytest.raises(TimeoutError, match="seq 0 is not durable yet"):
        future.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0)
    assert not future.cancel()
    blocked.release.set()
    assert future.result(timeout=30).seq == 0


def test_only_the_writer_settles_a_future(log: AuditLog) -> None:
    future = log.append_async(rec(0))
    with pytest.raises(RuntimeError, match="only the audit log's writer"):
        future.set_result(Receipt(0, b"x" * 32))
    with pytest.raises(RuntimeError, match="only the audit log's writer"):
        future.set_exception(ValueError("forged"))
    with pytest.raises(RuntimeError, match="running from the moment it is queued"):
        future.set_running_or_notify_cancel()
    assert future.result(timeout=30).seq == 0


def test_callbacks_run_once_before_and_after_settling(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = BlockedWriter(log, monkeypatch)
    calls: list[tuple[str, int, str]] = []
    future = log.append_async(rec(0))
    assert blocked.entered.wait(30)

    def note(tag: str) -> object:
        return lambda f: calls.append((tag, f.result().seq, threading.current_thread().name))

    def broken(_: Future[Receipt]) -> None:
        raise ValueError("a bad callback must not stop the writer")

    future.add_done_callback(note("early"))
    future.add_done_callback(broken)
    blocked.release.set()
    log.flush()
    future.add_done_callback(note("late"))
    assert calls == [
        ("early", 0, "infertrail-audit-writer"),
        ("late", 0, threading.current_thread().name),
    ]
    assert log.append(rec(1)).seq == 1


def test_wait_and_as_completed_work(log: AuditLog) -> None:
    futures = [log.append_async(rec(i)) for i in range(50)]
    done, not_done = wait(futures, timeout=30)
    assert len(done) == 50 and not not_done
    more = [log.append_async(rec(i)) for i in range(50, 60)]
    assert sorted(f.result().seq for f in as_completed(more, timeout=30)) == list(range(50, 60))
    first, _ = wait([log.append_async(rec(60))], timeout=30, return_when=FIRST_COMPLETED)
    assert [f.result().seq for f in first] == [60]


def test_wait_wakes_for_a_pending_future(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = BlockedWriter(log, monkeypatch)
    future = log.append_async(rec(0))
    assert blocked.entered.wait(30)
    threading.Timer(0.05, blocked.release.set).start()
    done, _ = wait([future], timeout=30)
    assert done == {future}


def test_asyncio_wrap_future(log: AuditLog) -> None:
    async def main() -> list[int]:
        futures = [asyncio.wrap_future(log.append_async(rec(i))) for i in range(20)]
        return [r.seq for r in await asyncio.gather(*futures)]

    assert asyncio.run(main()) == list(range(20))


def test_failure_reaches_results_callbacks_and_waiters(
    tmp_path: Path, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, batch_wait_ms=0)
    log.append(rec(0))
    blocked = BlockedWriter(log, monkeypatch)
    futures = [log.append_async(rec(i)) for i in range(1, 4)]
    assert blocked.entered.wait(30)
    seen: list[BaseException | None] = []
    futures[2].add_done_callback(lambda f: seen.append(f.exception()))

    def broken_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(os, "fdatasync", broken_fdatasync)
    blocked.release.set()
    done, _ = wait(futures, timeout=30)
    assert done == set(futures)
    for future in futures:
        with pytest.raises(OSError, match="injected"):
            future.result()
        assert repr(future).startswith(f"<RecordFuture seq={future.seq} failed: OSError")
    assert len(seen) == 1 and isinstance(seen[0], OSError)
    log.close()
