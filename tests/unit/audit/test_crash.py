"""Crash safety: SIGKILL a writer process at random moments; nothing acknowledged may be lost.

Also the torn-tail cases a crash can leave (truncated last frame, garbage, a damaged last frame)
versus damage recovery must refuse to repair (a damaged middle frame).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infertrail.audit import merkle, wal
from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier, open_checkpoint
from infertrail.audit.ledger import AuditLog, LogCorruptedError

ORIGIN = "test.infertrail/crash"

# The writer process: prints "open <size> <torn segment> <offset> <bytes>" after recovery, then
# "<seq> <leaf hash hex>" for every acknowledged record, flushed, until it is killed.
CHILD = r"""
import sys, threading
from pathlib import Path
from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.ledger import AuditLog

log_dir, skey, origin, round_no, mode = sys.argv[1:6]
log = AuditLog.open(Path(log_dir), signer=NoteSigner.from_key(skey), origin=origin,
                    segment_bytes=256 * 1024, checkpoint_interval_ms=10)
tail = log.recovery.wal_tail if log.recovery else None
print("open", log.size, *((tail.segment.name, tail.offset, tail.bytes_dropped) if tail else ()),
      flush=True)
out_lock = threading.Lock()

def ack(receipts):
    lines = "".join(f"{r.seq} {r.leaf_hash.hex()}\n" for r in receipts)
    with out_lock:
        sys.stdout.write(lines)
        sys.stdout.flush()

def record(t, i):
    return {"round": int(round_no), "t": t, "i": i, "pad": "p" * (i % 211)}

def sync_producer(t):
    i = 0
    while True:
        ack([log.append(record(t, i))])
        i += 1

def burst_producer(t):
    i = 0
    while True:
        futures = [log.append_async(record(t, i + k)) for k in range(3000)]
        ack([f.result() for f in futures])
        i += 3000

target = sync_producer if mode == "sync" else burst_producer
for t in range(4):
    threading.Thread(target=target, args=(t,), daemon=True).start()
threading.Event().wait()
"""


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return NoteSigner.generate("test.infertrail-crash")


def run_and_kill(
    log_dir: Path, skey: str, round_no: int, mode: str, rng: random.Random
) -> tuple[list[str], dict[int, str]]:
    """Run the writer, SIGKILL it after a random number of acks; return its open line and acks."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(log_dir), skey, ORIGIN, str(round_no), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    want = rng.randint(1, 6000 if mode == "burst" else 300)
    deadline = time.monotonic() + 60
    while len(lines) < 1 + want and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.03))  # land anywhere: mid-batch, mid-fsync, mid-checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    reader.join(timeout=60)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL, stderr
    assert lines and lines[0].startswith(b"open"), stderr
    acks: dict[int, str] = {}
    for line in lines[1:]:
        if line.endswith(b"\n"):  # a line cut by the kill was never fully reported
            seq, digest = line.split()
            acks[int(seq)] = digest.decode()
    return lines[0].decode().split()[1:], acks


def crash_rounds(log_dir: Path, keys: tuple[str, str], modes: list[str]) -> None:
    """Kill a writer once per mode, then check every acknowledged record and the tree."""
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"crash test seed {seed}")  # shown on failure, to replay the kill points
    rng = random.Random(seed)
    acked: dict[int, str] = {}
    for round_no, mode in enumerate(modes):
        expected_tail = None
        if log_dir.exists():
            # What the crash left, seen without repairing; the next open must report exactly it.
            found = wal.scan_wal(log_dir / "wal", repair=False).torn_tail
            if found is not None:
                expected_tail = [found.segment.name, str(found.offset), str(found.bytes_dropped)]
        opened, acks = run_and_kill(log_dir, keys[0], round_no, mode, rng)
        size, tail = int(opened[0]), opened[1:] or None
        assert tail == expected_tail, f"round {round_no}: reported {tail}, found {expected_tail}"
        assert size >= len(acked) and all(seq < size for seq in acked)
        for seq, digest in acks.items():
            assert acked.setdefault(seq, digest) == digest, f"seq {seq} acknowledged twice"

    with AuditLog.open(log_dir, signer=NoteSigner.from_key(keys[0]), origin=ORIGIN) as log:
        payloads = [payload for _, payload in log.read(0, log.size)]
        leaves = [merkle.leaf_hash(p) for p in payloads]
        for seq, digest in acked.items():
            assert leaves[seq].hex() == digest, f"acknowledged seq {seq} changed or vanished"
            assert json.loads(payloads[seq])["seq"] == seq
        assert log.root() == merkle.root(leaves)
        cp = open_checkpoint(log.latest_checkpoint, NoteVerifier.from_key(keys[1]))
        assert (cp.size, cp.root) == (len(leaves), merkle.root(leaves))
        for note in wal.read_frames(log_dir / "checkpoints" / "history.log")[0][-10:]:
            old = open_checkpoint(note, NoteVerifier.from_key(keys[1]))
            assert old.size == 0 or old.root == merkle.root(leaves[: old.size])
    assert len(acked) > 0


def test_sigkill_never_loses_acknowledged_records(tmp_path: Path, keys: tuple[str, str]) -> None:
    crash_rounds(tmp_path / "log", keys, ["burst", "sync", "burst"])


@pytest.mark.slow
def test_sigkill_many_rounds(tmp_path: Path, keys: tuple[str, str]) -> None:
    crash_rounds(tmp_path / "log", keys, ["burst", "burst", "sync"] * 5)


# ---- crafted crash leftovers ------------------------------------------------------------------


@pytest.fixture
def signer(keys: tuple[str, str]) -> NoteSigner:
    return NoteSigner.from_key(keys[0])


def make_log(log_dir: Path, signer: NoteSigner, n: int) -> list[bytes]:
    """A cleanly closed log of n records (all checkpointed); returns the payloads."""
    with AuditLog.open(log_dir, signer=signer, origin=ORIGIN) as log:
        futures = [log.append_async({"i": i, "pad": "z" * 40}) for i in range(n)]
        for f in futures:
            f.result(timeout=30)
        return [p for _, p in log.read(0, n)]


def last_segment(log_dir: Path) -> Path:
    return wal.list_segments(log_dir / "wal")[-1][1]


def unacknowledged_frame(seq: int) -> bytes:
    """A frame the writer may have written for seq but never acknowledged before dying."""
    return wal.encode_frame(canonicalize({"i": seq, "pad": "z" * 40, "seq": seq}))


@pytest.mark.parametrize("keep", [1, 7, 8, 20, -1])
def test_truncated_last_frame_is_cut_and_reported(
    tmp_path: Path, signer: NoteSigner, keep: int
) -> None:
    make_log(tmp_path, signer, 10)
    seg = last_segment(tmp_path)
    end = seg.stat().st_size
    partial = unacknowledged_frame(10)[:keep]
    with seg.open("ab") as f:
        f.write(partial)
    with AuditLog.open(tmp_path, signer=signer, origin=ORIGIN) as log:
        assert log.recovery is not None and log.recovery.wal_tail is not None
        tail = log.recovery.wal_tail
        assert (tail.segment, tail.offset, tail.bytes_dropped) == (seg, end, len(partial))
        assert log.size == 10
        assert log.append({"i": 10}).seq == 10


def test_garbage_after_the_last_frame_is_cut_and_reported(
    tmp_path: Path, signer: NoteSigner
) -> None:
    make_log(tmp_path, signer, 10)
    seg = last_segment(tmp_path)
    with seg.open("ab") as f:
        f.write(os.urandom(1000))
    with AuditLog.open(tmp_path, signer=signer, origin=ORIGIN) as log:
        assert log.recovery is not None and log.recovery.wal_tail is not None
        assert log.recovery.wal_tail.bytes_dropped == 1000
        assert log.size == 10


def test_whole_unacknowledged_frame_is_kept(tmp_path: Path, signer: NoteSigner) -> None:
    # Crash after the WAL fdatasync but before the hash store write: the record is recovered.
    make_log(tmp_path, signer, 10)
    with last_segment(tmp_path).open("ab") as f:
        f.write(unacknowledged_frame(10))
    with AuditLog.open(tmp_path, signer=signer, origin=ORIGIN) as log:
        assert log.recovery is not None
        assert (log.recovery.wal_tail, log.recovery.leaves_rebuilt) == (None, 1)
        assert log.size == 11


@pytest.mark.parametrize("where", [0, 5, 8, 30])
def test_flipped_byte_in_the_last_frame_is_a_torn_tail(
    tmp_path: Path, signer: NoteSigner, where: int
) -> None:
    make_log(tmp_path, signer, 10)
    seg = last_segment(tmp_path)
    end = seg.stat().st_size
    frame = bytearray(unacknowledged_frame(10))
    frame[where] ^= 0x10
    with seg.open("ab") as f:
        f.write(bytes(frame))
    with AuditLog.open(tmp_path, signer=signer, origin=ORIGIN) as log:
        assert log.recovery is not None and log.recovery.wal_tail is not None
        assert log.recovery.wal_tail.offset == end
        assert log.size == 10


def test_flipped_byte_in_a_middle_frame_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    payloads = make_log(tmp_path, signer, 10)
    seg = last_segment(tmp_path)
    offset = sum(wal.HEADER_SIZE + len(p) for p in payloads[:4])  # frame of seq 4
    data = bytearray(seg.read_bytes())
    data[offset + wal.HEADER_SIZE + 3] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(LogCorruptedError, match=rf"{seg.name}: damaged frame at offset {offset}"):
        AuditLog.open(tmp_path, signer=signer, origin=ORIGIN)
    assert seg.stat().st_size == len(data)  # nothing was truncated
    with pytest.raises(LogCorruptedError, match=r"seq 4"):
        list(wal.iter_records(tmp_path / "wal", 0, 10))
