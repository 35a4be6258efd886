"""Aligned subtrees over leaf ranges, joined into a compact tree: equal to RFC 6962 roots."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import merkle
from infertrail.audit.subtrees import (
    CompactTree,
    RangeTree,
    aligned_blocks,
    leaf_hashes,
    node_hashes,
    tree_root,
)


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


def test_leaf_and_node_hashes_are_rfc6962() -> None:
    records = [b"", b"a", b"record"]
    assert leaf_hashes(records) == [merkle.leaf_hash(r) for r in records]
    a, b = leaves(2)
    assert node_hashes([a, b], [b, a]) == [merkle.node_hash(a, b), merkle.node_hash(b, a)]


@pytest.mark.parametrize(
    ("begin", "end", "expected"),
    [
        (0, 0, []),
        (0, 1, [(0, 1)]),
        (0, 5, [(0, 4), (4, 1)]),
        (3, 11, [(3, 1), (4, 4), (8, 2), (10, 1)]),
        (8, 16, [(8, 8)]),
    ],
)
def test_aligned_blocks(begin: int, end: int, expected: list[tuple[int, int]]) -> None:
    assert aligned_blocks(begin, end) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.integers(0, 5000))
def test_aligned_blocks_tile_the_range(begin: int, length: int) -> None:
    blocks = aligned_blocks(begin, begin + length)
    at = begin
    for start, width in blocks:
        assert start == at and width & (width - 1) == 0 and start % width == 0
        at += width
    assert at == begin + length
    with pytest.raises(ValueError, match="bad leaf range"):
        aligned_blocks(5, 4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=6), st.data())
def test_files_joined_by_subtrees_give_the_rfc6962_root_at_every_size(
    sizes: list[int], data: st.DataObject
) -> None:
    """Leaves split into 'files' of arbitrary sizes, joined as verify joins worker results."""
    all_leaves = leaves(sum(sizes))
    tree, at = CompactTree(), 0
    assert tree.root() == merkle.EMPTY_ROOT
    for size in sizes:
        mine = all_leaves[at : at + size]
        part = RangeTree(at, b"".join(mine) if data.draw(st.booleans()) else mine)  # both forms
        inside = data.draw(st.integers(at, at + size))  # a signed size falling inside the file
        probe = tree.copy()
        probe.extend(part.blocks(inside))
        assert probe.size == inside
        assert probe.root() == merkle.root(all_leaves[:inside])
        tree.extend(part.blocks(at + size))
        at += size
        assert tree.root() == merkle.root(all_leaves[:at])
        compact = merkle.CompactRange()
        compact.extend(all_leaves[:at])
        assert tree.root() == compact.root()


def test_push_refuses_misaligned_subtrees() -> None:
    tree = CompactTree()
    tree.push(leaves(1)[0], 1)
    for width in (2, 3, 0):
        with pytest.raises(ValueError, match="cannot start at leaf 1"):
            tree.push(b"x" * 32, width)
    with pytest.raises(ValueError, match="end 9 outside"):
        RangeTree(3, leaves(5)).blocks(9)
    with pytest.raises(ValueError, match="32 bytes each: 70 bytes cannot be"):
        RangeTree(0, b"x" * 70)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 600))
def test_tree_root_is_mth(n: int) -> None:
    assert tree_root(leaves(n)) == merkle.root(leaves(n))
