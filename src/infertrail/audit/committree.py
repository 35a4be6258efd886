"""The tree as the audit writer grows it: its frontier, and per commit the nodes receipts need.

Pure: 32-byte hashes in, hashes out; no I/O. The writer keeps the :class:`Frontier` of the tree
(the roots of the perfect subtrees covering ``[0, size)``, one per set bit of the size, like a
compact range) and, for each batch of leaves it commits, calls :func:`commit`. That hashes the
batch's nodes one whole level at a time (C loops, :func:`~infertrail.audit.subtrees.node_level`)
and joins them to the frontier, giving the new tree's root (for the checkpoint signed per commit)
and a :class:`CommitTree`: every node an RFC 9162 inclusion proof of a leaf of the batch, in the
tree of the new size, can need. A receipt asks it for its proof only when it is serialized, so a
record nobody asks a proof for costs one node hash (the batch's levels) and no Python per level.

Why a level array suffices (RFC 9162 2.1.3.1, leaf ``m`` of a tree of size ``n``): the proof
holds, from the leaf up, the sibling of ``m``'s ancestor at each level ``k`` where that sibling
exists, i.e. index ``(m >> k) ^ 1 <= (n - 1) >> k``. Siblings left of the batch's first leaf
``a`` are whole subtrees that end at or before ``a``: exactly the frontier's peaks. The node
holding ``a`` at a level may begin before ``a``: it is hashed from a peak and the batch's node.
The last node of a level may be incomplete: its value is then the RFC 6962 hash of the leaves it
has, the unpaired node carried up, as :func:`~infertrail.audit.merkle.root` builds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from infertrail.audit.merkle import EMPTY_ROOT, HASH_SIZE
from infertrail.audit.subtrees import node_level

__all__ = ["CommitTree", "Frontier", "commit"]

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Frontier:
    """The tree over ``[0, size)`` as its perfect subtrees: ``peaks[k]`` for each set bit k.

    ``peaks[k]`` is the root of the subtree of ``2**k`` leaves that bit k of ``size`` stands for
    (``b""`` where the bit is clear); it covers ``[((size >> k) - 1) << k, (size >> k) << k)``.
    """

    size: int
    peaks: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"a tree size is >= 0, got {self.size}")
        if len(self.peaks) != self.size.bit_length():
            raise ValueError(
                f"a frontier of size {self.size} has {self.size.bit_length()} levels, "
                f"got {len(self.peaks)}"
            )
        for k, peak in enumerate(self.peaks):
            want = HASH_SIZE if self.size >> k & 1 else 0
            if len(peak) != want:
                raise ValueError(f"peak {k} of a frontier of size {self.size} must be {want} bytes")

    @classmethod
    def of(cls, size: int, subtree_root: Callable[[int, int], bytes]) -> Frontier:
        """The frontier of a stored tree, asking ``subtree_root(begin, end)`` for each peak."""
        peaks = []
        for k in range(size.bit_length()):
            if size >> k & 1:
                end = (size >> k) << k
                peaks.append(subtree_root(end - (1 << k), end))
            else:
                peaks.append(b"")
        return cls(size, tuple(peaks))

    def root(self) -> bytes:
        """RFC 6962 root of the tree (EMPTY_ROOT when empty): the peaks folded from the right."""
        result = b""
        for peak in self.peaks:
            if peak:
                result = peak if not result else _sha256(b"\x01" + peak + result).digest()
        return result or EMPTY_ROOT


class CommitTree:
    """The nodes of one committed batch ``[first, size)`` in the tree of ``size`` leaves.

    ``levels[k]`` holds, back to back, the level-k nodes from index ``lows[k]`` to
    ``(size - 1) >> k``: a peak of the old frontier first when one lies just left of the batch,
    the batch's own nodes, the last one possibly incomplete (see the module docstring). The top
    level is the root alone.
    """

    __slots__ = ("first", "levels", "lows", "note", "origin", "shard", "size")

    def __init__(self, first: int, size: int, levels: list[bytes], lows: list[int]) -> None:
        """Internal: made by :func:`commit`."""
        self.first = first
        self.size = size
        self.levels = levels
        self.lows = lows
        # The signed checkpoint of this size and where it comes from: set by the writer before
        # any receipt can reach this object (see infertrail.audit.receipts).
        self.note = b""
        self.origin = ""
        self.shard = ""

    @property
    def root(self) -> bytes:
        """The RFC 6962 root of the tree of ``size`` leaves."""
        return self.levels[-1]

    def leaf(self, seq: int) -> bytes:
        """The leaf hash of record ``seq`` of the batch."""
        at = (seq - self.lows[0]) * HASH_SIZE
        return self.levels[0][at : at + HASH_SIZE]

    def inclusion_proof(self, seq: int) -> list[bytes]:
        """RFC 9162 PATH(seq, D[size]) for a leaf of the batch, from the leaf's sibling up."""
        if not self.first <= seq < self.size:
            raise ValueError(f"seq {seq} is not in the batch [{self.first}, {self.size})")
        last = self.size - 1
        proof = []
        for k in range(len(self.levels) - 1):
            sibling = (seq >> k) ^ 1
            if sibling <= last >> k:
                at = (sibling - self.lows[k]) * HASH_SIZE
                proof.append(self.levels[k][at : at + HASH_SIZE])
        return proof

    def frontier(self) -> Frontier:
        """The frontier of the tree of ``size`` leaves: the old tree's, grown by the batch."""
        size = self.size
        peaks = []
        for k in range(size.bit_length()):
            if size >> k & 1:
                at = ((size >> k) - 1 - self.lows[k]) * HASH_SIZE
                peaks.append(self.levels[k][at : at + HASH_SIZE])
            else:
                peaks.append(b"")
        return Frontier(size, tuple(peaks))


def commit(frontier: Frontier, leaves: bytes) -> CommitTree:
    """Grow the tree of ``frontier`` by ``leaves`` (32-byte hashes back to back): the batch's nodes.

    One C call per level hashes the batch's whole pairs; the peaks of the old tree join the
    level where they stand left of the batch. ValueError for no leaves or a ragged byte string.
    """
    if not leaves or len(leaves) % HASH_SIZE:
        raise ValueError(f"a batch is one or more 32-byte leaf hashes, got {len(leaves)} bytes")
    first = frontier.size
    size = first + len(leaves) // HASH_SIZE
    peaks = frontier.peaks
    level, low = leaves, first
    if first & 1:  # the batch's first leaf is a right child: its sibling is peak 0
        level, low = peaks[0] + leaves, first - 1
    levels, lows = [level], [low]
    k = 0
    while (size - 1) >> k:  # until the level is the root alone
        up = node_level(level, 0)  # low is even: whole pairs from the first node
        if (len(level) // HASH_SIZE) & 1:
            up += level[-HASH_SIZE:]  # an unpaired last node is carried up as it is
        k += 1
        low = first >> k
        if low & 1:  # a peak of the old tree is this level's first node's left sibling
            up, low = peaks[k] + up, low - 1
        level = up
        levels.append(level)
        lows.append(low)
    return CommitTree(first, size, levels, lows)
