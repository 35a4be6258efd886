"""Checking third-party evidence: inclusion and consistency, with only the log's public key.

An inclusion evidence document (format ``infertrail-proof/1``, in the spirit of C2SP tlog-proof)
carries a record's canonical bytes, its leaf hash, an RFC 9162 inclusion proof and the signed
checkpoint it leads to. A consistency evidence document (``infertrail-consistency/1``) carries
two signed checkpoints of one log and the RFC 9162 consistency proof between them.

:func:`check_evidence` and :func:`check_consistency` are pure functions of the parsed document
and the verifier key: no I/O, no storage code, only hashing, Merkle proof verification and
signed-note verification, so anyone can run them without the log or the lake. Producing the
evidence from the log is :mod:`infertrail.audit.proofs`. ``tests/golden`` pins both formats.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from typing import Any

from infertrail.audit import merkle
from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint

__all__ = [
    "CONSISTENCY_FORMAT",
    "PROOF_FORMAT",
    "CheckResult",
    "check_consistency",
    "check_evidence",
]

PROOF_FORMAT = "infertrail-proof/1"
CONSISTENCY_FORMAT = "infertrail-consistency/1"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of checking evidence: ``ok`` and, if not, the first reason it failed."""

    ok: bool
    reason: str
    origin: str | None = None
    tree_size: int | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict of its fields."""
        return asdict(self)


def check_evidence(evidence: dict[str, Any], verifier_key: str) -> CheckResult:
    """Check inclusion evidence with only the public key: signature, leaf hash, proof."""
    try:
        verifier = NoteVerifier.from_key(verifier_key)
    except NoteError as exc:
        return CheckResult(False, f"bad verifier key: {exc}")
    fields = {"format": str, "origin": str, "seq": int, "record": str, "leaf_hash": str}
    fields |= {"tree_size": int, "inclusion_proof": list, "checkpoint": str}
    problem = _shape(evidence, PROOF_FORMAT, fields)
    if problem:
        return CheckResult(False, problem)
    try:
        cp = open_checkpoint(
            evidence["checkpoint"].encode(), verifier, expected_origin=evidence["origin"]
        )
    except (NoteError, UnicodeError) as exc:
        return CheckResult(False, f"checkpoint: {exc}")
    seq: int = evidence["seq"]

    def result(ok: bool, reason: str) -> CheckResult:
        return CheckResult(ok, reason, cp.origin, cp.size, seq)

    if evidence["tree_size"] != cp.size:
        reason = f"tree_size {evidence['tree_size']} is not the checkpoint's size {cp.size}"
        return result(False, reason)
    record = evidence["record"].encode("utf-8", "surrogatepass")
    leaf = merkle.leaf_hash(record)
    if evidence["leaf_hash"] != leaf.hex():
        return result(False, "leaf_hash is not the hash of the record bytes")
    try:
        claimed = json.loads(record).get("seq")
    except (ValueError, AttributeError):
        return result(False, "record is not a JSON object")
    if claimed != seq:
        return result(False, f"record carries seq {claimed!r}, evidence says {seq}")
    proof = _hashes(evidence["inclusion_proof"])
    if proof is None:
        return result(False, "inclusion_proof must be a list of base64 hashes")
    if not merkle.verify_inclusion(seq, cp.size, leaf, proof, cp.root):
        return result(False, "inclusion proof does not lead to the checkpoint root")
    return result(True, "record is included in the signed checkpoint")


def check_consistency(evidence: dict[str, Any], verifier_key: str) -> CheckResult:
    """Check that the new checkpoint extends the old one, with only the public key."""
    try:
        verifier = NoteVerifier.from_key(verifier_key)
    except NoteError as exc:
        return CheckResult(False, f"bad verifier key: {exc}")
    fields = {"format": str, "origin": str, "old_checkpoint": str, "new_checkpoint": str}
    problem = _shape(evidence, CONSISTENCY_FORMAT, fields | {"consistency_proof": list})
    if problem:
        return CheckResult(False, problem)
    checkpoints: list[Checkpoint] = []
    for key in ("old_checkpoint", "new_checkpoint"):
        try:
            note = evidence[key].encode()
            checkpoints.append(open_checkpoint(note, verifier, expected_origin=evidence["origin"]))
        except (NoteError, UnicodeError) as exc:
            return CheckResult(False, f"{key}: {exc}")
    old, new = checkpoints
    proof = _hashes(evidence["consistency_proof"])

    def result(ok: bool, reason: str) -> CheckResult:
        return CheckResult(ok, reason, new.origin, new.size)

    if proof is None:
        return result(False, "consistency_proof must be a list of base64 hashes")
    if old.size > new.size:
        return result(False, f"old size {old.size} > new size {new.size}: rollback")
    if old.size == 0 or old.size == new.size:
        same = old.size == 0 or old.root == new.root
        if proof or not same:
            return result(False, "checkpoints of this size must agree, with no proof")
    elif not merkle.verify_consistency(old.size, new.size, old.root, new.root, proof):
        return result(False, "consistency proof does not verify")
    return result(True, f"tree of size {new.size} extends the one of size {old.size}")


def _shape(evidence: object, fmt: str, fields: dict[str, type]) -> str | None:
    """Why ``evidence`` is not an object of this format with these typed fields, or None."""
    if not isinstance(evidence, dict):
        return f"evidence must be a JSON object, got {type(evidence).__name__}"
    if evidence.get("format") != fmt:
        return f"format must be {fmt!r}, got {evidence.get('format')!r}"
    for key, kind in fields.items():
        value = evidence.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key} must be a {kind.__name__}, got {value!r:.80}"
    return None


def _hashes(items: list[Any]) -> list[bytes] | None:
    """The hashes these base64 strings encode, or None if any item is not valid base64 text."""
    out = []
    for item in items:
        if not isinstance(item, str):
            return None
        try:
            out.append(base64.b64decode(item, validate=True))
        except binascii.Error:
            return None
    return out
