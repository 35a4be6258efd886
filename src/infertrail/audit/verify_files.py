"""Checks of one lake file or one WAL segment, on their own: the per-file half of verification.

Each check runs in a worker process (or inline) and returns a :class:`FileResult`: the seqs its
records claim (or just "dense"), the first damage inside it, and, for a clean file, the roots of
the aligned subtrees its leaves form at every signed tree size that falls inside it, so that
the main process joins files without touching single leaves.

A lake file whose bytes match the sha256 in its signed manifest is the file the sealer wrote,
typed columns included; re-deriving those columns from the record bytes (a JSON parse per
record, the slowest step) is then only done with ``deep``. A file that changed is always
checked column by column, to tell a typed-column edit from a record edit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.framing import FRAME_HEADER, HEADER_SIZE, MAX_PAYLOAD, crc32
from infertrail.audit.lake import ORIGIN_METADATA_KEY, LakeReader
from infertrail.audit.manifest import MANIFEST_DIR, ManifestError, open_manifest
from infertrail.audit.merkle import HASH_SIZE
from infertrail.audit.subtrees import RangeTree, leaf_hashes, leaf_hashes_arrow
from infertrail.audit.typed import FILE_SCHEMA, TYPED_SCHEMA, typed_columns
from infertrail.audit.walread import record_seq

__all__ = [
    "DamageKind",
    "FileResult",
    "FileTask",
    "Finding",
    "ForeignFileError",
    "check_file",
    "fixed_width_bytes",
    "open_lake_file",
    "record_leaves",
    "reference_leaves",
    "typed_difference",
]

DamageKind = Literal[
    "modified", "typed_column_mismatch", "missing", "reordered", "inserted", "truncated",
    "file_missing", "file_replaced", "manifest_mismatch", "bad_signature", "rollback",
    "wal_corrupt", "compaction_mismatch",
    "fork",  # the log contradicts a checkpoint kept outside it (audit/verifier_state.py)
    "timestamp_mismatch", "timestamp_untrusted", "timestamp_order",  # audit/timestamps.py
    "fork",  # the log contradicts a checkpoint kept outside it (audit/verifier_state.py)
]  # fmt: skip
Blocks = list[tuple[bytes, int]]  # (root, width) of aligned subtrees, left to right


@dataclass(frozen=True)
class Finding:
    """The first damage found: its kind, the first bad seq and/or file, and what was seen."""

    kind: DamageKind
    seq: int | None
    file: str | None
    detail: str
    entry: int | None = None  # index of the checkpoint in checkpoints/history.log, if one


@dataclass(frozen=True)
class FileTask:
    """One unit of work for a worker: a lake file (by manifest name) or a WAL segment."""

    kind: Literal["lake", "wal"]
    name: str  # manifest name, or the segment path relative to log_dir
    first: int  # seq of its first record by name
    last: int  # lake: last seq by name; wal: -1
    skip_below: int  # wal: records below this seq are sealed already and skipped
    is_last: bool
    log_dir: str
    lake_url: str
    origin: str
    vkey: str
    check_sizes: tuple[int, ...]  # signed tree sizes (sorted): subtree roots are kept for them
    deep: bool  # re-derive typed columns of lake files whose sha256 matches too
    leaf_seqs: tuple[int, ...] = ()  # seqs whose recomputed leaf hash the caller wants (receipts)


@dataclass
class FileResult:
    """What one check found: claimed seqs, the first damage, subtree roots for the tree."""

    task: FileTask
    start: int  # seq position of the first returned record
    count: int = 0  # records returned
    seqs: list[int] | None = None  # seq each record claims, in stored order; None: dense
    finding: Finding | None = None
    row: int = -1  # row of ``finding`` (-1: not tied to a row)
    root: bytes | None = None  # lake: the manifest's signed root after this file
    file: str | None = None
    sha_ok: bool = True
    torn: tuple[int, str, bool] | None = None  # wal tail: row, reason, was a complete frame
    vanished: bool = False
    blocks: dict[int, Blocks] = field(default_factory=dict)  # end -> subtrees of [start, end)
    leaves_at: dict[int, bytes] = field(default_factory=dict)  # of task.leaf_seqs: seq -> leaf

    def claimed(self) -> list[int]:
        """The seq each record claims (dense results expanded)."""
        return list(range(self.start, self.start + self.count)) if self.seqs is None else self.seqs


def check_file(task: FileTask) -> FileResult:
    """Check one lake file or WAL segment on its own (runs in a worker process)."""
    result, leaves = _check_lake_file(task) if task.kind == "lake" else _check_segment(task)
    if result.finding is None and leaves:
        _keep_blocks(result, leaves)
    for seq in task.leaf_seqs:
        at = (seq - result.start) * HASH_SIZE
        if 0 <= at < len(leaves):
            result.leaves_at[seq] = leaves[at : at + HASH_SIZE]
    return result


def _keep_blocks(result: FileResult, leaves: bytes) -> None:
    """Hash the file's subtrees; keep those the join needs (its end, signed sizes inside)."""
    tree = RangeTree(result.start, leaves)
    end = result.start + result.count
    for size in (*result.task.check_sizes, end):
        if result.start < size <= end:
            result.blocks[size] = tree.blocks(size)


def _check_lake_file(task: FileTask) -> tuple[FileResult, bytes]:
    reader = LakeReader(task.lake_url)
    result = FileResult(task, task.first)
    note_path = f"{MANIFEST_DIR}/{task.name}"

    def fail(kind: DamageKind, detail: str, file: str = note_path) -> tuple[FileResult, bytes]:
        result.finding = Finding(kind, task.first, file, detail)
        result.row = 0
        return result, b""

    try:
        manifest = open_manifest(reader.read_bytes(note_path), NoteVerifier.from_key(task.vkey))
    except (ManifestError, FileNotFoundError) as exc:
        return fail("manifest_mismatch", str(exc))
    if manifest.name != task.name or manifest.origin != task.origin:
        return fail(
            "manifest_mismatch", f"manifest describes {manifest.name} of {manifest.origin!r}"
        )
    result.root, result.file = manifest.root, manifest.file
    try:
        data, parquet = open_lake_file(reader, manifest.file, task.origin)
    except FileNotFoundError:
        return fail("file_missing", "the manifest's file is gone", manifest.file)
    except ForeignFileError as exc:
        return fail("file_replaced", str(exc), manifest.file)
    result.sha_ok = hashlib.sha256(data).hexdigest() == manifest.sha256
    try:
        scan = _scan_records(parquet, typed=task.deep or not result.sha_ok)
    except (pa.ArrowException, OSError) as exc:
        return fail("file_replaced", f"not a readable Parquet file: {exc}", manifest.file)
    leaves = b"".join(scan.leaves)
    result.count = len(leaves) // HASH_SIZE
    result.seqs = _seqs_unless_dense(pa.chunked_array(scan.seqs, pa.int64()), task.first)
    rows: list[tuple[int, int, DamageKind, str, str]] = []  # row, priority, kind, file, detail
    bad = _first_difference(leaves, scan.stored_leaves)
    if bad >= 0:
        rows.append((bad, 0, "modified", manifest.file, "record bytes do not hash to leaf_hash"))
    reference = reference_leaves(Path(task.log_dir), task.first, result.count)
    bad_ref = _first_difference(leaves[: len(reference)], reference)
    if bad_ref >= 0:
        if not result.sha_ok and bad_ref == 0 and _all_differ(leaves, reference):
            return fail("file_replaced", "no record matches the log's leaf hashes", manifest.file)
        where = manifest.file if not result.sha_ok else "tree/leaves.bin"
        rows.append((bad_ref, 0, "modified", where, "leaf hash differs from tree/leaves.bin"))
    if scan.typed_row >= 0:
        detail = f"column {scan.typed_column!r} disagrees with the record's canonical bytes"
        rows.append((scan.typed_row, 1, "typed_column_mismatch", manifest.file, detail))
    if rows:
        row, _, kind, file, detail = min(rows)
        result.finding = Finding(kind, task.first + row, file, detail)
        result.row = row
    return result, leaves


class ForeignFileError(ValueError):
    """A lake file that is not a readable Parquet file of this log's schema and origin."""


def open_lake_file(
    reader: LakeReader, relative: str, origin: str
) -> tuple[bytes | pa.Buffer, pq.ParquetFile]:
    """A lake file's bytes (memory-mapped on local disk: no copy) and its Parquet reader.

    FileNotFoundError if it is gone; ForeignFileError, naming what it is, unless it is a
    readable Parquet file with the lake's schema written for ``origin``.
    """
    if isinstance(reader.fs, LocalFileSystem):
        with pa.memory_map(reader.path(relative)) as mapped:
            data: bytes | pa.Buffer = mapped.read_buffer()  # the mapping outlives the file
    else:
        data = reader.read_bytes(relative)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise ForeignFileError(f"not a readable Parquet file: {exc}") from exc
    file_origin = (schema.metadata or {}).get(ORIGIN_METADATA_KEY, b"")
    if file_origin != origin.encode() or not schema.remove_metadata().equals(FILE_SCHEMA):
        raise ForeignFileError(
            f"file of log {file_origin.decode(errors='replace')!r} / another schema, "
            f"not of {origin!r}"
        )
    return data, parquet


@dataclass
class _Scan:
    """What a pass over a lake file's record batches collected."""

    leaves: list[bytes] = field(default_factory=list)  # recomputed, back to back, per batch
    rows: int = 0  # records scanned
    seqs: list[pa.Array] = field(default_factory=list)  # the stored seq column, per batch
    stored_leaves: bytes = b""  # the stored leaf_hash column, concatenated
    typed_row: int = -1  # first row whose typed columns disagree with its bytes (-1: none)
    typed_column: str = ""


# Records decoded at a time (~1.3 MB of credit records): hashed while still in the CPU cache. A
# whole 8K-row group (~10 MB) was 13-26% slower to verify.
_BATCH_ROWS = 1024
_TYPED_BATCH_ROWS = 8192  # with typed columns re-derived: one DuckDB query per batch


def _scan_records(parquet: pq.ParquetFile, *, typed: bool) -> _Scan:
    """Hash the records of a lake file one batch at a time (memory stays one batch).

    With ``typed``, also re-derive every batch's typed columns and find the first mismatch.
    """
    scan = _Scan()
    stored: list[bytes] = []
    columns = None if typed else ["seq", "canonical", "leaf_hash"]
    size = _TYPED_BATCH_ROWS if typed else _BATCH_ROWS
    for part in parquet.iter_batches(size, columns=columns, use_threads=False):
        canonical = part.column("canonical")
        if typed and scan.typed_row < 0:
            row, column = typed_difference(part, typed_columns(canonical))
            if row >= 0:
                scan.typed_row, scan.typed_column = scan.rows + row, column
        scan.leaves.append(record_leaves(canonical))
        scan.rows += len(canonical)
        scan.seqs.append(part.column("seq"))
        stored.append(fixed_width_bytes(part.column("leaf_hash")))
    scan.stored_leaves = b"".join(stored)
    return scan


def record_leaves(column: pa.Array | pa.ChunkedArray) -> bytes:
    """Leaf hashes of a ``canonical`` column (back to back), hashed in place from its buffers."""
    leaves: list[bytes] = []
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        wide = pa.types.is_large_binary(chunk.type)
        if chunk.null_count or not (wide or pa.types.is_binary(chunk.type)):
            leaves += leaf_hashes(chunk.to_pylist())  # damaged: fails as it did, naming a row
            continue
        _, offsets, data = chunk.buffers()
        data = b"" if data is None else data  # every value empty
        leaves.append(leaf_hashes_arrow(offsets, data, chunk.offset, len(chunk), 8 if wide else 4))
    return b"".join(leaves)  # one chunk: CPython returns it as is, no copy


def _check_segment(task: FileTask) -> tuple[FileResult, bytes]:
    path = Path(task.log_dir) / task.name
    result = FileResult(task, task.first)
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        result.vanished = True  # retired by the ledger after sealing, since we listed it
        return result, b""
    skip = max(0, task.skip_below - task.first)
    payloads, stop, reason, follows = _walk(buf, skip)
    result.start = task.first + skip
    if reason is not None:
        row = len(payloads) - skip
        if row < 0:  # never a torn tail: sealed records were acknowledged long ago
            detail = (
                f"the WAL copy of sealed record {task.first + len(payloads)} is damaged "
                f"({reason} at offset {stop} of {task.name}); the lake's copy is the record, "
                "and the log drops this copy when it next opens"
            )
            result.finding = Finding("wal_corrupt", task.first + len(payloads), task.name, detail)
            result.row = row
        elif follows or not task.is_last:
            detail = f"{reason} at offset {stop} of {task.name}"
            result.finding = Finding("wal_corrupt", task.first + len(payloads), task.name, detail)
            result.row = row
        else:
            result.torn = (row, f"{reason} at offset {stop}", reason == "CRC mismatch")
    payloads = payloads[skip:]
    if not payloads:
        return result, b""
    leaves = b"".join(leaf_hashes(payloads))
    result.count = len(payloads)
    # An unparsable record claims nothing: keep its position so the leaf check names it.
    claimed = [_claimed_seq(p, result.start + i) for i, p in enumerate(payloads)]
    dense = claimed == list(range(result.start, result.start + len(claimed)))
    result.seqs = None if dense else claimed
    reference = reference_leaves(Path(task.log_dir), result.start, result.count)
    bad = _first_difference(leaves[: len(reference)], reference)
    if bad >= 0 and (result.finding is None or bad < result.row):
        detail = f"record bytes do not hash to the leaf in tree/leaves.bin ({task.name})"
        result.finding = Finding("modified", result.start + bad, task.name, detail)
        result.row = bad
    return result, leaves


def _claimed_seq(payload: bytes, position: int) -> int:
    """The integer ``seq`` a WAL record carries, or its position if it carries none."""
    seq = record_seq(payload)
    return position if seq is None else seq


def _seqs_unless_dense(seqs: pa.Array | pa.ChunkedArray, start: int) -> list[int] | None:
    """None if ``seqs`` is start, start+1, ... (the common case, cheap to ship); else the list."""
    if isinstance(seqs, pa.ChunkedArray):
        seqs = seqs.combine_chunks()
    if seqs.null_count == 0 and seqs.type == pa.int64():
        # Straight from the buffer: pyarrow's to_numpy would import pandas (a second per worker).
        values = np.frombuffer(seqs.buffers()[1], np.int64, len(seqs), seqs.offset * 8)
        if np.array_equal(values, np.arange(start, start + len(values))):
            return None
    return [start + i if s is None else s for i, s in enumerate(seqs.to_pylist())]


def _walk(buf: bytes, skip: int) -> tuple[list[bytes], int, str | None, bool]:
    """Frames of a WAL segment: payloads, where they stop, why, and if an intact frame follows.

    The first ``skip`` frames are already sealed: their payloads are not needed and come back
    empty, but their framing and CRCs are checked (a damaged copy of a sealed record is damage
    too, though the lake holds the record).
    """
    unpack, size = FRAME_HEADER.unpack_from, len(buf)
    view = memoryview(buf)
    offset = count = 0
    while count < skip and size - offset >= HEADER_SIZE:  # sealed: no payload copies
        length, crc = unpack(buf, offset)
        end = offset + HEADER_SIZE + length
        if end > size or length == 0 or length > MAX_PAYLOAD:
            break
        if crc32(view[offset + HEADER_SIZE : end]) != crc:
            break
        offset, count = end, count + 1
    payloads = [b""] * count
    while offset < size:
        if size - offset >= HEADER_SIZE and len(payloads) >= skip:
            length, crc = unpack(buf, offset)
            start = offset + HEADER_SIZE
            if 0 < length <= MAX_PAYLOAD and start + length <= size:
                payload = buf[start : start + length]
                if crc32(payload) == crc:
                    payloads.append(payload)
                    offset = start + length
                    continue
        reason = _frame_error(buf, offset)  # says what is wrong
        follows = any(_frame_error(buf, o) is None for o in range(offset + 1, size - HEADER_SIZE))
        return payloads, offset, reason, follows
    return payloads, offset, None, False


def _frame_error(buf: bytes, offset: int) -> str | None:
    if len(buf) - offset < HEADER_SIZE:
        return "partial frame header"
    length, crc = FRAME_HEADER.unpack_from(buf, offset)
    if not 0 < length <= MAX_PAYLOAD:
        return f"bad frame length {length}"
    if offset + HEADER_SIZE + length > len(buf):
        return "frame runs past the end of the file"
    start = offset + HEADER_SIZE
    if crc32(memoryview(buf)[start : start + length]) != crc:
        return "CRC mismatch"
    return None


def reference_leaves(log_dir: Path, begin: int, count: int) -> bytes:
    """Leaf hashes [begin, begin+count) from tree/leaves.bin, as far as it has them (joined)."""
    try:
        fd = os.open(log_dir / "tree/leaves.bin", os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        data = os.pread(fd, count * HASH_SIZE, begin * HASH_SIZE)
    finally:
        os.close(fd)
    return data[: len(data) - len(data) % HASH_SIZE]


def fixed_width_bytes(column: pa.Array | pa.ChunkedArray) -> bytes:
    """The values of a fixed_size_binary column, concatenated (nulls as zero bytes)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        return b"".join(array.fill_null(b"\x00" * HASH_SIZE).to_pylist())
    width: int = array.type.byte_width
    return bytes(array.buffers()[1].slice(array.offset * width, len(array) * width))


def _first_difference(a: bytes, b: bytes) -> int:
    """Index of the first 32-byte hash where ``a`` and the same-length prefix of ``b`` differ."""
    if a == b[: len(a)]:
        return -1
    return next(
        i // HASH_SIZE
        for i in range(0, len(a), HASH_SIZE)
        if a[i : i + HASH_SIZE] != b[i : i + HASH_SIZE]
    )


def _all_differ(a: bytes, b: bytes) -> bool:
    return all(
        a[i : i + HASH_SIZE] != b[i : i + HASH_SIZE]
        for i in range(0, min(len(a), len(b)), HASH_SIZE)
    )


def typed_difference(table: pa.Table, derived: pa.Table) -> tuple[int, str]:
    """First row where a stored typed column (or seq) differs from the derived one, and which."""
    first, which = -1, ""
    for name in ["seq", *TYPED_SCHEMA.names]:
        stored, fresh = table.column(name), derived.column(name)
        same = pc.or_kleene(
            pc.fill_null(pc.equal(stored, fresh), False),
            pc.and_(pc.is_null(stored), pc.is_null(fresh)),
        )
        index = pc.index(same, False).as_py()
        if index >= 0 and (first < 0 or index < first):
            first, which = index, name
    return first, which
