"""C2SP tlog-tiles: paths and shapes against the spec's examples, contents against an independent
reader written here from the spec alone, the log served and published as tiles, bad input.

``tests/golden/tiles/paths.json`` holds the spec's own examples; ``tests/golden/tiles/log`` a
real log published by ``publish_tiles`` (scripts/gen_golden_tiles.py, reproduced byte for byte
below). :class:`SpecReader` uses none of infertrail's tile or Merkle code: it reads a static
tlog-tiles directory the way the spec says a client must.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.testclient import TestClient

from infertrail.audit import merkle
from infertrail.audit.cli import audit
from infertrail.audit.framing import LogCorruptedError
from infertrail.audit.tiles import (
    MAX_ENTRY_SIZE,
    Tile,
    TileError,
    TileHashReader,
    bundle_for,
    covered,
    decode_bundle,
    encode_bundle,
    format_index,
    parse_tile_path,
    split_tile,
    tile_data,
    tile_for,
    tiles_for_size,
)
from infertrail.audit.tilesource import LogTiles, TileUnavailable, publish_tiles
from infertrail.audit.wal import FRAME_HEADER, HEADER_SIZE, encode_frame
from infertrail.web.tiles import CHECKPOINT_CACHE, TILE_CACHE, mount_tiles
from tests.unit.audit.test_lake import BuiltLog, build_log

GOLDEN = Path(__file__).parents[2] / "golden" / "tiles"
PATHS = json.loads((GOLDEN / "paths.json").read_text())
GOLDEN_LOG = json.loads((GOLDEN / "log.json").read_text())


# ---- an independent reader, from the spec alone ------------------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def spec_mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes: split at the largest power of two below n."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _sha(b"\x01" + spec_mth(hashes[:k]) + spec_mth(hashes[k:]))


class SpecReader:
    """A tlog-tiles client over a directory: checkpoint, tiles, bundles, per c2sp.org specs."""

    def __init__(self, root: Path, vkey: str) -> None:
        self.root = root
        name, key_id, key = vkey.split("+", 2)
        raw = base64.b64decode(key)
        assert raw[0] == 1 and len(raw) == 33  # Ed25519
        assert _sha(name.encode() + b"\n" + raw)[:4].hex() == key_id
        self.name, self.key_id, self.key = name, bytes.fromhex(key_id), raw[1:]

    def checkpoint(self, note: bytes | None = None) -> tuple[str, int, bytes]:
        """Verify the signed note (c2sp.org/signed-note) and parse its tlog-checkpoint body."""
        note = note if note is not None else (self.root / "checkpoint").read_bytes()
        text, _, sigs = note.rpartition(b"\n\n")
        text += b"\n"
        ok = False
        for line in sigs.decode().splitlines():
            dash, name, sig = line.split(" ")
            assert dash == "\u2014"
            blob = base64.b64decode(sig)
            if name == self.name and blob[:4] == self.key_id:
                Ed25519PublicKey.from_public_bytes(self.key).verify(blob[4:], text)
                ok = True
        assert ok, "no signature by the log's key"
        origin, size, root = text.decode().splitlines()[:3]
        return origin, int(size), base64.b64decode(root)

    @staticmethod
    def n_path(n: int) -> str:
        parts = [f"{n % 1000:03d}"]
        while n >= 1000:
            n //= 1000
            parts.insert(0, f"x{n % 1000:03d}")
        return "/".join(parts)

    def tile(self, level: int, n: int, size: int) -> list[bytes]:
        """Tile N at level L as a tree of ``size`` has it (width floor(s/256**L) mod 256)."""
        width = min(256, (size >> (8 * level)) - n * 256)
        suffix = "" if width == 256 else f".p/{width}"
        data = (self.root / f"tile/{level}/{self.n_path(n)}{suffix}").read_bytes()
        assert len(data) == 32 * width
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    def bundle(self, n: int, size: int) -> list[bytes]:
        width = min(256, size - n * 256)
        suffix = "" if width == 256 else f".p/{width}"
        data = (self.root / f"tile/entries/{self.n_path(n)}{suffix}").read_bytes()
        out, i = [], 0
        while i < len(data):
            (length,) = struct.unpack(">H", data[i : i + 2])
            out.append(data[i + 2 : i + 2 + length])
            i += 2 + length
        assert i == len(data) and len(out) == width
        return out

    def leaves(self, size: int) -> list[bytes]:
        """Every leaf hash of the tree, checked against the entries and the level-1 tiles."""
        hashes: list[bytes] = []
        for n in range(-(-size // 256)):
            tile = self.tile(0, n, size)
            assert [_sha(b"\x00" + e) for e in self.bundle(n, size)] == tile
            hashes += tile
        for n in range(size // 65536 + 1):
            if (size >> 8) - n * 256 > 0:
                for i, h in enumerate(self.tile(1, n, size)):
                    start = (n * 256 + i) * 256
                    assert h == spec_mth(hashes[start : start + 256])
        return hashes


def test_golden_log_reads_with_the_spec_reader() -> None:
    reader = SpecReader(GOLDEN / "log", GOLDEN_LOG["verifier_key"])
    origin, size, root = reader.checkpoint()
    assert (origin, size) == (GOLDEN_LOG["origin"], 300)
    hashes = reader.leaves(size)
    assert spec_mth(hashes) == root
    entries = reader.bundle(0, size)
    assert entries[7] == b'{"n":7,"seq":7}'
    # the older checkpoint: its partial tiles are still there, and the tree extends it
    _, old_size, old_root = reader.checkpoint(GOLDEN_LOG["checkpoints"]["260"].encode())
    assert old_size == 260 and reader.tile(0, 1, 260) == hashes[256:260]
    assert spec_mth(reader.leaves(260)) == old_root == spec_mth(hashes[:260])


def test_golden_log_is_what_the_generator_writes(tmp_path: Path) -> None:
    from scripts.gen_golden_tiles import build

    build(tmp_path)
    ours = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    golden = {
        p.relative_to(GOLDEN): p.read_bytes()
        for p in GOLDEN.rglob("*")
        if p.is_file() and p.name != "paths.json"
    }
    assert ours == golden, "rerun scripts/gen_golden_tiles.py and review the diff"


# ---- paths and shapes: the spec's examples -----------------------------------------------------


@pytest.mark.parametrize("case", PATHS["index_encodings"], ids=lambda c: str(c["index"]))
def test_index_encodings(case: dict[str, object]) -> None:
    assert format_index(case["index"]) == case["encoded"]  # type: ignore[arg-type]


@pytest.mark.parametrize("case", PATHS["paths"], ids=lambda c: c["path"])
def test_paths_parse_and_print_back(case: dict[str, object]) -> None:
    tile = parse_tile_path(case["path"])  # type: ignore[arg-type]
    assert (tile.level, tile.index, tile.width, tile.entries) == (
        case["level"], case["index"], case["width"], case["entries"],
    )  # fmt: skip
    assert tile.path() == case["path"]
    assert parse_tile_path("/" + tile.path()) == tile


@pytest.mark.parametrize("case", PATHS["invalid_paths"], ids=lambda c: c["path"])
def test_invalid_paths_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(TileError):
        parse_tile_path(case["path"])


@pytest.mark.parametrize("case", PATHS["tree_shapes"], ids=lambda c: str(c["tree_size"]))
def test_tree_shapes(case: dict[str, object]) -> None:
    shape = Counter(f"{t.level}/{t.width}" for t in tiles_for_size(case["tree_size"]))  # type: ignore[arg-type]
    assert dict(shape) == case["tiles"]


def test_coverage_and_tile_fields() -> None:
    assert tile_for(0, 1, 300) == Tile(0, 1, 44) and tile_for(0, 2, 300) is None
    assert tile_for(1, 0, 70000) == Tile(1, 0) and tile_for(2, 0, 70000) == Tile(2, 0, 1)
    assert bundle_for(1, 300) == Tile(0, 1, 44, entries=True)
    assert covered(Tile(0, 1, 44), 300) and covered(Tile(0, 1, 4), 300)
    assert not covered(Tile(0, 1, 45), 300) and not covered(Tile(0, 1), 300)
    assert covered(Tile(1, 0, 1), 256) and not covered(Tile(1, 0, 2), 511)
    assert Tile(2, 3, 5).first_leaf == 3 * 256**3 and Tile(2, 3, 5).end_leaf == (768 + 5) * 65536
    for bad in [dict(level=64), dict(level=-1), dict(width=0), dict(width=257), dict(index=-1),
                dict(level=1, entries=True), dict(index=2**64)]:  # fmt: skip
        with pytest.raises(TileError):
            Tile(**{"level": 0, "index": 0, **bad})  # type: ignore[arg-type]
    assert len(tiles_for_size(600, entries=True)) == 3 + 1 + 3


# ---- contents and proofs from tiles -------------------------------------------------------------


def test_tile_contents_and_subtree_roots_from_tiles() -> None:
    rng = random.Random(7)
    hashes = [merkle.leaf_hash(b"e%d" % i) for i in range(70_000)]

    def mth(begin: int, end: int) -> bytes:
        return merkle.root(hashes[begin:end])

    for size in (1, 255, 256, 257, 65_536, 65_537, 70_000):
        files = {t: tile_data(t, mth) for t in tiles_for_size(size)}
        for tile, data in files.items():
            assert len(data) == tile.size_in_bytes()
        reader = TileHashReader(size, lambda t: files[t])  # noqa: B023
        assert reader.subtree_root(0, size) == merkle.root(hashes[:size])
        for _ in range(20):
            old = rng.randrange(1, size + 1)
            assert merkle.consistency_proof_by(reader.subtree_root, old, size) == (
                merkle.consistency_proof_by(mth, old, size)
            )
    # tiles are fetched once each, and only those the proof needs
    reader = TileHashReader(70_000, lambda t: tile_data(t, mth))
    merkle.consistency_proof_by(reader.subtree_root, 1000, 70_000)
    assert len(reader.fetched) == len(set(reader.fetched)) <= 6


def test_malformed_tiles_are_refused() -> None:
    tile = Tile(0, 0, 3)
    with pytest.raises(TileError, match="expected 96 bytes"):
        split_tile(tile, b"x" * 95)
    reader = TileHashReader(3, lambda t: b"short")
    with pytest.raises(TileError):
        reader.subtree_root(0, 3)
    with pytest.raises(ValueError, match="within"):
        TileHashReader(3, lambda t: b"").subtree_root(0, 4)
    with pytest.raises(TileError, match="not a 32-byte hash"):
        tile_data(tile, lambda b, e: b"x")


def test_entry_bundles_round_trip_and_refuse_malformed_input() -> None:
    entries = [b"", b"a", b"x" * MAX_ENTRY_SIZE]
    data = encode_bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a"
    assert decode_bundle(data, 3) == entries
    with pytest.raises(TileError, match="at most 65535"):
        encode_bundle([b"x" * (MAX_ENTRY_SIZE + 1)])
    with pytest.raises(TileError, match="at most 256"):
        encode_bundle([b"e"] * 257)
    with pytest.raises(TileError, match="none"):
        encode_bundle([])
    for bad, why in [(b"\x00", "inside the length"), (b"\x00\x05abc", "claims 5 bytes"),
                     (b"", "empty"), (encode_bundle([b"a"]), "expected 2")]:  # fmt: skip
        with pytest.raises(TileError, match=why):
            decode_bundle(bad, 2 if why == "expected 2" else None)
    with pytest.raises(TileError, match="more than 256"):
        decode_bundle(b"\x00\x00" * 257)


# ---- a real log as tiles: LogTiles, the route, publish-tiles -------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    """750 records: 0..599 sealed into the lake (retired from the WAL), 600..749 in the WAL."""
    return build_log(tmp_path_factory.mktemp("tiles-log"))


def test_log_tiles_match_the_log_and_stop_at_its_checkpoint(built: BuiltLog) -> None:
    source = LogTiles(built.log_dir, built.lake_url)
    note, cp = source.checkpoint()
    assert cp.size == 750 and note == (built.log_dir / "checkpoints/latest").read_bytes()
    with built.open() as log:
        records = [r for _, r in log.read(600, 750)]
    hashes = [merkle.leaf_hash(r) for r in records]
    for tile in tiles_for_size(cp.size, entries=True):
        data = source.read(tile, cp.size)
        if tile.entries:
            got = decode_bundle(data, tile.width)
            assert [merkle.leaf_hash(e) for e in got] == split_tile(
                Tile(0, tile.index, tile.width), source.read(Tile(0, tile.index, tile.width), 750)
            )
            if tile.index == 2:  # 512..749: the lake's tail and the WAL
                assert got[600 - 512 :] == records[: tile.width - 88]
    assert TileHashReader(750, lambda t: source.read(t, 750)).subtree_root(0, 750) == cp.root
    assert hashes  # the WAL part was read back
    for beyond in (Tile(0, 2), Tile(0, 2, 239), Tile(1, 0, 3), Tile(0, 3, 1, entries=True)):
        with pytest.raises(TileUnavailable):
            source.read(beyond, cp.size)
    source.close()


def test_damaged_entries_are_never_served(built: BuiltLog, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built.log_dir.parent, root)
    segment = sorted((root / "log/wal").glob("*.seg"))[-1]
    buf = segment.read_bytes()
    length, _ = FRAME_HEADER.unpack_from(buf, 0)
    payload = buf[HEADER_SIZE : HEADER_SIZE + length].replace(b'"risk"', b'"evil"')
    segment.write_bytes(encode_frame(payload) + buf[HEADER_SIZE + length :])
    source = LogTiles(root / "log", str(root / "lake"))
    with pytest.raises(LogCorruptedError, match="does not hash to its leaf"):
        source.read(Tile(0, 2, 238, entries=True), 750)
    with pytest.raises(TileUnavailable):
        LogTiles(tmp_path / "nowhere").checkpoint()


def test_the_route_serves_tiles_with_the_specs_headers(built: BuiltLog) -> None:
    app = Starlette()
    mount_tiles(app, LogTiles(built.log_dir, built.lake_url), prefix="/tlog", entries=True)
    closed = Starlette()
    mount_tiles(closed, LogTiles(built.log_dir, built.lake_url))
    with TestClient(app) as http, TestClient(closed) as other:
        cp = http.get("/tlog/checkpoint")
        assert cp.status_code == 200 and cp.content.startswith(b"test.example/log\n750\n")
        assert cp.headers["content-type"] == "text/plain; charset=utf-8"
        assert cp.headers["cache-control"] == CHECKPOINT_CACHE
        full = http.get("/tlog/tile/0/000")
        assert full.status_code == 200 and len(full.content) == 8192
        assert full.headers["content-type"] == "application/octet-stream"
        assert full.headers["cache-control"] == TILE_CACHE
        assert len(http.get("/tlog/tile/1/000.p/2").content) == 64
        bundle = http.get("/tlog/tile/entries/002.p/238", headers={"accept-encoding": "gzip"})
        assert bundle.headers["content-encoding"] == "gzip"
        assert len(decode_bundle(bundle.content, 238)) == 238  # the client decompressed it
        raw = http.get("/tlog/tile/entries/000", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in raw.headers and len(decode_bundle(raw.content)) == 256
        for path, code in [("/tlog/tile/0/002", 404), ("/tlog/tile/0/x000/002", 404),
                           ("/tlog/tile/0/002.p/239", 404), ("/tlog/tile/00/000", 404),
                           ("/tlog/tile/entries/003.p/1", 404)]:  # fmt: skip
            answer = http.get(path)
            assert answer.status_code == code and answer.json()["error"] == "not_found", path
        refused = other.get("/tlog/tile/entries/000")
        assert refused.status_code == 404 and "not served" in refused.json()["detail"]
        assert other.get("/tlog/tile/0/000").status_code == 200
    with pytest.raises(ValueError, match="prefix"):
        mount_tiles(Starlette(), LogTiles(built.log_dir), prefix="tlog/")


def test_publish_tiles_writes_a_static_log_a_client_can_read(
    built: BuiltLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "published"
    args = ["--log-dir", str(built.log_dir), "--lake", built.lake_url, "publish-tiles"]
    first = CliRunner().invoke(audit, [*args, str(out), "--entries"])
    assert first.exit_code == 0, first.output
    assert "checkpoint of size 750; 8 files written, 0 already there" in first.output
    again = CliRunner().invoke(audit, [*args, str(out)])
    assert "1 files written, 4 already there" in again.output  # only the checkpoint
    reader = SpecReader(out, built.verifier.verifier_key)
    _, size, root = reader.checkpoint()
    assert spec_mth(reader.leaves(size)) == root
    report = publish_tiles(LogTiles(built.log_dir, built.lake_url), str(tmp_path / "hashes"))
    assert report.written == 1 + 3 + 1 and not (tmp_path / "hashes/tile/entries").exists()
    missing = CliRunner().invoke(audit, ["--log-dir", str(tmp_path / "none"), "publish-tiles", "x"])
    assert missing.exit_code == 2


def test_bundles_are_gzip_friendly() -> None:
    data = encode_bundle([b'{"n":%d,"seq":%d}' % (i, i) for i in range(256)])
    assert gzip.decompress(gzip.compress(data, mtime=0)) == data


def test_a_cosigned_checkpoint_is_what_gets_published(built: BuiltLog, tmp_path: Path) -> None:
    import shutil

    from infertrail.audit.checkpoint import Checkpoint, sign_checkpoint
    from infertrail.audit.cosignature import CosignatureSigner, add_signature_lines

    root = tmp_path / "copy"
    shutil.copytree(built.log_dir.parent, root)
    with built.open() as log:
        older = sign_checkpoint(Checkpoint("test.example/log", 600, log.root(600)), built.signer)
    witness = CosignatureSigner.from_key(CosignatureSigner.generate("w.example")[0])
    body = older[: older.rindex(b"\n\n") + 1]
    cosigned = add_signature_lines(older, [witness.cosign(body, 1_700_000_000)])
    (root / "log/checkpoints/cosigned").write_bytes(cosigned)
    source = LogTiles(root / "log", str(root / "lake"))
    note, cp = source.checkpoint()
    assert note == cosigned and cp.size == 600  # what a quorum vouched for, cosignatures on
    with pytest.raises(TileUnavailable):
        source.read(Tile(0, 2, 238), cp.size)  # covered by latest, not by what is published
    assert len(source.read(Tile(0, 2, 88), cp.size)) == 88 * 32
    (root / "log/checkpoints/cosigned").write_bytes(older.replace(b"600", b"601"))
    with pytest.raises(LogCorruptedError):
        source.checkpoint()
