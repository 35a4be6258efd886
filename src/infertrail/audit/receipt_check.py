"""Checking a decision's receipt with only the log's public key: the receipt format, offline.

Every decision response carries a receipt (format ``infertrail-receipt/1``), a JSON object:

- ``origin``: the log (its C2SP origin, the name its checkpoints carry);
- ``shard``: which of a fleet's logs wrote it (``"0"`` for a single log); a label, not signed;
- ``seq``: the record's position in the log, and ``leaf_hash``: its RFC 6962 leaf hash
  (``SHA-256(0x00 || record bytes)``, 64 lowercase hex digits);
- ``tlog_proof``: a C2SP tlog-proof (c2sp.org/tlog-proof, v1): the record's index, its RFC 9162
  inclusion proof, and the checkpoint the log signed for the group commit that made the record
  durable, before the decision was answered.

:func:`check_receipt` is a pure function of the parsed receipt and the verifier key (hashing,
Merkle proofs, signed notes; no storage code), so the holder of a decision can check it anywhere.
That the log *still* holds the record is a question for the log: ``infertrail audit verify
--receipts DIR``, which recomputes the log's root at the receipt's tree size.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from infertrail.audit import merkle
from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.evidence import CheckResult

__all__ = [
    "MAX_PROOF_HASHES",
    "RECEIPT_FORMAT",
    "TLOG_PROOF_HEADER",
    "ReceiptClaim",
    "ReceiptError",
    "TlogProof",
    "check_receipt",
    "format_tlog_proof",
    "open_receipt",
    "parse_tlog_proof",
]

RECEIPT_FORMAT: Final = "infertrail-receipt/1"
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
# A proof has at most one hash per level of a tree of up to 2**64 leaves.
MAX_PROOF_HASHES = 64
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ReceiptError(ValueError):
    """A receipt is malformed, or does not prove what it claims with the given key."""


@dataclass(frozen=True)
class TlogProof:
    """A parsed C2SP tlog-proof: the entry's index, its inclusion proof and the signed note."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed checkpoint note, verbatim (not verified by parsing)
    extra: bytes | None = None  # opaque and unauthenticated (C2SP): never trusted


@dataclass(frozen=True)
class ReceiptClaim:
    """What a receipt that checked out proves: the log ``origin`` of ``tree_size`` records with
    ``root`` (signed) holds ``leaf_hash`` at ``seq``."""

    origin: str
    shard: str
    seq: int
    leaf_hash: bytes
    tree_size: int
    root: bytes


def format_tlog_proof(index: int, proof: list[bytes], checkpoint: bytes) -> str:
    """The C2SP tlog-proof text: header, index, one base64 hash per line, blank line, note."""
    hashes = b"".join(map(binascii.b2a_base64, proof))  # each hash's line ends in "\n"
    head = f"{TLOG_PROOF_HEADER}\nindex {index}\n".encode()
    return (head + hashes + b"\n" + checkpoint).decode()


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a C2SP tlog-proof strictly; ReceiptError names the line at fault."""
    header, sep, rest = text.partition("\n")
    if header != TLOG_PROOF_HEADER or not sep:
        raise ReceiptError(f"tlog_proof must start with the line {TLOG_PROOF_HEADER!r}")
    line, _, rest = rest.partition("\n")
    extra = None
    if line.startswith("extra "):
        extra = _strict_b64(line[len("extra ") :])
        if extra is None:
            raise ReceiptError("tlog_proof extra line is not canonical base64")
        line, _, rest = rest.partition("\n")
    index_text = line.removeprefix("index ")
    if index_text == line or not _DECIMAL.fullmatch(index_text):
        raise ReceiptError(
            f"tlog_proof needs an 'index <decimal without leading zeros>' line, got {line[:40]!r}"
        )
    proof: list[bytes] = []
    while True:
        line, sep, rest = rest.partition("\n")
        if not sep:
            raise ReceiptError("tlog_proof has no blank line before its checkpoint")
        if not line:
            break
        if len(proof) == MAX_PROOF_HASHES:
            raise ReceiptError(f"tlog_proof has over {MAX_PROOF_HASHES} proof hashes")
        digest = _strict_b64(line)
        if digest is None or len(digest) != merkle.HASH_SIZE:
            raise ReceiptError(
                f"tlog_proof line {len(proof) + 1} of the proof is not a base64 SHA-256 hash: "
                f"{line[:60]!r}"
            )
        proof.append(digest)
    if not rest:
        raise ReceiptError("tlog_proof has no checkpoint after its blank line")
    return TlogProof(int(index_text), tuple(proof), rest.encode(), extra)


def open_receipt(receipt: object, verifier: NoteVerifier) -> ReceiptClaim:
    """Check a receipt against the log's key; what it proves, or ReceiptError saying why not."""
    if not isinstance(receipt, dict):
        raise ReceiptError(f"a receipt is a JSON object, got {type(receipt).__name__}")
    if receipt.get("format") != RECEIPT_FORMAT:
        raise ReceiptError(f"format must be {RECEIPT_FORMAT!r}, got {receipt.get('format')!r:.80}")
    fields = {"origin": str, "shard": str, "seq": int, "leaf_hash": str, "tlog_proof": str}
    for key, kind in fields.items():
        value = receipt.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ReceiptError(f"{key} must be a {kind.__name__}, got {value!r:.80}")
    seq: int = receipt["seq"]
    if seq < 0:
        raise ReceiptError(f"seq must be >= 0, got {seq}")
    if not _HEX64.fullmatch(receipt["leaf_hash"]):
        raise ReceiptError("leaf_hash must be 64 lowercase hex digits (an RFC 6962 leaf hash)")
    leaf = bytes.fromhex(receipt["leaf_hash"])
    parsed = parse_tlog_proof(receipt["tlog_proof"])
    if parsed.index != seq:
        raise ReceiptError(f"tlog_proof is for index {parsed.index}, the receipt says seq {seq}")
    try:
        cp: Checkpoint = open_checkpoint(
            parsed.checkpoint, verifier, expected_origin=receipt["origin"]
        )
    except NoteError as exc:
        raise ReceiptError(f"checkpoint: {exc}") from exc
    if seq >= cp.size:
        raise ReceiptError(f"seq {seq} is not in the signed checkpoint of {cp.size} records")
    if not merkle.verify_inclusion(seq, cp.size, leaf, parsed.proof, cp.root):
        raise ReceiptError("inclusion proof does not lead from leaf_hash to the checkpoint root")
    return ReceiptClaim(cp.origin, receipt["shard"], seq, leaf, cp.size, cp.root)


def check_receipt(receipt: dict[str, Any], verifier_key: str) -> CheckResult:
    """Check a receipt with only the log's verifier key: signature, index, inclusion proof."""
    try:
        verifier = NoteVerifier.from_key(verifier_key)
    except NoteError as exc:
        return CheckResult(False, f"bad verifier key: {exc}")
    try:
        claim = open_receipt(receipt, verifier)
    except ReceiptError as exc:
        return CheckResult(False, str(exc))
    reason = (
        f"record seq {claim.seq} of {claim.origin} (shard {claim.shard}) is in the checkpoint "
        f"of {claim.tree_size} records signed by the log"
    )
    return CheckResult(True, reason, claim.origin, claim.tree_size, claim.seq)


def _strict_b64(text: str) -> bytes | None:
    """Standard padded base64, canonical only (one encoding per value); None otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == text else None
