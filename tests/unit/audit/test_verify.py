"""verify_log on real logs (AuditLog + Sealer), intact and with each kind of damage.

The fixture log has 750 records: 0..599 sealed into five lake files, (0-199), (200-249),
(250-399), (400-499), (500-599), split by hour and by max_rows_per_file=200, and 600..749 in
small WAL segments. Every test damages one thing and checks the kind AND the exact seq/file.
"""

from __future__ import annotations

import base64
import shutil
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertrail.audit import merkle
from infertrail.audit.canonical import canonicalize
from infertrail.audit.lake import LakeReader, typed_columns
from infertrail.audit.verify import DAMAGE_KINDS, VerifyError, VerifyReport, verify_log
from infertrail.audit.wal import FRAME_HEADER, HEADER_SIZE, encode_frame
from tests.unit.audit.test_lake import BuiltLog, build_log, make_record, new_keys


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("pristine"))


def private_copy(pristine: BuiltLog, root: Path) -> BuiltLog:
    """A copy of a built log (its log and lake) under ``root``, for a test to damage."""
    shutil.copytree(pristine.log_dir.parent, root, dirs_exist_ok=True)
    return BuiltLog(root / "log", str(root / "lake"), pristine.signer, pristine.verifier)


@pytest.fixture
def built(pristine: BuiltLog, tmp_path: Path) -> BuiltLog:
    return private_copy(pristine, tmp_path)


def run(built: BuiltLog, **kwargs: object) -> VerifyReport:
    return verify_log(built.log_dir, built.lake_url, built.verifier, **kwargs)  # type: ignore[arg-type]


def lake_file(built: BuiltLog, first_seq: int) -> str:
    """Relative path of the lake file starting at ``first_seq``."""
    (manifest,) = [
        m for m in LakeReader(built.lake_url).manifests(built.verifier) if m.first_seq == first_seq
    ]
    return manifest.file


def rewrite(built: BuiltLog, rel: str, table: pa.Table) -> None:
    path = Path(built.lake_url) / rel
    path.chmod(0o644)
    pq.write_table(table, path, compression="zstd")


def read(built: BuiltLog, rel: str) -> pa.Table:
    return pq.read_table(Path(built.lake_url) / rel)


def replace_row(table: pa.Table, index: int, column: str, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[index] = value
    position = table.schema.get_field_index(column)
    return table.set_column(
        position, table.field(column), pa.array(values, table.field(column).type)
    )


def segments(built: BuiltLog) -> list[Path]:
    return sorted((built.log_dir / "wal").iterdir())


def frames(path: Path) -> list[tuple[int, bytes]]:
    """(offset, payload) of every frame in a WAL segment or the checkpoint history."""
    buf, out, offset = path.read_bytes(), [], 0
    while offset < len(buf):
        length, _ = FRAME_HEADER.unpack_from(buf, offset)
        out.append((offset, buf[offset + HEADER_SIZE : offset + HEADER_SIZE + length]))
        offset += HEADER_SIZE + length
    return out


def test_damage_kinds_are_the_documented_ones() -> None:
    assert set(DAMAGE_KINDS) == {
        "modified", "typed_column_mismatch", "missing", "reordered", "inserted", "truncated",
        "file_missing", "file_replaced", "manifest_mismatch", "bad_signature", "rollback",
        "wal_corrupt", "compaction_mismatch",
        "timestamp_mismatch", "timestamp_untrusted", "timestamp_order",
        "fork",
    }  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_intact_log_verifies(built: BuiltLog, workers: int) -> None:
    report = run(built, workers=workers)
    assert report.ok, report.finding
    assert report.records == 750 and report.sealed_records == 600
    assert report.files == 5 and report.checkpoint_size == 750 and report.unattested == 0
    with built.open() as log:
        assert report.root == base64.b64encode(log.root()).decode()


@pytest.mark.parametrize("workers", [1, 2])
def test_record_bytes_modified(built: BuiltLog, workers: int) -> None:
    rel = lake_file(built, 250)
    table = read(built, rel)
    canonical = table.column("canonical")[50].as_py()  # seq 300: a "decline"
    rewrite(
        built, rel, replace_row(table, 50, "canonical", canonical.replace(b"decline", b"approve"))
    )
    finding = run(built, workers=workers).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("modified", 300, rel)


def test_typed_column_changed_with_canonical_bytes_left_alone(built: BuiltLog) -> None:
    rel = lake_file(built, 400)
    rewrite(built, rel, replace_row(read(built, rel), 50, "score", 0.999))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("typed_column_mismatch", 450, rel)
    assert "'score'" in finding.detail


def test_record_deleted(built: BuiltLog) -> None:
    rel = lake_file(built, 200)
    table = read(built, rel)
    rewrite(built, rel, pa.concat_tables([table.slice(0, 10), table.slice(11)]))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("missing", 210, rel)


def test_two_records_swapped(built: BuiltLog) -> None:
    rel = lake_file(built, 0)
    table = read(built, rel)
    order = list(range(200))
    order[120], order[121] = 121, 120
    rewrite(built, rel, table.take(order))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("reordered", 120, rel)


def test_forged_record_inserted(built: BuiltLog) -> None:
    rel = lake_file(built, 0)
    table = read(built, rel)
    forged = canonicalize(make_record(50, decision="approve-forged") | {"seq": 50})
    row = pa.Table.from_arrays(
        [
            pa.array([50], pa.int64()),
            pa.array([forged], pa.binary()),
            pa.array([merkle.leaf_hash(forged)], pa.binary(32)),
            *typed_columns(pa.array([forged], pa.binary())).drop_columns(["seq"]).columns,
        ],
        schema=table.schema,
    )
    rewrite(built, rel, pa.concat_tables([table.slice(0, 50), row, table.slice(50)]))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("inserted", 50, rel)


def test_tail_truncated(built: BuiltLog) -> None:
    last = segments(built)[-1]
    last.unlink()
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq) == ("truncated", int(last.name[:20]))


def test_tail_truncated_mid_frame(built: BuiltLog) -> None:
    last = segments(built)[-1]
    offset, _ = frames(last)[-1]
    with last.open("r+b") as f:
        f.truncate(offset + 5)
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq) == ("truncated", 749)


def test_parquet_file_deleted(built: BuiltLog) -> None:
    rel = lake_file(built, 250)
    (Path(built.lake_url) / rel).unlink()
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("file_missing", 250, rel)


def test_parquet_file_replaced_by_one_from_another_log(built: BuiltLog, tmp_path: Path) -> None:
    other = build_log(tmp_path / "other", unsealed=0, origin="other.example/log")
    rel = lake_file(built, 250)
    target = Path(built.lake_url) / rel
    target.chmod(0o644)
    shutil.copyfile(Path(other.lake_url) / lake_file(other, 250), target)
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("file_replaced", 250, rel)


def test_parquet_file_replaced_by_one_of_the_same_origin(built: BuiltLog, tmp_path: Path) -> None:
    other = build_log(tmp_path / "twin", unsealed=0)  # same origin name, other key and records
    other_rel = lake_file(other, 250)
    table = read(other, other_rel)
    rel = lake_file(built, 250)
    rows = [
        canonicalize(make_record(i, hour=11, team="twin") | {"seq": i}) for i in range(250, 400)
    ]
    table = table.set_column(1, "canonical", pa.array(rows, pa.binary()))
    table = table.set_column(
        2, "leaf_hash", pa.array([merkle.leaf_hash(r) for r in rows], pa.binary(32))
    )
    table = table.set_column(
        table.schema.get_field_index("team"), "team", pa.array(["twin"] * 150, pa.string())
    )
    rewrite(built, rel, table)
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("file_replaced", 250, rel)


def test_manifest_edited(built: BuiltLog) -> None:
    path = sorted((Path(built.lake_url) / "_manifests").iterdir())[3]  # (400-499)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"count":100', b'"count":101'))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == (
        "manifest_mismatch",
        400,
        f"_manifests/{path.name}",
    )


def test_checkpoint_signature_forged(built: BuiltLog) -> None:
    history = built.log_dir / "checkpoints/history.log"
    notes = [payload for _, payload in frames(history)]
    assert len(notes) >= 3
    text, signature_line = notes[1].rsplit(b"\n\xe2\x80\x94 ", 1)
    name, sig = signature_line.split(b" ")
    forged_sig = bytearray(base64.b64decode(sig))
    forged_sig[10] ^= 1
    notes[1] = text + b"\n\xe2\x80\x94 " + name + b" " + base64.b64encode(forged_sig) + b"\n"
    history.write_bytes(b"".join(encode_frame(n) for n in notes))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.file, finding.entry) == (
        "bad_signature",
        "checkpoints/history.log",
        1,
    )


def test_log_rolled_back_to_an_older_state(built: BuiltLog, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    shutil.copytree(built.log_dir, saved)
    with built.open() as log:
        for i in range(750, 760):
            log.append(make_record(i, hour=13))
    newer = (built.log_dir / "checkpoints/latest").read_bytes()
    assert run(built, from_checkpoint=newer).ok
    shutil.rmtree(built.log_dir)
    shutil.copytree(saved, built.log_dir)  # the operator restores the old state
    finding = run(built, from_checkpoint=newer).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("rollback", 750, "from_checkpoint")


def test_older_checkpoint_of_a_consistent_log_is_accepted(built: BuiltLog) -> None:
    older = frames(built.log_dir / "checkpoints/history.log")[1][1]
    assert run(built, from_checkpoint=older).ok


def test_given_checkpoint_signed_by_another_key(built: BuiltLog) -> None:
    signer, _ = new_keys()
    note = signer.sign(b"test.example/log\n1\n" + base64.b64encode(b"x" * 32) + b"\n")
    finding = run(built, from_checkpoint=note).finding
    assert finding is not None
    assert (finding.kind, finding.file) == ("bad_signature", "from_checkpoint")


def test_byte_changed_in_unsealed_wal_segment(built: BuiltLog) -> None:
    segment = segments(built)[-3]
    offset, payload = frames(segment)[2]
    data = bytearray(segment.read_bytes())
    data[offset + HEADER_SIZE + len(payload) // 2] ^= 0x20
    segment.write_bytes(bytes(data))
    finding = run(built).finding
    assert finding is not None
    rel = f"wal/{segment.name}"
    assert (finding.kind, finding.seq, finding.file) == (
        "wal_corrupt",
        int(segment.name[:20]) + 2,
        rel,
    )


def test_wal_record_rewritten_with_valid_crc(built: BuiltLog) -> None:
    segment = segments(built)[-2]
    parts = frames(segment)
    payloads = [p for _, p in parts]
    payloads[1] = payloads[1].replace(b'"team":"risk"', b'"team":"evil"')
    segment.write_bytes(b"".join(encode_frame(p) for p in payloads))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == (
        "modified",
        int(segment.name[:20]) + 1,
        f"wal/{segment.name}",
    )


def test_torn_tail_past_the_newest_checkpoint_is_not_damage(built: BuiltLog) -> None:
    last = segments(built)[-1]
    payload = canonicalize(make_record(750) | {"seq": 750})
    with last.open("ab") as f:
        f.write(encode_frame(payload)[:-7])  # a write cut short by a crash, or in progress
    report = run(built)
    assert report.ok, report.finding
    assert any("torn tail" in note for note in report.notes)


def test_unattested_records_are_counted(built: BuiltLog) -> None:
    last = segments(built)[-1]
    with last.open("ab") as f:
        f.write(encode_frame(canonicalize(make_record(750) | {"seq": 750})))
    report = run(built)
    assert report.ok and report.unattested == 1 and report.records == 751


def test_no_log_is_a_usage_error(tmp_path: Path) -> None:
    _, verifier = new_keys()
    with pytest.raises(VerifyError, match=r"no audit log at .*log\.json is missing"):
        verify_log(tmp_path / "nothing", str(tmp_path / "lake"), verifier)


def test_bad_worker_count(built: BuiltLog) -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run(built, workers=0)


def test_report_serialises(built: BuiltLog) -> None:
    data = run(built).to_dict()
    assert data["ok"] is True and data["finding"] is None and data["records"] == 750
    assert zlib.crc32(repr(sorted(data)).encode())  # plain JSON-ready types only
