"""Write tests/golden/tiles/log: a small infertrail log published as static C2SP tlog-tiles.

A real AuditLog (fixed Ed25519 seed, records ``{"n": i}``) grows to 260 records, is published
with ``infertrail audit publish-tiles --entries``, grows to 300 and is published again: the
directory holds the size-300 checkpoint, full and partial hash tiles of levels 0 and 1, entry
bundles, and the partial tiles of the size-260 publication (the spec lets them stay). ``log.json``
beside it names the origin, the verifier key and both checkpoint notes. Ed25519 signatures are
deterministic, so the output is too. ``tests/golden/tiles/paths.json`` (the spec's path
examples) is written by hand, not here. tests/unit/audit/test_tiles.py reads the directory with
a reader written from the spec alone and checks that this script reproduces it byte for byte.

Run: .venv/bin/python scripts/gen_golden_tiles.py [--out DIR]   (default: tests/golden/tiles)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.ledger import AuditLog
from infertrail.audit.tilesource import LogTiles, publish_tiles

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden" / "tiles"
ORIGIN = "golden.example/tiles"
SEED = hashlib.sha256(b"infertrail golden: tiles log key").digest()
SIZES = (260, 300)  # published at each: a full level-0 tile, partials at both sizes


def build(out: Path) -> None:
    """Build the log in a temporary directory and publish it into ``out/log``."""
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(SEED))
    if (out / "log").exists():
        shutil.rmtree(out / "log")
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tiles-golden-") as tmp:
        log_dir = Path(tmp) / "log"
        with AuditLog.open(log_dir, signer=signer, origin=ORIGIN, fsync=False) as log:
            n = 0
            for size in SIZES:
                while n < size:
                    log.append({"n": n})
                    n += 1
                log.flush()
                tiles = LogTiles(log_dir)
                publish_tiles(tiles, str(out / "log"), entries=True)
                notes[str(size)] = tiles.checkpoint()[0].decode()
                tiles.close()
    meta = {
        "description": 'An infertrail log of 300 records {"n": i} published as C2SP tlog-tiles '
        "at sizes 260 and 300 (scripts/gen_golden_tiles.py).",
        "origin": ORIGIN,
        "verifier_key": signer.verifier_key,
        "checkpoints": notes,
    }
    (out / "log.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for path in (out / "log").rglob("*"):  # write_once leaves files read-only
        if path.is_file():
            path.chmod(0o644)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.out)
    files = sorted(p.relative_to(args.out) for p in (args.out / "log").rglob("*") if p.is_file())
    print(f"wrote {len(files)} files under {args.out / 'log'} and {args.out / 'log.json'}")


if __name__ == "__main__":
    main()
