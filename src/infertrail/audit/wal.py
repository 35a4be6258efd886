"""Write-ahead log: length + CRC framed records in numbered segment files.

Frame: ``u32 LE payload length | u32 LE zlib.crc32(payload) | payload``. A segment
``<first_seq:020d>.seg`` holds consecutive records starting at ``first_seq``. Only the tail of the
last segment may be torn (a write cut short by a crash); damage anywhere else is corruption and is
reported, never silently cut. The same framing is used for the checkpoint history file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FRAME_HEADER = struct.Struct("<II")
HEADER_SIZE = FRAME_HEADER.size
# A record is a few hundred bytes; a length beyond this is a damaged header, not a real frame.
MAX_PAYLOAD = 16 << 20
SEGMENT_SUFFIX = ".seg"
_SEGMENT_RE = re.compile(r"(\d{20})\.seg")
_NONZERO = re.compile(rb"[^\x00]")


class LogCorruptedError(RuntimeError):
    """Stored log data is damaged in a way recovery must not repair silently (not a torn tail)."""


@dataclass(frozen=True, slots=True)
class TornTail:
    """The incomplete end of a file left by a crash mid-write, and what recovery cut off."""

    segment: Path
    offset: int
    bytes_dropped: int
    reason: str


@dataclass(frozen=True, slots=True)
class WalState:
    """What a scan of the WAL found: the seq range it holds and its segments in order."""

    first_seq: int
    next_seq: int
    segments: tuple[tuple[int, Path], ...]
    torn_tail: TornTail | None


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload for the WAL (length, CRC-32, bytes)."""
    if not 0 < len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"frame payload must be 1..{MAX_PAYLOAD} bytes, got {len(payload)}")
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


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


def fsync_dir(path: Path) -> None:
    """Make created, renamed or deleted directory entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (regular files may accept short writes)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _frame_at(buf: bytes, offset: int) -> int | str:
    """Payload length of the intact frame at ``offset``, or why it is not one."""
    remaining = len(buf) - offset
    if remaining < HEADER_SIZE:
        return f"partial frame header ({remaining} of {HEADER_SIZE} bytes)"
    length, crc = FRAME_HEADER.unpack_from(buf, offset)
    if length == 0 or length > MAX_PAYLOAD:
        return f"frame length {length} outside 1..{MAX_PAYLOAD}"
    if length > remaining - HEADER_SIZE:
        return f"frame of {length} bytes runs past the end of the file"
    start = offset + HEADER_SIZE
    if zlib.crc32(memoryview(buf)[start : start + length]) != crc:
        return "CRC mismatch"
    return int(length)


def _walk(buf: bytes) -> tuple[list[tuple[int, int]], int, str | None]:
    """Intact frames from the start of ``buf`` as (payload offset, length), where they stop, why."""
    frames: list[tuple[int, int]] = []
    offset = 0
    while offset < len(buf):
        found = _frame_at(buf, offset)
        if isinstance(found, str):
            return frames, offset, found
        frames.append((offset + HEADER_SIZE, found))
        offset += HEADER_SIZE + found
    return frames, offset, None


def _frame_follows(buf: bytes, bad_offset: int) -> int | None:
    """Offset of an intact frame after ``bad_offset``, if any.

    A crash only tears the end of a file, so an intact frame after a bad one means the bad one was
    damaged in place: that is corruption, not a torn tail.
    """
    offset = bad_offset + 1
    while offset < len(buf) - HEADER_SIZE:
        if isinstance(_frame_at(buf, offset), int):
            return offset
        # A frame's length field is never zero: skip zero runs (a filesystem may leave a torn
        # tail zero-filled) to the last position whose length could include a non-zero byte.
        nonzero = _NONZERO.search(buf, offset)
        if nonzero is None:
            return None
        offset = max(offset + 1, nonzero.start() - 3)
    return None


def _cut_tail(path: Path, buf: bytes, offset: int, reason: str, repair: bool) -> TornTail:
    """Check that the bad frame at ``offset`` is a torn tail and truncate the file there."""
    follower = _frame_follows(buf, offset)
    if follower is not None:
        raise LogCorruptedError(
            f"{path}: damaged frame at offset {offset} ({reason}) is followed by an intact frame "
            f"at offset {follower}; this is not a torn tail, refusing to truncate"
        )
    if repair:
        with path.open("r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
    return TornTail(path, offset, len(buf) - offset, reason)


def read_frames(path: Path, *, repair: bool = True) -> tuple[list[bytes], TornTail | None]:
    """All payloads of a single framed file (e.g. checkpoint history), cutting a torn tail.

    A missing file reads as empty. With ``repair=False`` the tail is reported but not cut.
    """
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        return [], None
    frames, end, error = _walk(buf)
    tail = None if error is None else _cut_tail(path, buf, end, error, repair)
    return [buf[start : start + length] for start, length in frames], tail


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
        frames, end, error = _walk(buf)
        if error is not None:
            bad_seq = first_seq + len(frames)
            if index != len(segments) - 1:
                raise LogCorruptedError(
                    f"{path}: damaged frame at offset {end} (seq {bad_seq}): {error}; "
                    "only the last segment may have a torn tail"
                )
            torn = _cut_tail(path, buf, end, f"{error} (seq {bad_seq})", repair)
        if frames:
            _check_seq(path, buf, frames[0], first_seq)
            _check_seq(path, buf, frames[-1], first_seq + len(frames) - 1)
        expected_first = first_seq + len(frames)
    if not segments:
        return WalState(0, 0, (), None)
    assert expected_first is not None
    return WalState(segments[0][0], expected_first, tuple(segments), torn)


def iter_records(
    wal_dir: Path, start_seq: int = 0, end_seq: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(seq, payload)`` for ``start_seq <= seq < end_seq`` in order, checking each CRC.

    ``end_seq=None`` reads to the end of the last segment (run :func:`scan_wal` first to cut a
    torn tail). Raises LogCorruptedError on a damaged or missing frame inside the range and
    LookupError if the range starts below the oldest segment.
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
        yield from _read_segment(path, first_seq, start_seq, stop)


def _read_segment(
    path: Path, first_seq: int, start_seq: int, stop: int | None
) -> Iterator[tuple[int, bytes]]:
    """Records ``start_seq <= seq < stop`` of one segment; ``stop=None`` reads to its end."""
    # An open handle keeps reading a segment even if retire_through unlinks it meanwhile.
    with path.open("rb") as f:
        seq, offset = first_seq, 0
        while stop is None or seq < stop:
            header = f.read(HEADER_SIZE)
            if not header and stop is None:
                return
            if len(header) < HEADER_SIZE:
                raise LogCorruptedError(f"{path}: seq {seq} missing at offset {offset}")
            length, crc = FRAME_HEADER.unpack(header)
            if seq < start_seq:
                f.seek(length, os.SEEK_CUR)
            else:
                payload = f.read(length)
                if length == 0 or len(payload) != length or zlib.crc32(payload) != crc:
                    raise LogCorruptedError(f"{path}: damaged frame at offset {offset} (seq {seq})")
                yield seq, payload
            seq += 1
            offset += HEADER_SIZE + length


class SegmentWriter:
    """Appends framed batches to the active segment with one write and one fdatasync per batch.

    Rolls to a new segment (named by its first seq) before a batch that would push the active one
    past ``segment_bytes``. One writer thread owns ``write``; ``retire_through`` may be called from
    other threads.
    """

    def __init__(self, wal_dir: Path, state: WalState, *, segment_bytes: int, fsync: bool) -> None:
        if segment_bytes < HEADER_SIZE + 1:
            raise ValueError(f"segment_bytes must be > {HEADER_SIZE}, got {segment_bytes}")
        self._dir = wal_dir
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._segments: list[tuple[int, Path]] = list(state.segments)
        self._next_seq = state.next_seq
        if self._segments:
            path = self._segments[-1][1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
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
                self._fd = self._create(first_seq)
                self._size = 0
            try:
                write_all(self._fd, frames)
                if self._fsync:
                    os.fdatasync(self._fd)
            except OSError:
                self._cut_back()
                raise
            self._size += len(frames)
            self._next_seq = first_seq + count

    def _cut_back(self) -> None:
        # Leave no unacknowledged bytes behind if the disk lets us; recovery handles the rest.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)

    def retire_through(self, seq: int) -> list[Path]:
        """Delete segments all of whose records are <= ``seq``; never the active segment."""
        removed: list[Path] = []
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] - 1 <= seq:
                _, path = self._segments.pop(0)
                path.unlink()
                removed.append(path)
            if removed:
                fsync_dir(self._dir)
        return removed

    def close(self) -> None:
        """Close the active segment (its data was already synced batch by batch)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
