"""Names of WAL segments and of their batch indexes, and listing a WAL directory.

A segment ``<first_seq:020d>.seg`` holds consecutive records starting at ``first_seq``; its
batch index ``<index_dir>/<first_seq:020d>.idx`` holds ``u64 first seq | u64 offset`` per batch.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from infertrail.audit.framing import LogCorruptedError

__all__ = [
    "INDEX_ENTRY",
    "SEGMENT_SUFFIX",
    "list_segments",
    "segment_index_path",
    "segment_path",
]

SEGMENT_SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"
INDEX_ENTRY = struct.Struct("<QQ")  # first seq of a batch, byte offset of its first frame
_SEGMENT_RE = re.compile(r"(\d{20})\.seg")


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


def segment_index_path(index_dir: Path, first_seq: int) -> Path:
    """Path of the batch index of the segment whose first record is ``first_seq``."""
    return index_dir / f"{first_seq:020d}{INDEX_SUFFIX}"
