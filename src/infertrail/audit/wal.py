"""Write-ahead log: framed records (see :mod:`infertrail.audit.framing`) in numbered segment files.

A segment ``<first_seq:020d>.seg`` holds consecutive records starting at ``first_seq``. Only the
tail of the last segment may be torn (a write cut short by a crash), and only where no signed
checkpoint covers it: every acknowledged record was under a signature before its caller heard of
it, so damage to a covered record is tampering. Damage anywhere else is corruption and is
reported, never silently cut; except in WAL copies of records already sealed into the lake,
which are dropped (:func:`drop_damaged_sealed`): once sealed, the lake's copy is the record.

A writer given an ``index_dir`` also appends, after each durable batch, ``u64 first seq | u64
offset`` to ``<index_dir>/<first_seq:020d>.idx``, so that reading one record
(:mod:`infertrail.audit.walread`) seeks to the start of its batch instead of walking the segment
from its first frame. The index is a hint, never synced: readers check the frame it points at.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infertrail.audit.framing import (
    FRAME_HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    LogCorruptedError,
    TornTail,
    crc32,
    cut_tail,
    encode_frame,
    fsync_dir,
    read_frames,
    walk_frames,
    write_all,
)
from infertrail.audit.segments import (
    INDEX_ENTRY,
    SEGMENT_SUFFIX,
    list_segments,
    segment_index_path,
    segment_path,
)
from infertrail.audit.walread import iter_records, record_seq

# Framing, naming and reading live in their own modules; their names stay importable from here.
__all__ = [
    "FRAME_HEADER",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "SEGMENT_SUFFIX",
    "LogCorruptedError",
    "SegmentWriter",
    "TornTail",
    "WalState",
    "cut_refused",
    "drop_damaged_sealed",
    "encode_frame",
    "fsync_dir",
    "iter_records",
    "list_segments",
    "read_frames",
    "scan_wal",
    "segment_index_path",
    "segment_path",
    "write_all",
]


@dataclass(frozen=True, slots=True)
class WalState:
    """What a scan of the WAL found: the seq range it holds and its segments in order."""

    first_seq: int
    next_seq: int
    segments: tuple[tuple[int, Path], ...]
    torn_tail: TornTail | None


def _check_seq(path: Path, buf: bytes, frame: tuple[int, int], expected: int) -> None:
    """Cheap cross-check that a segment's name agrees with the seq stored inside its records."""
    start, length = frame
    try:
        seq = json.loads(buf[start : start + length]).get("seq")
    except (ValueError, AttributeError) as exc:
        raise LogCorruptedError(
            f"{path}: record at offset {start - HEADER_SIZE} (seq {expected}) is not a JSON object"
        ) from exc
    if seq != expected:
        raise LogCorruptedError(
            f"{path}: record at offset {start - HEADER_SIZE} holds seq {seq!r}, but its position "
            f"in the segment makes it seq {expected} (misnamed, reordered or spliced segment)"
        )


def scan_wal(
    wal_dir: Path, *, repair: bool = True, covered: int = 0, covered_by: str = ""
) -> WalState:
    """Validate every frame of every segment; cut a torn tail of the last segment.

    Raises LogCorruptedError naming the segment, offset and seq for damage that is not a torn tail:
    a bad frame in a non-last segment or mid-segment, gaps or overlaps between segments, and a
    damaged tail record below ``covered``, the size a signed checkpoint (``covered_by``) vouches
    for: a crash only tears what was never acknowledged, so that is tampering.
    """
    segments = list_segments(wal_dir)
    torn: TornTail | None = None
    expected_first: int | None = None
    for index, (first_seq, path) in enumerate(segments):
        if expected_first is not None and first_seq != expected_first:
            kind = "gap" if first_seq > expected_first else "overlap"
            raise LogCorruptedError(
                f"{path}: WAL {kind}: the previous segment ends before seq {expected_first}, "
                f"but this one starts at seq {first_seq}"
            )
        buf = path.read_bytes()
        frames, end, error = walk_frames(buf)
        if error is not None:
            bad_seq = first_seq + len(frames)
            if index != len(segments) - 1:
                raise LogCorruptedError(
                    f"{path}: damaged frame at offset {end} (seq {bad_seq}): {error}; "
                    "only the last segment may have a torn tail"
                )
            if bad_seq < covered:
                cut_tail(path, buf, end, error, repair=False)  # damage in place says so first
                raise LogCorruptedError(
                    f"{path}: record seq {bad_seq} at offset {end} is damaged ({error}), yet "
                    f"{covered_by} signs a tree of {covered} records: tampering, not a torn "
                    "tail; refusing to truncate"
                )
            torn = cut_tail(path, buf, end, f"{error} (seq {bad_seq})", repair)
        if frames:
            _check_seq(path, buf, frames[0], first_seq)
            _check_seq(path, buf, frames[-1], first_seq + len(frames) - 1)
        expected_first = first_seq + len(frames)
    if not segments:
        return WalState(0, 0, (), None)
    assert expected_first is not None
    return WalState(segments[0][0], expected_first, tuple(segments), torn)


def cut_refused(
    wal_dir: Path, state: WalState, keep: int, *, index_dir: Path | None = None
) -> tuple[WalState, int]:
    """Cut the WAL back to its first ``keep`` records; return the new state and how many went.

    For a log reopened in the process whose writer failed: it had acknowledged exactly ``keep``
    records. A batch that reached the WAL whole before the failure (an fdatasync or hash store
    error after the write) had its futures failed, so its callers were refused; if cutting it
    back failed too, its complete frames are still here and must not join the log. Later
    segments go first, then the segment holding ``keep`` is truncated: a crash in between
    leaves a contiguous WAL. LogCorruptedError if the WAL holds fewer than ``keep`` records
    (acknowledged records are missing) or ``keep`` lies below its first, retired, record.
    """
    if state.next_seq < keep:
        raise LogCorruptedError(
            f"{wal_dir}: the WAL ends at seq {state.next_seq}, but {keep} records were "
            "acknowledged: acknowledged records are missing"
        )
    if state.next_seq == keep:
        return state, 0
    if keep < state.first_seq:
        raise LogCorruptedError(
            f"{wal_dir}: cannot cut back to seq {keep}: the WAL starts at seq {state.first_seq}"
        )
    kept = [segment for segment in state.segments if segment[0] <= keep]
    dropped = state.segments[len(kept) :]
    for first_seq, path in reversed(dropped):
        path.unlink()
        if index_dir is not None:
            segment_index_path(index_dir, first_seq).unlink(missing_ok=True)
    if dropped:
        fsync_dir(wal_dir)
    first_seq, path = kept[-1]
    buf = path.read_bytes()
    frames, _, _ = walk_frames(buf)  # intact: the scan before this checked every frame
    index = keep - first_seq
    offset = frames[index][0] - HEADER_SIZE if index < len(frames) else len(buf)
    with path.open("r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())
    return WalState(state.first_seq, keep, tuple(kept), state.torn_tail), state.next_seq - keep


def drop_damaged_sealed(
    wal_dir: Path, sealed_through: int, stored_leaves: int, *, index_dir: Path | None = None
) -> list[int]:
    """Drop WAL copies of sealed records when one of them is damaged; the seqs found damaged.

    Records ``<= sealed_through`` are sealed in the lake, whose copy is then the record, so a
    damaged WAL copy of one must not stop the log from opening. A segment holding only sealed
    records, followed by another, is deleted; one that also holds unsealed records (or is the
    last) has them rewritten into a new segment starting at ``sealed_through + 1``, then goes.
    Only done where ``stored_leaves`` (the hash store's size) keeps the dropped records' leaf
    hashes; segments without damage in their sealed records are left for the sealer to retire.
    """
    if sealed_through < 0 or stored_leaves <= sealed_through:
        return []
    damaged: list[int] = []
    segments = list_segments(wal_dir)
    for index, (first_seq, path) in enumerate(segments):
        if first_seq > sealed_through:
            break
        buf = path.read_bytes()
        bad, offset = _walk_sealed(buf, first_seq, sealed_through)
        if not bad:
            continue
        next_first = segments[index + 1][0] if index + 1 < len(segments) else None
        if next_first is not None and next_first <= sealed_through + 1:
            pass  # every record in it is sealed: nothing to keep
        elif offset is None:
            continue  # the unsealed records cannot be found past the damage: scan_wal reports it
        else:
            _write_segment(wal_dir, sealed_through + 1, buf[offset:])
        path.unlink()
        if index_dir is not None:
            segment_index_path(index_dir, first_seq).unlink(missing_ok=True)
        fsync_dir(wal_dir)
        damaged += bad
    return damaged


def _walk_sealed(buf: bytes, first_seq: int, sealed_through: int) -> tuple[list[int], int | None]:
    """Damaged seqs among a segment's sealed records, and the offset of seq ``sealed_through + 1``.

    Past a damaged frame the walk goes on at the next intact frame that carries a later seq (its
    own length field may be what was damaged); None as the offset if none is found.
    """
    damaged: list[int] = []
    seq, offset = first_seq, 0
    while seq <= sealed_through and offset < len(buf):
        length = _intact_length(buf, offset)
        if length is not None:
            seq, offset = seq + 1, offset + HEADER_SIZE + length
            continue
        found = _next_intact(buf, offset + 1, seq)
        if found is None:
            return damaged + list(range(seq, sealed_through + 1)), None
        next_seq, next_offset = found
        damaged += range(seq, min(next_seq, sealed_through + 1))
        seq, offset = next_seq, next_offset
    # Ending before seq sealed_through + 1 is for a following segment to explain, not this one.
    return damaged, offset if seq == sealed_through + 1 else None


def _intact_length(buf: bytes, offset: int) -> int | None:
    """Payload length of the intact frame at ``offset`` (its CRC checked), else None."""
    if len(buf) - offset < HEADER_SIZE:
        return None
    length, crc = FRAME_HEADER.unpack_from(buf, offset)
    start = offset + HEADER_SIZE
    if not 0 < length <= min(MAX_PAYLOAD, len(buf) - start):
        return None
    return int(length) if crc32(memoryview(buf)[start : start + length]) == crc else None


def _next_intact(buf: bytes, offset: int, after: int) -> tuple[int, int] | None:
    """(seq, offset) of the first intact frame from ``offset`` whose record carries a seq >
    ``after``; None if there is none."""
    for at in range(offset, len(buf) - HEADER_SIZE):
        length = _intact_length(buf, at)
        if length is None:
            continue
        seq = record_seq(buf[at + HEADER_SIZE : at + HEADER_SIZE + length])
        if seq is not None and seq > after:
            return seq, at
    return None


def _write_segment(wal_dir: Path, first_seq: int, frames: bytes) -> None:
    """Create the segment starting at ``first_seq`` holding ``frames``, durably (temp + rename)."""
    path = segment_path(wal_dir, first_seq)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, frames)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(wal_dir)


def _load_start_writeback() -> Callable[[int, int, int], None] | None:
    """Linux's ``sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)``: start writing a range
    out without waiting for it (the fdatasync that follows still waits, and reports errors).

    The standard library does not expose it; None where libc lacks it (another platform).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # a hint: its result is not needed

    return start_writeback


_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
_start_writeback = _load_start_writeback()


def _valid_entries(data: bytes, next_seq: int, size: int) -> int:
    """How many leading index entries still point inside the segment, in rising seq order.

    After a torn tail was cut, entries past the new end point at nothing (or, once new batches
    are written, at other records): they must go before new entries are appended.
    """
    valid, last_seq = 0, -1
    for seq, offset in INDEX_ENTRY.iter_unpack(data[: len(data) - len(data) % INDEX_ENTRY.size]):
        if not last_seq < seq < next_seq or offset >= size:
            break
        last_seq = seq
        valid += 1
    return valid


class SegmentWriter:
    """Appends framed batches to the active segment with one write and one fdatasync per batch.

    Rolls to a new segment (named by its first seq) before a batch that would push the active one
    past ``segment_bytes``. One writer thread owns ``write``; ``retire_through`` may be called from
    other threads. With ``index_dir``, each batch's first seq and offset go to the segment's index.
    """

    def __init__(
        self,
        wal_dir: Path,
        state: WalState,
        *,
        segment_bytes: int,
        fsync: bool,
        index_dir: Path | None = None,
    ) -> None:
        if segment_bytes < HEADER_SIZE + 1:
            raise ValueError(f"segment_bytes must be > {HEADER_SIZE}, got {segment_bytes}")
        self._dir = wal_dir
        self._index_dir = index_dir
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._segments: list[tuple[int, Path]] = list(state.segments)
        self._next_seq = state.next_seq
        self._last_batch: tuple[int, int] | None = None  # (first seq, offset) of the newest
        self._index_fd = -1
        if index_dir is not None:
            index_dir.mkdir(exist_ok=True)
        if self._segments:
            first_seq, path = self._segments[-1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
            self._index_fd = self._open_index(first_seq, keep=True)
        else:
            self._fd = self._create(state.next_seq)
            self._size = 0

    @property
    def first_seq(self) -> int:
        """Seq of the oldest record still in the WAL (rises when segments are retired)."""
        with self._lock:
            return self._segments[0][0]

    def _create(self, first_seq: int) -> int:
        path = segment_path(self._dir, first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        # The new name must be durable before any record in it is acknowledged.
        fsync_dir(self._dir)
        self._segments.append((first_seq, path))
        self._index_fd = self._open_index(first_seq, keep=False)
        return fd

    def _open_index(self, first_seq: int, *, keep: bool) -> int:
        """Open the index of the active segment, keeping only entries that still hold."""
        if self._index_dir is None:
            return -1
        path = segment_index_path(self._index_dir, first_seq)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return -1
        try:
            valid = 0
            if keep:
                data = os.pread(fd, os.fstat(fd).st_size, 0)
                valid = _valid_entries(data, self._next_seq, self._size)
            os.ftruncate(fd, valid * INDEX_ENTRY.size)
            os.lseek(fd, 0, os.SEEK_END)
        except OSError:
            os.close(fd)
            return -1
        return fd

    def write(
        self,
        first_seq: int,
        count: int,
        frames: bytes,
        *,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        """Append ``count`` framed records starting at ``first_seq`` and make them durable.

        ``meanwhile()`` runs once the frames are written and the disk has started writing them
        out, before the fdatasync waits for that: CPU work there overlaps the device's (the
        ledger signs the batch's checkpoint). On an I/O error, or if ``meanwhile`` raises, the
        partial batch is cut off (best effort) and the error is raised.
        """
        if first_seq != self._next_seq:
            raise ValueError(f"batch starts at seq {first_seq}, expected {self._next_seq}")
        with self._lock:
            if self._size > 0 and self._size + len(frames) > self._segment_bytes:
                os.close(self._fd)
                self._fd = -1
                self._close_index()
                self._fd = self._create(first_seq)
                self._size = 0
            try:
                write_all(self._fd, frames)
                if meanwhile is not None:
                    if self._fsync and _start_writeback is not None:
                        _start_writeback(self._fd, self._size, len(frames))
                    meanwhile()
                if self._fsync:
                    os.fdatasync(self._fd)
            except BaseException:
                self._cut_back()
                raise
            self._index(first_seq, self._size)
            self._last_batch = (first_seq, self._size)
            self._size += len(frames)
            self._next_seq = first_seq + count

    def discard_last_batch(self, first_seq: int) -> None:
        """Cut off the newest batch, which starts at ``first_seq``: its records were refused.

        Best effort, for a writer failing after the batch was durable (its hash store append
        failed): an I/O error here is swallowed, and reopening the log cuts the batch instead
        (:func:`cut_refused`).
        """
        with self._lock:
            if self._last_batch is None or self._last_batch[0] != first_seq or self._fd < 0:
                raise ValueError(f"seq {first_seq} does not start the newest batch")
            offset = self._last_batch[1]
            try:
                os.ftruncate(self._fd, offset)
                if self._fsync:
                    os.fdatasync(self._fd)
            except OSError:
                return
            self._size = offset
            self._next_seq = first_seq
            self._last_batch = None

    def _index(self, first_seq: int, offset: int) -> None:
        # Only a hint: an error or short write stops indexing this segment, readers then walk.
        if self._index_fd < 0:
            return
        try:
            if os.write(self._index_fd, INDEX_ENTRY.pack(first_seq, offset)) == INDEX_ENTRY.size:
                return
        except OSError:
            pass
        self._close_index()

    def _close_index(self) -> None:
        if self._index_fd >= 0:
            os.close(self._index_fd)
            self._index_fd = -1

    def _cut_back(self) -> None:
        # Leave no unacknowledged bytes behind if the disk lets us; recovery handles the rest.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)

    def retire_through(self, seq: int) -> list[Path]:
        """Delete segments all of whose records are <= ``seq``; never the active segment."""
        removed: list[Path] = []
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] - 1 <= seq:
                first_seq, path = self._segments.pop(0)
                path.unlink()
                removed.append(path)
                if self._index_dir is not None:
                    segment_index_path(self._index_dir, first_seq).unlink(missing_ok=True)
            if removed:
                fsync_dir(self._dir)
        return removed

    def close(self) -> None:
        """Close the active segment (its data was already synced batch by batch)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._close_index()
