"""Tests for infertrail.audit.merkle: RFC 6962 vectors, corrupted proofs, properties."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import merkle
from infertrail.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    consistency_proof,
    consistency_proof_by,
    inclusion_proof,
    inclusion_proof_by,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "data" / "rfc6962_vectors.json").read_text()
)
LEAVES = [leaf_hash(bytes.fromhex(data)) for data in VECTORS["leaves"]]
H = bytes.fromhex


def _flip_bit(value: bytes, bit: int) -> bytes:
    mutated = bytearray(value)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def _cached_subtree_root(leaves: list[bytes]) -> Callable[[int, int], bytes]:
    @functools.cache
    def subtree_root(begin: int, end: int) -> bytes:
        if end - begin == 1:
            return leaves[begin]
        k = 1 << ((end - begin - 1).bit_length() - 1)
        return node_hash(subtree_root(begin, begin + k), subtree_root(begin + k, end))

    return subtree_root


# --- known-answer tests -------------------------------------------------------------------


@pytest.mark.parametrize("kat", VECTORS["hasher_kats"], ids=lambda k: k["desc"])
def test_hasher_kats(kat: dict[str, str]) -> None:
    if kat["kind"] == "empty":
        got = EMPTY_ROOT
    elif kat["kind"] == "leaf":
        got = leaf_hash(H(kat["input"]))
    else:
        got = node_hash(H(kat["left"]), H(kat["right"]))
    assert got.hex() == kat["expected"]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT
    assert HASH_SIZE == 32


@pytest.mark.parametrize("size", range(9))
def test_roots_by_size(size: int) -> None:
    expected = VECTORS["roots_by_size"][str(size)]
    assert root(LEAVES[:size]).hex() == expected
    compact = CompactRange()
    compact.extend(LEAVES[:size])
    assert compact.root().hex() == expected


def test_node_hashes_by_level() -> None:
    for level, hashes in enumerate(VECTORS["node_hashes_by_level"]):
        width = 1 << level
        for i, expected in enumerate(hashes):
            assert root(LEAVES[i * width : (i + 1) * width]).hex() == expected, (level, i)


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"])
def test_inclusion_vectors(vector: dict[str, Any]) -> None:
    index, size = vector["leaf_index"], vector["tree_size"]
    proof = [H(h) for h in vector["proof"]]
    leaf, expected_root = leaf_hash(H(vector["leaf_input"])), H(vector["root"])
    assert inclusion_proof(LEAVES[:size], index) == proof
    assert inclusion_proof_by(_cached_subtree_root(LEAVES[:size]), index, size) == proof
    assert root_from_inclusion_proof(index, size, leaf, proof) == expected_root
    assert verify_inclusion(index, size, leaf, proof, expected_root)
    assert verify_inclusion(index, size, leaf, tuple(proof), expected_root)


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"])
def test_consistency_vectors(vector: dict[str, Any]) -> None:
    size1, size2 = vector["size1"], vector["size2"]
    proof = [H(h) for h in vector["proof"]]
    root1, root2 = H(vector["root1"]), H(vector["root2"])
    assert consistency_proof(LEAVES[:size2], size1) == proof
    assert consistency_proof_by(_cached_subtree_root(LEAVES[:size2]), size1, size2) == proof
    assert verify_consistency(size1, size2, root1, root2, proof)


# --- corrupted inclusion proofs (the transparency-dev/merkle probe families) --------------


def _inclusion_probes(vector: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    index, size = vector["leaf_index"], vector["tree_size"]
    proof = [H(h) for h in vector["proof"]]
    leaf, good_root = leaf_hash(H(vector["leaf_input"])), H(vector["root"])
    garbage = hashlib.sha256(b"garbage").digest()
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("index + 1", (index + 1, size, leaf, proof, good_root)),
        ("index - 1", (index - 1, size, leaf, proof, good_root)),
        ("index ^ 2", (index ^ 2, size, leaf, proof, good_root)),
        ("size * 2", (index, size * 2, leaf, proof, good_root)),
        ("size // 2", (index, size // 2, leaf, proof, good_root)),
        ("wrong leaf", (index, size, leaf_hash(b"WRONG"), proof, good_root)),
        ("empty root", (index, size, leaf, proof, b"")),
        ("random root", (index, size, leaf, proof, garbage)),
        ("preceding garbage", (index, size, leaf, [garbage, *proof], good_root)),
        ("trailing garbage", (index, size, leaf, [*proof, garbage], good_root)),
        ("preceding root", (index, size, leaf, [good_root, *proof], good_root)),
        ("trailing root", (index, size, leaf, [*proof, good_root], good_root)),
        ("index = size", (size, size, leaf, proof, good_root)),
        ("size 0", (0, 0, leaf, proof, good_root)),
        ("root truncated", (index, size, leaf, proof, good_root[:-1])),
        ("root extended", (index, size, leaf, proof, good_root + b"\x00")),
        ("leaf truncated", (index, size, leaf[:-1], proof, good_root)),
        ("leaf as bytearray", (index, size, bytearray(leaf), proof, good_root)),
        ("leaf as str", (index, size, leaf.hex(), proof, good_root)),
        ("proof is None", (index, size, leaf, None, good_root)),
        ("proof is bytes", (index, size, leaf, b"".join(proof), good_root)),
        ("index is float", (float(index), size, leaf, proof, good_root)),
        ("index is None", (None, size, leaf, proof, good_root)),
        ("size is str", (index, str(size), leaf, proof, good_root)),
    ]
    if proof:
        probes += [
            ("truncated proof", (index, size, leaf, proof[:-1], good_root)),
            ("proof without first", (index, size, leaf, proof[1:], good_root)),
            ("short proof hash", (index, size, leaf, [proof[0][:-1], *proof[1:]], good_root)),
            ("long proof hash", (index, size, leaf, [proof[0] + b"\x00", *proof[1:]], good_root)),
            ("proof hash not bytes", (index, size, leaf, [proof[0].hex(), *proof[1:]], good_root)),
            ("reversed proof", (index, size, leaf, proof[::-1], good_root)),
        ]
    return probes


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"])
def test_corrupted_inclusion_probes_are_rejected(vector: dict[str, Any]) -> None:
    for name, args in _inclusion_probes(vector):
        if name == "reversed proof" and len(args[3]) < 2:
            continue
        assert verify_inclusion(*args) is False, name


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"])
def test_inclusion_every_bit_flip_is_rejected(vector: dict[str, Any]) -> None:
    index, size = vector["leaf_index"], vector["tree_size"]
    proof = [H(h) for h in vector["proof"]]
    leaf, good_root = leaf_hash(H(vector["leaf_input"])), H(vector["root"])
    for bit in range(HASH_SIZE * 8):
        assert not verify_inclusion(index, size, _flip_bit(leaf, bit), proof, good_root)
        assert not verify_inclusion(index, size, leaf, proof, _flip_bit(good_root, bit))
        for position in range(len(proof)):
            mutated = list(proof)
            mutated[position] = _flip_bit(mutated[position], bit)
            assert not verify_inclusion(index, size, leaf, mutated, good_root), (position, bit)


def test_root_from_inclusion_proof_raises_value_error_on_malformed() -> None:
    proof = [H(h) for h in VECTORS["inclusion_proofs"][1]["proof"]]
    with pytest.raises(ValueError, match="out of range"):
        root_from_inclusion_proof(8, 8, LEAVES[0], proof)
    with pytest.raises(ValueError, match="must have 3 hashes, got 2"):
        root_from_inclusion_proof(0, 8, LEAVES[0], proof[:2])
    with pytest.raises(ValueError, match="leaf hash must be 32 bytes"):
        root_from_inclusion_proof(0, 8, LEAVES[0][:5], proof)
    with pytest.raises(ValueError, match="proof hash 1 must be 32 bytes"):
        root_from_inclusion_proof(0, 8, LEAVES[0], [proof[0], b"x", proof[2]])
    with pytest.raises(ValueError, match="index must be >= 0"):
        root_from_inclusion_proof(-1, 8, LEAVES[0], proof)
    with pytest.raises(ValueError, match="index must be an integer"):
        root_from_inclusion_proof(True, 8, LEAVES[0], proof)
    with pytest.raises(ValueError, match="proof must be a sequence"):
        root_from_inclusion_proof(0, 8, LEAVES[0], iter(proof))  # type: ignore[arg-type]


def test_verifiers_accept_numpy_integers() -> None:
    np = pytest.importorskip("numpy")
    vector = VECTORS["inclusion_proofs"][2]
    proof = [H(h) for h in vector["proof"]]
    leaf = leaf_hash(H(vector["leaf_input"]))
    assert verify_inclusion(np.int64(5), np.int64(8), leaf, proof, H(vector["root"]))


# --- corrupted consistency proofs ---------------------------------------------------------


def _consistency_probes(vector: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    size1, size2 = vector["size1"], vector["size2"]
    proof = [H(h) for h in vector["proof"]]
    root1, root2 = H(vector["root1"]), H(vector["root2"])
    garbage = hashlib.sha256(b"garbage").digest()
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("size1 - 1", (size1 - 1, size2, root1, root2, proof)),
        ("size1 + 1", (size1 + 1, size2, root1, root2, proof)),
        ("size1 ^ 2", (size1 ^ 2, size2, root1, root2, proof)),
        ("size2 * 2", (size1, size2 * 2, root1, root2, proof)),
        ("size2 // 2", (size1, size2 // 2, root1, root2, proof)),
        ("size 0 -> size2", (0, size2, root1, root2, proof)),
        ("size 0 -> size2, empty proof", (0, size2, EMPTY_ROOT, root2, [])),
        ("size 0 -> 0", (0, 0, EMPTY_ROOT, EMPTY_ROOT, [])),
        ("wrong root1", (size1, size2, garbage, root2, proof)),
        ("wrong root2", (size1, size2, root1, garbage, proof)),
        ("preceding garbage", (size1, size2, root1, root2, [garbage, *proof])),
        ("trailing garbage", (size1, size2, root1, root2, [*proof, garbage])),
        ("preceding root1", (size1, size2, root1, root2, [root1, *proof])),
        ("trailing root1", (size1, size2, root1, root2, [*proof, root1])),
        ("preceding root2", (size1, size2, root1, root2, [root2, *proof])),
        ("trailing root2", (size1, size2, root1, root2, [*proof, root2])),
        ("root1 truncated", (size1, size2, root1[:-1], root2, proof)),
        ("root2 extended", (size1, size2, root1, root2 + b"\x00", proof)),
        ("proof is None", (size1, size2, root1, root2, None)),
        ("negative size1", (-size1, size2, root1, root2, proof)),
        ("size2 is None", (size1, None, root1, root2, proof)),
    ]
    if size1 != size2:
        probes.append(("swapped sizes", (size2, size1, root2, root1, proof)))
    if root1 != root2:
        probes.append(("swapped roots", (size1, size2, root2, root1, proof)))
    if proof:
        probes += [
            ("empty proof", (size1, size2, root1, root2, [])),
            ("truncated proof", (size1, size2, root1, root2, proof[:-1])),
            ("proof without first", (size1, size2, root1, root2, proof[1:])),
            ("short proof hash", (size1, size2, root1, root2, [proof[0][:-1], *proof[1:]])),
        ]
    return probes


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"])
def test_corrupted_consistency_probes_are_rejected(vector: dict[str, Any]) -> None:
    for name, args in _consistency_probes(vector):
        assert verify_consistency(*args) is False, name


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"])
def test_consistency_every_bit_flip_is_rejected(vector: dict[str, Any]) -> None:
    size1, size2 = vector["size1"], vector["size2"]
    proof = [H(h) for h in vector["proof"]]
    root1, root2 = H(vector["root1"]), H(vector["root2"])
    for bit in range(HASH_SIZE * 8):
        assert not verify_consistency(size1, size2, _flip_bit(root1, bit), root2, proof)
        assert not verify_consistency(size1, size2, root1, _flip_bit(root2, bit), proof)
        for position in range(len(proof)):
            mutated = list(proof)
            mutated[position] = _flip_bit(mutated[position], bit)
            assert not verify_consistency(size1, size2, root1, root2, mutated), (position, bit)


def test_consistency_equal_sizes() -> None:
    good = H(VECTORS["roots_by_size"]["5"])
    assert verify_consistency(5, 5, good, good, [])
    assert not verify_consistency(5, 5, good, good, [good])
    assert not verify_consistency(5, 5, good, EMPTY_ROOT, [])


# --- proof generation errors --------------------------------------------------------------


def test_inclusion_proof_rejects_bad_index() -> None:
    with pytest.raises(ValueError, match="leaf index 8 is out of range for a tree of size 8"):
        inclusion_proof(LEAVES, 8)
    with pytest.raises(ValueError, match="index must be >= 0, got -1"):
        inclusion_proof(LEAVES, -1)
    with pytest.raises(ValueError, match="out of range for a tree of size 0"):
        inclusion_proof([], 0)
    with pytest.raises(ValueError, match="index must be an integer"):
        inclusion_proof(LEAVES, "3")  # type: ignore[arg-type]


def test_consistency_proof_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="from size 0 to size 8"):
        consistency_proof(LEAVES, 0)
    with pytest.raises(ValueError, match="from size 9 to size 8"):
        consistency_proof(LEAVES, 9)
    with pytest.raises(ValueError, match="old_size must be >= 0"):
        consistency_proof(LEAVES, -2)
    assert consistency_proof(LEAVES, 8) == []


def test_proofs_reject_bad_leaf_hashes() -> None:
    bad = [*LEAVES[:3], b"short", *LEAVES[4:]]
    with pytest.raises(ValueError, match="leaf hash 1 must be 32 bytes, got bytes of length 5"):
        inclusion_proof(bad, 0)
    with pytest.raises(ValueError, match="leaf hash 3 must be 32 bytes"):
        root(bad)
    with pytest.raises(ValueError, match="leaf hash 0 must be 32 bytes, got a str"):
        root(["a" * 32])  # type: ignore[list-item]


def test_by_variants_reject_bad_subtree_roots() -> None:
    with pytest.raises(ValueError, match=r"subtree_root\(4, 8\) returned bytes of length 3"):
        inclusion_proof_by(lambda begin, end: b"bad", 0, 8)
    with pytest.raises(ValueError, match=r"subtree_root\(4, 8\) returned a NoneType"):
        consistency_proof_by(lambda begin, end: None, 2, 8)  # type: ignore[arg-type,return-value]


def test_by_variants_request_few_subtree_roots() -> None:
    # Proofs for huge trees must stay O(log n) requests: the store answers each from its tiles.
    requested: list[tuple[int, int]] = []

    def subtree_root(begin: int, end: int) -> bytes:
        requested.append((begin, end))
        return hashlib.sha256(f"{begin}:{end}".encode()).digest()

    size = 10_000_000_019
    proof = inclusion_proof_by(subtree_root, 1_234_567_891, size)
    assert len(proof) == len(requested) <= size.bit_length()
    assert verify_inclusion(
        1_234_567_891,
        size,
        subtree_root(1_234_567_891, 1_234_567_892),
        proof,
        root_from_inclusion_proof(
            1_234_567_891, size, subtree_root(1_234_567_891, 1_234_567_892), proof
        ),
    )
    requested.clear()
    consistency = consistency_proof_by(subtree_root, 3_000_000_001, size)
    assert len(consistency) == len(requested) <= 2 * size.bit_length()


# --- CompactRange -------------------------------------------------------------------------


def test_compact_range_resume_from_hashes() -> None:
    grown = CompactRange()
    grown.extend(LEAVES[:7])
    assert grown.size == 7
    assert len(grown.hashes) == 3
    resumed = CompactRange(7, grown.hashes)
    assert resumed == grown
    resumed.append(LEAVES[7])
    assert resumed.root().hex() == VECTORS["roots_by_size"]["8"]
    assert resumed.hashes == (resumed.root(),)


def test_compact_range_copy_is_independent() -> None:
    original = CompactRange()
    original.extend(LEAVES[:5])
    clone = original.copy()
    clone.append(LEAVES[5])
    assert original.size == 5
    assert original.root().hex() == VECTORS["roots_by_size"]["5"]
    assert clone.root().hex() == VECTORS["roots_by_size"]["6"]
    assert original != clone
    assert "size=5" in repr(original)


@pytest.mark.parametrize(
    ("size", "hashes", "message"),
    [
        (3, [LEAVES[0]], "size 3 needs 2 subtree hashes"),
        (0, [LEAVES[0]], "size 0 needs 0 subtree hashes"),
        (1, [b"short"], "subtree hash 0 must be 32 bytes"),
        (1, [LEAVES[0].hex()], "subtree hash 0 must be 32 bytes, got a str"),
        (-1, [], "size must be >= 0"),
        (1, LEAVES[0], "sequence of 32-byte hashes, not a single value"),
    ],
)
def test_compact_range_rejects_bad_state(size: int, hashes: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompactRange(size, hashes)


def test_compact_range_rejects_bad_leaf() -> None:
    compact = CompactRange()
    with pytest.raises(ValueError, match="leaf hash must be 32 bytes, got bytes of length 31"):
        compact.append(LEAVES[0][:31])
    with pytest.raises(ValueError, match="got a str"):
        compact.append("x" * 32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got bytes of length 0"):
        compact.extend([LEAVES[0], b""])
    assert compact.size == 1  # the good leaf before the bad one stays appended


def test_compact_range_is_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(CompactRange())


# --- properties on random trees -----------------------------------------------------------

tree_sizes = st.integers(min_value=1, max_value=300)
salts = st.binary(max_size=8)


@settings(max_examples=40, deadline=None)
@given(size=tree_sizes, salt=salts, data=st.data())
def test_every_inclusion_proof_verifies(size: int, salt: bytes, data: st.DataObject) -> None:
    leaves = _leaves(size, salt)
    tree_root = root(leaves)
    subtree_root = _cached_subtree_root(leaves)
    assert subtree_root(0, size) == tree_root
    for index in range(size):
        proof = inclusion_proof_by(subtree_root, index, size)
        assert verify_inclusion(index, size, leaves[index], proof, tree_root)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    assert inclusion_proof(leaves, index) == inclusion_proof_by(subtree_root, index, size)


@settings(max_examples=40, deadline=None)
@given(size=tree_sizes, salt=salts, data=st.data())
def test_every_consistency_proof_verifies(size: int, salt: bytes, data: st.DataObject) -> None:
    leaves = _leaves(size, salt)
    subtree_root = _cached_subtree_root(leaves)
    new_root = subtree_root(0, size)
    for old_size in range(1, size + 1):
        proof = consistency_proof_by(subtree_root, old_size, size)
        assert verify_consistency(old_size, size, subtree_root(0, old_size), new_root, proof)
    old_size = data.draw(st.integers(min_value=1, max_value=size), label="old_size")
    assert consistency_proof(leaves, old_size) == consistency_proof_by(subtree_root, old_size, size)


@settings(max_examples=40, deadline=None)
@given(size=tree_sizes, salt=salts)
def test_compact_range_root_matches_at_every_size(size: int, salt: bytes) -> None:
    leaves = _leaves(size, salt)
    subtree_root = _cached_subtree_root(leaves)
    compact = CompactRange()
    for count, leaf in enumerate(leaves, start=1):
        compact.append(leaf)
        assert compact.size == count
        assert len(compact.hashes) == count.bit_count()
        assert compact.root() == subtree_root(0, count)
    assert root(leaves) == compact.root()
    assert CompactRange(size, compact.hashes).root() == compact.root()


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=2, max_value=300), salt=salts, data=st.data())
def test_mutated_inclusion_proof_does_not_verify(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = _leaves(size, salt)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = inclusion_proof(leaves, index)
    tree_root = root(leaves)
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="position")
    bit = data.draw(st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1), label="bit")
    mutated = list(proof)
    mutated[position] = _flip_bit(mutated[position], bit)
    assert not verify_inclusion(index, size, leaves[index], mutated, tree_root)
    assert not verify_inclusion(index, size, leaves[index], proof[:-1], tree_root)
    assert not verify_inclusion(index, size, leaves[index], [*proof, tree_root], tree_root)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=2, max_value=300), salt=salts, data=st.data())
def test_mutated_consistency_proof_does_not_verify(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = _leaves(size, salt)
    old_size = data.draw(st.integers(min_value=1, max_value=size - 1), label="old_size")
    proof = consistency_proof(leaves, old_size)
    old_root, new_root = root(leaves[:old_size]), root(leaves)
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="position")
    bit = data.draw(st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1), label="bit")
    mutated = list(proof)
    mutated[position] = _flip_bit(mutated[position], bit)
    assert not verify_consistency(old_size, size, old_root, new_root, mutated)
    assert not verify_consistency(old_size, size, old_root, new_root, proof[:-1])
    assert not verify_consistency(old_size, size, old_root, new_root, [*proof, new_root])


@settings(max_examples=200, deadline=None)
@given(
    index=st.one_of(st.integers(), st.none(), st.floats(), st.booleans()),
    size=st.one_of(st.integers(), st.none(), st.text(max_size=3)),
    leaf=st.one_of(st.binary(max_size=40), st.none(), st.text(max_size=40)),
    proof=st.one_of(
        st.lists(st.one_of(st.binary(max_size=40), st.none()), max_size=70),
        st.binary(max_size=64),
        st.none(),
        st.integers(),
    ),
    tree_root=st.one_of(st.binary(max_size=40), st.none()),
)
def test_verifiers_never_raise(
    index: Any, size: Any, leaf: Any, proof: Any, tree_root: Any
) -> None:
    assert verify_inclusion(index, size, leaf, proof, tree_root) in (True, False)
    assert verify_consistency(index, size, leaf, tree_root, proof) in (True, False)


def test_module_exports_match_contract() -> None:
    assert set(merkle.__all__) >= {
        "HASH_SIZE",
        "EMPTY_ROOT",
        "leaf_hash",
        "node_hash",
        "root",
        "inclusion_proof",
        "consistency_proof",
        "inclusion_proof_by",
        "consistency_proof_by",
        "verify_inclusion",
        "verify_consistency",
        "root_from_inclusion_proof",
        "CompactRange",
    }
