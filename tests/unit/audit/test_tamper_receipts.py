"""Attacks by someone with write access to the data directory, against receipts and repairs.

Each test writes a real log with AuditLog (as a service does; some in a process killed with
SIGKILL right after its acknowledgements), keeps every decision's receipt as its holder would,
then tampers with the files the way an operator could: rolling back the checkpoint store,
editing records with their CRC and hash-store entries recomputed, cutting the acknowledged
tail, flipping a byte of the last record, deleting a sealed range, damaging a sealed record's
WAL copy. The real CLI then judges the data directory.

Before receipts and per-commit checkpoints, every attack here passed ``infertrail audit verify``
with exit 0 (or, for the damaged sealed copy, stopped the service from starting): each test
asserts what the log alone still cannot see (the operator rewrote everything it holds), and
that the receipts, or the group-commit checkpoint, now catch and locate it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infertrail.audit import merkle
from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteVerifier, open_checkpoint
from infertrail.audit.cli import audit, keys
from infertrail.audit.commitnote import COMMIT_FILE, read_commit_notes
from infertrail.audit.framing import HEADER_SIZE, encode_frame, read_frames, walk_frames
from infertrail.audit.keys import load_signer
from infertrail.audit.ledger import AuditLog, LogCorruptedError
from infertrail.audit.recovery import note_size
from infertrail.audit.wal import list_segments
from tests.unit.audit.test_lake import make_record

ORIGIN = "tamper.example/log"
ROOT = Path(__file__).resolve().parents[3]

# A writer that acknowledges records and is killed right after: it keeps each receipt (as the
# decisions' holders would), then SIGKILLs itself. Checkpoints are published only at open (a
# one-hour interval): what covers the acknowledged records is their group-commit checkpoint.
KILLED_WRITER = r"""
import json, os, signal, sys
from pathlib import Path
from infertrail.audit.keys import load_signer
from infertrail.audit.ledger import AuditLog
from tests.unit.audit.test_lake import make_record

log_dir, key_file, origin, receipts, start, batches = sys.argv[1:7]
log = AuditLog.open(Path(log_dir), signer=load_signer(Path(key_file)), origin=origin,
                    checkpoint_interval_ms=3_600_000)
i = int(start)
for size in map(int, batches.split(",")):
    futures = [log.append_async(make_record(i + k)) for k in range(size)]
    for future in futures:
        receipt = future.result()
        path = Path(receipts) / f"{receipt.seq:06d}.json"
        path.write_text(json.dumps(receipt.to_dict()))
    i += size
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray infertrail.toml
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INFERTRAIL_AUDIT_ORIGIN", ORIGIN)
    assert invoke(keys, "init").exit_code == 0
    (tmp_path / "receipts").mkdir()
    return tmp_path / "data"


def invoke(group: object, *args: str) -> Result:
    # A verifier that never saw this log before (its own state, kept from earlier runs, would
    # catch a rollback too: docs/verification.md); what receipts alone catch is the point here.
    fresh = {"XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="receipts-verifier-")}
    runner = CliRunner(env=fresh)
    return runner.invoke(group, list(args), catch_exceptions=False)  # type: ignore[arg-type]


def log_dir_of(data_dir: Path) -> Path:
    return data_dir / "audit" / "log"


def receipts_of(data_dir: Path) -> Path:
    return data_dir.parent / "receipts"


def open_log(data_dir: Path, **options: Any) -> AuditLog:
    signer = load_signer(data_dir / "keys/audit.key")
    return AuditLog.open(log_dir_of(data_dir), signer=signer, origin=ORIGIN, **options)


def serve(data_dir: Path, batches: list[int], *, hours: int = 1) -> None:
    """Append batches as a service does (a published checkpoint after each), keeping receipts."""
    with open_log(data_dir, history_interval_ms=0, checkpoint_interval_ms=3_600_000) as log:
        total = sum(batches)
        for size in batches:
            start = log.size
            futures = [
                log.append_async(make_record(i, hour=10 + i * hours // total))
                for i in range(start, start + size)
            ]
            for future in futures:
                keep(data_dir, future.result(timeout=30).to_dict())
            log.flush()


def keep(data_dir: Path, receipt: dict[str, Any]) -> None:
    (receipts_of(data_dir) / f"{receipt['seq']:06d}.json").write_text(json.dumps(receipt))


def killed_writer(data_dir: Path, batches: list[int], start: int = 0) -> None:
    """Acknowledge ``batches`` in a writer process, then SIGKILL it (see KILLED_WRITER)."""
    args = [str(log_dir_of(data_dir)), str(data_dir / "keys/audit.key"), ORIGIN]
    args += [str(receipts_of(data_dir)), str(start), ",".join(map(str, batches))]
    command = [sys.executable, "-c", KILLED_WRITER, *args]
    run = subprocess.run(command, capture_output=True, cwd=ROOT)  # ROOT: for tests.unit...
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()


def verify(*extra: str) -> Result:
    return invoke(audit, "verify", *extra)


def verify_receipts(data_dir: Path) -> Result:
    return verify("--receipts", str(receipts_of(data_dir)))


def assert_tampered(result: Result, start: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(f"TAMPERED: {start}"), result.stdout


# ---- what the attacker does to the files ----------------------------------------------------


def wal_records(log_dir: Path) -> list[tuple[Path, int, bytes]]:
    """(segment, frame offset, payload) of every record in the WAL, in seq order."""
    out = []
    for _, segment in list_segments(log_dir / "wal"):
        buf = segment.read_bytes()
        frames, _, _ = walk_frames(buf)
        out += [(segment, start - HEADER_SIZE, buf[start : start + n]) for start, n in frames]
    return out


def forge(log_dir: Path, seq: int, **changes: Any) -> None:
    """Rewrite record ``seq`` in the WAL with a valid frame, and its leaf in the hash store."""
    first = list_segments(log_dir / "wal")[0][0]
    segment, offset, payload = wal_records(log_dir)[seq - first]
    forged = canonicalize(json.loads(payload) | changes)
    buf = segment.read_bytes()
    end = offset + HEADER_SIZE + len(payload)
    segment.write_bytes(buf[:offset] + encode_frame(forged) + buf[end:])
    with (log_dir / "tree" / "leaves.bin").open("r+b") as f:
        f.seek(seq * merkle.HASH_SIZE)
        f.write(merkle.leaf_hash(forged))
    drop_hints(log_dir)


def truncate(log_dir: Path, size: int) -> None:
    """Cut the WAL and the hash store back to ``size`` records, cleanly."""
    first = list_segments(log_dir / "wal")[0][0]
    records = wal_records(log_dir)
    if size - first < len(records):
        segment, offset, _ = records[size - first]
        with segment.open("r+b") as f:
            f.truncate(offset)
    with (log_dir / "tree" / "leaves.bin").open("r+b") as f:
        f.truncate(size * merkle.HASH_SIZE)
    drop_hints(log_dir)


def drop_hints(log_dir: Path) -> None:
    """What a careful attacker removes: derived files the next open rebuilds."""
    for level in (log_dir / "tree").glob("level*.bin"):
        level.unlink()
    for index in (log_dir / "wal-index").glob("*.idx"):
        index.unlink()


def roll_back(log_dir: Path, size: int) -> None:
    """Replace the checkpoint store with its state when the log had ``size`` records."""
    cp_dir = log_dir / "checkpoints"
    notes, _ = read_frames(cp_dir / "history.log")
    kept = [n for n in notes if note_size(n) <= size]
    (cp_dir / "history.log").write_bytes(b"".join(encode_frame(n) for n in kept))
    (cp_dir / "latest").write_bytes(kept[-1])
    (cp_dir / COMMIT_FILE).unlink(missing_ok=True)


# ---- rollback of the checkpoint store -------------------------------------------------------


def test_rollback_and_truncation_are_caught_by_receipts(data_dir: Path) -> None:
    serve(data_dir, [10, 10, 10])
    log_dir = log_dir_of(data_dir)
    assert verify_receipts(data_dir).exit_code == 0
    truncate(log_dir, 20)
    roll_back(log_dir, 20)
    # The log alone is a consistent log of 20 records now: no local check can see the cut.
    alone = verify()
    assert alone.exit_code == 0 and "20 records verified" in alone.stdout, alone.output
    assert_tampered(verify_receipts(data_dir), "truncated at seq 20, 000020.json: only 20 records")
    # A restart appends other records at the receipted seqs: the receipt of seq 20 catches it.
    with open_log(data_dir) as log:
        log.append(make_record(99))
    assert_tampered(verify_receipts(data_dir), "modified at seq 20, 000020.json: the record")


@pytest.mark.parametrize("receipted", [True, False])
def test_an_edit_under_a_discarded_checkpoint_is_caught_by_receipts(
    data_dir: Path, receipted: bool
) -> None:
    serve(data_dir, [10, 10, 10])
    log_dir = log_dir_of(data_dir)
    forge(log_dir, 25, decision="approve", score=0.999)
    roll_back(log_dir, 20)
    if not receipted:  # a record whose holder kept no receipt: its batch's receipts locate it
        (receipts_of(data_dir) / "000025.json").unlink()
    assert verify().exit_code == 0, "the edit must be invisible to the log's own checks"
    found = verify_receipts(data_dir)
    if receipted:
        assert_tampered(found, "modified at seq 25, 000025.json: the record at seq 25 does not")
    else:
        assert_tampered(found, "modified at seq 20, 000020.json: records in [20, 30) do not hash")
    # The next start seals the forged record into the lake under a valid manifest...
    sealed = invoke(audit, "seal")
    assert sealed.exit_code == 0 and "30 records sealed" in sealed.stdout, sealed.output
    assert verify().exit_code == 0
    # ...where the receipts still find it.
    again = verify_receipts(data_dir)
    assert again.stdout.splitlines()[0] == found.stdout.splitlines()[0]


# ---- the acknowledged tail, and the last record ----------------------------------------------


def test_no_acknowledged_record_is_without_a_covering_signature(data_dir: Path) -> None:
    log_dir = log_dir_of(data_dir)
    start = 0
    for batches in ([1, 1, 5], [300], [7, 1, 64, 2]):
        killed_writer(data_dir, batches, start)
        start += sum(batches)
        # On disk, before any restart: a signed checkpoint covers every acknowledged record.
        covered = max(map(note_size, read_commit_notes(log_dir / "checkpoints" / COMMIT_FILE)))
        assert covered == start
        # Every receipt given out checks against the restarted log.
        with open_log(data_dir) as log:
            assert log.size == start
        result = verify_receipts(data_dir)
        assert result.exit_code == 0, result.output
        assert f"all {start} receipted records are in the log" in result.stdout


def test_truncating_the_acknowledged_tail_is_caught(data_dir: Path) -> None:
    killed_writer(data_dir, [20, 1, 1, 1])
    log_dir = log_dir_of(data_dir)
    truncate(log_dir, 20)
    # The group-commit checkpoint on disk covers all 23: the cut is found without receipts...
    assert_tampered(verify(), "truncated at seq 20: only 20 records remain; a signed checkpoint")
    with pytest.raises(LogCorruptedError, match=r"log rolled back: .*commit says 23 records"):
        open_log(data_dir)
    # ...and with it gone too, by the receipts.
    (log_dir / "checkpoints" / COMMIT_FILE).unlink()
    assert verify().exit_code == 0
    assert_tampered(verify_receipts(data_dir), "truncated at seq 20, 000020.json")


def flip_last_record(log_dir: Path) -> tuple[Path, int]:
    segment, offset, payload = wal_records(log_dir)[-1]
    data = bytearray(segment.read_bytes())
    data[offset + HEADER_SIZE + len(payload) // 2] ^= 0x01  # its CRC no longer matches
    segment.write_bytes(bytes(data))
    return segment, len(data)


def test_an_edited_last_record_is_tampering_not_a_torn_tail(data_dir: Path) -> None:
    killed_writer(data_dir, [10, 1])
    log_dir = log_dir_of(data_dir)
    segment, size = flip_last_record(log_dir)
    assert_tampered(verify(), "wal_corrupt at seq 10, wal/")
    with pytest.raises(LogCorruptedError, match=r"record seq 10 .* tampering, not a torn tail"):
        open_log(data_dir)
    assert segment.stat().st_size == size  # nothing was cut
    # With the checkpoints rolled back as well, the last record's receipt says the same.
    (log_dir / "checkpoints" / COMMIT_FILE).unlink()
    alone = verify()
    assert alone.exit_code == 0 and "torn tail" in alone.stdout
    assert_tampered(verify_receipts(data_dir), "wal_corrupt at seq 10, wal/")


def test_a_cut_last_record_is_tampering(data_dir: Path) -> None:
    killed_writer(data_dir, [5, 1])
    segment, offset, _ = wal_records(log_dir_of(data_dir))[-1]
    with segment.open("r+b") as f:
        f.truncate(offset + HEADER_SIZE + 3)  # a torn frame, as a crash would leave one
    assert_tampered(verify(), "truncated at seq 5: only 5 records remain")
    with pytest.raises(LogCorruptedError, match=r"record seq 5 .* tampering, not a torn tail"):
        open_log(data_dir)


# ---- the lake ---------------------------------------------------------------------------------


def lake_files(data_dir: Path) -> list[tuple[Path, Path]]:
    """(parquet file, manifest) of every sealed range, in seq order."""
    lake = data_dir / "audit" / "lake"
    manifests = sorted((lake / "_manifests").glob("*.json.note"))
    files = {p.name.removesuffix(".parquet"): p for p in lake.glob("dt=*/hour=*/*.parquet")}
    return [(files[m.name.removesuffix(".json.note")], m) for m in manifests]


def test_deleting_a_sealed_range_is_caught(data_dir: Path) -> None:
    serve(data_dir, [12, 12, 12], hours=3)
    assert invoke(audit, "seal").exit_code == 0
    sealed = lake_files(data_dir)
    assert len(sealed) == 3
    # The middle range: a gap in the seqs, found by the log alone (as before).
    middle = [p.read_bytes() for p in sealed[1]]
    for path in sealed[1]:
        path.unlink()
    assert_tampered(verify(), "missing at seq 12")
    for path, data in zip(sealed[1], middle, strict=True):
        path.write_bytes(data)
    # The newest range, with the WAL, the hash store and the checkpoints cut back to match.
    log_dir = log_dir_of(data_dir)
    for path in sealed[2]:
        path.unlink()
    truncate(log_dir, 24)
    roll_back(log_dir, 24)
    assert verify().exit_code == 0, "the deletion must be invisible to the log's own checks"
    assert_tampered(verify_receipts(data_dir), "truncated at seq 24, 000024.json")


@pytest.mark.parametrize("damage", ["payload", "length"])
def test_a_damaged_wal_copy_of_a_sealed_record_is_reported_and_dropped(
    data_dir: Path, damage: str
) -> None:
    serve(data_dir, [20])
    assert invoke(audit, "seal").exit_code == 0
    with open_log(data_dir) as log:  # ten more, not sealed: they must survive the repair
        receipts = [log.append(make_record(20 + i, hour=11)) for i in range(10)]
    for receipt in receipts:
        keep(data_dir, receipt.to_dict())
    log_dir = log_dir_of(data_dir)
    segment, offset, _ = wal_records(log_dir)[3]
    data = bytearray(segment.read_bytes())
    data[offset + (HEADER_SIZE + 5 if damage == "payload" else 1)] ^= 0x40
    segment.write_bytes(bytes(data))
    assert_tampered(verify(), "wal_corrupt at seq 3, wal/")
    assert "the WAL copy of sealed record 3 is damaged" in verify().stdout
    # The service starts: the lake's copy is the record; the damaged copy goes.
    with open_log(data_dir) as log:
        assert log.recovery is not None and log.recovery.sealed_damaged == (3,)
        assert log.size == 30
        assert [seq for seq, _ in log.read(20, 30)] == list(range(20, 30))
        log.append(make_record(30, hour=11))
    assert [first for first, _ in list_segments(log_dir / "wal")] == [20]
    result = verify_receipts(data_dir)
    assert result.exit_code == 0, result.output
    assert invoke(audit, "seal").exit_code == 0 and verify().exit_code == 0


def test_commit_checkpoints_on_disk_are_checked(data_dir: Path) -> None:
    # A forged note in a slot is found; a slot torn by a crash is not a note at all.
    serve(data_dir, [5])
    log_dir = log_dir_of(data_dir)
    path = log_dir / "checkpoints" / COMMIT_FILE
    vkey = NoteVerifier.from_key((data_dir / "keys/audit.key.pub").read_text().strip())
    newest, older = sorted(read_commit_notes(path), key=note_size, reverse=True)
    assert (note_size(newest), note_size(older)) == (5, 0)  # the commit's; open's, of size 0
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE + 30] ^= 0x01
    path.write_bytes(bytes(data))  # slot 0 no longer passes its CRC: ignored
    assert read_commit_notes(path) == [older]
    assert verify().exit_code == 0
    assert open_checkpoint(newest, vkey).size == 5
    forged = newest.replace(b"\n5\n", b"\n4\n")
    path.write_bytes(encode_frame(forged))
    assert_tampered(verify(), "bad_signature at checkpoints/commit")
    with pytest.raises(LogCorruptedError, match="commit: invalid signature"):
        open_log(data_dir)
    os.truncate(path, 0)
    with open_log(data_dir) as log:
        assert log.size == 5
