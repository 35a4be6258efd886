"""Length + CRC framed records in append-only files: WAL segments, the checkpoint history.

Frame: ``u32 LE payload length | u32 LE CRC-32(payload) | payload``. The CRC is zlib's CRC-32,
computed with ISA-L, which is over ten times faster than zlib on records of a kilobyte. Only the
end of a file may be torn (a write cut short by a crash); a bad frame followed by an intact one
is damage in place, which is reported, never silently cut.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from isal.isal_zlib import crc32

__all__ = [
    "FRAME_HEADER",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "LogCorruptedError",
    "TornTail",
    "crc32",
    "cut_tail",
    "encode_frame",
    "fsync_dir",
    "read_frames",
    "walk_frames",
    "write_all",
]

FRAME_HEADER = struct.Struct("<II")
HEADER_SIZE = FRAME_HEADER.size
# A record is a few hundred bytes; a length beyond this is a damaged header, not a real frame.
MAX_PAYLOAD = 16 << 20
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


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload for the WAL (length, CRC-32, bytes)."""
    if not 0 < len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"frame payload must be 1..{MAX_PAYLOAD} bytes, got {len(payload)}")
    return FRAME_HEADER.pack(len(payload), crc32(payload)) + payload


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
    if crc32(memoryview(buf)[start : start + length]) != crc:
        return "CRC mismatch"
    return int(length)


def walk_frames(buf: bytes) -> tuple[list[tuple[int, int]], int, str | None]:
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


def cut_tail(path: Path, buf: bytes, offset: int, reason: str, repair: bool) -> TornTail:
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
    frames, end, error = walk_frames(buf)
    tail = None if error is None else cut_tail(path, buf, end, error, repair)
    return [buf[start : start + length] for start, length in frames], tail
