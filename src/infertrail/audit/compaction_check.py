"""Verification of one compacted month: the derived copy must hold exactly its sources' records.

Run by :func:`~infertrail.audit.verify.verify_log` after the hour files and the WAL checked out,
so ``tree/leaves.bin`` already agrees with the sealed files (and they with the signed roots).
A compaction is then intact when its signed manifest verifies (origin included), every source it
lists has a lake manifest, its file is present with the signed sha256, schema and origin, its
seqs are exactly the union of the sources' ranges, each record hashes to its stored leaf hash and
to the log's leaf for that seq, and its rows are in the signed order; with ``deep`` (or when the
bytes changed) the typed columns are also re-derived from the record bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.lake import LakeReader
from infertrail.audit.manifest import (
    COMPACTION_DIR,
    MANIFEST_DIR,
    MANIFEST_SUFFIX,
    CompactionManifest,
    ManifestError,
    open_compaction,
    open_manifest,
)
from infertrail.audit.merkle import HASH_SIZE
from infertrail.audit.typed import typed_columns
from infertrail.audit.verify_files import (
    DamageKind,
    Finding,
    ForeignFileError,
    fixed_width_bytes,
    open_lake_file,
    record_leaves,
    reference_leaves,
    typed_difference,
)

__all__ = ["CompactionTask", "check_compaction"]

_SORT_KEYS = [("subject", "ascending", "at_end"), ("seq", "ascending", "at_end")]
Candidate = tuple[int, int, DamageKind, str]  # seq, priority, kind, detail


@dataclass(frozen=True)
class CompactionTask:
    """One compaction to check (picklable: may run in a worker process)."""

    name: str  # compaction manifest name under _compactions/
    lake_url: str
    log_dir: str
    origin: str
    vkey: str
    hour_manifests: frozenset[str]  # names under _manifests/ (verified by the main pass)
    deep: bool


def check_compaction(task: CompactionTask) -> Finding | None:
    """The first damage of one compaction, or None if it is an exact copy of its sources."""
    reader = LakeReader(task.lake_url)
    note_path = f"{COMPACTION_DIR}/{task.name}"
    verifier = NoteVerifier.from_key(task.vkey)
    try:
        manifest = open_compaction(reader.read_bytes(note_path), verifier)
    except (ManifestError, FileNotFoundError) as exc:
        return Finding("manifest_mismatch", None, note_path, str(exc))
    if manifest.name != task.name or manifest.origin != task.origin:
        detail = f"compaction manifest describes {manifest.name} of {manifest.origin!r}"
        return Finding("manifest_mismatch", None, note_path, detail)
    for stem, (first, _last) in zip(manifest.sources, manifest.ranges, strict=True):
        if stem + MANIFEST_SUFFIX not in task.hour_manifests:
            detail = f"source {stem} has no lake manifest: the copy covers records never sealed"
            return Finding("compaction_mismatch", first, note_path, detail)
    try:
        data, parquet = open_lake_file(reader, manifest.file, task.origin)
    except FileNotFoundError:
        return Finding("file_missing", manifest.first_seq, manifest.file, "compacted file is gone")
    except ForeignFileError as exc:
        return Finding("file_replaced", manifest.first_seq, manifest.file, str(exc))
    sha_ok = hashlib.sha256(data).hexdigest() == manifest.sha256
    try:
        found = _check_rows(task, reader, manifest, parquet, typed=task.deep or not sha_ok)
    except (pa.ArrowException, OSError) as exc:
        detail = f"not a readable Parquet file: {exc}"
        return Finding("file_replaced", manifest.first_seq, manifest.file, detail)
    if found is not None:
        seq, _, kind, detail = found
        return Finding(kind, seq, manifest.file, detail)
    if not sha_ok:
        detail = "file bytes differ from the compacted file (sha256), records check out"
        return Finding("file_replaced", manifest.first_seq, manifest.file, detail)
    return None


def _check_rows(
    task: CompactionTask,
    reader: LakeReader,
    manifest: CompactionManifest,
    parquet: pq.ParquetFile,
    *,
    typed: bool,
) -> Candidate | None:
    """The lowest-seq row damage: leaf hashes, the seq set, the order, typed columns."""
    first, span = manifest.first_seq, manifest.last_seq - manifest.first_seq + 1
    reference = _log_leaves(task, reader, manifest, span)
    found: list[Candidate] = []
    seq_parts, subject_parts = [], []
    columns = None if typed else ["seq", "canonical", "leaf_hash", "subject"]
    for group in range(parquet.num_row_groups):
        part = parquet.read_row_group(group, columns=columns, use_threads=False)
        seqs = part.column("seq").combine_chunks().fill_null(-1).to_numpy()
        seq_parts.append(seqs)
        subject_parts.append(part.column("subject"))
        canonical = part.column("canonical")
        mine = np.frombuffer(record_leaves(canonical), np.uint8)
        mine = mine.reshape(-1, HASH_SIZE)
        stored = np.frombuffer(fixed_width_bytes(part.column("leaf_hash")), np.uint8)
        unhashed = np.any(mine != stored.reshape(-1, HASH_SIZE), axis=1)
        _first_bad(found, seqs, unhashed, "record bytes do not hash to leaf_hash")
        inside = (seqs >= first) & (seqs < first + span)
        at = np.where(inside, seqs - first, 0)
        differs = ~inside | np.any(mine != reference[at], axis=1)
        _first_bad(found, seqs, differs, "record is not the log's record for its seq")
        if typed:
            row, column = typed_difference(part, typed_columns(canonical))
            if row >= 0:
                detail = f"column {column!r} disagrees with the record's canonical bytes"
                found.append((int(seqs[row]), 1, "typed_column_mismatch", detail))
    seqs = np.concatenate(seq_parts) if seq_parts else np.empty(0, np.int64)
    expected = np.concatenate([np.arange(a, b + 1, dtype=np.int64) for a, b in manifest.ranges])
    held = np.sort(seqs)
    if not np.array_equal(held, expected):
        found.append((_first_set_difference(held, expected), 0, "compaction_mismatch",
                      "seqs are not exactly the union of the sources' ranges"))  # fmt: skip
    order = pa.table({"subject": pa.chunked_array(subject_parts, pa.string()), "seq": seqs})
    indices = pc.sort_indices(order, sort_keys=_SORT_KEYS).to_numpy()
    out_of_order = np.flatnonzero(indices != np.arange(len(indices)))
    if len(out_of_order):
        seq = int(seqs[out_of_order[0]])
        found.append((seq, 2, "compaction_mismatch", "rows are not in the signed sort order"))
    return min(found) if found else None


def _first_bad(found: list[Candidate], seqs: np.ndarray, bad: np.ndarray, detail: str) -> None:
    """Add the lowest seq where ``bad`` holds, as a compaction mismatch."""
    if bad.any():
        found.append((int(seqs[bad].min()), 0, "compaction_mismatch", detail))


def _first_set_difference(held: np.ndarray, expected: np.ndarray) -> int:
    """The lowest seq in one sorted array and not the other (or where they start to differ)."""
    n = min(len(held), len(expected))
    diff = np.flatnonzero(held[:n] != expected[:n])
    if len(diff):
        return int(min(held[diff[0]], expected[diff[0]]))
    return int(held[n] if len(held) > n else expected[n])


def _log_leaves(
    task: CompactionTask, reader: LakeReader, manifest: CompactionManifest, span: int
) -> np.ndarray:
    """The log's leaf hashes for seqs first..last, one row per seq.

    From ``tree/leaves.bin``; where it falls short, from the sources' ``leaf_hash`` columns
    (the main pass found those equal to the hashes of their records and to the signed roots).
    """
    first = manifest.first_seq
    raw = reference_leaves(Path(task.log_dir), first, span)
    leaves = np.zeros((span, HASH_SIZE), np.uint8)
    have = len(raw) // HASH_SIZE
    leaves[:have] = np.frombuffer(raw, np.uint8).reshape(-1, HASH_SIZE)
    if have == span:
        return leaves
    verifier = NoteVerifier.from_key(task.vkey)
    for stem, (a, b) in zip(manifest.sources, manifest.ranges, strict=True):
        if b < first + have:
            continue
        try:
            note = reader.read_bytes(f"{MANIFEST_DIR}/{stem}{MANIFEST_SUFFIX}")
            source = reader.read_table(open_manifest(note, verifier))
        except (ManifestError, FileNotFoundError):
            continue  # its leaves stay zero: every record of it is reported as not the log's
        column = source.column("leaf_hash").combine_chunks()
        values = np.frombuffer(column.buffers()[1], np.uint8, len(column) * HASH_SIZE,
                               column.offset * HASH_SIZE)  # fmt: skip
        leaves[a - first : b - first + 1] = values.reshape(-1, HASH_SIZE)
    return leaves
