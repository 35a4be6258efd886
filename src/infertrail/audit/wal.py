"""Write-ahead log: framed records (see :mod:`infertrail.audit.framing`) in numbered segment files.

A segment ``<first_seq:020d>.seg`` holds consecutive records starting at ``first_seq``. Only the
tail of the last segment may be torn (a write cut short by a crash); damage anywhere else is
corruption and is reported, never silently cut.

A writer given an ``index_dir`` also appends, after each durable batch, ``u64 first seq | u64
offset`` to ``<index_dir>/<first_seq:020d>.idx``, so that reading one record seeks to the start of
its batch instead of walking the segment from its first frame. The index is a hint, never synced:
readers check the frame it points at and walk from the segment start if it is wrong or missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import threading
from collections.abc import Iterator
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

__all__ = [
    "FRAME_HEADER",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "LogCorruptedError",
    "SegmentWriter",
    "TornTail",
    "WalState",
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

SEGMENT_SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"
_INDEX_ENTRY = struct.Struct("<QQ")  # first seq of a batch, byte offset of its first frame
_READ_CHUNK = 1 << 20  # bytes read per pread while walking a segment
_SEGMENT_RE = re.compile(r"(\d{20})\.seg")


@dataclass(frozen=True, slots=True)
class WalState:
    """What a scan of the WAL found: the seq range it holds and its segments in order."""

    first_seq: int
    next_seq: int
    segments: tuple[tuple[int, Path], ...]
    torn_tail: TornTail | None


def segment_path(wal_dir: Path, first_seq: int) -> Path:
    """Path of the segment whose first record is ``first_seq``."""
    return wal_dir / f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    """Segments in ``wal_dir`` as ``(first_seq, path)``, sorted by first seq."""
    found: list[tuple[int, Path]] = []
    for path in wal_dir.iterdir():
        if path.suffix != SEGMENT_SUFFIX:
            continue
        if not _SEGMENT_RE.fullmatch(path.name):
            raise LogCorruptedError(
                f"{path}: WAL segment name must be 20 decimal digits + '.seg' (the first seq)"
            )
        found.append((int(path.name[:20]), path))
    found.sort()
    return found


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


def _carries_seq(payload: bytes, seq: int) -> bool:
    try:
        return bool(json.loads(payload).get("seq") == seq)
    except (ValueError, AttributeError):
        return False


def scan_wal(wal_dir: Path, *, repair: bool = True) -> WalState:
    """Validate every frame of every segment; cut a torn tail of the last segment.

    Raises LogCorruptedError naming the segment, offset and seq for damage that is not a torn tail:
    a bad frame in a non-last segment or mid-segment, gaps or overlaps between segments.
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
            torn = cut_tail(path, buf, end, f"{error} (seq {bad_seq})", repair)
        if frames:
            _check_seq(path, buf, frames[0], first_seq)
            _check_seq(path, buf, frames[-1], first_seq + len(frames) - 1)
        expected_first = first_seq + len(frames)
    if not segments:
        return WalState(0, 0, (), None)
    assert expected_first is not None
    return WalState(segments[0][0], expected_first, tuple(segments), torn)


def segment_index_path(index_dir: Path, first_seq: int) -> Path:
    """Path of the batch index of the segment whose first record is ``first_seq``."""
    return index_dir / f"{first_seq:020d}{INDEX_SUFFIX}"


def iter_records(
    wal_dir: Path,
    start_seq: int = 0,
    end_seq: int | None = None,
    *,
    index_dir: Path | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(seq, payload)`` for ``start_seq <= seq < end_seq`` in order, checking each CRC.

    ``end_seq=None`` reads to the end of the last segment (run :func:`scan_wal` first to cut a
    torn tail). With the writer's ``index_dir``, a read starts at the batch holding ``start_seq``.
    Raises LogCorruptedError on a damaged or missing frame inside the range and LookupError if
    the range starts below the oldest segment.
    """
    if start_seq < 0 or (end_seq is not None and end_seq < start_seq):
        raise ValueError(f"bad seq range [{start_seq}, {end_seq})")
    if end_seq == start_seq:
        return
    segments = list_segments(wal_dir)
    if not segments or start_seq < segments[0][0]:
        oldest = segments[0][0] if segments else None
        raise LookupError(f"seq {start_seq} is not in the WAL at {wal_dir} (oldest seq: {oldest})")
    for index, (first_seq, path) in enumerate(segments):
        next_first = segments[index + 1][0] if index + 1 < len(segments) else None
        if next_first is not None and next_first <= start_seq:
            continue
        if end_seq is not None and first_seq >= end_seq:
            return
        stop = end_seq if next_first is None else min(next_first, end_seq or next_first)
        hint = None if index_dir is None else segment_index_path(index_dir, first_seq)
        yield from _read_segment(path, first_seq, start_seq, stop, hint)


class _Chunks:
    """A window of a file's bytes, read with pread in large chunks as a walk moves forward."""

    __slots__ = ("base", "buf", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""  # the file's bytes [base, base + len(buf))
        self.base = 0

    def need(self, offset: int, count: int) -> int:
        """Make ``count`` bytes from ``offset`` available if the file has them; their index."""
        at = offset - self.base
        if at < 0 or at + count > len(self.buf):
            # Re-read from `offset` (at most one frame twice) rather than join the old tail on.
            self.buf = os.pread(self.fd, max(_READ_CHUNK, count), offset)
            self.base = offset
            at = 0
        return at


def _read_segment(
    path: Path, first_seq: int, start_seq: int, stop: int | None, index_path: Path | None
) -> Iterator[tuple[int, bytes]]:
    """Records ``start_seq <= seq < stop`` of one segment; ``stop=None`` reads to its end."""
    # An open handle keeps reading a segment even if retire_through unlinks it meanwhile.
    with path.open("rb", buffering=0) as f:
        chunks = _Chunks(f.fileno())
        seq, offset = first_seq, 0
        if index_path is not None and start_seq > first_seq:
            seq, offset = _batch_start(chunks, index_path, first_seq, start_seq)
        unpack = FRAME_HEADER.unpack_from
        end_seq = -1 if stop is None else stop
        while seq != end_seq:
            at = chunks.need(offset, HEADER_SIZE)
            buf = chunks.buf
            if len(buf) - at < HEADER_SIZE:
                if stop is None and len(buf) == at:
                    return
                raise LogCorruptedError(f"{path}: seq {seq} missing at offset {offset}")
            length, crc = unpack(buf, at)
            if not 0 < length <= MAX_PAYLOAD:  # a damaged header: do not try to read it all
                raise LogCorruptedError(f"{path}: damaged frame at offset {offset} (seq {seq})")
            if seq >= start_seq:
                at = chunks.need(offset, HEADER_SIZE + length)
                buf = chunks.buf
                payload = buf[at + HEADER_SIZE : at + HEADER_SIZE + length]
                if len(payload) != length or crc32(payload) != crc:
                    raise LogCorruptedError(f"{path}: damaged frame at offset {offset} (seq {seq})")
                yield seq, payload
                at += HEADER_SIZE + length
                seq += 1
                # Then every whole frame already in the window, without the checks above: the
                # per-record cost of a bulk read (the sealer's) is this loop.
                while seq != end_seq and at + HEADER_SIZE <= len(buf):
                    length, crc = unpack(buf, at)
                    payload = buf[at + HEADER_SIZE : at + HEADER_SIZE + length]
                    if len(payload) != length:
                        break
                    if length == 0 or crc32(payload) != crc:
                        where = f"offset {chunks.base + at} (seq {seq})"
                        raise LogCorruptedError(f"{path}: damaged frame at {where}")
                    yield seq, payload
                    at += HEADER_SIZE + length
                    seq += 1
                offset = chunks.base + at
            else:
                seq += 1
                offset += HEADER_SIZE + length


def _batch_start(
    chunks: _Chunks, index_path: Path, first_seq: int, start_seq: int
) -> tuple[int, int]:
    """(seq, offset) of the last indexed batch start at or before ``start_seq``, once checked.

    Falls back to the segment's first frame when the index is missing, or when the frame it
    points at is not an intact record carrying that seq (a stale or damaged hint).
    """
    try:
        entries = index_path.read_bytes()
    except OSError:
        return first_seq, 0
    size = _INDEX_ENTRY.size
    lo, hi = 0, len(entries) // size
    while lo < hi:  # the last entry whose seq <= start_seq
        mid = (lo + hi) // 2
        if _INDEX_ENTRY.unpack_from(entries, mid * size)[0] <= start_seq:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return first_seq, 0
    seq, offset = _INDEX_ENTRY.unpack_from(entries, (lo - 1) * size)
    at = chunks.need(offset, HEADER_SIZE)
    if len(chunks.buf) - at >= HEADER_SIZE:
        length, crc = FRAME_HEADER.unpack_from(chunks.buf, at)
        at = chunks.need(offset, HEADER_SIZE + length)
        payload = chunks.buf[at + HEADER_SIZE : at + HEADER_SIZE + length]
        if 0 < length == len(payload) and crc32(payload) == crc and _carries_seq(payload, seq):
            return seq, offset
    return first_seq, 0


def _valid_entries(data: bytes, next_seq: int, size: int) -> int:
    """How many leading index entries still point inside the segment, in rising seq order.

    After a torn tail was cut, entries past the new end point at nothing (or, once new batches
    are written, at other records): they must go before new entries are appended.
    """
    valid, last_seq = 0, -1
    for seq, offset in _INDEX_ENTRY.iter_unpack(data[: len(data) - len(data) % _INDEX_ENTRY.size]):
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
            os.ftruncate(fd, valid * _INDEX_ENTRY.size)
            os.lseek(fd, 0, os.SEEK_END)
        except OSError:
            os.close(fd)
            return -1
        return fd

    def write(self, first_seq: int, count: int, frames: bytes) -> None:
        """Append ``count`` framed records starting at ``first_seq`` and make them durable.

        On an I/O error the partial batch is cut off (best effort) and the error is raised.
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
                if self._fsync:
                    os.fdatasync(self._fd)
            except OSError:
                self._cut_back()
                raise
            self._index(first_seq, self._size)
            self._size += len(frames)
            self._next_seq = first_seq + count

    def _index(self, first_seq: int, offset: int) -> None:
        # Only a hint: an error or short write stops indexing this segment, readers then walk.
        if self._index_fd < 0:
            return
        try:
            if os.write(self._index_fd, _INDEX_ENTRY.pack(first_seq, offset)) == _INDEX_ENTRY.size:
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
