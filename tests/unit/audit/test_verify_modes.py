"""verify_log modes: deep typed-column checks, parallel joins of subtrees, WAL-only logs."""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infertrail.audit import merkle
from infertrail.audit.framing import FRAME_HEADER, HEADER_SIZE
from infertrail.audit.lake import ORIGIN_METADATA_KEY, LakeReader
from infertrail.audit.manifest import MANIFEST_DIR
from tests.unit.audit.test_lake import BuiltLog, build_log
from tests.unit.audit.test_verify import lake_file, private_copy, replace_row, run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def built(pristine: BuiltLog, tmp_path: Path) -> BuiltLog:
    return private_copy(pristine, tmp_path)


def reseal_with_typed_change(built: BuiltLog, first_seq: int, row: int) -> str:
    """Change a typed column and re-sign the manifest for the new bytes: what a sealer bug
    (or a holder of the signing key) could produce. Only ``deep`` re-derives the columns."""
    reader = LakeReader(built.lake_url)
    (manifest,) = [m for m in reader.manifests(built.verifier) if m.first_seq == first_seq]
    path = Path(built.lake_url) / manifest.file
    table = replace_row(pq.read_table(path), row, "team", "forged")
    table = table.replace_schema_metadata({ORIGIN_METADATA_KEY: manifest.origin.encode()})
    path.chmod(0o644)
    pq.write_table(table, path, compression="zstd")
    changed = replace(manifest, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    note = Path(built.lake_url) / MANIFEST_DIR / manifest.name
    note.chmod(0o644)
    note.write_bytes(built.signer.sign(changed.text()))
    return manifest.file


@pytest.mark.parametrize("workers", [1, 2])
def test_deep_and_parallel_agree_on_an_intact_log(built: BuiltLog, workers: int) -> None:
    plain, deep = run(built), run(built, deep=True, workers=workers)
    assert plain.ok and deep.ok
    assert (deep.records, deep.root, deep.files, deep.segments) == (
        plain.records, plain.root, plain.files, plain.segments,
    )  # fmt: skip


def test_only_deep_rederives_typed_columns_of_files_matching_their_manifest(
    built: BuiltLog,
) -> None:
    rel = reseal_with_typed_change(built, 250, 10)
    assert run(built).ok  # the signed sha256 vouches for the file as sealed
    finding = run(built, deep=True).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("typed_column_mismatch", 260, rel)
    assert "'team'" in finding.detail


@pytest.mark.parametrize("workers", [1, 2])
def test_a_changed_file_is_always_checked_column_by_column(built: BuiltLog, workers: int) -> None:
    rel = lake_file(built, 400)
    path = Path(built.lake_url) / rel
    path.chmod(0o644)
    pq.write_table(replace_row(pq.read_table(path), 7, "team", "forged"), path, compression="zstd")
    finding = run(built, workers=workers).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("typed_column_mismatch", 407, rel)


def test_a_log_never_sealed_verifies_from_the_wal(tmp_path: Path) -> None:
    built = build_log(tmp_path, sealed=0, unsealed=300)
    report = run(built, workers=2)
    assert report.ok and report.records == 300 and report.files == 0 and report.segments > 1
    with built.open() as log:
        assert report.root == base64.b64encode(log.root()).decode()


def test_signed_sizes_inside_files_are_all_checked(tmp_path: Path) -> None:
    # Checkpoints every batch: many signed sizes fall inside each WAL segment.
    built = build_log(tmp_path, sealed=0, unsealed=0)
    with built.open(checkpoint_interval_ms=0, segment_bytes=4096) as log:
        for i in range(120):
            log.append({"i": i, "pad": "x" * 20})
    report = run(built, workers=2)
    assert report.ok and report.checkpoints > 100
    # Rewrite record 50 with a valid CRC and its new leaf in tree/leaves.bin: only the signed
    # roots can tell, and the one at size 51 names it.
    for segment in sorted((built.log_dir / "wal").glob("*.seg")):
        data = bytearray(segment.read_bytes())
        at = data.find(b'"i":50,')
        if at < 0:
            continue
        data[at + 5] = ord("1")
        start = data.rfind(b"{", 0, at)
        length = FRAME_HEADER.unpack_from(data, start - HEADER_SIZE)[0]
        payload = bytes(data[start : start + length])
        FRAME_HEADER.pack_into(data, start - HEADER_SIZE, length, zlib.crc32(payload))
        segment.write_bytes(bytes(data))
        with (built.log_dir / "tree/leaves.bin").open("r+b") as leaves:
            leaves.seek(50 * 32)
            leaves.write(merkle.leaf_hash(payload))
        break
    for workers in (1, 2):
        finding = run(built, workers=workers).finding
        assert finding is not None
        assert (finding.kind, finding.seq, finding.file) == (
            "modified", 50, "checkpoints/history.log",
        )  # fmt: skip


def test_tasks_are_lake_files_then_live_segments(built: BuiltLog) -> None:
    report = run(built)
    assert (report.files, report.sealed_records, report.records) == (5, 600, 750)
    assert report.segments >= 1 and report.unattested == 0
