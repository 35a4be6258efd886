"""Record futures: real concurrent.futures.Future objects, settled in bulk by the writer."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait
from pathlib import Path

import pytest

from infertrail.audit import merkle
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier, open_checkpoint
from infertrail.audit.commitnote import COMMIT_FILE, read_commit_notes
from infertrail.audit.ledger import AuditLog, Receipt
from infertrail.audit.receipt_check import check_receipt
from infertrail.audit.receipts import RecordFuture
from infertrail.audit.recovery import note_size
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


# ---- the receipt: a checkpoint signed per group commit, before the record is acknowledged ----


def vkey_of(signer: NoteSigner) -> str:
    return signer.verifier_key


def test_every_receipt_checks_out_with_only_the_public_key(
    log: AuditLog, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = BlockedWriter(log, monkeypatch)
    first = log.append_async(rec(0))
    assert blocked.entered.wait(30)
    batch = [log.append_async(rec(i)) for i in range(1, 40)]  # one group commit
    blocked.release.set()
    receipts = [f.result(timeout=30) for f in [first, *batch]]
    later = [log.append(rec(40 + i)) for i in range(3)]  # one commit each
    for receipt in [*receipts, *later]:
        document = receipt.to_dict()
        assert json.loads(json.dumps(document)) == document
        result = check_receipt(document, vkey_of(signer))
        assert result.ok, (receipt.seq, result.reason)
        assert (result.origin, result.seq) == (ORIGIN, receipt.seq)
        assert document["shard"] == "0" and document["leaf_hash"] == receipt.leaf_hash.hex()
        assert receipt.inclusion_proof() == merkle.inclusion_proof(
            [merkle.leaf_hash(p) for _, p in log.read(0, receipt.tree_size)], receipt.seq
        )
    # The batch shares one checkpoint: the tree it made durable, signed once.
    assert {r.tree_size for r in receipts[1:]} == {40} and receipts[0].tree_size == 1
    assert len({r.checkpoint for r in receipts[1:]}) == 1
    assert [r.tree_size for r in later] == [41, 42, 43]
    cp = open_checkpoint(later[-1].checkpoint, NoteVerifier.from_key(vkey_of(signer)))
    assert (cp.size, cp.root) == (43, log.root())


def test_the_newest_commit_checkpoint_is_on_disk_before_the_acknowledgement(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    log_dir = log.log_dir

    def on_disk(future: Future[Receipt]) -> None:  # runs as the writer settles the future
        sizes = [note_size(n) for n in read_commit_notes(log_dir / "checkpoints" / COMMIT_FILE)]
        seen.append((future.result().seq, max(sizes)))

    for i in range(5):
        log.append_async(rec(i)).add_done_callback(on_disk)
        log.flush()
    assert all(size > seq for seq, size in seen) and len(seen) == 5
    # The signed group-commit checkpoint is the same bytes as latest's of that size (RFC 8032
    # signatures are deterministic): either one proves the same tree.
    notes = read_commit_notes(log_dir / "checkpoints" / COMMIT_FILE)
    assert max(notes, key=note_size) == log.latest_checkpoint


def test_receipts_continue_one_tree_across_reopens(tmp_path: Path, signer: NoteSigner) -> None:
    receipts = []
    for start in (0, 7, 300):
        with AuditLog.open(tmp_path, signer=signer, origin=ORIGIN, shard="eu-2") as log:
            futures = [log.append_async(rec(i)) for i in range(start, start + 7 + start % 5)]
            receipts += [f.result(timeout=30) for f in futures]
            if start == 7:  # a tree that no longer ends on a batch of its own
                receipts += [log.append(rec(100 + i)) for i in range(290 - log.size)]
    for receipt in receipts:
        result = check_receipt(receipt.to_dict(), vkey_of(signer))
        assert result.ok, (receipt.seq, result.reason)
        assert receipt.shard == "eu-2"


def test_a_receipt_without_a_commit_has_no_document() -> None:
    with pytest.raises(ValueError, match="the receipt of seq 3 carries no signed checkpoint"):
        Receipt(3, b"\0" * 32).to_dict()


@pytest.mark.parametrize("shard", ["", "a b", "x" * 65, "é"])
def test_a_bad_shard_is_refused(tmp_path: Path, signer: NoteSigner, shard: str) -> None:
    with pytest.raises(ValueError, match="shard must be 1-64 printable ASCII"):
        AuditLog.open(tmp_path, signer=signer, origin=ORIGIN, shard=shard)


def test_an_origin_too_long_for_the_commit_slot_is_refused(tmp_path: Path) -> None:
    origin = "example.com/" + "o" * 2000
    signer = NoteSigner.from_key(NoteSigner.generate(origin)[0])
    with pytest.raises(ValueError, match=r"fit the group-commit checkpoint's slot"):
        AuditLog.open(tmp_path, signer=signer, origin=origin)
