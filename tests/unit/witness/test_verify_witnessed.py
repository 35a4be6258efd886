"""``verify_log`` with witnessed checkpoints: the attacks a log's own signatures cannot catch.

The fixture log (test_lake.build_log: 600 sealed records, 150 in the WAL, checkpoints in the
history) is cosigned at sizes 200, 600 and 750 by two witnesses' keys (pure cosignatures; the
witness servers are driven by test_witnesses.py and the e2e tests). Each attack is first
shown to pass ``verify`` without the witnesses: that is the gap this closes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infertrail.audit.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    sign_checkpoint,
    split_note,
)
from infertrail.audit.cosignature import CosignatureSigner, WitnessPolicy, add_signature_lines
from infertrail.audit.hashstore import HashStore
from infertrail.audit.lake import Sealer
from infertrail.audit.merkle import leaf_hash
from infertrail.audit.verify import VerifyReport, verify_log
from infertrail.audit.wal import FRAME_HEADER, HEADER_SIZE, encode_frame
from infertrail.audit.witnessed import open_witnessed
from tests.unit.audit.test_lake import BuiltLog, build_log, make_record
from tests.unit.witness.helpers import new_witness

SIZES = (200, 600, 750)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("pristine"))


@pytest.fixture(scope="module")
def witnesses() -> tuple[CosignatureSigner, CosignatureSigner]:
    return new_witness("witness.test/w1"), new_witness("witness.test/w2")


@pytest.fixture
def built(pristine: BuiltLog, tmp_path: Path) -> BuiltLog:
    shutil.copytree(pristine.log_dir.parent, tmp_path, dirs_exist_ok=True)
    return BuiltLog(tmp_path / "log", str(tmp_path / "lake"), pristine.signer, pristine.verifier)


def cosigned_notes(
    built: BuiltLog, witnesses: tuple[CosignatureSigner, ...], sizes: tuple[int, ...] = SIZES
) -> list[tuple[str, bytes]]:
    """The log's checkpoints at ``sizes``, each cosigned by every witness given."""
    notes = []
    with built.open() as log:
        for size in sizes:
            note = sign_checkpoint(
                Checkpoint(built.signer.name, size, log.root(size)), built.signer
            )
            text = note[: note.rindex(b"\n\n") + 1]
            lines = [w.cosign(text, 1_800_000_000 + size) for w in witnesses]
            notes.append((f"witness copy of {size}", add_signature_lines(note, lines)))
    return notes


def run(
    built: BuiltLog, notes: list[tuple[str, bytes]], witnesses: tuple[CosignatureSigner, ...]
) -> tuple[VerifyReport, list[str]]:
    policy = WitnessPolicy.of([w.verifier_key for w in witnesses], quorum=2)
    witnessed, problems = open_witnessed(notes, built.verifier, built.signer.name, policy)
    return verify_log(built.log_dir, built.lake_url, built.verifier, witnessed=witnessed), problems


def wal_segments(built: BuiltLog) -> list[Path]:
    return sorted((built.log_dir / "wal").iterdir())


def rewrite_wal_record(segment: Path, index: int, old: bytes, new: bytes) -> None:
    """Change one WAL record in place with a valid CRC, as someone with write access can."""
    buf, payloads, offset = segment.read_bytes(), [], 0
    while offset < len(buf):
        length, _ = FRAME_HEADER.unpack_from(buf, offset)
        payloads.append(buf[offset + HEADER_SIZE : offset + HEADER_SIZE + length])
        offset += HEADER_SIZE + length
    payloads[index] = payloads[index].replace(old, new)
    segment.write_bytes(b"".join(encode_frame(p) for p in payloads))


def test_an_intact_log_agrees_with_its_witnesses(
    built: BuiltLog, witnesses: tuple[CosignatureSigner, CosignatureSigner]
) -> None:
    report, problems = run(built, cosigned_notes(built, witnesses), witnesses)
    assert report.ok, report.finding
    assert problems == [] and report.witnessed_size == 750
    entries = [a for a in report.anchors if a["source"] == "witnesses"]
    assert [(a["size"], a["verdict"], a["quorum"]) for a in entries] == [
        (s, "consistent", True) for s in SIZES
    ]
    assert report.rollback_protection == "a witness quorum"
    # One witness's cosignatures are checked too, but make no quorum.
    alone, _ = run(built, cosigned_notes(built, witnesses[:1]), witnesses)
    assert alone.ok and alone.witnessed_size == 0


def test_checkpoints_rolled_back_and_a_witnessed_record_edited(
    built: BuiltLog, witnesses: tuple[CosignatureSigner, CosignatureSigner]
) -> None:
    notes = cosigned_notes(built, witnesses)
    # The attacker puts an older valid checkpoint back, cuts the history to match, and edits a
    # record the newer checkpoints covered (seq 700: in the WAL, CRC recomputed).
    roll_back_checkpoints(built, 650)
    segment = next(s for s in wal_segments(built) if _first_seq(s) <= 700 < _next(built, s))
    rewrite_wal_record(segment, 700 - _first_seq(segment), b'"team":"risk"', b'"team":"evil"')
    reconcile_tree(built, 700)  # and the stored leaf hashes, which nothing signs
    alone = verify_log(built.log_dir, built.lake_url, built.verifier)
    assert alone.ok, alone.finding  # what the log's own signatures cannot see
    report, _ = run(built, notes, witnesses)
    finding = report.finding
    assert finding is not None and finding.kind == "rollback"
    assert (finding.seq, finding.file) == (600, "witnesses witness.test/w1, witness.test/w2")
    assert "cosigned size 750" in finding.detail and "records in [600, 750)" in finding.detail


def test_a_fork_re_signed_with_the_log_key(
    built: BuiltLog,
    witnesses: tuple[CosignatureSigner, CosignatureSigner],
    tmp_path: Path,
) -> None:
    notes = cosigned_notes(built, witnesses)
    # With the log's key, build another history: records 0..399 as they were, then others,
    # sealed and signed like the real one; it replaces the real log and lake.
    fork_root = tmp_path / "fork"
    fork = build_forked_log(fork_root, built.signer, diverge_at=400)
    shutil.rmtree(built.log_dir)
    shutil.rmtree(built.lake_url)
    shutil.copytree(fork.log_dir, built.log_dir)
    shutil.copytree(fork.lake_url, built.lake_url)
    alone = verify_log(built.log_dir, built.lake_url, built.verifier)
    assert alone.ok, alone.finding  # validly signed throughout
    report, _ = run(built, notes, witnesses)
    finding = report.finding
    assert finding is not None and finding.kind == "fork"
    # Located between the witnessed sizes that still match (200) and the first that does not.
    assert finding.seq == 200 and "records in [200, 600)" in finding.detail
    assert "re-signed with its key" in finding.detail
    assert [a["verdict"] for a in report.anchors if a["source"] == "witnesses"][:2] == [
        "consistent",
        "fork",
    ]


def test_records_cut_below_a_witnessed_size(
    built: BuiltLog, witnesses: tuple[CosignatureSigner, CosignatureSigner]
) -> None:
    notes = cosigned_notes(built, witnesses)
    size = roll_back_checkpoints(built, 700)
    for segment in wal_segments(built):  # drop every record from `size` on
        first = _first_seq(segment)
        if first >= size:
            segment.unlink()
    last = max(s for s in wal_segments(built))
    keep = size - _first_seq(last)
    _truncate_frames(last, keep)
    reconcile_tree(built, size)
    alone = verify_log(built.log_dir, built.lake_url, built.verifier)
    assert alone.ok and alone.records == size  # consistent with its (older) checkpoints
    report, _ = run(built, notes, witnesses)
    finding = report.finding
    assert finding is not None and (finding.kind, finding.seq) == ("rollback", size)
    assert f"only {size} records" in finding.detail


def test_copies_that_prove_nothing_are_skipped_with_a_reason(
    built: BuiltLog, witnesses: tuple[CosignatureSigner, CosignatureSigner]
) -> None:
    (_, note), *_ = cosigned_notes(built, witnesses, (750,))
    text, _ = split_note(note)
    line = witnesses[0].cosign(text, 1)
    broken = line[:-4] + (b"AAA\n" if line[-4:] != b"AAA\n" else b"BBB\n")
    stranger = new_witness("witness.test/stranger")
    other_key = NoteSigner.from_key(NoteSigner.generate(built.signer.name)[0])
    other = sign_checkpoint(Checkpoint.parse(text), other_key)
    notes = [
        ("tampered", add_signature_lines(note, [broken])),
        ("stranger", cosigned_notes(built, (stranger,), (750,))[0][1]),
        ("another key", add_signature_lines(other, [line])),
    ]
    report, problems = run(built, notes, witnesses)
    assert report.ok and report.witnessed_size == 0
    assert [p.split(":")[0] for p in problems] == ["tampered", "stranger", "another key"]


# ---- helpers ------------------------------------------------------------------------------


def roll_back_checkpoints(built: BuiltLog, at_most: int) -> int:
    """Put the log's checkpoints back to the newest of at most ``at_most``; return its size.

    Every one is validly signed: the history cut after it, ``latest`` replaced by it, the
    group-commit checkpoint file deleted.
    """
    checkpoints = built.log_dir / "checkpoints"
    older = _history_up_to(checkpoints / "history.log", at_most)
    (checkpoints / "history.log").write_bytes(b"".join(encode_frame(n) for n in older))
    (checkpoints / "latest").write_bytes(older[-1])
    (checkpoints / "commit").unlink(missing_ok=True)
    return _size(older[-1])


def reconcile_tree(built: BuiltLog, start: int) -> None:
    """Make tree/ (the leaf hashes, unsigned) match the WAL records from ``start`` on."""
    payloads = []
    for segment in wal_segments(built):
        buf, offset, seq = segment.read_bytes(), 0, _first_seq(segment)
        while offset < len(buf):
            length, _ = FRAME_HEADER.unpack_from(buf, offset)
            if seq >= start:
                payloads.append(buf[offset + HEADER_SIZE : offset + HEADER_SIZE + length])
            offset += HEADER_SIZE + length
            seq += 1
    store = HashStore(built.log_dir / "tree")
    store.truncate(start)
    store.append([leaf_hash(p) for p in payloads])
    store.close()


def build_forked_log(root: Path, signer: NoteSigner, diverge_at: int) -> BuiltLog:
    """Another history of the log, built and sealed with its key: records differ from one seq."""
    fork = BuiltLog(
        root / "log", str(root / "lake"), signer, NoteVerifier.from_key(signer.verifier_key)
    )
    with fork.open(segment_bytes=16 * 1024, checkpoint_interval_ms=60_000) as log:
        for i in range(600):
            extra = {} if i < diverge_at else {"note": "forged"}
            log.append(make_record(i, hour=10 + i // 250, **extra))
        log.flush()
        Sealer(log, fork.lake_url, signer, max_rows_per_file=200).seal()
        for i in range(600, 750):
            log.append(make_record(i, hour=10 + i // 250, note="forged"))
    return fork


def _size(note: bytes) -> int:
    return int(note.split(b"\n")[1])


def _history_up_to(history: Path, size: int) -> list[bytes]:
    buf, notes, offset = history.read_bytes(), [], 0
    while offset < len(buf):
        length, _ = FRAME_HEADER.unpack_from(buf, offset)
        notes.append(buf[offset + HEADER_SIZE : offset + HEADER_SIZE + length])
        offset += HEADER_SIZE + length
    return [n for n in notes if _size(n) <= size]


def _first_seq(segment: Path) -> int:
    return int(segment.name[:20])


def _next(built: BuiltLog, segment: Path) -> int:
    later = [_first_seq(s) for s in wal_segments(built) if _first_seq(s) > _first_seq(segment)]
    return min(later, default=10**9)


def _truncate_frames(segment: Path, keep: int) -> None:
    buf, offset = segment.read_bytes(), 0
    for _ in range(keep):
        length, _ = FRAME_HEADER.unpack_from(buf, offset)
        offset += HEADER_SIZE + length
    segment.write_bytes(buf[:offset])
