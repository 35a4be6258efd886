"""Read-only HashStore: readers in other processes, safe while the writer appends; no repairs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from infertrail.audit import merkle
from infertrail.audit.hashstore import HashStore
from tests.unit.audit.test_hashstore import filled, make_leaves


def test_reads_what_the_writer_stored(tmp_path: Path) -> None:
    leaves = make_leaves(70_000)
    filled(tmp_path, leaves, batch=4096).close()
    store = HashStore(tmp_path, read_only=True)
    assert store.read_only and store.size == 70_000
    assert store.leaves(10, 13) == leaves[10:13]
    for begin, end in ((0, 70_000), (0, 65_536), (256, 70_000), (12_345, 54_321)):
        assert store.subtree_root(begin, end) == merkle.root(leaves[begin:end])
    assert merkle.inclusion_proof_by(store.subtree_root, 777, 70_000) == merkle.inclusion_proof(
        leaves, 777
    )
    store.close()


def test_lagging_or_missing_levels_are_computed_not_repaired(tmp_path: Path) -> None:
    leaves = make_leaves(70_000)
    filled(tmp_path, leaves, batch=4096).close()
    os.truncate(tmp_path / "level8.bin", 100 * 32)  # as if the writer has not got there yet
    (tmp_path / "level16.bin").unlink()
    store = HashStore(tmp_path, read_only=True)
    assert store.subtree_root(0, 65_536) == merkle.root(leaves[:65_536])
    assert store.subtree_root(30_000, 70_000) == merkle.root(leaves[30_000:70_000])
    store.close()
    assert (tmp_path / "level8.bin").stat().st_size == 100 * 32  # nothing was written
    assert not (tmp_path / "level16.bin").exists()


def test_a_partial_leaf_is_not_seen_and_not_cut(tmp_path: Path) -> None:
    leaves = make_leaves(10)
    filled(tmp_path, leaves).close()
    with (tmp_path / "leaves.bin").open("ab") as f:
        f.write(b"\x01" * 7)  # the writer is in the middle of an append
    store = HashStore(tmp_path, read_only=True)
    assert store.size == 10
    store.close()
    assert (tmp_path / "leaves.bin").stat().st_size == 10 * 32 + 7


def test_writes_are_refused(tmp_path: Path) -> None:
    filled(tmp_path, make_leaves(3)).close()
    store = HashStore(tmp_path, read_only=True)
    for call in (lambda: store.append(make_leaves(1)), lambda: store.truncate(1), store.sync):
        with pytest.raises(PermissionError, match="read-only hash store"):
            call()
    store.close()


def test_missing_store_is_an_error_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HashStore(tmp_path / "tree", read_only=True)
    assert not (tmp_path / "tree").exists()


def test_reading_while_the_writer_appends(tmp_path: Path) -> None:
    leaves = make_leaves(40_000)
    writer = filled(tmp_path, leaves[:1000])
    done = threading.Event()

    def append() -> None:
        for start in range(1000, len(leaves), 97):
            writer.append(leaves[start : start + 97])
        done.set()

    thread = threading.Thread(target=append)
    thread.start()
    checked = 0
    while not done.is_set() or checked == 0:
        reader = HashStore(tmp_path, read_only=True)
        size = reader.size
        assert size >= 1000
        assert reader.subtree_root(0, size) == merkle.root(leaves[:size])
        reader.close()
        checked += 1
    thread.join()
    writer.close()
