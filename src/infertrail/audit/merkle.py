"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and compact ranges.

Pure functions over 32-byte SHA-256 hashes: no I/O and no storage. Names follow RFC 9162 section
2.1 (MTH, PATH, PROOF/SUBPROOF); proof verification matches transparency-dev/merkle ``proof``.
Stores that cannot hold the whole tree in memory use the ``*_by`` variants, which ask a callback
for the few subtree roots ``MTH(D[begin:end])`` a proof needs.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import SupportsIndex

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "consistency_proof_by",
    "inclusion_proof",
    "inclusion_proof_by",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# Domain-separation prefixes of RFC 6962 section 2.1: a leaf can never be mistaken for a node.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

SubtreeRoot = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash SHA-256(0x00 || data).

    This is the hash stored for each log entry; ``data`` is the entry's exact bytes.
    """
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash SHA-256(0x01 || left || right).

    Inputs are not length-checked here because this runs in every hashing loop; the public
    verifiers check hash lengths before chaining.
    """
    return _sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]), the Merkle tree hash of the given leaf hashes (EMPTY_ROOT for none).

    Hashes level by level, carrying an unpaired last node upwards, which yields exactly the
    RFC 6962 tree (left subtree = largest power of two smaller than n) with n - 1 node hashes.
    """
    _check_hash_list(leaf_hashes, "leaf hash")
    if not leaf_hashes:
        return EMPTY_ROOT
    level = leaf_hashes
    sha256 = _sha256
    while len(level) > 1:
        pairs = iter(level)
        # zip(it, it) pairs neighbours; an unpaired last node is carried up just below.
        parents = [
            sha256(b"\x01" + left + right).digest()
            for left, right in zip(pairs, pairs, strict=False)
        ]
        if len(level) & 1:
            parents.append(level[-1])
        level = parents
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof PATH(index, D[n]) for a tree held in memory, leaf to root.

    Each sibling range is hashed once, so the cost is O(n) hashes; raises ValueError on a bad index.
    """
    return inclusion_proof_by(_slice_root(leaf_hashes), index, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the consistency proof PROOF(old_size, D[n]) for a tree held in memory.

    Proves that the tree of the first ``old_size`` leaves is a prefix of the whole tree; raises
    ValueError unless 0 < old_size <= len(leaf_hashes).
    """
    return consistency_proof_by(_slice_root(leaf_hashes), old_size, len(leaf_hashes))


def inclusion_proof_by(subtree_root: SubtreeRoot, index: int, size: int) -> list[bytes]:
    """Return PATH(index, D[size]) using ``subtree_root(begin, end) == MTH(D[begin:end])``.

    For trees too large for memory: only O(log size) subtree roots are requested, each either a
    complete aligned subtree or a range ending at ``size``. Raises ValueError on bad arguments.
    """
    size = _as_count(size, "size")
    index = _as_count(index, "index")
    if index >= size:
        raise ValueError(
            f"leaf index {index} is out of range for a tree of size {size} (need 0 <= index < size)"
        )
    path: list[bytes] = []
    begin, end = 0, size
    # Walk down from the root (RFC 9162 2.1.3.1), recording the sibling at each level.
    while end - begin > 1:
        mid = begin + _split_point(end - begin)
        if index < mid:
            path.append(_checked_root(subtree_root, mid, end))
            end = mid
        else:
            path.append(_checked_root(subtree_root, begin, mid))
            begin = mid
    path.reverse()
    return path


def consistency_proof_by(subtree_root: SubtreeRoot, old_size: int, new_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[new_size]) using ``subtree_root(begin, end) == MTH(D[begin:end])``.

    Requests O(log new_size) subtree roots. Raises ValueError unless 0 < old_size <= new_size
    (a proof from the empty tree proves nothing, as in transparency-dev/merkle).
    """
    new_size = _as_count(new_size, "new_size")
    old_size = _as_count(old_size, "old_size")
    if old_size == 0 or old_size > new_size:
        raise ValueError(
            f"cannot prove consistency from size {old_size} to size {new_size} "
            "(need 0 < old_size <= new_size)"
        )
    proof: list[bytes] = []
    begin, end = 0, new_size
    remaining = old_size  # how many of the old leaves fall in [begin, end)
    whole_old_tree = True  # the "b" flag of RFC 9162 SUBPROOF: old root is known to the verifier
    while remaining != end - begin:
        mid = begin + _split_point(end - begin)
        if remaining <= mid - begin:
            proof.append(_checked_root(subtree_root, mid, end))
            end = mid
        else:
            proof.append(_checked_root(subtree_root, begin, mid))
            remaining -= mid - begin
            begin = mid
            whole_old_tree = False
    if not whole_old_tree:
        proof.append(_checked_root(subtree_root, begin, end))
    proof.reverse()
    return proof


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the tree root implied by an inclusion proof for ``leaf_hash`` at ``index``.

    Raises ValueError when the inputs are malformed (index >= size, a hash that is not 32 bytes,
    a proof of the wrong length), mirroring transparency-dev/merkle RootFromInclusionProof.
    """
    index = _as_count(index, "index")
    size = _as_count(size, "size")
    if index >= size:
        raise ValueError(
            f"leaf index {index} is out of range for a tree of size {size} (need 0 <= index < size)"
        )
    _check_hash(leaf_hash, "leaf hash")
    path = _as_proof(proof)
    inner, border = _decompose_inclusion_proof(index, size)
    if len(path) != inner + border:
        raise ValueError(
            f"inclusion proof for leaf {index} in a tree of size {size} must have "
            f"{inner + border} hashes, got {len(path)}"
        )
    result = _chain_inner(leaf_hash, path[:inner], index)
    return _chain_border_right(result, path[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return True iff ``proof`` shows ``leaf_hash`` at ``index`` in the tree ``(size, root)``.

    Never raises: any malformed input (wrong types or lengths, index >= size) is simply False.
    """
    try:
        calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    except ValueError:
        return False
    return _is_hash(root) and calculated == root


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """Return True iff ``proof`` shows tree ``(old_size, old_root)`` is a prefix of the new tree.

    Never raises. Follows transparency-dev/merkle VerifyConsistency, except that old_size 0 is
    always rejected (also 0 -> 0): an empty tree commits to nothing, so nothing is proven.
    """
    try:
        old_size = _as_count(old_size, "old_size")
        new_size = _as_count(new_size, "new_size")
        _check_hash(old_root, "old root")
        _check_hash(new_root, "new root")
        path = _as_proof(proof)
    except ValueError:
        return False
    if old_size == 0 or new_size < old_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False

    inner, border = _decompose_inclusion_proof(old_size - 1, new_size)
    shift = _trailing_zeros(old_size)
    inner -= shift  # the proof starts at the level of the old tree's rightmost complete subtree
    if old_size == 1 << shift:
        # The old tree is one complete subtree: its root is the seed and is not in the proof.
        seed, start = old_root, 0
    else:
        seed, start = path[0], 1
    if len(path) != start + inner + border:
        return False
    path = path[start:]
    mask = (old_size - 1) >> shift

    old_hash = _chain_inner_right(seed, path[:inner], mask)
    old_hash = _chain_border_right(old_hash, path[inner:])
    if old_hash != old_root:
        return False
    new_hash = _chain_inner(seed, path[:inner], mask)
    new_hash = _chain_border_right(new_hash, path[inner:])
    return new_hash == new_root


class CompactRange:
    """A Merkle tree over leaves [0, size) kept as the roots of its perfect subtrees.

    Holds popcount(size) hashes (O(log n) state); ``append`` is O(1) amortized and the root is
    derived on demand, so a growing log never rehashes earlier leaves.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Resume a tree of ``size`` leaves from its perfect-subtree roots, left to right.

        ``hashes`` must hold popcount(size) 32-byte hashes (the largest subtree first), as
        returned by the ``hashes`` property; raises ValueError otherwise.
        """
        size = _as_count(size, "size")
        if isinstance(hashes, (bytes, bytearray, str)):
            raise ValueError("hashes must be a sequence of 32-byte hashes, not a single value")
        hash_list = list(hashes)
        expected = size.bit_count()
        if len(hash_list) != expected:
            raise ValueError(
                f"a compact range of size {size} needs {expected} subtree hashes "
                f"(one per set bit of the size), got {len(hash_list)}"
            )
        _check_hash_list(hash_list, "subtree hash")
        self._size = size
        self._hashes = hash_list

    @property
    def size(self) -> int:
        """Number of leaves covered, i.e. the tree size."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees covering [0, size), left to right (for persistence)."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash, merging equal-sized subtrees as a binary counter carries.

        Raises ValueError if ``leaf_hash`` is not 32 bytes.
        """
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {_describe(leaf_hash)}")
        hashes = self._hashes
        carry = self._size
        node = leaf_hash
        # Each trailing 1 bit of the size is a perfect subtree the new node completes.
        while carry & 1:
            node = _sha256(b"\x01" + hashes.pop() + node).digest()
            carry >>= 1
        hashes.append(node)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append each leaf hash in order; on a bad hash, the ones before it stay appended."""
        for leaf in leaf_hashes:
            self.append(leaf)

    def root(self) -> bytes:
        """Return the RFC 6962 root of the covered tree (EMPTY_ROOT when empty).

        Folds the subtree roots from the right, which is how MTH joins the right border.
        """
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        result = hashes[-1]
        for left in reversed(hashes[:-1]):
            result = _sha256(b"\x01" + left + result).digest()
        return result

    def copy(self) -> CompactRange:
        """Return an independent copy (e.g. to compute a checkpoint while appends continue)."""
        clone = CompactRange.__new__(CompactRange)
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable: must not be used as a dict key

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def _split_point(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2): the RFC 6962 'k'."""
    return 1 << ((n - 1).bit_length() - 1)


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def _decompose_inclusion_proof(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof's length into (inner, border) parts.

    ``inner`` hashes lie below the point where the paths to ``index`` and ``size - 1`` diverge;
    ``border`` hashes are left siblings on the tree's right border above it.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, path: Sequence[bytes], index: int) -> bytes:
    for level, sibling in enumerate(path):
        if (index >> level) & 1:
            seed = _sha256(b"\x01" + sibling + seed).digest()
        else:
            seed = _sha256(b"\x01" + seed + sibling).digest()
    return seed


def _chain_inner_right(seed: bytes, path: Sequence[bytes], index: int) -> bytes:
    # Only left siblings existed in the older tree; right ones were added later.
    for level, sibling in enumerate(path):
        if (index >> level) & 1:
            seed = _sha256(b"\x01" + sibling + seed).digest()
    return seed


def _chain_border_right(seed: bytes, path: Sequence[bytes]) -> bytes:
    for sibling in path:
        seed = _sha256(b"\x01" + sibling + seed).digest()
    return seed


def _slice_root(leaf_hashes: Sequence[bytes]) -> SubtreeRoot:
    def subtree_root(begin: int, end: int) -> bytes:
        return root(leaf_hashes[begin:end])

    return subtree_root


def _checked_root(subtree_root: SubtreeRoot, begin: int, end: int) -> bytes:
    # The callback is usually a storage layer: catch a bad answer here, not in a failed proof.
    value = subtree_root(begin, end)
    if not _is_hash(value):
        raise ValueError(
            f"subtree_root({begin}, {end}) returned {_describe(value)}, "
            f"expected a {HASH_SIZE}-byte hash"
        )
    return value


def _as_count(value: object, name: str) -> int:
    """Return ``value`` as a non-negative int (numpy integers accepted), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise ValueError(f"{name} must be an integer, got {_describe(value)}")
    number = operator.index(value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _check_hash(value: object, name: str) -> None:
    if not _is_hash(value):
        raise ValueError(f"{name} must be {HASH_SIZE} bytes, got {_describe(value)}")


def _check_hash_list(values: Sequence[object], name: str) -> None:
    # Validating up front costs far less than the hashing and keeps errors pointing at the input.
    if all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values):
        return
    for position, value in enumerate(values):
        _check_hash(value, f"{name} {position}")


def _as_proof(proof: object) -> list[bytes]:
    if not isinstance(proof, Sequence) or isinstance(proof, (bytes, bytearray, str)):
        raise ValueError(f"proof must be a sequence of hashes, got {_describe(proof)}")
    path = list(proof)
    _check_hash_list(path, "proof hash")
    return path


def _describe(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"
