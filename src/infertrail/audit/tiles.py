"""C2SP tlog-tiles: tile paths, tile and entry-bundle contents, and proofs read from tiles.

A tiled log (c2sp.org/tlog-tiles) publishes its Merkle tree as static resources:

- ``tile/<L>/<N>[.p/<W>]``: the *N*-th tile at level *L*, the hashes
  ``MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])`` for ``i < W`` back to back (a full
  tile has W = 256 hashes, 8,192 bytes; a partial tile 1..255);
- ``tile/entries/<N>[.p/<W>]``: the entries hashed into level-0 tile N, each as a big-endian
  uint16 length followed by the entry's bytes.

*N* is written in 3-digit groups, all but the last prefixed with ``x`` (1234067 is
``x001/x234/067``). This module is pure: it names tiles, says which ones a tree size needs
and covers, computes a tile's contents from a subtree-root function (storage supplies it,
:mod:`infertrail.audit.tilesource`), encodes and decodes entry bundles, and answers the subtree
roots a proof needs from fetched tiles (:class:`TileHashReader`, for a client such as
``infertrail audit monitor``). Nothing here does I/O; the fetch function is injected.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from infertrail.audit.merkle import HASH_SIZE, node_hash, root

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileError",
    "TileHashReader",
    "bundle_for",
    "covered",
    "decode_bundle",
    "encode_bundle",
    "format_index",
    "parse_tile_path",
    "split_tile",
    "tile_data",
    "tile_for",
    "tiles_for_size",
]

TILE_HEIGHT = 8  # tlog-tiles fixes the height: 2**8 hashes per tile
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63  # "a decimal ASCII integer between 0 and 63"
MAX_ENTRY_SIZE = 0xFFFF  # an entry's length is a big-endian uint16
_MAX_INDEX = 2**64 - 1  # tree sizes are uint64: no tile index can exceed this
_LENGTH = struct.Struct(">H")
_LEVEL = re.compile(r"0|[1-9][0-9]?")  # no leading zeros
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"[0-9]{3}")

# A fetch of one tile (hash tile at a level, as of a tree size) by a client: its raw bytes.
FetchTile = Callable[["Tile"], bytes]
SubtreeRoot = Callable[[int, int], bytes]


class TileError(ValueError):
    """A tile path or tile contents that break the tlog-tiles format; says what is wrong."""


@dataclass(frozen=True, order=True)
class Tile:
    """One tlog-tiles resource: a hash tile at ``level`` (or an entry bundle) and its width.

    ``entries`` marks an entry bundle, which covers the same leaves as level-0 tile ``index``.
    ``width`` is 1..256; 256 is a full tile, anything less a partial one.
    """

    level: int
    index: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        for name, value in (("level", self.level), ("index", self.index), ("width", self.width)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TileError(f"tile {name} must be an integer, got {value!r}")
        if not 0 <= self.level <= MAX_LEVEL:
            raise TileError(f"tile level must be 0..{MAX_LEVEL}, got {self.level}")
        if self.entries and self.level != 0:
            raise TileError(f"an entry bundle has no level (it pairs with level 0): {self.level}")
        if not 0 <= self.index <= _MAX_INDEX:
            raise TileError(f"tile index must be 0..2**64-1, got {self.index}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise TileError(f"tile width must be 1..{TILE_WIDTH}, got {self.width}")

    @property
    def partial(self) -> bool:
        """True for a partial tile (fewer than 256 hashes or entries)."""
        return self.width < TILE_WIDTH

    @property
    def span(self) -> int:
        """Leaves under one hash of this tile: 256**level (1 for level 0 and entry bundles)."""
        return 1 << (TILE_HEIGHT * self.level)

    @property
    def first_leaf(self) -> int:
        """The tile's start index: the first leaf under its first hash."""
        return self.index * TILE_WIDTH * self.span

    @property
    def end_leaf(self) -> int:
        """One past the last leaf under the tile's last hash, for its width."""
        return self.first_leaf + self.width * self.span

    def path(self) -> str:
        """The tile's path below the log's prefix, e.g. ``tile/1/x001/234.p/17``."""
        kind = "entries" if self.entries else str(self.level)
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{kind}/{format_index(self.index)}{suffix}"

    def size_in_bytes(self) -> int:
        """Exact length of a hash tile's contents (entry bundles vary: ValueError)."""
        if self.entries:
            raise ValueError("entry bundles have no fixed size")
        return self.width * HASH_SIZE

    def __str__(self) -> str:
        return self.path()


def format_index(index: int) -> str:
    """Tile index N as tlog-tiles writes it: 3-digit groups, ``x`` before all but the last."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise TileError(f"tile index must be a non-negative integer, got {index!r}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def parse_tile_path(path: str) -> Tile:
    """The tile a path names (``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``).

    Only the canonical spelling is accepted (no leading zeros in L or W, no extra ``x000``
    groups, no empty or dot segments), so one tile has exactly one path; TileError otherwise.
    A leading ``/`` is allowed.
    """
    if not isinstance(path, str):
        raise TileError(f"tile path must be a string, got {type(path).__name__}")
    parts = path.removeprefix("/").split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"not a tile path: {path!r} (expected tile/<L>/<N>[.p/<W>])")
    kind, rest = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise TileError(f"bad partial width in {path!r}: must be 1..255 without leading zeros")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    *upper, last = rest
    if not _GROUP.fullmatch(last) or not all(
        g.startswith("x") and _GROUP.fullmatch(g[1:]) for g in upper
    ):
        raise TileError(f"bad tile index in {path!r}: 3-digit groups, 'x' before all but the last")
    index = 0
    for group in [*(g[1:] for g in upper), last]:
        index = index * 1000 + int(group)
    if kind == "entries":
        tile = Tile(0, index, width, entries=True)
    elif _LEVEL.fullmatch(kind):
        tile = Tile(int(kind), index, width)
    else:
        raise TileError(f"bad tile level in {path!r}: 0..63 without leading zeros, or 'entries'")
    if tile.path() != path.removeprefix("/"):
        # e.g. "x000/123": a valid number, not the one spelling of it.
        raise TileError(f"{path!r} is not the canonical path of {tile.path()!r}")
    return tile


def tile_for(level: int, index: int, tree_size: int, *, entries: bool = False) -> Tile | None:
    """Tile ``index`` at ``level`` as a tree of ``tree_size`` leaves has it; None if empty.

    Full when the tree holds all of it, else partial with the width the spec gives:
    ``floor(tree_size / 256**level) mod 256`` for the rightmost tile.
    """
    count = tree_size >> (TILE_HEIGHT * level)  # hashes at this level in the tree
    width = min(count - index * TILE_WIDTH, TILE_WIDTH)
    if width <= 0:
        return None
    return Tile(level, index, width, entries=entries)


def bundle_for(index: int, tree_size: int) -> Tile | None:
    """Entry bundle ``index`` as a tree of ``tree_size`` leaves has it; None if empty."""
    return tile_for(0, index, tree_size, entries=True)


def tiles_for_size(tree_size: int, *, entries: bool = False) -> list[Tile]:
    """Every hash tile (with ``entries``, also every entry bundle) of a tree, level by level.

    The spec's example: a tree of 70,000 leaves has 273 full level-0 tiles and one of width 112,
    one full level-1 tile and one of width 17, and a level-2 tile of width 1.
    """
    if not isinstance(tree_size, int) or tree_size < 0:
        raise TileError(f"tree size must be a non-negative integer, got {tree_size!r}")
    out: list[Tile] = []
    level = 0
    while tree_size >> (TILE_HEIGHT * level):
        count = tree_size >> (TILE_HEIGHT * level)
        for index in range(-(-count // TILE_WIDTH)):
            tile = tile_for(level, index, tree_size)
            assert tile is not None
            out.append(tile)
        level += 1
    if entries:
        out += [
            t for t in (bundle_for(i, tree_size) for i in range(-(-tree_size // TILE_WIDTH))) if t
        ]
    return out


def covered(tile: Tile, tree_size: int) -> bool:
    """Whether a tree of ``tree_size`` leaves determines ``tile`` (so it may be served).

    A log serves only what a signed checkpoint covers: the leaves under every hash of the tile
    must lie within the tree. Such a tile never changes afterwards (the tree only grows).
    """
    return tile.end_leaf <= tree_size


def tile_data(tile: Tile, subtree_root: SubtreeRoot) -> bytes:
    """A hash tile's contents: its ``width`` subtree roots back to back.

    ``subtree_root(begin, end)`` must return ``MTH(D[begin:end])`` (e.g.
    ``HashStore.subtree_root``); it is asked only for complete aligned subtrees.
    """
    if tile.entries:
        raise TileError("an entry bundle holds entries, not hashes: use encode_bundle")
    span, first = tile.span, tile.first_leaf
    hashes = [subtree_root(first + i * span, first + (i + 1) * span) for i in range(tile.width)]
    for i, h in enumerate(hashes):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise TileError(f"subtree root {i} of {tile} is not a {HASH_SIZE}-byte hash")
    return b"".join(hashes)


def split_tile(tile: Tile, data: bytes) -> list[bytes]:
    """A fetched hash tile's hashes; TileError unless it is exactly ``width`` hashes long."""
    expected = tile.size_in_bytes()
    if not isinstance(data, bytes) or len(data) != expected:
        got = f"{len(data)} bytes" if isinstance(data, bytes) else type(data).__name__
        raise TileError(f"{tile}: expected {expected} bytes ({tile.width} hashes), got {got}")
    return [data[i : i + HASH_SIZE] for i in range(0, expected, HASH_SIZE)]


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length, then its bytes.

    TileError for an entry over 65,535 bytes (the format cannot carry it) or an empty list.
    """
    out = bytearray()
    count = 0
    for number, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(
                f"entry {number} of the bundle is {len(entry)} bytes; a tlog-tiles entry bundle "
                f"carries at most {MAX_ENTRY_SIZE}"
            )
        out += _LENGTH.pack(len(entry))
        out += entry
        count += 1
    if not count:
        raise TileError("an entry bundle holds 1..256 entries, got none")
    if count > TILE_WIDTH:
        raise TileError(f"an entry bundle holds at most {TILE_WIDTH} entries, got {count}")
    return bytes(out)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle, strictly: every byte used, ``width`` entries if given."""
    if not isinstance(data, bytes):
        raise TileError(f"entry bundle must be bytes, got {type(data).__name__}")
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise TileError(f"entry bundle ends inside the length of entry {len(entries)}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise TileError(
                f"entry {len(entries)} claims {length} bytes; only {len(data) - offset} remain"
            )
        entries.append(data[offset : offset + length])
        offset += length
        if len(entries) > TILE_WIDTH:
            raise TileError(f"entry bundle holds more than {TILE_WIDTH} entries")
    if width is not None and len(entries) != width:
        raise TileError(f"entry bundle holds {len(entries)} entries, expected {width}")
    if not entries:
        raise TileError("entry bundle is empty")
    return entries


class TileHashReader:
    """Subtree roots of a tree of ``tree_size`` leaves, computed from its tiles.

    ``fetch(tile)`` returns a tile's raw bytes (from a server or a directory); each tile is
    fetched at most once per reader and checked for length. Nothing fetched is trusted: a proof
    built from these roots is only as good as its verification against signed roots
    (:func:`infertrail.audit.verifier_state.judge_by_proof` does that).
    """

    def __init__(self, tree_size: int, fetch: FetchTile) -> None:
        self.tree_size = tree_size
        self._fetch = fetch
        self._tiles: dict[tuple[int, int], list[bytes]] = {}
        self.fetched: list[Tile] = []  # in fetch order, for diagnostics and tests

    def subtree_root(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) for 0 <= begin < end <= tree_size (RFC 6962 section 2.1)."""
        if not 0 <= begin < end <= self.tree_size:
            raise ValueError(
                f"subtree range [{begin}, {end}) must be non-empty and within [0, {self.tree_size})"
            )
        n = end - begin
        if n & (n - 1) == 0 and begin % n == 0:
            return self._perfect_root(begin, n)
        split = 1 << ((n - 1).bit_length() - 1)  # the largest power of two below n
        return node_hash(
            self.subtree_root(begin, begin + split), self.subtree_root(begin + split, end)
        )

    def _perfect_root(self, begin: int, n: int) -> bytes:
        """Root of the complete aligned subtree of ``n`` (a power of two) leaves at ``begin``."""
        height = n.bit_length() - 1
        level, rest = divmod(height, TILE_HEIGHT)
        first = begin >> (TILE_HEIGHT * level)  # index of its first hash at that level
        hashes = self._hashes(level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        # A subtree below a tile's top is the root of 2**rest of the tile's hashes.
        return root(hashes[offset : offset + (1 << rest)])

    def _hashes(self, level: int, index: int) -> list[bytes]:
        cached = self._tiles.get((level, index))
        if cached is None:
            tile = tile_for(level, index, self.tree_size)
            if tile is None:  # unreachable for ranges inside the tree
                raise ValueError(f"tile {level}/{index} is empty in a tree of {self.tree_size}")
            cached = split_tile(tile, self._fetch(tile))
            self._tiles[(level, index)] = cached
            self.fetched.append(tile)
        return cached
