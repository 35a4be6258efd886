"""verify checks every compacted month against the log: each kind of damage is named."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from infertrail.audit.canonical import canonicalize
from infertrail.audit.lake import ORIGIN_METADATA_KEY, LakeReader
from infertrail.audit.manifest import COMPACTION_DIR, CompactionManifest, open_compaction
from infertrail.audit.merkle import leaf_hash
from tests.unit.audit.test_compaction import build_months, compactor
from tests.unit.audit.test_lake import BuiltLog
from tests.unit.audit.test_verify import private_copy, replace_row, run

JAN = f"{COMPACTION_DIR}/2026-01.json.note"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    built = build_months(tmp_path_factory.mktemp("compacted"))
    assert len(compactor(built).compact()) == 3
    return built


@pytest.fixture
def built(pristine: BuiltLog, tmp_path: Path) -> BuiltLog:
    return private_copy(pristine, tmp_path)


def january(built: BuiltLog) -> CompactionManifest:
    note = LakeReader(built.lake_url).read_bytes(JAN)
    return open_compaction(note, built.verifier)


def rewrite(built: BuiltLog, table: pa.Table, *, resign: bool) -> CompactionManifest:
    """Replace January's copy by ``table``; with ``resign``, sign its new sha256 too (what a
    compactor bug, or a holder of the signing key, could produce)."""
    manifest = january(built)
    path = Path(built.lake_url) / manifest.file
    table = table.replace_schema_metadata({ORIGIN_METADATA_KEY: manifest.origin.encode()})
    path.chmod(0o644)
    pq.write_table(table, path, compression="zstd")
    if resign:
        manifest = replace(manifest, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        note = Path(built.lake_url) / JAN
        note.chmod(0o644)
        note.write_bytes(built.signer.sign(manifest.text()))
    return manifest


def copy_of(built: BuiltLog) -> pa.Table:
    return pq.read_table(Path(built.lake_url) / january(built).file)


@pytest.mark.parametrize("workers", [1, 2])
def test_intact_compactions_verify(built: BuiltLog, workers: int) -> None:
    report = run(built, workers=workers, deep=True)
    assert report.ok, report.finding
    assert report.compactions == 3


def test_a_record_edited_in_the_copy(built: BuiltLog) -> None:
    table = copy_of(built)
    row = 5
    seq = table.column("seq")[row].as_py()
    forged = canonicalize({"seq": seq, "forged": True})
    table = replace_row(table, row, "canonical", forged)
    manifest = rewrite(built, replace_row(table, row, "leaf_hash", leaf_hash(forged)), resign=True)
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("compaction_mismatch", seq, manifest.file)
    assert "not the log's record" in finding.detail


def test_a_changed_file_with_records_intact_is_replaced(built: BuiltLog) -> None:
    table = copy_of(built)
    manifest = rewrite(built, table, resign=False)  # other encoding, same rows
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.file) == ("file_replaced", manifest.file)


def test_a_row_deleted_from_the_copy(built: BuiltLog) -> None:
    table = copy_of(built)
    seq = table.column("seq")[7].as_py()
    rewrite(built, pa.concat_tables([table.slice(0, 7), table.slice(8)]), resign=True)
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq) == ("compaction_mismatch", seq)
    assert "union of the sources" in finding.detail


def test_rows_out_of_the_signed_order(built: BuiltLog) -> None:
    table = copy_of(built)
    indices = pc.sort_indices(table, sort_keys=[("seq", "ascending")])
    rewrite(built, table.take(indices), resign=True)
    finding = run(built).finding
    assert finding is not None
    assert finding.kind == "compaction_mismatch"
    assert "sort order" in finding.detail


def test_a_missing_copy(built: BuiltLog) -> None:
    manifest = january(built)
    (Path(built.lake_url) / manifest.file).unlink()
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == (
        "file_missing", manifest.first_seq, manifest.file,
    )  # fmt: skip


def test_a_bad_signature_on_the_compaction_manifest(built: BuiltLog) -> None:
    note = Path(built.lake_url) / JAN
    note.chmod(0o644)
    note.write_bytes(note.read_bytes().replace(b'"count":', b'"count":1'))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.file) == ("manifest_mismatch", JAN)
    assert "signature" in finding.detail


def test_a_typed_column_edit_is_found_by_deep_only(built: BuiltLog) -> None:
    table = copy_of(built)
    seq = table.column("seq")[3].as_py()
    rewrite(built, replace_row(table, 3, "team", "forged"), resign=True)
    assert run(built).ok
    finding = run(built, deep=True).finding
    assert finding is not None
    assert (finding.kind, finding.seq) == ("typed_column_mismatch", seq)


def test_a_typed_column_edit_without_resigning_is_always_found(built: BuiltLog) -> None:
    table = copy_of(built)
    seq = table.column("seq")[3].as_py()
    rewrite(built, replace_row(table, 3, "team", "forged"), resign=False)
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq) == ("typed_column_mismatch", seq)


def test_a_source_without_a_manifest(built: BuiltLog) -> None:
    """Two hour files listed as one source: same records and count, but no such hour file."""
    manifest = january(built)
    (a, _), (_, b) = manifest.ranges[-2:]
    merged = f"{a:020d}-{b:020d}"
    forged = replace(manifest, sources=(*manifest.sources[:-2], merged))
    note = Path(built.lake_url) / JAN
    note.chmod(0o644)
    note.write_bytes(built.signer.sign(forged.text()))
    finding = run(built).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.file) == ("compaction_mismatch", a, JAN)
    assert "has no lake manifest" in finding.detail


def test_leaves_from_the_sources_when_the_hash_store_lacks_them(built: BuiltLog) -> None:
    (built.log_dir / "tree/leaves.bin").unlink()
    report = run(built)
    assert report.ok, report.finding
