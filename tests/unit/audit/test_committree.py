"""The writer's frontier and per-commit nodes, against the reference RFC 6962 code in merkle.py."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import merkle
from infertrail.audit.committree import Frontier, commit

LEAVES = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(1100)]


def frontier_of(size: int) -> Frontier:
    return Frontier.of(size, lambda begin, end: merkle.root(LEAVES[begin:end]))


def grown(start: int, end: int) -> tuple[Frontier, bytes]:
    return frontier_of(start), b"".join(LEAVES[start:end])


@given(st.integers(0, 1000), st.integers(1, 99))
@settings(max_examples=300, deadline=None)
def test_a_commit_gives_the_root_and_every_proof_of_its_batch(first: int, count: int) -> None:
    end = first + count
    tree = commit(*grown(first, end))
    assert (tree.first, tree.size) == (first, end)
    assert tree.root == merkle.root(LEAVES[:end])
    for seq in range(first, end):
        assert tree.leaf(seq) == LEAVES[seq]
        assert tree.inclusion_proof(seq) == merkle.inclusion_proof(LEAVES[:end], seq)
    assert tree.frontier() == frontier_of(end)


@pytest.mark.parametrize(
    ("first", "end"),
    [(0, 1), (0, 2), (1, 2), (0, 256), (255, 256), (256, 257), (511, 1024), (1023, 1100)],
)
def test_edges_of_powers_of_two(first: int, end: int) -> None:
    tree = commit(*grown(first, end))
    assert tree.root == merkle.root(LEAVES[:end])
    for seq in (first, end - 1):
        assert tree.inclusion_proof(seq) == merkle.inclusion_proof(LEAVES[:end], seq)


def test_a_chain_of_commits_is_one_tree() -> None:
    frontier = Frontier(0, ())
    assert frontier.root() == merkle.EMPTY_ROOT
    for end in (3, 4, 9, 200, 513, 1100):
        tree = commit(frontier, b"".join(LEAVES[frontier.size : end]))
        assert tree.root == merkle.root(LEAVES[:end])
        frontier = tree.frontier()
        assert frontier.root() == tree.root


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one or more 32-byte leaf hashes, got 0 bytes"):
        commit(frontier_of(5), b"")
    with pytest.raises(ValueError, match="got 33 bytes"):
        commit(frontier_of(5), LEAVES[5] + b"x")
    tree = commit(*grown(8, 12))
    with pytest.raises(ValueError, match=r"seq 7 is not in the batch \[8, 12\)"):
        tree.inclusion_proof(7)
    with pytest.raises(ValueError, match=r"seq 12 is not in the batch"):
        tree.inclusion_proof(12)
    with pytest.raises(ValueError, match="has 3 levels, got 2"):
        Frontier(5, (LEAVES[0], b""))
    with pytest.raises(ValueError, match="peak 1 of a frontier of size 5 must be 0 bytes"):
        Frontier(5, (LEAVES[0], LEAVES[1], LEAVES[2]))
    with pytest.raises(ValueError, match="a tree size is >= 0"):
        Frontier(-1, ())
