"""RFC 6962 subtrees over leaf ranges: how verification shares tree hashing between processes.

An aligned subtree covers leaves ``[a, a + 2**k)`` with ``a`` a multiple of ``2**k``. Any range
``[begin, end)`` splits uniquely into maximal aligned subtrees (:func:`aligned_blocks`). A worker
that holds the leaves of one file hashes every aligned subtree inside it once
(:class:`RangeTree`); the process that joins the files keeps a :class:`CompactTree` of
``[0, n)`` and extends it by those subtree roots, in O(log n) hashes per file instead of one
Python call per leaf. Node hashing maps C functions over whole levels; with the compiled
:mod:`infertrail._native`, leaf and node hashing run in one C loop each, without the GIL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

from infertrail.audit.merkle import EMPTY_ROOT, HASH_SIZE

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

__all__ = [
    "CompactTree",
    "RangeTree",
    "aligned_blocks",
    "leaf_hashes",
    "leaf_hashes_arrow",
    "node_hashes",
    "node_level",
    "tree_root",
]

_sha256 = hashlib.sha256
_digest = type(_sha256()).digest  # unbound: map() applies it without a Python frame
_leaf_prefix = b"\x00".__add__  # RFC 6962 2.1: leaf = SHA-256(0x00 || data)
_node_prefix = b"\x01".__add__  # node = SHA-256(0x01 || left || right)


def _py_leaf_hashes(records: Sequence[bytes]) -> list[bytes]:
    return list(map(_digest, map(_sha256, map(_leaf_prefix, records))))


def _py_node_hashes(lefts: Sequence[bytes], rights: Sequence[bytes]) -> list[bytes]:
    # map() would stop at the shorter list: unpaired hashes are an error, as in C.
    if len(lefts) != len(rights):
        raise ValueError(f"lefts has {len(lefts)} hashes but rights has {len(rights)}")
    return list(map(_digest, map(_sha256, map(_node_prefix, map(bytes.__add__, lefts, rights)))))


def _py_leaf_hashes_arrow(
    offsets: Buffer, data: Buffer, start: int, count: int, offset_size: int
) -> bytes:
    if offset_size not in (4, 8):
        raise ValueError(f"offset_size must be 4 or 8, got {offset_size}")
    raw = memoryview(offsets).cast("B")
    entries = len(raw) // offset_size
    if start < 0 or count < 0 or start + count + 1 > entries:
        raise ValueError(
            f"values from {start}, {count} of them, are outside an offsets buffer of "
            f"{len(raw)} bytes"
        )
    bounds = raw[: entries * offset_size].cast("i" if offset_size == 4 else "q")
    bounds = bounds[start : start + count + 1]
    values = memoryview(data).cast("B")
    # Slices would clamp a bad offset silently: every one used must lie inside the data and
    # never decrease, as C checks before hashing.
    if bounds[0] < 0 or bounds[-1] > len(values) or any(map(int.__gt__, bounds, bounds[1:])):
        raise ValueError(
            f"offsets of values {start}..{start + count} are out of order or outside a data "
            f"buffer of {len(values)} bytes"
        )
    return b"".join(_py_leaf_hashes([bytes(values[a:b]) for a, b in pairwise(bounds)]))


def _py_node_level(level: Buffer, skip: int) -> bytes:
    hashes = bytes(level)
    if len(hashes) % HASH_SIZE or skip not in (0, 1):
        raise ValueError(f"bad level of {len(hashes)} bytes or skip {skip}")
    pairs = (len(hashes) // HASH_SIZE - skip) // 2
    at = [skip * HASH_SIZE + 2 * i * HASH_SIZE for i in range(pairs)]
    lefts = [hashes[a : a + HASH_SIZE] for a in at]
    rights = [hashes[a + HASH_SIZE : a + 2 * HASH_SIZE] for a in at]
    return b"".join(_py_node_hashes(lefts, rights))


try:
    from infertrail._native import leaf_hashes as _native_leaf_hashes
    from infertrail._native import leaf_hashes_arrow as _native_leaf_hashes_arrow
    from infertrail._native import node_hashes as _native_node_hashes
    from infertrail._native import node_level as _native_node_level
except ImportError:  # built without a C compiler
    _native_leaf_hashes = _py_leaf_hashes
    _native_leaf_hashes_arrow = _py_leaf_hashes_arrow
    _native_node_hashes = _py_node_hashes
    _native_node_level = _py_node_level


def leaf_hashes(records: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes of ``records``, without a Python frame per record."""
    try:
        return _native_leaf_hashes(records)
    except TypeError:  # the C loop takes exact bytes only; hashlib takes any buffer
        return _py_leaf_hashes(records)


def leaf_hashes_arrow(
    offsets: Buffer, data: Buffer, start: int, count: int, offset_size: int
) -> bytes:
    """Leaf hashes of values ``start..start+count`` of an Arrow binary array, back to back.

    ``offsets``: its offsets buffer (``offset_size`` 4 for binary, 8 for large_binary); ``data``
    its data buffer. Hashes in place: no bytes object per record (pyarrow's to_pylist makes
    one), nor per hash.
    """
    return _native_leaf_hashes_arrow(offsets, data, start, count, offset_size)


def node_hashes(lefts: Sequence[bytes], rights: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 node hashes of pairs ``(lefts[i], rights[i])``."""
    try:
        return _native_node_hashes(lefts, rights)
    except (TypeError, ValueError):  # not exact 32-byte bytes: hashlib hashes whatever it is
        return _py_node_hashes(lefts, rights)


def node_level(level: Buffer, skip: int) -> bytes:
    """The level above ``level`` (32-byte hashes back to back): its whole pairs from ``skip``."""
    return _native_node_level(level, skip)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH of ``leaves`` (EMPTY_ROOT for none), hashed a whole level per call.

    Unlike :func:`infertrail.audit.merkle.root`, the hashes are not checked one by one: this is
    for hashes the caller made (the hash store's own levels), where those checks cost as much as
    the hashing.
    """
    level = list(leaves)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        pairs = len(level) // 2
        # An unpaired last node is carried up as is: that builds exactly the RFC 6962 tree.
        carried = level[-1:] if len(level) & 1 else []
        level = node_hashes(level[0 : 2 * pairs : 2], level[1 : 2 * pairs : 2]) + carried
    return level[0]


def aligned_blocks(begin: int, end: int) -> list[tuple[int, int]]:
    """``(start, width)`` of the maximal aligned subtrees covering ``[begin, end)``, in order."""
    if not 0 <= begin <= end:
        raise ValueError(f"bad leaf range [{begin}, {end})")
    blocks = []
    while begin < end:
        width = begin & -begin if begin else 1 << ((end - 1).bit_length())
        while begin + width > end:
            width >>= 1
        blocks.append((begin, width))
        begin += width
    return blocks


class CompactTree:
    """Roots of the perfect subtrees of the tree over leaves ``[0, size)``, largest first.

    Grows by whole aligned subtrees (:meth:`push`), not only by leaves; the root is folded on
    demand. The same state as :class:`infertrail.audit.merkle.CompactRange`.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    def push(self, root: bytes, width: int) -> None:
        """Append the aligned subtree of ``width`` (a power of two) leaves starting at ``size``."""
        if width <= 0 or width & (width - 1) or self._size % width:
            raise ValueError(f"a subtree of {width} leaves cannot start at leaf {self._size}")
        hashes = self._hashes
        bit = width
        # As a binary counter carries: each set bit from `width` up is a subtree of that width
        # ending where this one starts.
        while self._size & bit:
            root = _sha256(b"\x01" + hashes.pop() + root).digest()
            bit <<= 1
        hashes.append(root)
        self._size += width

    def extend(self, blocks: Sequence[tuple[bytes, int]]) -> None:
        """Push ``(root, width)`` subtrees in order (as :meth:`RangeTree.blocks` returns)."""
        for root, width in blocks:
            self.push(root, width)

    def root(self) -> bytes:
        """RFC 6962 root of the covered tree (EMPTY_ROOT when empty)."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        result = hashes[-1]
        for left in reversed(hashes[:-1]):
            result = _sha256(b"\x01" + left + result).digest()
        return result

    def copy(self) -> CompactTree:
        """An independent copy (to check a signed root part-way through a file)."""
        clone = CompactTree()
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone


class RangeTree:
    """Every aligned subtree root inside ``[begin, begin + len(leaves))``, hashed level by level.

    ``blocks(end)`` gives the roots of :func:`aligned_blocks` ``(begin, end)`` for any ``end`` in
    the range, so one pass of hashing serves every signed tree size that falls inside it.
    """

    def __init__(self, begin: int, leaves: bytes | Sequence[bytes]) -> None:
        """``leaves``: 32-byte hashes, in a sequence or back to back in one bytes object."""
        blob = leaves if isinstance(leaves, bytes) else b"".join(leaves)
        if len(blob) % HASH_SIZE:
            raise ValueError(f"leaf hashes are 32 bytes each: {len(blob)} bytes cannot be")
        self.begin = begin
        self.end = begin + len(blob) // HASH_SIZE
        # levels[k]: roots of the subtrees of 2**k leaves starting at (firsts[k] + i) * 2**k,
        # back to back, i = 0, 1, ...
        self._levels = [blob]
        self._firsts = [begin]
        level, first = blob, begin
        while True:
            skip = first & 1  # a first node at an odd index has its sibling outside the range
            if (len(level) // HASH_SIZE - skip) // 2 == 0:
                break
            level = node_level(level, skip)
            first = (first + skip) >> 1
            self._levels.append(level)
            self._firsts.append(first)

    def blocks(self, end: int) -> list[tuple[bytes, int]]:
        """``(root, width)`` of the aligned subtrees covering ``[begin, end)``, in order."""
        if not self.begin <= end <= self.end:
            raise ValueError(f"end {end} outside [{self.begin}, {self.end}]")
        out = []
        for start, width in aligned_blocks(self.begin, end):
            k = width.bit_length() - 1
            at = ((start >> k) - self._firsts[k]) * HASH_SIZE
            out.append((self._levels[k][at : at + HASH_SIZE], width))
        return out
