"""On-disk store of the log's leaf hashes and of the roots of its complete aligned subtrees.

``leaves.bin`` holds leaf i at offset 32*i. ``level8.bin``, ``level16.bin`` and ``level24.bin``
hold the roots of complete aligned subtrees of 2^8, 2^16 and 2^24 leaves, like transparency-dev
tiles, so any subtree root a proof needs costs at most a few hundred hashes even at 10M+ leaves.
Every level is derived from the leaves: on open (and ``truncate``) levels that lag behind the
leaves are recomputed and levels that run ahead are cut.

``HashStore(tree_dir, read_only=True)`` is for readers in other processes (verify, proofs) while
the writer may be appending: it repairs nothing, sees the leaves that were complete when it was
opened, and computes any level entry the writer has not written yet from the level below.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from infertrail.audit.framing import LogCorruptedError, fsync_dir, write_all
from infertrail.audit.merkle import HASH_SIZE, node_hash
from infertrail.audit.subtrees import node_level, tree_root

LEVEL_BITS = (8, 16, 24)
_FAN_OUT = 1 << 8  # entries of one level that make one entry of the next
# Ranges up to this many leaves that are not complete aligned subtrees are hashed from leaves
# read in one go; larger ones are split so memory stays bounded.
_DIRECT_LEAVES = 1024
_REBUILD_CHUNK = 4096  # level entries recomputed per read when repairing lagging levels


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _block_roots(entries: bytes | bytearray) -> bytes:
    """Roots of consecutive whole blocks of 256 entries (hashes back to back): the next level."""
    if len(entries) % (_FAN_OUT * HASH_SIZE):
        raise ValueError(f"{len(entries)} bytes are not whole blocks of {_FAN_OUT} hashes")
    for _ in range(_FAN_OUT.bit_length() - 1):  # 8 levels of pairs: one root per block
        entries = node_level(entries, 0)
    return bytes(entries)


_NAMES = ("leaves.bin", *(f"level{bits}.bin" for bits in LEVEL_BITS))


class HashStore:
    """Leaf hashes and level roots under ``tree_dir``, appended by one writer thread.

    Readers (``leaf``, ``subtree_root``) may run concurrently with ``append``: they read the
    files with ``pread`` and never look past ``size``, which is published after the data.
    With ``read_only=True`` nothing is created, repaired or appended (FileNotFoundError if the
    leaves file is missing), so other processes can read while the writer runs.
    """

    def __init__(self, tree_dir: Path, *, read_only: bool = False) -> None:
        self._dir = tree_dir
        self._read_only = read_only
        # _open_blocks[k]: entries of file k since its last complete block of 256, back to back
        # (the top level has no block: nothing is built above it).
        self._open_blocks = [bytearray() for _ in LEVEL_BITS]
        self._size = 0
        if read_only:
            # _fds[0] is the leaves file, _fds[k] the level LEVEL_BITS[k-1] file (-1: absent).
            self._fds = [os.open(tree_dir / _NAMES[0], os.O_RDONLY)]
            for name in _NAMES[1:]:
                try:
                    self._fds.append(os.open(tree_dir / name, os.O_RDONLY))
                except FileNotFoundError:
                    self._fds.append(-1)
            self._size = self._count(0)
            return
        tree_dir.mkdir(parents=True, exist_ok=True)
        created = not all((tree_dir / name).exists() for name in _NAMES)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        self._fds = [os.open(tree_dir / name, flags, 0o644) for name in _NAMES]
        if created:
            fsync_dir(tree_dir)
        self._load(self._count(0))

    @property
    def size(self) -> int:
        """Number of leaf hashes stored."""
        return self._size

    @property
    def read_only(self) -> bool:
        """Whether this handle only reads (see the class docstring)."""
        return self._read_only

    def _count(self, k: int) -> int:
        fd = self._fds[k]
        return 0 if fd < 0 else os.fstat(fd).st_size // HASH_SIZE

    def _read(self, k: int, begin: int, end: int) -> bytes:
        """Entries [begin, end) of file k as one bytes object."""
        want = (end - begin) * HASH_SIZE
        data = os.pread(self._fds[k], want, begin * HASH_SIZE) if self._fds[k] >= 0 else b""
        if len(data) == want:
            return data
        if self._read_only and k > 0:
            # The writer appends a level after the leaves (or a crash left it lagging, which
            # the next writer repairs): derive the missing entries from the level below.
            have = len(data) // HASH_SIZE
            children = self._read(k - 1, (begin + have) * _FAN_OUT, end * _FAN_OUT)
            return data[: have * HASH_SIZE] + _block_roots(children)
        raise LogCorruptedError(
            f"{self._dir}: file {k} has fewer than {end} hashes (short read at {begin})"
        )

    def _load(self, size: int) -> None:
        """Make every file consistent with ``size`` leaves: cut extra entries, compute missing."""
        os.ftruncate(self._fds[0], size * HASH_SIZE)
        for k, bits in enumerate(LEVEL_BITS, start=1):
            expected = size >> bits
            have = min(self._count(k), expected)
            os.ftruncate(self._fds[k], have * HASH_SIZE)
            # Rebuild missing entries a bounded chunk at a time (a crash leaves at most a few).
            for first in range(have, expected, _REBUILD_CHUNK):
                last = min(first + _REBUILD_CHUNK, expected)
                children = self._read(k - 1, first * _FAN_OUT, last * _FAN_OUT)
                write_all(self._fds[k], _block_roots(children))
        for k in range(len(self._open_blocks)):
            count = size >> (8 * k)
            block_start = count - count % _FAN_OUT
            self._open_blocks[k] = bytearray(self._read(k, block_start, count))
        self._size = size

    def _check_writable(self, what: str) -> None:
        if self._read_only:
            raise PermissionError(f"{what} on a read-only hash store ({self._dir})")

    def append(self, leaf_hashes: Sequence[bytes] | bytes) -> None:
        """Append leaf hashes (a sequence, or back to back in one bytes object), and the level
        roots of any aligned subtree they complete."""
        self._check_writable("append")
        if isinstance(leaf_hashes, bytes):
            data, count = leaf_hashes, len(leaf_hashes) // HASH_SIZE
            if len(data) % HASH_SIZE:
                raise ValueError(f"{len(data)} bytes are not whole {HASH_SIZE}-byte leaf hashes")
        else:
            data, count = b"".join(leaf_hashes), len(leaf_hashes)
            if len(data) != HASH_SIZE * count:
                raise ValueError(f"leaf hashes must all be {HASH_SIZE} bytes")
        write_all(self._fds[0], data)
        carry = data
        for k, block in enumerate(self._open_blocks):
            block += carry
            complete = len(block) - len(block) % (_FAN_OUT * HASH_SIZE)
            if not complete:
                break
            carry = _block_roots(block[:complete])
            del block[:complete]
            write_all(self._fds[k + 1], carry)
        self._size += count

    def leaf(self, index: int) -> bytes:
        """Leaf hash ``index``; IndexError outside [0, size)."""
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} out of range for a hash store of size {self._size}")
        return self._read(0, index, index + 1)

    def leaves(self, begin: int, end: int) -> list[bytes]:
        """Leaf hashes [begin, end) read in one go; ValueError on a bad range."""
        if not 0 <= begin <= end <= self._size:
            raise ValueError(f"leaf range [{begin}, {end}) not within [0, {self._size})")
        return _chunks(self._read(0, begin, end))

    def subtree_root(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) (RFC 6962 2.1), computed from the highest stored level that fits.

        Suits ``merkle.inclusion_proof_by`` / ``consistency_proof_by``; ValueError on a bad range.
        """
        if not 0 <= begin < end <= self._size:
            raise ValueError(
                f"subtree range [{begin}, {end}) must be non-empty and within [0, {self._size})"
            )
        return self._mth(begin, end)

    def _mth(self, begin: int, end: int) -> bytes:
        n = end - begin
        if n & (n - 1) == 0 and begin % n == 0:
            return self._perfect_root(begin, n)
        if n <= _DIRECT_LEAVES:
            return tree_root(_chunks(self._read(0, begin, end)))
        split = 1 << ((n - 1).bit_length() - 1)  # RFC 6962: largest power of two below n
        return node_hash(self._mth(begin, begin + split), self._mth(begin + split, end))

    def _perfect_root(self, begin: int, n: int) -> bytes:
        """Root of the complete aligned subtree of ``n`` (a power of two) leaves at ``begin``."""
        k = 0
        for level, bits in enumerate(LEVEL_BITS, start=1):
            if n >= 1 << bits:
                k = level
        shift = 8 * k
        return tree_root(_chunks(self._read(k, begin >> shift, (begin + n) >> shift)))

    def truncate(self, size: int) -> None:
        """Drop leaves from ``size`` on (recovery: the WAL is authoritative), with their levels."""
        self._check_writable("truncate")
        if not 0 <= size <= self._size:
            raise ValueError(f"cannot truncate a hash store of size {self._size} to {size}")
        self._load(size)

    def sync(self) -> None:
        """fsync every file: needed before the WAL segments holding these leaves are deleted.

        Appends go straight to the OS (one write per batch and file), so there is no buffer to
        flush; after a process crash the data is in the page cache, only a power loss needs this.
        """
        self._check_writable("sync")
        for fd in self._fds:
            os.fsync(fd)

    def close(self) -> None:
        """Close the files (idempotent)."""
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._fds = [-1] * len(self._fds)
