"""Recovery from storage faults without a restart: SupervisedLog reopens a failed AuditLog.

Faults are injected at the system-call level (``Disk``): writes, syncs and truncations of files
under the log directory fail with the errno a full disk or a dying device gives, partial writes
included, while everything else in the process is untouched. Each test takes one failure mode
through the whole cycle: what callers see while the log is down, what the reopen repairs, and
what the log holds afterwards (every acknowledged record, none that was refused, checkpoints
that stay one consistent history).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit import merkle, wal
from infertrail.audit.checkpoint import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
from infertrail.audit.lake import LakeReader, Sealer, write_once
from infertrail.audit.ledger import (
    AuditLog,
    LogClosedError,
    LogCorruptedError,
    LogFailedError,
    LogLockedError,
    Receipt,
)
from infertrail.audit.recovery import CheckpointWriter, open_parts
from infertrail.audit.supervisor import SupervisedLog, retry_delay
from tests.unit.audit.test_lake import make_record

ORIGIN = "test.infertrail/recovery"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return NoteSigner.generate("test.infertrail-recovery")


@pytest.fixture
def signer(keys: tuple[str, str]) -> NoteSigner:
    return NoteSigner.from_key(keys[0])


@pytest.fixture
def verifier(keys: tuple[str, str]) -> NoteVerifier:
    return NoteVerifier.from_key(keys[1])


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


class Disk:
    """System-call faults for files under ``root`` (others pass through).

    ``full``: writes (``write``, ``pwrite``) fail with ENOSPC once ``room`` more bytes were
    written (a partial write first, as a real full disk gives). ``sync_error`` and
    ``truncate_error``: fdatasync and ftruncate fail with that errno. ``only``: a full disk hits
    only paths containing it.
    """

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root.resolve())
        self.full = False
        self.room = 0
        self.only = ""
        self.sync_error: int | None = None
        self.truncate_error: int | None = None
        self.hits: list[str] = []
        real_write, real_pwrite = os.write, os.pwrite
        real_sync, real_truncate = os.fdatasync, os.ftruncate

        def room_for(fd: int, data: Any, call: str) -> Any:
            if self.full and self._hit(fd, call, self.only):
                if self.room <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data = bytes(data[: self.room])
                self.room -= len(data)
            return data

        def write(fd: int, data: Any) -> int:
            return real_write(fd, room_for(fd, data, "write"))

        def pwrite(fd: int, data: Any, offset: int) -> int:
            return real_pwrite(fd, room_for(fd, data, "pwrite"), offset)

        def fdatasync(fd: int) -> None:
            if self.sync_error is not None and self._hit(fd, "fdatasync"):
                raise OSError(self.sync_error, os.strerror(self.sync_error))
            real_sync(fd)

        def ftruncate(fd: int, length: int) -> None:
            if self.truncate_error is not None and self._hit(fd, "ftruncate"):
                raise OSError(self.truncate_error, os.strerror(self.truncate_error))
            real_truncate(fd, length)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "ftruncate", ftruncate)

    def _hit(self, fd: int, call: str, only: str = "") -> bool:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        if path.startswith(self.root) and only in path:
            self.hits.append(f"{call} {path[len(self.root) :]}")
            return True
        return False

    def heal(self) -> None:
        self.full, self.sync_error, self.truncate_error, self.only = False, None, None, ""


@pytest.fixture
def disk(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Disk:
    log_dir.mkdir()
    return Disk(log_dir, monkeypatch)


def supervised(
    log_dir: Path, signer: NoteSigner, *, retry_s: float = 0.02, **options: Any
) -> SupervisedLog:
    options.setdefault("batch_wait_ms", 0)
    options.setdefault("checkpoint_interval_ms", 60_000)  # checkpoints only when flushed
    options.setdefault("max_retry_s", max(retry_s, 0.2))
    return SupervisedLog.open(log_dir, signer=signer, origin=ORIGIN, retry_s=retry_s, **options)


def rec(i: int) -> dict[str, Any]:
    return {"event_type": "inference", "i": i}


def fill(log: SupervisedLog | AuditLog, start: int, n: int) -> list[Receipt]:
    futures = [log.append_async(rec(start + i)) for i in range(n)]
    return [f.result(timeout=30) for f in futures]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def failed_future(log: SupervisedLog, i: int) -> BaseException:
    """Append a record the faulty disk refuses; its error (what the caller answered 503 for)."""
    future = log.append_async(rec(i))
    error = future.exception(timeout=30)
    assert error is not None, "the record was acknowledged despite the fault"
    return error


def contents(log_dir: Path, signer: NoteSigner) -> list[dict[str, Any]]:
    """Every record of the log as a fresh process would recover it."""
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN) as log:
        return [json.loads(p) for _, p in log.read(0, log.size)]


def checkpoint(note: bytes, verifier: NoteVerifier) -> Checkpoint:
    return open_checkpoint(note, verifier, expected_origin=ORIGIN)


def assert_consistent(
    log: SupervisedLog, before: Checkpoint, after: Checkpoint, verifier: NoteVerifier
) -> None:
    """The first checkpoint after the fault proves the last one before it is its prefix."""
    assert before.size <= after.size
    proof = log.consistency_proof(before.size, after.size)
    assert merkle.verify_consistency(before.size, after.size, before.root, after.root, proof)


# ---- the schedule ---------------------------------------------------------------------------


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert retry_delay(10_000, 0.5, 30.0) == 30.0  # no overflow after a long outage


def test_bad_retry_intervals_are_refused(log_dir: Path, signer: NoteSigner) -> None:
    with pytest.raises(ValueError, match="retry_s <= max_retry_s"):
        SupervisedLog.open(log_dir, signer=signer, origin=ORIGIN, retry_s=5, max_retry_s=1)
    with pytest.raises(ValueError, match="0 < retry_s"):
        SupervisedLog.open(log_dir, signer=signer, origin=ORIGIN, retry_s=0)


# ---- a full disk ----------------------------------------------------------------------------


def test_a_full_disk_refuses_records_until_space_is_back_then_the_log_reopens(
    log_dir: Path, signer: NoteSigner, verifier: NoteVerifier, disk: Disk
) -> None:
    log = supervised(log_dir, signer)
    try:
        fill(log, 0, 8)
        log.flush()
        before = checkpoint(log.latest_checkpoint, verifier)  # covers all 8

        disk.full, disk.room = True, 20  # the next batch is cut short mid-write
        error = failed_future(log, 100)
        assert isinstance(error, OSError) and error.errno == errno.ENOSPC
        with pytest.raises(LogFailedError, match="being reopened") as refused:
            log.append_async(rec(101))  # refused at once: nothing waits on a dead log
        assert isinstance(refused.value.__cause__, OSError)
        # A reopen signs a checkpoint, a write: it fails while the disk is full (rather than
        # reopening and failing again at the next append), and keeps being tried.
        wait_for(lambda: log.status().attempts >= 2, "two failed reopen tries")
        status = log.status()
        assert status.state == "failed" and status.reopens == 0
        assert isinstance(status.attempt_error, OSError)
        assert status.attempt_error.errno == errno.ENOSPC

        disk.heal()
        wait_for(lambda: log.status().state == "open", "the reopen")
        assert log.status().reopens == 1 and log.failure is None
        assert log.size == 8  # every acknowledged record, none of the refused
        reopened = checkpoint(log.latest_checkpoint, verifier)
        assert reopened.size == 8 and reopened.root == before.root  # the first after the fault
        assert log.append(rec(8)).seq == 8  # the refused record's seq goes to the next one
        log.flush()
        after = checkpoint(log.latest_checkpoint, verifier)
        assert_consistent(log, before, after, verifier)
    finally:
        log.close()
    assert [r["i"] for r in contents(log_dir, signer)] == list(range(9))


def test_a_torn_tail_the_failure_left_is_repaired_exactly_as_at_open(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    log = supervised(log_dir, signer)
    try:
        fill(log, 0, 4)
        segment = wal.list_segments(log_dir / "wal")[-1][1]
        end = segment.stat().st_size
        # A partial frame, and the cut back fails too: the torn tail stays on disk.
        disk.full, disk.room, disk.truncate_error = True, 7, errno.EIO
        failed_future(log, 100)
        assert segment.stat().st_size == end + 7
        disk.heal()
        wait_for(lambda: log.status().state == "open", "the reopen")
        report = log.recovery
        assert report is not None and report.wal_tail is not None
        assert (report.wal_tail.segment, report.wal_tail.offset) == (segment, end)
        assert report.wal_tail.bytes_dropped == 7
        assert log.size == 4 and log.append(rec(4)).seq == 4
    finally:
        log.close()
    assert [r["i"] for r in contents(log_dir, signer)] == list(range(5))


# ---- records that reached the WAL whole but were refused -------------------------------------


@pytest.mark.parametrize(
    ("fault", "cut_back_works"),
    [
        ("fdatasync", False),  # EIO after the write: durable? nobody knows; refused anyway
        ("hash store", True),  # the WAL took the batch, the hash store did not
        ("hash store", False),
    ],
)
def test_refused_records_never_join_the_log(
    log_dir: Path, signer: NoteSigner, disk: Disk, fault: str, cut_back_works: bool
) -> None:
    log = supervised(log_dir, signer, retry_s=0.5)
    try:
        fill(log, 0, 3)
        if fault == "fdatasync":
            disk.sync_error = errno.EIO
        else:
            disk.full, disk.only = True, "leaves.bin"
        if not cut_back_works:
            disk.truncate_error = errno.EIO
        assert isinstance(failed_future(log, 100), OSError)
        in_wal = [json.loads(p)["i"] for _, p in wal.iter_records(log_dir / "wal")]
        assert in_wal == ([0, 1, 2] if cut_back_works else [0, 1, 2, 100])
        disk.heal()
        wait_for(lambda: log.status().state == "open", "the reopen")
        report = log.recovery
        assert (report.refused_dropped if report else 0) == (0 if cut_back_works else 1)
        assert [r.seq for r in fill(log, 3, 2)] == [3, 4]
    finally:
        log.close()
    assert [r["i"] for r in contents(log_dir, signer)] == [0, 1, 2, 3, 4]


def test_cut_refused_deletes_whole_segments_and_refuses_missing_acknowledged_records(
    log_dir: Path, signer: NoteSigner
) -> None:
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN, segment_bytes=120) as log:
        for i in range(12):  # one batch each: a segment rolls only between batches
            log.append(rec(i))
    state = wal.scan_wal(log_dir / "wal")
    assert len(state.segments) > 2
    keep = state.segments[1][0] + 1  # one record into the second segment
    cut, dropped = wal.cut_refused(log_dir / "wal", state, keep, index_dir=log_dir / "wal-index")
    assert (cut.next_seq, dropped) == (keep, 12 - keep)
    assert [s for s, _ in wal.iter_records(log_dir / "wal")] == list(range(keep))
    assert wal.list_segments(log_dir / "wal") == list(cut.segments) == list(state.segments[:2])
    with pytest.raises(LogCorruptedError, match="acknowledged records are missing"):
        wal.cut_refused(log_dir / "wal", cut, keep + 1)


def test_a_log_missing_acknowledged_records_is_not_swapped_in(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    log = supervised(log_dir, signer)
    try:
        fill(log, 0, 6)
        disk.full = True
        failed_future(log, 100)
        # Meanwhile someone truncates the WAL: two acknowledged records vanish.
        segment = wal.list_segments(log_dir / "wal")[-1][1]
        frames, _, _ = wal.walk_frames(segment.read_bytes())
        disk.heal()
        os.truncate(segment, frames[4][0] - wal.HEADER_SIZE)
        wait_for(lambda: log.status().attempts >= 1, "a reopen try")
        status = log.status()
        assert status.state == "failed"
        assert isinstance(status.attempt_error, LogCorruptedError)
        assert "acknowledged records are missing" in str(status.attempt_error)
        with pytest.raises(LogFailedError):
            log.append(rec(6))
    finally:
        log.close()


# ---- checkpoints ------------------------------------------------------------------------------


def test_a_failed_checkpoint_keeps_every_acknowledged_record(
    log_dir: Path, signer: NoteSigner, verifier: NoteVerifier, disk: Disk
) -> None:
    log = supervised(log_dir, signer)
    try:
        fill(log, 0, 3)
        log.flush()
        before = checkpoint(log.latest_checkpoint, verifier)
        receipts = fill(log, 3, 4)  # acknowledged: their WAL and hash writes succeeded
        disk.full, disk.only = True, "checkpoints"
        with pytest.raises(LogFailedError):
            log.flush()  # the checkpoint's write fails, and fails the log
        assert log.status().state == "failed"
        disk.heal()
        wait_for(lambda: log.status().state == "open", "the reopen")
        assert log.size == 7
        after = checkpoint(log.latest_checkpoint, verifier)  # signed by the reopen
        assert after.size == 7
        assert_consistent(log, before, after, verifier)
        leaves = [merkle.leaf_hash(p) for _, p in log.read(0, 7)]
        assert [r.leaf_hash for r in receipts] == leaves[3:]
    finally:
        log.close()


def test_a_history_append_cut_short_is_cut_back_or_never_followed(
    log_dir: Path, signer: NoteSigner, verifier: NoteVerifier, disk: Disk
) -> None:
    # A torn history frame followed by a whole one would be damage in place, which open
    # refuses; the writer must either cut the torn bytes back or append nothing after them.
    log = AuditLog.open(log_dir, signer=signer, origin=ORIGIN, history_interval_ms=300)
    fill(log, 0, 2)
    log.flush()  # within the interval: kept in latest only, owed to the history at close
    time.sleep(0.35)
    fill(log, 2, 2)
    disk.full, disk.room, disk.only = True, 20, "history.log"  # this one is due in the history
    disk.truncate_error = errno.EIO
    with pytest.raises(LogFailedError):
        log.flush()
    log.close()  # must not append its unkept checkpoint after the torn frame
    disk.heal()
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN) as reopened:
        assert reopened.recovery is not None and reopened.recovery.history_tail is not None
        assert reopened.recovery.history_tail.bytes_dropped == 20
        assert checkpoint(reopened.latest_checkpoint, verifier).size == 4


def test_a_failed_history_append_is_cut_back(log_dir: Path, signer: NoteSigner, disk: Disk) -> None:
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN):
        pass
    history = log_dir / "checkpoints" / "history.log"
    size = history.stat().st_size
    writer = CheckpointWriter(log_dir / "checkpoints", signer, ORIGIN, fsync=True)
    try:
        disk.full, disk.room = True, 20
        with pytest.raises(OSError, match="No space"):
            writer.write(0, merkle.EMPTY_ROOT, keep=True)
        assert history.stat().st_size == size  # the 20 bytes are gone again
    finally:
        disk.heal()
        writer.close()


# ---- the writer lock --------------------------------------------------------------------------


def test_closing_a_failed_log_releases_the_lock_even_when_closing_fails(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    log = AuditLog.open(log_dir, signer=signer, origin=ORIGIN, history_interval_ms=60_000)
    fill(log, 0, 2)
    log.flush()  # kept in latest only: close owes the history this checkpoint
    disk.full, disk.only = True, "history.log"
    with pytest.raises(OSError, match="No space"):
        log.close()
    disk.heal()
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN) as reopened:  # not locked out
        assert reopened.size == 2


def test_a_full_disk_does_not_fail_or_leak_the_lock(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    parts = open_parts(log_dir, signer, ORIGIN, segment_bytes=1 << 20, fsync=True)
    parts.close()
    disk.full, disk.only = True, "LOCK"  # the holder's pid cannot be written
    parts = open_parts(log_dir, signer, ORIGIN, segment_bytes=1 << 20, fsync=True)
    assert disk.hits, "the open wrote nothing to LOCK"
    parts.close()
    disk.heal()
    open_parts(log_dir, signer, ORIGIN, segment_bytes=1 << 20, fsync=True).close()


def test_a_lock_taken_meanwhile_is_waited_for(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    log = supervised(log_dir, signer)
    intruder = -1
    try:
        fill(log, 0, 2)
        disk.full = True
        failed_future(log, 100)
        wait_for(lambda: log.status().attempts >= 1, "a reopen try")
        disk.heal()
        # The failed handle is released now: another writer takes the directory.
        intruder = os.open(log_dir / "LOCK", os.O_RDWR)
        fcntl.flock(intruder, fcntl.LOCK_EX)
        wait_for(lambda: isinstance(log.status().attempt_error, LogLockedError), "a locked-out try")
        os.close(intruder)
        intruder = -1
        wait_for(lambda: log.status().state == "open", "the reopen")
        assert log.append(rec(2)).seq == 2
    finally:
        if intruder >= 0:
            os.close(intruder)
        log.close()


# ---- appenders, close ----------------------------------------------------------------------------


def test_an_append_while_down_brings_the_next_try_forward(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    log = supervised(log_dir, signer, retry_s=0.05, max_retry_s=60)
    intruder = -1
    try:
        fill(log, 0, 1)  # not under a checkpoint: a reopen must write one, on a full disk
        disk.full = True
        failed_future(log, 100)
        wait_for(lambda: log.status().attempts >= 1, "a reopen try")  # the handle is closed
        intruder = os.open(log_dir / "LOCK", os.O_RDWR)
        fcntl.flock(intruder, fcntl.LOCK_EX)
        disk.heal()
        wait_for(lambda: log.status().attempts >= 5, "five failed tries")  # next in >= 1.6 s
        os.close(intruder)
        intruder = -1
        tries = log.status().attempts
        with pytest.raises(LogFailedError):
            log.append_async(rec(1))  # asks for a try now, not in seconds
        wait_for(lambda: log.status().state == "open", "the early reopen", timeout_s=1.0)
        assert log.status().attempts == 0 and tries >= 5
    finally:
        if intruder >= 0:
            os.close(intruder)
        log.close()


def test_close_while_down_cuts_refused_records_and_signs_a_final_checkpoint(
    log_dir: Path, signer: NoteSigner, verifier: NoteVerifier, disk: Disk
) -> None:
    log = supervised(log_dir, signer, retry_s=30)  # no try before close
    fill(log, 0, 3)
    disk.sync_error, disk.truncate_error = errno.EIO, errno.EIO
    failed_future(log, 100)  # its frame stays in the WAL: the cut back failed
    disk.heal()
    log.close()
    with pytest.raises(LogClosedError):
        log.append(rec(3))
    note = (log_dir / "checkpoints" / "latest").read_bytes()
    assert checkpoint(note, verifier).size == 3
    assert [r["i"] for r in contents(log_dir, signer)] == [0, 1, 2]


def test_a_closed_log_is_closed_not_failed(log_dir: Path, signer: NoteSigner) -> None:
    log = supervised(log_dir, signer)
    fill(log, 0, 1)
    log.close()
    log.close()  # idempotent
    assert log.status().state == "closed"
    for call in (lambda: log.append(rec(1)), lambda: log.append_async(rec(1)), log.flush):
        with pytest.raises(LogClosedError):
            call()


def test_concurrent_appenders_across_a_fault_get_receipts_or_errors_never_both(
    log_dir: Path, signer: NoteSigner, disk: Disk
) -> None:
    log = supervised(log_dir, signer)
    outcomes: list[tuple[int, Receipt | BaseException]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def producer(t: int) -> None:
        i = 0
        while not stop.is_set():
            key = t * 1_000_000 + i
            try:
                future: Future[Receipt] = log.append_async(rec(key))
                result: Receipt | BaseException = future.result(timeout=30)
            except Exception as exc:
                result = exc
            with lock:
                outcomes.append((key, result))
            i += 1

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.1)
        disk.full, disk.room = True, 3000
        time.sleep(0.2)
        disk.heal()
        wait_for(lambda: log.status().state == "open", "the reopen")
        time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        log.close()
    acked = {key: r.seq for key, r in outcomes if isinstance(r, Receipt)}
    refused = {key for key, r in outcomes if not isinstance(r, Receipt)}
    assert acked and refused, "the fault should have hit some appends and spared others"
    stored = {r["i"]: r["seq"] for r in contents(log_dir, signer)}
    assert stored == acked  # every acknowledged record where its receipt says, nothing else


# ---- the sealer ---------------------------------------------------------------------------------


def test_a_seal_that_fails_is_retried_soon_and_recovers(tmp_path: Path, signer: NoteSigner) -> None:
    lake = tmp_path / "lake"
    lake.write_text("not a directory")  # the lake store cannot be written: every seal fails
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        fill_records = [log.append_async(make_record(i)) for i in range(5)]
        for f in fill_records:
            f.result(timeout=30)
        sealer = Sealer(log, str(lake), signer)
        sealer.start(3600, retry_s=0.02, max_retry_s=0.1)  # a round an hour, retries sooner
        try:
            wait_for(lambda: sealer.last_seal_error is not None, "a failed seal")
            assert isinstance(sealer.last_seal_error, OSError)
            lake.unlink()
            wait_for(lambda: sealer.last_seal_error is None, "a seal after the fault cleared")
            assert sealer.last_error is None
            verifier = NoteVerifier.from_key(signer.verifier_key)
            assert [m.last_seq for m in LakeReader(str(lake)).manifests(verifier)] == [4]
        finally:
            sealer.stop(10)


def test_write_once_leaves_no_temporary_file_behind_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(tmp_path, monkeypatch)
    disk.full, disk.room = True, 1000
    reader = LakeReader(str(tmp_path))
    with pytest.raises(OSError, match="No space"):
        write_once(reader.fs, str(tmp_path / "dt=x" / "f.parquet"), b"p" * 5000)
    disk.heal()
    assert list((tmp_path / "dt=x").iterdir()) == []  # the partial copy did not keep the space
