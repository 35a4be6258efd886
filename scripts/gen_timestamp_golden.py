"""Write tests/golden/timestamps: RFC 3161 tokens over signed checkpoints, and their verdicts.

Each case is a tokens file (``checkpoints/timestamps.jsonl`` entries: a signed checkpoint note
and a DER TimeStampResp over its body) with the verdict
:func:`infertrail.audit.timestamps.check_entries` must reach under the trust root in
``root.pem``. The checkpoints are signed from a fixed Ed25519 seed (deterministic); the tokens
come from real TSAs run with the ``openssl`` binary (tests/e2e/tsa.py): ECDSA signatures and
genTimes differ on every run, so this script is run once and its output committed, never
re-run to compare (tests/golden/README.md).

Run: .venv/bin/python scripts/gen_timestamp_golden.py [--out DIR]
(default: tests/golden/timestamps)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from infertrail.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the TSA of the e2e tests

from tests.e2e.tsa import Reply, make_pki  # noqa: E402

ORIGIN = "golden.example/infertrail"
LOG_SEED = hashlib.sha256(b"infertrail golden: log key").digest()
IMPOSTOR_SEED = hashlib.sha256(b"infertrail golden: impostor key").digest()
SIZES = (4, 6, 13)


def note(size: int, seed: bytes = LOG_SEED) -> bytes:
    """The golden log's signed checkpoint of ``size`` (a fixed root per size)."""
    root = hashlib.sha256(f"infertrail golden timestamps: root {size}".encode()).digest()
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(seed))
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), signer)


def stamp(reply: Reply, checkpoint: bytes) -> bytes:
    """A DER TimeStampResp over the body of ``checkpoint`` from ``reply``'s TSA."""
    body = checkpoint[: checkpoint.rfind(b"\n\n") + 1]
    query = (
        TimestampRequestBuilder()
        .data(body)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    return reply(query.as_bytes())


def entry(checkpoint: bytes, token: bytes) -> dict[str, str]:
    return {"checkpoint": checkpoint.decode(), "token": base64.b64encode(token).decode()}


def case(
    description: str,
    entries: list[dict[str, str]],
    *,
    kind: str | None = None,
    at: int | None = None,
    error: str | None = None,
    sizes: list[int] | None = None,
) -> dict[str, Any]:
    return {
        "description": description,
        "must_fail": kind is not None,
        "expect_kind": kind,
        "expect_entry": at,
        "expect_error": error,
        "expect_sizes": sizes,
        "entries": entries,
    }


def flip(token: bytes, offset: int) -> bytes:
    damaged = bytearray(token)
    damaged[offset] ^= 0x01
    return bytes(damaged)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "golden" / "timestamps")
    out: Path = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tsa-golden-") as tmp:
        golden = make_pki(Path(tmp) / "golden", "Golden TSA")
        other = make_pki(Path(tmp) / "other", "Impostor TSA")
        reply = Reply(golden)
        notes = {size: note(size) for size in SIZES}
        tokens = {}
        for size in SIZES:
            tokens[size] = stamp(reply, notes[size])
            time.sleep(1.1)  # genTimes have a resolution of one second
        late6 = stamp(reply, notes[6])  # checkpoint 6 stamped after checkpoint 13
        other6 = stamp(Reply(other), notes[6])
        (out / "root.pem").write_bytes(golden.root_pem.read_bytes())
        (out / "other_root.pem").write_bytes(other.root_pem.read_bytes())
    cases = {
        "valid": case(
            "three checkpoints stamped in the log's order by the trusted TSA",
            [entry(notes[s], tokens[s]) for s in SIZES],
            sizes=list(SIZES),
        ),
        "valid_restamped_late": case(
            "an old checkpoint stamped again later, alone: a valid token",
            [entry(notes[6], late6)],
            sizes=[6],
        ),
        "token_moved": case(
            "checkpoint 6's token put under checkpoint 13",
            [entry(notes[4], tokens[4]), entry(notes[13], tokens[6])],
            kind="timestamp_mismatch",
            at=1,
            error="not this checkpoint's",
        ),
        "untrusted_tsa": case(
            "a token from a TSA under another root CA",
            [entry(notes[6], other6)],
            kind="timestamp_untrusted",
            at=0,
            error="not under a trusted TSA root",
        ),
        "signature_altered": case(
            "one bit of the token's signature flipped",
            [entry(notes[6], flip(tokens[6], len(tokens[6]) - 8))],
            kind="timestamp_mismatch",
            at=0,
            error="signature does not verify",
        ),
        "garbage_token": case(
            "a token that is not DER",
            [entry(notes[6], hashlib.sha256(b"not a token").digest() * 4)],
            kind="timestamp_mismatch",
            at=0,
            error="not a DER TimeStampResp",
        ),
        "token_not_base64": case(
            "a token field that is not base64",
            [{"checkpoint": notes[6].decode(), "token": "not base64!"}],
            kind="timestamp_mismatch",
            at=0,
            error="not base64",
        ),
        "genTime_out_of_order": case(
            "checkpoint 6 stamped after checkpoint 13: genTimes run against the log's order",
            [entry(notes[13], tokens[13]), entry(notes[6], late6)],
            kind="timestamp_order",
            at=0,
            error="tokens were not obtained in the log's order",
        ),
        "checkpoint_not_signed_by_log": case(
            "a checkpoint signed by an impostor key under the log's name, stamped by the TSA",
            [entry(note(6, IMPOSTOR_SEED), tokens[6])],
            kind="bad_signature",
            at=0,
            error="no signature from key",
        ),
    }
    for name, data in cases.items():
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        (out / f"{name}.json").write_text(text)
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(LOG_SEED))
    (out / "log.pub").write_text(signer.verifier_key + "\n")
    print(f"wrote {len(cases)} cases, root.pem, other_root.pem and log.pub to {out}")


if __name__ == "__main__":
    main()
