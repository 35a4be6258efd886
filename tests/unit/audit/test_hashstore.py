"""HashStore: subtree roots from stored levels equal RFC 6962 roots; repair on open; proofs."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import merkle
from infertrail.audit.hashstore import HashStore


def make_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


def filled(tree_dir: Path, leaves: list[bytes], batch: int = 1000) -> HashStore:
    store = HashStore(tree_dir)
    for start in range(0, len(leaves), batch):
        store.append(leaves[start : start + batch])
    return store


def entries(path: Path) -> int:
    return path.stat().st_size // 32


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=8),
    data=st.data(),
)
def test_subtree_roots_match_rfc6962(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], data: st.DataObject
) -> None:
    leaves = make_leaves(sum(sizes))
    store = HashStore(tmp_path_factory.mktemp("tree"))
    at = 0
    for size in sizes:  # batches of varying sizes cross level-8 boundaries at varying points
        store.append(leaves[at : at + size])
        at += size
    assert store.size == len(leaves)
    for _ in range(10):
        begin = data.draw(st.integers(0, len(leaves) - 1))
        end = data.draw(st.integers(begin + 1, len(leaves)))
        assert store.subtree_root(begin, end) == merkle.root(leaves[begin:end])
    store.close()


def test_level_files_track_complete_subtrees(tmp_path: Path) -> None:
    leaves = make_leaves(70_000)
    store = filled(tmp_path, leaves, batch=4096)
    assert entries(tmp_path / "leaves.bin") == 70_000
    assert entries(tmp_path / "level8.bin") == 70_000 >> 8
    assert entries(tmp_path / "level16.bin") == 1
    assert entries(tmp_path / "level24.bin") == 0
    level16 = (tmp_path / "level16.bin").read_bytes()
    assert level16 == merkle.root(leaves[:65536])
    rng = random.Random(7)
    for _ in range(8):
        begin = rng.randrange(70_000)
        end = rng.randint(begin + 1, 70_000)
        assert store.subtree_root(begin, end) == merkle.root(leaves[begin:end])
    assert store.subtree_root(0, 70_000) == merkle.root(leaves)
    store.close()


def test_proofs_from_the_store_equal_in_memory_proofs(tmp_path: Path) -> None:
    leaves = make_leaves(66_000)
    store = filled(tmp_path, leaves, batch=3000)
    rng = random.Random(1)
    root = merkle.root(leaves)
    for index in [0, 255, 256, 65535, 65536, 65999, *(rng.randrange(66_000) for _ in range(5))]:
        proof = merkle.inclusion_proof_by(store.subtree_root, index, len(leaves))
        assert merkle.verify_inclusion(index, len(leaves), leaves[index], proof, root)
    for old in [1, 256, 1000, 65536, 65537]:
        proof = merkle.consistency_proof_by(store.subtree_root, old, len(leaves))
        assert proof == merkle.consistency_proof(leaves, old)
    store.close()


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    leaves = make_leaves(1000)
    filled(tmp_path, leaves, batch=77).close()
    store = HashStore(tmp_path)
    assert store.size == 1000
    assert store.leaf(999) == leaves[999]
    assert store.leaves(10, 13) == leaves[10:13]
    store.append(make_leaves(100, b"more"))
    assert store.subtree_root(0, 1100) == merkle.root(leaves + make_leaves(100, b"more"))
    store.close()


def test_partial_leaf_is_dropped_on_open(tmp_path: Path) -> None:
    leaves = make_leaves(300)
    filled(tmp_path, leaves).close()
    with (tmp_path / "leaves.bin").open("ab") as f:
        f.write(b"\x01" * 17)
    store = HashStore(tmp_path)
    assert store.size == 300
    assert store.subtree_root(0, 300) == merkle.root(leaves)
    store.close()


def test_lagging_levels_are_rebuilt_and_levels_ahead_are_cut(tmp_path: Path) -> None:
    leaves = make_leaves(70_000)
    filled(tmp_path, leaves, batch=5000).close()
    os.truncate(tmp_path / "level8.bin", 32 * 3)  # lost level-8 entries (crash)
    (tmp_path / "level16.bin").unlink()
    store = HashStore(tmp_path)
    assert entries(tmp_path / "level8.bin") == 70_000 >> 8
    assert entries(tmp_path / "level16.bin") == 1
    assert store.subtree_root(0, 70_000) == merkle.root(leaves)
    store.close()
    os.truncate(tmp_path / "leaves.bin", 32 * 1000)  # leaves cut: levels now run ahead
    store = HashStore(tmp_path)
    assert entries(tmp_path / "level8.bin") == 3
    assert entries(tmp_path / "level16.bin") == 0
    assert store.subtree_root(0, 1000) == merkle.root(leaves[:1000])
    store.close()


@pytest.mark.parametrize("cut", [0, 1, 255, 256, 257, 65535, 65536, 65537])
def test_truncate_then_append_again(tmp_path: Path, cut: int) -> None:
    leaves = make_leaves(66_000)
    store = filled(tmp_path, leaves, batch=4096)
    store.truncate(cut)
    assert store.size == cut
    other = make_leaves(66_000 - cut, b"other")
    store.append(other)
    assert store.subtree_root(0, 66_000) == merkle.root(leaves[:cut] + other)
    store.close()


def test_bad_arguments(tmp_path: Path) -> None:
    store = filled(tmp_path, make_leaves(10))
    with pytest.raises(ValueError, match=r"\[3, 3\)"):
        store.subtree_root(3, 3)
    with pytest.raises(ValueError, match="within"):
        store.subtree_root(0, 11)
    with pytest.raises(ValueError, match="within"):
        store.subtree_root(-1, 2)
    with pytest.raises(IndexError, match="leaf 10"):
        store.leaf(10)
    with pytest.raises(ValueError, match="not within"):
        store.leaves(5, 11)
    with pytest.raises(ValueError, match="truncate"):
        store.truncate(11)
    with pytest.raises(ValueError, match="32 bytes"):
        store.append([b"short"])
    assert store.size == 10  # nothing half-appended
    store.close()
    store.close()  # idempotent


@pytest.mark.slow
def test_level24_with_repeated_blocks(tmp_path: Path) -> None:
    # 2^24 + 5 leaves made of one repeated 2^16-leaf block: every level-16 entry is equal, so the
    # expected roots need only a few hashes while the store does all of its real work.
    block = make_leaves(1 << 16)
    block_root = merkle.root(block)
    store = HashStore(tmp_path)
    for _ in range(256):
        store.append(block)
    tail = make_leaves(5, b"tail")
    store.append(tail)
    expected = block_root
    for _ in range(8):
        expected = merkle.node_hash(expected, expected)
    assert (tmp_path / "level24.bin").read_bytes() == expected
    assert store.subtree_root(0, 1 << 24) == expected
    assert store.subtree_root(0, (1 << 24) + 5) == merkle.node_hash(expected, merkle.root(tail))
    store.close()
    (tmp_path / "level24.bin").unlink()
    store = HashStore(tmp_path)
    assert (tmp_path / "level24.bin").read_bytes() == expected
    store.close()
