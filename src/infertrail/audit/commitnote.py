"""The newest group-commit checkpoint on disk: ``checkpoints/commit``, two alternating slots.

The audit writer signs a checkpoint for every group commit, once the batch is durable and before
its records' futures resolve (their receipts carry it), and keeps the newest here: one ``pwrite``
of the framed note (length, CRC-32: :mod:`infertrail.audit.framing`) into the slot it did not
write last, without an fsync. Replacing a file by rename costs about as much as the WAL's
fdatasync on a virtual disk (~0.2 ms); a pwrite, a microsecond. Because the slots alternate, a
write cut short (a power loss, or a reader racing the writer) spoils at most one of them, and
readers take the intact note of the larger tree.

No fsync is needed for what the note is for (recovery and ``verify`` treat the records it covers
as acknowledged: damage to them is tampering, not a torn tail):

- a process killed with SIGKILL leaves its last ``pwrite`` in the page cache;
- after a power loss the note may be older than the log, or gone, but never ahead of the WAL,
  which was fdatasynced before the note was written; and recovery signs the recovered tree again.
  Ed25519 signatures are deterministic (RFC 8032): a tree size's checkpoint is always the same
  bytes, so every receipt given out still matches the log.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from infertrail.audit.framing import encode_frame, fsync_dir, walk_frames

__all__ = ["COMMIT_FILE", "SLOT_BYTES", "CommitNoteFile", "read_commit_notes"]

COMMIT_FILE = "commit"  # in the log's checkpoints/ directory
SLOT_BYTES = 4096  # one page: a note of this log is ~2x its origin + 170 bytes


class CommitNoteFile:
    """The writer's handle on ``checkpoints/commit`` (one writer thread)."""

    def __init__(self, path: Path) -> None:
        created = not path.exists()
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            fsync_dir(path.parent)
        self._slot = 0

    def write(self, note: bytes) -> None:
        """Write ``note`` into the slot not written last (no fsync: see the module docstring)."""
        frame = encode_frame(note)
        if len(frame) > SLOT_BYTES:
            raise ValueError(f"a {len(note)}-byte note does not fit a {SLOT_BYTES}-byte slot")
        written = os.pwrite(self._fd, frame, self._slot * SLOT_BYTES)
        if written != len(frame):
            raise OSError(errno.EIO, f"{self._path}: short write ({written} of {len(frame)} bytes)")
        self._slot ^= 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_commit_notes(path: Path) -> list[bytes]:
    """The intact notes of ``path``'s slots (none if it is missing), not verified."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    notes = []
    for start in range(0, min(len(data), 2 * SLOT_BYTES), SLOT_BYTES):
        slot = data[start : start + SLOT_BYTES]
        frames, _, _ = walk_frames(slot)
        if frames:  # the first frame; bytes after it are what an older, longer note left
            begin, length = frames[0]
            notes.append(slot[begin : begin + length])
    return notes
