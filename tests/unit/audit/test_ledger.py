"""AuditLog: durable appends, concurrency, checkpoints, proofs, backpressure, failures, recovery."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import merkle, wal
from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from infertrail.audit.ledger import (
    AuditLog,
    LogClosedError,
    LogCorruptedError,
    LogFailedError,
    LogLockedError,
    Receipt,
)

ORIGIN = "test.infertrail/ledger"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return NoteSigner.generate("test.infertrail-ledger")


@pytest.fixture
def signer(keys: tuple[str, str]) -> NoteSigner:
    return NoteSigner.from_key(keys[0])


@pytest.fixture
def verifier(keys: tuple[str, str]) -> NoteVerifier:
    return NoteVerifier.from_key(keys[1])


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def log(log_dir: Path, signer: NoteSigner) -> Iterator[AuditLog]:
    audit_log = AuditLog.open(log_dir, signer=signer, origin=ORIGIN)
    yield audit_log
    audit_log.close()


def reopen(log_dir: Path, signer: NoteSigner, **options: Any) -> AuditLog:
    return AuditLog.open(log_dir, signer=signer, origin=ORIGIN, **options)


def rec(i: int, **extra: Any) -> dict[str, Any]:
    return {"event_type": "inference", "i": i, "score": i / 7, **extra}


def fill(log: AuditLog, n: int, start: int = 0) -> list[Receipt]:
    futures = [log.append_async(rec(start + i)) for i in range(n)]
    return [f.result(timeout=30) for f in futures]


def stored(log: AuditLog) -> list[bytes]:
    return [payload for _, payload in log.read(0, log.size)]


def history(log_dir: Path) -> list[bytes]:
    notes, _ = wal.read_frames(log_dir / "checkpoints" / "history.log", repair=False)
    return notes


# ---- appending ---------------------------------------------------------------------------


def test_append_returns_a_durable_receipt(log: AuditLog) -> None:
    receipts = [log.append(rec(i)) for i in range(3)]
    assert [r.seq for r in receipts] == [0, 1, 2]
    assert log.size == 3
    for receipt, (seq, payload) in zip(receipts, log.read(0, 3), strict=True):
        assert seq == receipt.seq
        assert payload == canonicalize({**rec(seq), "seq": seq})
        assert merkle.leaf_hash(payload) == receipt.leaf_hash


def test_concurrent_appends_are_dense_unique_and_match_storage(log: AuditLog) -> None:
    threads, per_thread = 8, 250
    receipts: dict[tuple[int, int], Receipt] = {}
    lock = threading.Lock()

    def producer(t: int) -> None:
        mine: dict[tuple[int, int], Receipt] = {}
        pending: list[tuple[int, Future[Receipt]]] = []
        for i in range(per_thread):
            if i % 2:
                mine[(t, i)] = log.append({"t": t, "i": i})
            else:
                pending.append((i, log.append_async({"t": t, "i": i})))
        for i, future in pending:
            mine[(t, i)] = future.result(timeout=30)
        with lock:
            receipts.update(mine)

    workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = threads * per_thread
    assert sorted(r.seq for r in receipts.values()) == list(range(total))
    payloads = stored(log)
    for (t, i), receipt in receipts.items():
        payload = payloads[receipt.seq]
        assert json.loads(payload) == {"t": t, "i": i, "seq": receipt.seq}
        assert merkle.leaf_hash(payload) == receipt.leaf_hash
    assert log.root() == merkle.root([merkle.leaf_hash(p) for p in payloads])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
records = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k != "seq"), json_values, max_size=6
)


@settings(max_examples=15, deadline=None)
@given(sessions=st.lists(st.lists(records, max_size=12), min_size=1, max_size=4))
def test_any_records_round_trip_across_reopens(
    tmp_path_factory: pytest.TempPathFactory,
    keys: tuple[str, str],
    sessions: list[list[dict[str, Any]]],
) -> None:
    signer = NoteSigner.from_key(keys[0])
    log_dir = tmp_path_factory.mktemp("log")
    expected: list[bytes] = []
    for session in sessions:
        with reopen(log_dir, signer, fsync=False, batch_wait_ms=0) as log:
            assert log.size == len(expected) and log.recovery is None
            futures = [log.append_async(r) for r in session]
            for record, future in zip(session, futures, strict=True):
                receipt = future.result(timeout=30)
                assert receipt.seq == len(expected)
                expected.append(canonicalize({**record, "seq": receipt.seq}))
    with reopen(log_dir, signer, fsync=False) as log:
        assert stored(log) == expected
        assert log.root() == merkle.root([merkle.leaf_hash(p) for p in expected])


@pytest.mark.parametrize(
    ("record", "error", "match"),
    [
        ({"seq": 3}, ValueError, "must not contain 'seq'"),
        ([("a", 1)], TypeError, "must be a mapping"),
        ({"score": float("nan")}, ValueError, r"\$\.score"),
        ({1: "non-str key"}, ValueError, "not a str"),
        ({"big": 2**60}, ValueError, r"\$\.big"),
    ],
)
def test_bad_records_are_rejected_without_using_a_seq(
    log: AuditLog, record: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        log.append(record)
    with pytest.raises(error, match=match):
        log.append_async(record)
    assert log.append(rec(0)).seq == 0


def test_oversized_record_is_rejected(log: AuditLog) -> None:
    with pytest.raises(ValueError, match=r"bytes canonicalized \(counting 16 for its seq\), over"):
        log.append({"blob": "x" * (wal.MAX_PAYLOAD + 1)})
    assert log.append(rec(0)).seq == 0


def test_async_receipts_cannot_be_cancelled(log: AuditLog) -> None:
    future = log.append_async(rec(0))
    assert not future.cancel()
    assert future.result(timeout=30).seq == 0


# ---- checkpoints and proofs ----------------------------------------------------------------


def test_flush_checkpoints_everything(log: AuditLog, log_dir: Path, verifier: NoteVerifier) -> None:
    fill(log, 10)
    log.flush()
    cp = open_checkpoint(log.latest_checkpoint, verifier, expected_origin=ORIGIN)
    assert (cp.size, cp.root) == (10, log.root())
    assert (log_dir / "checkpoints" / "latest").read_bytes() == log.latest_checkpoint
    # The history kept the checkpoint written at creation; within the history interval (60 s by
    # default) newer ones only replace latest, and close keeps the last.
    assert [open_checkpoint(note, verifier).size for note in history(log_dir)] == [0]
    log.close()
    assert [open_checkpoint(note, verifier).size for note in history(log_dir)] == [0, 10]
    assert history(log_dir)[-1] == (log_dir / "checkpoints" / "latest").read_bytes()


def test_history_keeps_one_checkpoint_per_interval(log_dir: Path, signer: NoteSigner) -> None:
    with reopen(log_dir, signer, history_interval_ms=0) as log:
        for i in range(3):
            fill(log, 2, start=2 * i)
            log.flush()
        assert len(history(log_dir)) == 1 + 3
    with reopen(log_dir, signer, history_interval_ms=3_600_000) as log:
        for i in range(3, 6):
            fill(log, 2, start=2 * i)
            log.flush()
        assert len(history(log_dir)) == 1 + 3  # open found latest current: nothing written
    notes = history(log_dir)
    assert len(notes) == 1 + 3 + 1 and notes[-1] == log.latest_checkpoint
    assert Checkpoint.parse(notes[-1][: notes[-1].rfind(b"\n\n") + 1]).size == 12


def test_latest_newer_than_the_history_survives_a_crash(
    log_dir: Path, signer: NoteSigner, tmp_path: Path
) -> None:
    log = reopen(log_dir, signer, history_interval_ms=3_600_000)
    fill(log, 5)
    log.flush()
    latest = log.latest_checkpoint
    crashed = tmp_path / "crashed"
    shutil.copytree(log_dir, crashed, ignore=shutil.ignore_patterns("LOCK"))  # kill -9 here
    log.close()
    assert len(history(crashed)) == 1  # the flush's checkpoint is only in latest
    with reopen(crashed, signer) as recovered:
        assert recovered.latest_checkpoint == latest and recovered.size == 5
    assert history(crashed)[-1] == latest  # kept at close


def test_log_json_is_written_at_creation(log: AuditLog, log_dir: Path, signer: NoteSigner) -> None:
    meta = json.loads((log_dir / "log.json").read_bytes())
    assert meta == {"format": 1, "origin": ORIGIN, "verifier_key": signer.verifier_key}


def test_proofs_verify_against_signed_checkpoints(log: AuditLog, verifier: NoteVerifier) -> None:
    fill(log, 100)
    log.flush()
    old = open_checkpoint(log.latest_checkpoint, verifier)
    fill(log, 157, start=100)
    log.flush()
    new = open_checkpoint(log.latest_checkpoint, verifier)
    leaves = [merkle.leaf_hash(p) for p in stored(log)]
    for seq in (0, 1, 99, 100, 255, 256):
        proof = log.inclusion_proof(seq)
        assert merkle.verify_inclusion(seq, new.size, leaves[seq], proof, new.root)
    for seq in (0, 42, 99):
        proof = log.inclusion_proof(seq, tree_size=old.size)
        assert merkle.verify_inclusion(seq, old.size, leaves[seq], proof, old.root)
    proof = log.consistency_proof(old.size)
    assert merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    assert log.root(old.size) == old.root


def test_interval_checkpoint_happens_without_flush(log_dir: Path, signer: NoteSigner) -> None:
    with reopen(log_dir, signer, checkpoint_interval_ms=20) as log:
        fill(log, 5)
        with log._committed:  # wait for the writer's idle timer, not for a flush
            assert log._committed.wait_for(lambda: log._checkpoint_size == 5, timeout=30)
        assert Checkpoint.parse(log.latest_checkpoint.split(b"\n\n")[0] + b"\n").size == 5


def test_zero_interval_checkpoints_every_batch(log_dir: Path, signer: NoteSigner) -> None:
    with reopen(log_dir, signer, checkpoint_interval_ms=0) as log:
        for i in range(4):
            log.append(rec(i))
    # append returns before its batch's checkpoint; after close every batch has one.
    assert log.stats.checkpoints == log.stats.commits == 4
    assert (log_dir / "checkpoints" / "latest").read_bytes() == log.latest_checkpoint
    with reopen(log_dir, signer, checkpoint_interval_ms=0, history_interval_ms=0) as log:
        for i in range(4, 8):
            log.append(rec(i))
    # The one written at creation, the last before the first close, then one per batch.
    assert len(history(log_dir)) == 2 + 4


def test_read_and_proof_argument_errors(log: AuditLog) -> None:
    fill(log, 4)
    with pytest.raises(ValueError, match="read range"):
        log.read(0, 5)
    with pytest.raises(ValueError, match="read range"):
        log.read(3, 2)
    with pytest.raises(ValueError, match="seq 4 is not in a tree of size 4"):
        log.inclusion_proof(4)
    with pytest.raises(ValueError, match="tree size 5"):
        log.inclusion_proof(0, tree_size=5)
    with pytest.raises(ValueError, match="old_size 0"):
        log.consistency_proof(0)
    with pytest.raises(ValueError, match="old_size 4"):
        log.consistency_proof(4, 3)
    assert list(log.read(2, 2)) == []


# ---- one writer, closing ---------------------------------------------------------------------


def test_second_writer_in_this_process_is_locked_out(
    log: AuditLog, log_dir: Path, signer: NoteSigner
) -> None:
    with pytest.raises(
        LogLockedError, match=rf"already open for writing \(LOCK held by pid {os.getpid()}"
    ):
        reopen(log_dir, signer)
    log.append(rec(0))  # the failed open did not disturb the real writer


def test_second_writer_process_is_locked_out(
    log: AuditLog, log_dir: Path, keys: tuple[str, str]
) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from infertrail.audit.checkpoint import NoteSigner\n"
        "from infertrail.audit.ledger import AuditLog, LogLockedError\n"
        "try:\n"
        "    AuditLog.open(Path(sys.argv[1]), signer=NoteSigner.from_key(sys.argv[2]),\n"
        "                  origin=sys.argv[3])\n"
        "except LogLockedError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(log_dir), keys[0], ORIGIN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert f"LOCK held by pid {os.getpid()}" in result.stdout


def test_forked_child_cannot_append(log: AuditLog) -> None:
    log.append(rec(0))
    pid = os.fork()
    if pid == 0:  # the child inherits the log object but not its writer thread
        try:
            log.append(rec(1), timeout=5)
        except LogLockedError as exc:
            os._exit(3 if "forked process" in str(exc) else 4)
        os._exit(5)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 3
    assert log.append(rec(1)).seq == 1
    assert repr(log).endswith("size=2)")


def test_closed_log_refuses_work(log_dir: Path, signer: NoteSigner) -> None:
    log = reopen(log_dir, signer)
    log.append(rec(0))
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogClosedError, match="closed"):
        log.append(rec(1))
    with pytest.raises(LogClosedError):
        log.append_async(rec(1))
    with pytest.raises(LogClosedError):
        log.flush()
    with pytest.raises(LogClosedError):
        log.inclusion_proof(0)
    with pytest.raises(LogClosedError):
        log.retire_through(0)


def test_close_drains_the_queue_and_reopen_continues(log_dir: Path, signer: NoteSigner) -> None:
    with reopen(log_dir, signer, batch_max=7) as log:
        futures = [log.append_async(rec(i)) for i in range(50)]
    assert all(f.done() and f.exception() is None for f in futures)
    with reopen(log_dir, signer) as log:
        assert log.recovery is None
        assert log.size == 50
        assert (
            open_checkpoint(log.latest_checkpoint, NoteVerifier.from_key(signer.verifier_key)).size
            == 50
        )
        assert log.append(rec(50)).seq == 50


def test_options_are_validated(log_dir: Path, signer: NoteSigner) -> None:
    for bad in (
        {"batch_max": 0},
        {"queue_max": 0},
        {"batch_wait_ms": -1.0},
        {"checkpoint_interval_ms": -5.0},
        {"segment_bytes": 4},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            reopen(log_dir, signer, **bad)
    with pytest.raises(ValueError, match="origin"):
        AuditLog.open(log_dir, signer=signer, origin="")
    with reopen(log_dir, signer):  # a failed open left no lock behind
        pass


def test_origin_and_key_must_match_the_log(log_dir: Path, signer: NoteSigner) -> None:
    reopen(log_dir, signer).close()
    with pytest.raises(ValueError, match="has origin"):
        AuditLog.open(log_dir, signer=signer, origin="other.example/log")
    other = NoteSigner.from_key(NoteSigner.generate("test.infertrail-ledger")[0])
    with pytest.raises(ValueError, match="signed by"):
        reopen(log_dir, other)


# ---- backpressure and timeouts ----------------------------------------------------------------


class BlockedWriter:
    """Holds the writer thread inside its WAL write until released."""

    def __init__(self, log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real_write = log._wal.write

        def write(first_seq: int, count: int, frames: bytes, **kwargs: Any) -> None:
            self.entered.set()
            assert self.release.wait(30)
            real_write(first_seq, count, frames, **kwargs)

        monkeypatch.setattr(log._wal, "write", write)


def test_full_queue_blocks_then_times_out_without_dropping(
    log_dir: Path, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reopen(log_dir, signer, queue_max=4, batch_wait_ms=0) as log:
        blocked = BlockedWriter(log, monkeypatch)
        first = log.append_async(rec(0))
        assert blocked.entered.wait(30)  # the writer holds seq 0; the queue is empty again
        queued = [log.append_async(rec(i)) for i in range(1, 5)]
        with pytest.raises(TimeoutError, match=r"queue full .*NOT appended"):
            log.append_async(rec(99), timeout=0.05)
        with pytest.raises(TimeoutError, match="queue full"):
            log.append(rec(99), timeout=0)
        blocked.release.set()
        assert [f.result(timeout=30).seq for f in [first, *queued]] == [0, 1, 2, 3, 4]
        assert log.append(rec(5)).seq == 5  # the timed-out records consumed no seq
        assert [json.loads(p)["i"] for p in stored(log)] == [0, 1, 2, 3, 4, 5]


def test_blocked_appender_resumes_when_space_frees(
    log_dir: Path, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reopen(log_dir, signer, queue_max=2, batch_wait_ms=0) as log:
        blocked = BlockedWriter(log, monkeypatch)
        log.append_async(rec(0))
        assert blocked.entered.wait(30)
        log.append_async(rec(1))
        log.append_async(rec(2))
        late: list[Receipt] = []
        waiter = threading.Thread(target=lambda: late.append(log.append(rec(3))))
        waiter.start()
        blocked.release.set()
        waiter.join(30)
        assert [r.seq for r in late] == [3]


def test_sync_append_timeout_while_queued(
    log_dir: Path, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reopen(log_dir, signer, batch_wait_ms=0) as log:
        blocked = BlockedWriter(log, monkeypatch)
        with pytest.raises(TimeoutError, match="seq 0 was queued but not durable"):
            log.append(rec(0), timeout=0.05)
        blocked.release.set()
        log.flush()
        assert log.size == 1  # it was committed after all, as the message warns


def test_blocking_calls_from_receipt_callbacks_are_refused(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = BlockedWriter(log, monkeypatch)
    errors: list[BaseException] = []

    def callback(_: Future[Receipt]) -> None:
        for call in (lambda: log.append(rec(1)), log.flush):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)

    future = log.append_async(rec(0))
    future.add_done_callback(callback)  # before the writer may finish: runs on the writer
    blocked.release.set()
    log.flush()
    assert [str(e) for e in errors] == [
        "append from a receipt callback would deadlock the audit writer",
        "flush from a receipt callback would deadlock the audit writer",
    ]
    assert log.size == 1


# ---- writer I/O errors ---------------------------------------------------------------------


def test_fdatasync_error_fails_the_log_and_acknowledges_nothing(
    log_dir: Path, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = reopen(log_dir, signer, batch_wait_ms=0)
    fill(log, 3)

    def broken_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(os, "fdatasync", broken_fdatasync)
    with pytest.raises(OSError, match="injected"):
        log.append(rec(3))
    with pytest.raises(LogFailedError, match="failed and accepts no more records"):
        log.append(rec(4))
    with pytest.raises(LogFailedError):
        log.append_async(rec(4))
    with pytest.raises(LogFailedError):
        log.flush()
    log.close()  # the failure was already reported; close just releases
    monkeypatch.undo()
    with reopen(log_dir, signer) as log:
        assert log.size == 3  # the failed batch was cut back out of the WAL


def test_partial_write_error_fails_queued_futures(
    log_dir: Path, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = reopen(log_dir, signer, batch_wait_ms=0)
    fill(log, 2)
    blocked = BlockedWriter(log, monkeypatch)
    futures = [log.append_async(rec(i)) for i in range(2, 6)]
    assert blocked.entered.wait(30)

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal, "write_all", disk_full)
    blocked.release.set()
    errors = [f.exception(timeout=30) for f in futures]
    assert all(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in errors)
    log.close()
    monkeypatch.undo()
    with reopen(log_dir, signer) as log:
        assert log.size == 2
        assert log.recovery is None  # the half-written batch was cut back before failing


# ---- retiring WAL segments -----------------------------------------------------------------


def test_retire_through_keeps_proofs_and_recovery_working(
    log_dir: Path, signer: NoteSigner, verifier: NoteVerifier
) -> None:
    log = reopen(log_dir, signer, segment_bytes=2048)
    for start in range(0, 400, 25):
        fill(log, 25, start=start)
    log.flush()
    leaves = [merkle.leaf_hash(p) for p in stored(log)]
    segments_before = len(wal.list_segments(log_dir / "wal"))
    log.retire_through(300)
    remaining = wal.list_segments(log_dir / "wal")
    oldest = remaining[0][0]
    assert len(remaining) < segments_before and 200 < oldest <= 301
    with pytest.raises(LookupError, match=f"below seq {oldest}"):
        log.read(0, 10)
    assert [s for s, _ in log.read(oldest, log.size)] == list(range(oldest, 400))
    cp = open_checkpoint(log.latest_checkpoint, verifier)
    assert merkle.verify_inclusion(5, 400, leaves[5], log.inclusion_proof(5), cp.root)
    with pytest.raises(ValueError, match="committed"):
        log.retire_through(400)
    log.close()
    with reopen(log_dir, signer) as log:
        assert log.recovery is None
        assert log.root() == merkle.root(leaves)
    (log_dir / "tree" / "leaves.bin").unlink()
    with pytest.raises(LogCorruptedError, match="exist nowhere"):
        reopen(log_dir, signer)


# ---- recovery of the hash store and the checkpoint history ---------------------------------


@pytest.fixture
def closed_log(log_dir: Path, signer: NoteSigner) -> list[bytes]:
    """A closed log of 300 records; returns their leaf hashes."""
    with reopen(log_dir, signer) as log:
        fill(log, 300)
        return [merkle.leaf_hash(p) for p in stored(log)]


def test_lagging_hash_store_is_rebuilt_from_the_wal(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    os.truncate(log_dir / "tree" / "leaves.bin", 32 * 290)
    with reopen(log_dir, signer) as log:
        assert log.recovery is not None
        assert (log.recovery.leaves_rebuilt, log.recovery.leaves_dropped) == (10, 0)
        assert log.root() == merkle.root(closed_log)


def test_hash_store_ahead_of_the_wal_is_cut(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    with (log_dir / "tree" / "leaves.bin").open("ab") as f:
        f.write(os.urandom(32 * 3))
    with reopen(log_dir, signer) as log:
        assert log.recovery is not None and log.recovery.leaves_dropped == 3
        assert log.size == 300 and log.root() == merkle.root(closed_log)


def test_hash_store_disagreeing_with_the_wal_is_corruption(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    leaves = log_dir / "tree" / "leaves.bin"
    data = bytearray(leaves.read_bytes())
    data[32 * 7] ^= 1
    leaves.write_bytes(bytes(data))
    with pytest.raises(LogCorruptedError, match=r"seq 7 in tree/leaves\.bin"):
        reopen(log_dir, signer)


def test_rolled_back_log_is_refused(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    # Remove the last (checkpointed) record cleanly: no torn tail, just a shorter log.
    seg = wal.segment_path(log_dir / "wal", 0)
    payloads = [p for _, p in wal.iter_records(log_dir / "wal")]
    seg.write_bytes(b"".join(wal.encode_frame(p) for p in payloads[:-1]))
    os.truncate(log_dir / "tree" / "leaves.bin", 32 * 299)
    with pytest.raises(
        LogCorruptedError, match=r"rolled back: .*history\.log entry \d+ says 300 records, only 299"
    ):
        reopen(log_dir, signer)


def test_torn_history_tail_is_cut_and_reported(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    path = log_dir / "checkpoints" / "history.log"
    entries = len(history(log_dir))
    with path.open("ab") as f:
        f.write(wal.encode_frame(b"half a checkpoint")[:-3])
    with reopen(log_dir, signer) as log:
        assert log.recovery is not None and log.recovery.history_tail is not None
        assert log.recovery.wal_tail is None
    assert len(history(log_dir)) == entries


def test_stale_latest_is_replaced(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    notes = history(log_dir)
    latest = log_dir / "checkpoints" / "latest"
    latest.write_bytes(notes[-2])  # crash between the history append and the rename
    with reopen(log_dir, signer) as log:
        assert log.latest_checkpoint == notes[-1]
    assert latest.read_bytes() == notes[-1]


def test_older_consistent_latest_is_replaced(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    older = sign_checkpoint(Checkpoint(ORIGIN, 10, merkle.root(closed_log[:10])), signer)
    (log_dir / "checkpoints" / "latest").write_bytes(older)  # validly signed, never kept
    with reopen(log_dir, signer) as log:
        assert log.latest_checkpoint == history(log_dir)[-1]


@pytest.mark.parametrize(
    ("size", "leaves", "error"),
    [
        (10, slice(10, 20), "root at size 10 differs"),  # signed, but not of this tree
        (301, slice(0, 301), "rolled back: .*latest says 301 records, only 300"),
    ],
)
def test_latest_inconsistent_with_the_tree_is_corruption(
    closed_log: list[bytes],
    log_dir: Path,
    signer: NoteSigner,
    size: int,
    leaves: slice,
    error: str,
) -> None:
    hashes = [*closed_log, merkle.leaf_hash(b"forged")]
    cp = Checkpoint(ORIGIN, size, merkle.root(hashes[leaves]))
    (log_dir / "checkpoints" / "latest").write_bytes(sign_checkpoint(cp, signer))
    with pytest.raises(LogCorruptedError, match=error):
        reopen(log_dir, signer)


def test_latest_with_a_bad_signature_is_corruption(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    forged = NoteSigner.from_key(NoteSigner.generate(signer.name)[0])
    cp = Checkpoint(ORIGIN, 300, merkle.root(closed_log))
    (log_dir / "checkpoints" / "latest").write_bytes(sign_checkpoint(cp, forged))
    with pytest.raises(LogCorruptedError, match="latest: note has no signature"):
        reopen(log_dir, signer)


def test_bad_history_interval_is_refused(log_dir: Path, signer: NoteSigner) -> None:
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="history_interval_ms must be >= 0"):
            reopen(log_dir, signer, history_interval_ms=bad)


def test_badly_signed_history_entry_is_corruption(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    notes = history(log_dir)
    forged = NoteSigner.from_key(NoteSigner.generate(signer.name)[0])
    cp = Checkpoint(ORIGIN, 300, merkle.root(closed_log))
    notes[-1] = sign_checkpoint(cp, forged)  # same key name, different key
    path = log_dir / "checkpoints" / "history.log"
    path.write_bytes(b"".join(wal.encode_frame(n) for n in notes))
    (log_dir / "checkpoints" / "latest").write_bytes(notes[-1])
    with pytest.raises(LogCorruptedError, match=r"entry \d+: note has no signature"):
        reopen(log_dir, signer)


def test_shrinking_history_is_corruption(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    older = sign_checkpoint(Checkpoint(ORIGIN, 10, merkle.root(closed_log[:10])), signer)
    with (log_dir / "checkpoints" / "history.log").open("ab") as f:
        f.write(wal.encode_frame(older))
    with pytest.raises(LogCorruptedError, match="size 10 is smaller than the previous 300"):
        reopen(log_dir, signer)


def test_history_inconsistent_with_the_tree_is_corruption(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    wrong = sign_checkpoint(Checkpoint(ORIGIN, 300, merkle.root(closed_log[::-1])), signer)
    with (log_dir / "checkpoints" / "history.log").open("ab") as f:
        f.write(wal.encode_frame(wrong))
    (log_dir / "checkpoints" / "latest").write_bytes(wrong)
    with pytest.raises(LogCorruptedError, match="root at size 300 differs"):
        reopen(log_dir, signer)


def test_lost_history_with_latest_present_is_corruption(
    closed_log: list[bytes], log_dir: Path, signer: NoteSigner
) -> None:
    (log_dir / "checkpoints" / "history.log").unlink()
    with pytest.raises(LogCorruptedError, match=r"history\.log is empty"):
        reopen(log_dir, signer)
