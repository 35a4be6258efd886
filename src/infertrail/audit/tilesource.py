"""A log directory read as C2SP tlog-tiles: what the tiles route serves and publish-tiles writes.

:class:`LogTiles` reads, never writes: the signed checkpoint (the newest one a quorum of witnesses
cosigned, ``checkpoints/cosigned``, with their cosignatures, when the log has witnesses, else
``checkpoints/latest``), hash
tiles from the hash store (``tree/``, read-only, as proofs do while the writer appends) and entry
bundles from the WAL or, once sealed, from the lake. Only what the current checkpoint covers is
ever produced (:func:`~infertrail.audit.tiles.covered`): such a tile can never change, so it may
be cached for good. Entries are checked against the hash store's leaf hashes before they are
handed out; a mismatch (damaged storage) is an error, never a bundle that would not verify.

:func:`publish_tiles` writes the same resources as static files (a directory or any fsspec URL):
every tile and bundle not there yet, write-once, and the checkpoint last.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.cosigned import PUBLISHED
from infertrail.audit.framing import LogCorruptedError
from infertrail.audit.hashstore import HashStore
from infertrail.audit.merkle import leaf_hash
from infertrail.audit.tiles import (
    Tile,
    covered,
    encode_bundle,
    tile_data,
    tiles_for_size,
)
from infertrail.audit.walread import iter_records

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["CHECKPOINT_PATH", "LogTiles", "PublishReport", "TileUnavailable", "publish_tiles"]

CHECKPOINT_PATH = "checkpoint"
_BUNDLE_CACHE = 64  # entry bundles kept in memory (immutable: a sequential reader re-reads none)


class TileUnavailable(LookupError):
    """The log has no such tile: beyond its checkpoint, or no checkpoint at all (HTTP 404)."""


class LogTiles:
    """tlog-tiles resources of the log in ``log_dir`` (entries also from ``lake_url``).

    Thread-safe: the route serves requests from a thread pool. The verifier key is the one in
    the log's ``log.json``: a checkpoint that does not verify with it is never served.
    """

    def __init__(self, log_dir: Path, lake_url: str | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.lake_url = lake_url
        self._lock = threading.Lock()
        self._store: HashStore | None = None
        self._bundles: OrderedDict[Tile, bytes] = OrderedDict()
        self._verifier: NoteVerifier | None = None

    def checkpoint(self) -> tuple[bytes, Checkpoint]:
        """The checkpoint to publish and what it says; TileUnavailable if there is none yet.

        With witnesses, the newest one a quorum cosigned (monitors can check the cosignatures;
        it trails ``latest`` by up to the witness interval), else the newest one signed.
        """
        for name in (PUBLISHED, "latest"):
            path = self.log_dir / "checkpoints" / name
            try:
                note = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                return note, open_checkpoint(note, self._log_verifier())
            except NoteError as exc:
                raise LogCorruptedError(f"{path}: {exc}") from exc
        raise TileUnavailable(f"{self.log_dir} has no signed checkpoint yet")

    def read(self, tile: Tile, tree_size: int) -> bytes:
        """The contents of ``tile`` if a tree of ``tree_size`` covers it, else TileUnavailable."""
        if not covered(tile, tree_size):
            raise TileUnavailable(f"{tile} is beyond the checkpoint's tree size {tree_size}")
        if tile.entries:
            return self._bundle(tile)
        store = self._hashes(tile.end_leaf)
        if tile.level == 0:  # leaf hashes as stored, in one read
            return b"".join(store.leaves(tile.first_leaf, tile.end_leaf))
        return tile_data(tile, store.subtree_root)

    def close(self) -> None:
        """Close the hash store (idempotent; a later read opens it again)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _log_verifier(self) -> NoteVerifier:
        if self._verifier is None:
            try:
                meta = json.loads((self.log_dir / "log.json").read_bytes())
                self._verifier = NoteVerifier.from_key(meta["verifier_key"])
            except FileNotFoundError:
                raise TileUnavailable(f"no audit log at {self.log_dir}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise LogCorruptedError(f"{self.log_dir}/log.json: no usable key: {exc}") from exc
        return self._verifier

    def _hashes(self, size: int) -> HashStore:
        """A read-only hash store holding at least ``size`` leaves (reopened to see new ones)."""
        with self._lock:
            if self._store is None or self._store.size < size:
                if self._store is not None:
                    self._store.close()
                self._store = HashStore(self.log_dir / "tree", read_only=True)
            if self._store.size < size:
                raise LogCorruptedError(
                    f"{self.log_dir}/tree holds {self._store.size} leaves; the checkpoint "
                    f"covers {size}"
                )
            return self._store

    def _bundle(self, tile: Tile) -> bytes:
        with self._lock:
            cached = self._bundles.get(tile)
            if cached is not None:
                self._bundles.move_to_end(tile)
                return cached
        begin, end = tile.first_leaf, tile.end_leaf
        records = self._records(begin, end)
        expected = self._hashes(end).leaves(begin, end)
        for seq, (record, leaf) in enumerate(zip(records, expected, strict=True), start=begin):
            if leaf_hash(record) != leaf:
                raise LogCorruptedError(
                    f"record {seq} does not hash to its leaf in {self.log_dir}/tree: "
                    "run `infertrail audit verify`"
                )
        data = encode_bundle(records)
        with self._lock:
            self._bundles[tile] = data
            while len(self._bundles) > _BUNDLE_CACHE:
                self._bundles.popitem(last=False)
        return data

    def _records(self, begin: int, end: int) -> list[bytes]:
        """Canonical bytes of records [begin, end): from the WAL, else from the lake."""
        found: dict[int, bytes] = {}
        try:
            found.update(self._wal(begin, end))
        except LookupError:  # the start was sealed and retired from the WAL
            found.update(self._lake(begin, end))
            if len(found) < end - begin:
                found.update(self._wal(begin + len(found), end))
        if sorted(found) != list(range(begin, end)):
            missing = next(s for s in range(begin, end) if s not in found)
            raise LogCorruptedError(f"record {missing} is in neither the WAL nor the lake")
        return [found[s] for s in range(begin, end)]

    def _wal(self, begin: int, end: int) -> Iterator[tuple[int, bytes]]:
        return iter_records(self.log_dir / "wal", begin, end, index_dir=self.log_dir / "wal-index")

    def _lake(self, begin: int, end: int) -> dict[int, bytes]:
        if self.lake_url is None:
            raise LogCorruptedError(f"records from {begin} are sealed, and no lake was given")
        # The lake extra; imported here so that hash tiles need only the core.
        import pyarrow.parquet as pq

        from infertrail.audit.lake import LakeReader
        from infertrail.audit.manifest import MANIFEST_DIR, open_manifest, range_of

        reader = LakeReader(self.lake_url)
        out: dict[int, bytes] = {}
        for name in reader.manifest_names():
            first, last = range_of(name)
            if last < begin or first >= end:
                continue
            manifest = open_manifest(
                reader.read_bytes(f"{MANIFEST_DIR}/{name}"), self._log_verifier()
            )
            # Only the rows wanted; their bytes are checked against the leaf hashes anyway.
            table = pq.read_table(
                reader.path(manifest.file),
                filesystem=reader.fs,
                columns=["seq", "canonical"],
                filters=[("seq", ">=", begin), ("seq", "<", end)],
            )
            seqs, canonicals = table.column("seq"), table.column("canonical")
            out.update(zip(seqs.to_pylist(), canonicals.to_pylist(), strict=True))
        return out


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish_tiles` did: the checkpoint's size and the files it wrote."""

    tree_size: int
    written: int
    skipped: int  # immutable resources already there


def publish_tiles(tiles: LogTiles, dest: str, *, entries: bool = False) -> PublishReport:
    """Write the log's tiles (and with ``entries``, its entry bundles) under ``dest``.

    ``dest`` is a directory or an fsspec URL (the ``lake`` extra). Tiles and bundles are
    immutable: each is written once, and those already there are skipped (their partial
    siblings of earlier runs stay, as the spec allows). The checkpoint is written last,
    replacing the previous one, so a reader never sees a checkpoint whose tiles are missing.
    """
    import fsspec  # the lake extra

    from infertrail.audit.lake import write_once

    note, checkpoint = tiles.checkpoint()
    fs, root = fsspec.core.url_to_fs(dest)
    root = root.rstrip("/")
    written = skipped = 0
    for tile in tiles_for_size(checkpoint.size, entries=entries):
        path = f"{root}/{tile.path()}"
        if fs.exists(path):
            skipped += 1
            continue
        try:
            write_once(fs, path, tiles.read(tile, checkpoint.size))
            written += 1
        except FileExistsError:  # another publisher wrote the same immutable bytes meanwhile
            skipped += 1
    _replace(fs, f"{root}/{CHECKPOINT_PATH}", note)
    return PublishReport(checkpoint.size, written + 1, skipped)


def _replace(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``path`` whole: locally a temporary file renamed over it; else one put."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        from infertrail.audit.recovery import replace_file

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        replace_file(Path(path), data, True)
        return
    with fs.open(path, "wb") as f:
        f.write(data)
