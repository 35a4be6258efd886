"""Write tests/golden: test vectors for every format a third party reads.

Three formats leave the log for auditors: signed checkpoint notes (a C2SP signed note around a
tlog-checkpoint body), inclusion evidence (``infertrail-proof/1``, written by ``infertrail audit
prove``) and consistency evidence (``infertrail-consistency/1``, written by ``infertrail audit
consistency``). This script builds a small real log with the project's own code in a temporary
directory, from fixed Ed25519 seeds and records with fixed timestamps, takes real evidence from
it and writes one JSON file per case: the valid documents and deliberately broken ones, each with
the error the verifier must report. tests/golden/README.md describes the files;
tests/unit/audit/test_golden_formats.py checks every verdict and that this script reproduces the
checked-in files byte for byte.

Run: .venv/bin/python scripts/gen_golden.py [--out DIR]   (default: tests/golden)
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import struct
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infertrail.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from infertrail.audit.cosignature import CosignatureSigner, signed_message
from infertrail.audit.evidence import PROOF_FORMAT
from infertrail.audit.ledger import AuditLog
from infertrail.audit.merkle import EMPTY_ROOT
from infertrail.audit.proofs import make_consistency, make_evidence
from infertrail.audit.receipt_check import RECEIPT_FORMAT, TLOG_PROOF_HEADER, format_tlog_proof

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"

ORIGIN = "golden.example/infertrail"
OTHER_ORIGIN = "other.example/log"
# Fixed Ed25519 seeds (RFC 8032 signatures are deterministic): the log's key, an impostor's key
# under the log's own name, and the key of another log.
LOG_SEED = hashlib.sha256(b"infertrail golden: log key").digest()
IMPOSTOR_SEED = hashlib.sha256(b"infertrail golden: impostor key").digest()
OTHER_SEED = hashlib.sha256(b"infertrail golden: other log key").digest()
FORKED_ROOT = hashlib.sha256(b"infertrail golden: a forked tree").digest()
# Witnesses (cosignature/v1): the one a case checks, a second one, and an impostor key under the
# first one's name; and the fixed time of their cosignatures (2026-01-01T00:00:00Z).
WITNESS = "witness.golden.example/w1"
OTHER_WITNESS = "witness.golden.example/w2"
WITNESS_SEED = hashlib.sha256(b"infertrail golden: witness key").digest()
OTHER_WITNESS_SEED = hashlib.sha256(b"infertrail golden: second witness key").digest()
IMPOSTOR_WITNESS_SEED = hashlib.sha256(b"infertrail golden: impostor witness key").digest()
COSIGNED_AT = 1_767_225_600

# The log grows to TREE_SIZE records; it signs a checkpoint at each of CHECKPOINT_SIZES on the way.
TREE_SIZE = 13
CHECKPOINT_SIZES = (4, 6)
EM_DASH = "\N{EM DASH}"
SIGNATURE_LINE = 4  # index of the first signature line in note.split("\n")

Case = dict[str, Any]


@dataclass(frozen=True)
class World:
    """The golden log's keys, its signed checkpoints by tree size, and evidence taken from it."""

    signer: NoteSigner
    impostor: NoteSigner
    other: NoteSigner
    notes: dict[int, str]
    inclusion: dict[int, Case]
    consistency: dict[int, Case]
    receipts: dict[int, Case]  # by seq: the receipt of each record, as its append returned it

    @property
    def vkey(self) -> str:
        """The log's verifier key: the trust anchor of every case that names no other."""
        return self.signer.verifier_key

    @property
    def latest(self) -> str:
        """The log's newest signed checkpoint, covering all TREE_SIZE records."""
        return self.notes[TREE_SIZE]

    def sign(self, origin: str, size: int, root: bytes, signer: NoteSigner | None = None) -> str:
        """A checkpoint note signed by ``signer`` (default: the log's own key)."""
        return sign_checkpoint(Checkpoint(origin, size, root), signer or self.signer).decode()

    def sign_text(self, text: str) -> str:
        """Any note text signed by the log's key (to reach checks that follow the signature's)."""
        return self.signer.sign(text.encode()).decode()


def signer_from_seed(name: str, seed: bytes) -> NoteSigner:
    """A note signer named ``name`` holding the Ed25519 key of this 32-byte seed."""
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


def make_record(i: int) -> dict[str, Any]:
    """Record ``i`` of the golden log: fixed content and timestamp, and a non-ASCII value."""
    return {
        "schema_version": 1,
        "record_id": f"00000000-0000-7000-8000-{i:012d}",
        "event_type": "inference",
        "ts": f"2026-01-15T09:00:{i:02d}.000000Z",
        "request_id": f"golden-{i}",
        "team": "risque-cr\N{LATIN SMALL LETTER E WITH ACUTE}dit",
        "model_name": "credit",
        "model_version": "1.0.0",
        "decision": "approve" if i % 3 else "decline",
        "score": i / 16,
    }


def note_size(note: str) -> int:
    """The tree size a checkpoint note states (its second line)."""
    return int(note.split("\n")[1])


def build_world(root: Path) -> World:
    """Write the golden log under ``root`` and take its checkpoints and evidence."""
    signer = signer_from_seed(ORIGIN, LOG_SEED)
    log_dir, lake_url = root / "log", str(root / "lake")
    notes = [sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), signer).decode()]
    receipts = {}
    # A long interval: checkpoints are signed only on flush and close, at the sizes chosen here.
    with AuditLog.open(
        log_dir, signer=signer, origin=ORIGIN, fsync=False, checkpoint_interval_ms=3_600_000
    ) as log:
        for i in range(TREE_SIZE):
            if i in CHECKPOINT_SIZES:
                log.flush()
                notes.append(log.latest_checkpoint.decode())
            # One record per group commit: its receipt's checkpoint signs a tree of i + 1.
            receipts[i] = log.append(make_record(i)).to_dict()
    notes.append((log_dir / "checkpoints" / "latest").read_text())
    by_size = {note_size(note): note for note in notes}
    if sorted(by_size) != [0, *CHECKPOINT_SIZES, TREE_SIZE]:
        raise RuntimeError(f"the log signed checkpoints at sizes {sorted(by_size)}")
    return World(
        signer=signer,
        impostor=signer_from_seed(ORIGIN, IMPOSTOR_SEED),
        other=signer_from_seed(OTHER_ORIGIN, OTHER_SEED),
        notes=by_size,
        inclusion={seq: make_evidence(log_dir, lake_url, seq) for seq in range(TREE_SIZE)},
        consistency={size: make_consistency(log_dir, n.encode()) for size, n in by_size.items()},
        receipts=receipts,
    )


# ---- building blocks ---------------------------------------------------------------------


def passing(description: str, vkey: str, expect: dict[str, Any], **inputs: Any) -> Case:
    """A case the verifier must accept, reporting what ``expect`` holds."""
    return {
        "description": description,
        "must_fail": False,
        "expect_error": None,
        "expect": expect,
        "verifier_key": vkey,
        **inputs,
    }


def failing(description: str, vkey: str, error: str, **inputs: Any) -> Case:
    """A case the verifier must reject with a message containing ``error``."""
    return {
        "description": description,
        "must_fail": True,
        "expect_error": error,
        "expect": None,
        "verifier_key": vkey,
        **inputs,
    }


def flip(data: bytes) -> bytes:
    """``data`` with the lowest bit of its first byte flipped."""
    return bytes([data[0] ^ 1]) + data[1:]


def flip_b64(value: str) -> str:
    """Base64 ``value`` with the lowest bit of its first decoded byte flipped."""
    return base64.b64encode(flip(base64.b64decode(value))).decode()


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with its one occurrence of ``old`` replaced by ``new``."""
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times in {text!r}")
    return text.replace(old, new)


def with_line(note: str, index: int, value: str) -> str:
    """``note`` with line ``index`` (of note.split("\\n")) replaced by ``value``."""
    lines = note.split("\n")
    lines[index] = value
    return "\n".join(lines)


def without_line(note: str, index: int) -> str:
    """``note`` without line ``index`` (of note.split("\\n"))."""
    lines = note.split("\n")
    del lines[index]
    return "\n".join(lines)


def body(note: str) -> str:
    """The signed text of a note: everything before its blank line, with the final newline."""
    return note[: note.index("\n\n") + 1]


def signature_parts(note: str) -> tuple[str, bytes, bytes]:
    """The key name, key id and signature of the note's first signature line."""
    line = note.split("\n")[SIGNATURE_LINE]
    name, encoded = line.removeprefix(f"{EM_DASH} ").split(" ")
    raw = base64.b64decode(encoded)
    return name, raw[:4], raw[4:]


def signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    """A C2SP signature line, without its newline."""
    return f"{EM_DASH} {name} {base64.b64encode(key_id + signature).decode()}"


def noncanonical_b64(value: str) -> str:
    """Padded base64 ``value`` with an unused bit set: the same bytes, a second encoding."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = len(value.rstrip("=")) - 1
    if last == len(value) - 1:
        raise ValueError("only padded base64 has unused bits")
    return value[:last] + alphabet[alphabet.index(value[last]) ^ 1] + value[last + 1 :]


def with_key_id(vkey: str, key_id: bytes) -> str:
    """Verifier key ``vkey`` claiming another key id."""
    name, _, material = vkey.split("+", 2)
    return f"{name}+{key_id.hex()}+{material}"


def edited(document: Case, **changes: Any) -> Case:
    """A deep copy of the evidence ``document`` with these fields set."""
    out = copy.deepcopy(document)
    out.update(changes)
    return out


def removed(document: Case, key: str) -> Case:
    """A deep copy of the evidence ``document`` without field ``key``."""
    out = copy.deepcopy(document)
    del out[key]
    return out


def with_record(evidence: Case, record: str) -> Case:
    """Inclusion evidence carrying ``record`` instead, with its RFC 6962 leaf hash to match."""
    leaf = hashlib.sha256(b"\x00" + record.encode()).hexdigest()
    return edited(evidence, record=record, leaf_hash=leaf)


# ---- the cases ---------------------------------------------------------------------------


def checkpoint_cases(w: World) -> dict[str, Case]:
    """Signed checkpoints: the verifier opens ``note`` with ``verifier_key``, for ``origin``."""
    note = w.latest
    _, key_id, signature = signature_parts(note)
    root = note.split("\n")[2]
    expect = {"origin": ORIGIN, "size": TREE_SIZE, "root": root}
    sig_line = note.split("\n")[SIGNATURE_LINE]
    invalid = "invalid signature from key"
    unsigned = "note has no signature from key"

    def ok(description: str, text: str, expected: dict[str, Any] = expect) -> Case:
        return passing(description, w.vkey, expected, note=text, origin=ORIGIN)

    def bad(description: str, text: str, error: str, vkey: str = w.vkey) -> Case:
        return failing(description, vkey, error, note=text, origin=ORIGIN)

    root_bytes = base64.b64decode(root)
    witness_line = w.other.sign(body(note).encode()).decode().split("\n")[SIGNATURE_LINE]
    return {
        "valid": ok("The log's newest checkpoint as the log signs it.", note),
        "valid_empty_tree": ok(
            "A checkpoint of the empty tree: size 0, root SHA-256 of the empty string.",
            w.notes[0],
            {"origin": ORIGIN, "size": 0, "root": base64.b64encode(EMPTY_ROOT).decode()},
        ),
        "valid_cosigned": ok(
            "A second signature line, from another key (a witness), is ignored as C2SP requires.",
            note + witness_line + "\n",
        ),
        "valid_extension_line": ok(
            "A signed extension line after the root is allowed (C2SP tlog-checkpoint).",
            w.sign_text(f"{ORIGIN}\n{TREE_SIZE}\n{root}\ngolden extension\n"),
        ),
        "wrong_key": bad(
            "Checked with another key of the same name: no signature carries its key id.",
            note,
            unsigned,
            w.impostor.verifier_key,
        ),
        "impostor_signature": bad(
            "Signed by another key under the log's name: the key id gives it away.",
            w.sign(ORIGIN, TREE_SIZE, root_bytes, w.impostor),
            unsigned,
        ),
        "signature_by_other_key_name": bad(
            "Signed only by a key of another name.",
            w.sign(ORIGIN, TREE_SIZE, root_bytes, w.other),
            unsigned,
        ),
        "modified_signature": bad(
            "One bit of the signature flipped.",
            with_line(note, SIGNATURE_LINE, signature_line(ORIGIN, key_id, flip(signature))),
            invalid,
        ),
        "truncated_signature": bad(
            "The signature one byte short.",
            with_line(note, SIGNATURE_LINE, signature_line(ORIGIN, key_id, signature[:-1])),
            invalid,
        ),
        "modified_key_id": bad(
            "The signature line's key id changed: the signature no longer names the log's key.",
            with_line(note, SIGNATURE_LINE, signature_line(ORIGIN, flip(key_id), signature)),
            unsigned,
        ),
        "modified_root_hash": bad(
            "The root line replaced by another well-formed hash.",
            with_line(note, 2, flip_b64(root)),
            invalid,
        ),
        "modified_tree_size": bad(
            "The tree size line changed.", with_line(note, 1, str(TREE_SIZE + 1)), invalid
        ),
        "modified_origin_line": bad(
            "The origin line changed.", with_line(note, 0, OTHER_ORIGIN), invalid
        ),
        "other_origin_same_key": bad(
            "Validly signed by the log's key, but for another origin: another log's checkpoint.",
            w.sign(OTHER_ORIGIN, TREE_SIZE, root_bytes),
            "is not the expected",
        ),
        "extra_body_line": bad(
            "A line added to the signed body.", replaced(note, "\n\n", "\nextra\n\n"), invalid
        ),
        "missing_root_line": bad("The root line removed.", without_line(note, 2), invalid),
        "missing_root_line_resigned": bad(
            "A validly signed body without a root line is no checkpoint.",
            w.sign_text(f"{ORIGIN}\n{TREE_SIZE}\n"),
            "checkpoint body needs at least 3 lines",
        ),
        "size_leading_zero_resigned": bad(
            "A validly signed body whose size has a leading zero: one encoding per value.",
            w.sign_text(f"{ORIGIN}\n0{TREE_SIZE}\n{root}\n"),
            "without leading zeros",
        ),
        "root_bad_base64_resigned": bad(
            "A validly signed body whose root line is not base64.",
            w.sign_text(f"{ORIGIN}\n{TREE_SIZE}\n{root[:-2]}!=\n"),
            "checkpoint line 3 (root) must be base64",
        ),
        "root_noncanonical_base64_resigned": bad(
            "A validly signed body whose root is base64 with a padding bit set.",
            w.sign_text(f"{ORIGIN}\n{TREE_SIZE}\n{noncanonical_b64(root)}\n"),
            "checkpoint line 3 (root) must be base64",
        ),
        "missing_blank_line": bad(
            "The blank line between the body and the signatures removed.",
            without_line(note, 3),
            "no blank line separating",
        ),
        "missing_signature_lines": bad(
            "Nothing after the blank line.", body(note) + "\n", "no signature lines"
        ),
        "missing_final_newline": bad(
            "The newline after the signature line removed.",
            note[:-1],
            "must end with a newline",
        ),
        "extra_trailing_line": bad(
            "A line after the signatures that is not a signature line.",
            note + "trailer\n",
            "signature line 2 does not start with an em dash",
        ),
        "signature_bad_base64": bad(
            "The signature's base64 has a character outside the alphabet.",
            with_line(note, SIGNATURE_LINE, sig_line[:-2] + "!="),
            "signature line 1 is malformed",
        ),
        "signature_noncanonical_base64": bad(
            "The signature's base64 has a padding bit set: the same bytes, a second encoding.",
            with_line(note, SIGNATURE_LINE, noncanonical_b64(sig_line)),
            "signature line 1 is malformed",
        ),
        "second_signature_invalid": bad(
            "A valid and a broken signature from the same key: the whole note is rejected.",
            note + signature_line(ORIGIN, key_id, flip(signature)) + "\n",
            invalid,
        ),
        "crlf_line_endings": bad(
            "CRLF line endings: a carriage return is a control character.",
            note.replace("\n", "\r\n"),
            "control character",
        ),
        "bad_verifier_key": bad(
            "The verifier key's material is not base64.",
            note,
            "verifier key material is not valid base64",
            w.vkey[:-2] + "!=",
        ),
        "verifier_key_id_mismatch": bad(
            "The verifier key's id does not match its name and public key.",
            note,
            "does not match its name and key",
            with_key_id(w.vkey, flip(key_id)),
        ),
    }


def inclusion_cases(w: World) -> dict[str, Case]:
    """Inclusion evidence (``infertrail audit prove``) for ``verifier_key``."""
    seq = 6
    ev = w.inclusion[seq]
    proof: list[str] = ev["inclusion_proof"]
    record: str = ev["record"]
    note = ev["checkpoint"]
    root = note.split("\n")[2]
    missed = "inclusion proof does not lead to the checkpoint root"
    not_leaf = "leaf_hash is not the hash of the record bytes"
    not_base64 = "inclusion_proof must be a list of base64 hashes"

    def ok(description: str, evidence: Case) -> Case:
        expect = {"origin": ORIGIN, "tree_size": TREE_SIZE, "seq": evidence["seq"]}
        return passing(description, w.vkey, expect, evidence=evidence)

    def bad(description: str, evidence: Any, error: str, vkey: str = w.vkey) -> Case:
        return failing(description, vkey, error, evidence=evidence)

    older = w.inclusion[3]
    return {
        "valid": ok(f"Evidence for record {seq} as `infertrail audit prove` writes it.", ev),
        "valid_first_record": ok("Evidence for the first record, seq 0.", w.inclusion[0]),
        "valid_last_record": ok(
            "Evidence for the last record: a short proof along the right border.",
            w.inclusion[TREE_SIZE - 1],
        ),
        "record_bytes_changed": bad(
            "A value in the record changed, leaf_hash left as it was.",
            edited(ev, record=replaced(record, f"golden-{seq}", "golden-99")),
            not_leaf,
        ),
        "record_reformatted": bad(
            "The same JSON values with a space added: the bytes are what is proven.",
            edited(ev, record=record.replace(":", ": ", 1)),
            not_leaf,
        ),
        "record_and_leaf_hash_changed": bad(
            "A value in the record changed and leaf_hash recomputed: the proof no longer fits.",
            with_record(ev, replaced(record, f"golden-{seq}", "golden-99")),
            missed,
        ),
        "leaf_hash_changed": bad(
            "leaf_hash changed, record intact.",
            edited(ev, leaf_hash=flip(bytes.fromhex(ev["leaf_hash"])).hex()),
            not_leaf,
        ),
        "leaf_hash_without_prefix": bad(
            "leaf_hash as plain SHA-256 of the record, without RFC 6962's 0x00 leaf prefix.",
            edited(ev, leaf_hash=hashlib.sha256(record.encode()).hexdigest()),
            not_leaf,
        ),
        "leaf_hash_uppercase": bad(
            "leaf_hash in uppercase hex: the format is lowercase.",
            edited(ev, leaf_hash=ev["leaf_hash"].upper()),
            not_leaf,
        ),
        "proof_hash_changed": bad(
            "One bit of one proof hash flipped.",
            edited(ev, inclusion_proof=[proof[0], flip_b64(proof[1]), *proof[2:]]),
            missed,
        ),
        "proof_hash_removed": bad(
            "The last proof hash removed.", edited(ev, inclusion_proof=proof[:-1]), missed
        ),
        "proof_hash_extra": bad(
            "A proof hash appended.", edited(ev, inclusion_proof=[*proof, proof[0]]), missed
        ),
        "proof_hashes_reordered": bad(
            "The proof hashes in reverse order (they go from the leaf up).",
            edited(ev, inclusion_proof=proof[::-1]),
            missed,
        ),
        "proof_hash_bad_base64": bad(
            "A proof hash that is not base64.",
            edited(ev, inclusion_proof=[proof[0][:-2] + "!=", *proof[1:]]),
            not_base64,
        ),
        "proof_hash_not_a_string": bad(
            "A proof hash that is a number.",
            edited(ev, inclusion_proof=[1, *proof[1:]]),
            not_base64,
        ),
        "proof_not_a_list": bad(
            "inclusion_proof is one string, not a list.",
            edited(ev, inclusion_proof=proof[0]),
            "inclusion_proof must be a list",
        ),
        "index_out_of_range": bad(
            f"seq {TREE_SIZE} (and a record claiming it) in a tree of {TREE_SIZE} records.",
            edited(
                with_record(ev, replaced(record, f'"seq":{seq},', f'"seq":{TREE_SIZE},')),
                seq=TREE_SIZE,
            ),
            missed,
        ),
        "seq_mismatch": bad(
            "seq changed: the record says otherwise.",
            edited(ev, seq=seq + 1),
            f"record carries seq {seq}, evidence says {seq + 1}",
        ),
        "seq_not_an_integer": bad(
            "seq as a string.", edited(ev, seq=str(seq)), "seq must be a int"
        ),
        "seq_boolean": bad("seq as a boolean.", edited(ev, seq=True), "seq must be a int"),
        "record_not_an_object": bad(
            "A record that is valid JSON but not an object, with a matching leaf_hash.",
            with_record(ev, f"[{seq}]"),
            "record is not a JSON object",
        ),
        "tree_size_mismatch": bad(
            "tree_size is not the size the checkpoint states.",
            edited(ev, tree_size=TREE_SIZE + 1),
            f"tree_size {TREE_SIZE + 1} is not the checkpoint's size {TREE_SIZE}",
        ),
        "checkpoint_tree_size_modified": bad(
            "The checkpoint's size line changed (and tree_size with it).",
            edited(ev, checkpoint=with_line(note, 1, str(TREE_SIZE + 1)), tree_size=TREE_SIZE + 1),
            "checkpoint: invalid signature from key",
        ),
        "checkpoint_root_modified": bad(
            "The checkpoint's root line changed.",
            edited(ev, checkpoint=with_line(note, 2, flip_b64(root))),
            "checkpoint: invalid signature from key",
        ),
        "checkpoint_of_older_tree": bad(
            f"The log's checkpoint of size {CHECKPOINT_SIZES[-1]} with a proof for size "
            f"{TREE_SIZE}.",
            edited(older, checkpoint=w.notes[CHECKPOINT_SIZES[-1]], tree_size=CHECKPOINT_SIZES[-1]),
            missed,
        ),
        "checkpoint_from_another_log": bad(
            "Another log's checkpoint (its own key and origin) with the same size and root.",
            edited(
                ev,
                origin=OTHER_ORIGIN,
                checkpoint=w.sign(OTHER_ORIGIN, TREE_SIZE, base64.b64decode(root), w.other),
            ),
            "checkpoint: note has no signature from key",
        ),
        "checkpoint_other_origin_same_key": bad(
            "A checkpoint validly signed by the log's key but for another origin.",
            edited(ev, checkpoint=w.sign(OTHER_ORIGIN, TREE_SIZE, base64.b64decode(root))),
            "is not the expected",
        ),
        "origin_changed": bad(
            "origin is not the checkpoint's.",
            edited(ev, origin=OTHER_ORIGIN),
            "is not the expected",
        ),
        "wrong_key": bad(
            "Checked with another key of the log's name.",
            ev,
            "checkpoint: note has no signature from key",
            w.impostor.verifier_key,
        ),
        "bad_verifier_key": bad(
            "A verifier key that is not one.", ev, "bad verifier key", "not a key"
        ),
        "format_changed": bad(
            "Another format version.",
            edited(ev, format="infertrail-proof/2"),
            f"format must be {PROOF_FORMAT!r}",
        ),
        "leaf_hash_missing": bad(
            "No leaf_hash field.", removed(ev, "leaf_hash"), "leaf_hash must be a str"
        ),
        "not_an_object": bad(
            "The evidence wrapped in a list.", [ev], "evidence must be a JSON object, got list"
        ),
    }


def consistency_cases(w: World) -> dict[str, Case]:
    """Consistency evidence (``infertrail audit consistency``) for ``verifier_key``."""
    old = CHECKPOINT_SIZES[-1]
    ev = w.consistency[old]
    proof: list[str] = ev["consistency_proof"]
    latest = w.latest
    does_not_verify = "consistency proof does not verify"
    must_agree = "checkpoints of this size must agree, with no proof"

    def ok(description: str, evidence: Case) -> Case:
        expect = {"origin": ORIGIN, "tree_size": TREE_SIZE}
        return passing(description, w.vkey, expect, evidence=evidence)

    def bad(description: str, evidence: Case, error: str, vkey: str = w.vkey) -> Case:
        return failing(description, vkey, error, evidence=evidence)

    same = w.consistency[TREE_SIZE]
    return {
        "valid": ok(
            f"From size {old} to {TREE_SIZE}, as `infertrail audit consistency` writes it.", ev
        ),
        "valid_old_tree_complete": ok(
            f"From size {CHECKPOINT_SIZES[0]}, a complete subtree whose root the proof omits.",
            w.consistency[CHECKPOINT_SIZES[0]],
        ),
        "valid_same_size": ok("From the newest checkpoint to itself: no proof.", same),
        "valid_from_empty_tree": ok(
            "From the empty tree: every tree extends it, no proof.", w.consistency[0]
        ),
        "rollback": bad(
            "The old and new checkpoints swapped: the second tree is smaller.",
            edited(ev, old_checkpoint=latest, new_checkpoint=ev["old_checkpoint"]),
            f"old size {TREE_SIZE} > new size {old}: rollback",
        ),
        "proof_hash_changed": bad(
            "One bit of one proof hash flipped.",
            edited(ev, consistency_proof=[flip_b64(proof[0]), *proof[1:]]),
            does_not_verify,
        ),
        "proof_hash_removed": bad(
            "The last proof hash removed.",
            edited(ev, consistency_proof=proof[:-1]),
            does_not_verify,
        ),
        "proof_hash_extra": bad(
            "A proof hash appended.",
            edited(ev, consistency_proof=[*proof, proof[0]]),
            does_not_verify,
        ),
        "proof_removed": bad(
            "An empty proof between different sizes.",
            edited(ev, consistency_proof=[]),
            does_not_verify,
        ),
        "proof_hash_bad_base64": bad(
            "A proof hash that is not base64.",
            edited(ev, consistency_proof=[proof[0][:-2] + "!=", *proof[1:]]),
            "consistency_proof must be a list of base64 hashes",
        ),
        "proof_for_other_sizes": bad(
            f"The proof from size {old} offered for size {CHECKPOINT_SIZES[0]}.",
            edited(ev, old_checkpoint=w.notes[CHECKPOINT_SIZES[0]]),
            does_not_verify,
        ),
        "same_size_with_proof": bad(
            "Equal sizes with a proof hash: there is nothing to prove.",
            edited(same, consistency_proof=[proof[0]]),
            must_agree,
        ),
        "fork_same_size": bad(
            "Two checkpoints of the same size with different roots, both signed by the log's "
            "key: a split view.",
            edited(same, old_checkpoint=w.sign(ORIGIN, TREE_SIZE, FORKED_ROOT)),
            must_agree,
        ),
        "fork_old_root": bad(
            f"A signed checkpoint of size {old} with another root: a forked tree.",
            edited(ev, old_checkpoint=w.sign(ORIGIN, old, FORKED_ROOT)),
            does_not_verify,
        ),
        "old_checkpoint_from_another_log": bad(
            "The old checkpoint is another log's (its own key and origin).",
            edited(ev, old_checkpoint=w.sign(OTHER_ORIGIN, old, FORKED_ROOT, w.other)),
            "old_checkpoint: note has no signature from key",
        ),
        "new_checkpoint_size_modified": bad(
            "The new checkpoint's size line changed.",
            edited(ev, new_checkpoint=with_line(latest, 1, str(TREE_SIZE + 1))),
            "new_checkpoint: invalid signature from key",
        ),
        "new_checkpoint_other_origin_same_key": bad(
            "The new checkpoint validly signed by the log's key but for another origin.",
            edited(ev, new_checkpoint=w.sign(OTHER_ORIGIN, TREE_SIZE, FORKED_ROOT)),
            "new_checkpoint: checkpoint origin",
        ),
        "origin_changed": bad(
            "origin is not the checkpoints'.",
            edited(ev, origin=OTHER_ORIGIN),
            "old_checkpoint: checkpoint origin",
        ),
        "wrong_key": bad(
            "Checked with another key of the log's name.",
            ev,
            "old_checkpoint: note has no signature from key",
            w.impostor.verifier_key,
        ),
        "bad_verifier_key": bad(
            "A verifier key that is not one.", ev, "bad verifier key", "not a key"
        ),
        "format_of_inclusion_evidence": bad(
            "The inclusion evidence format name.",
            edited(ev, format=PROOF_FORMAT),
            "format must be 'infertrail-consistency/1'",
        ),
        "proof_missing": bad(
            "No consistency_proof field.",
            removed(ev, "consistency_proof"),
            "consistency_proof must be a list",
        ),
    }


def cosignature_cases(w: World) -> dict[str, Case]:
    """Witness cosignatures (cosignature/v1) on the log's checkpoint, for ``verifier_key``.

    The broken cases include the usual mistakes of a cosigner: no time line, the whole note
    signed, a little-endian timestamp or key id, the key id of a checkpoint key (type 0x01).
    """
    private = Ed25519PrivateKey.from_private_bytes(WITNESS_SEED)
    witness = CosignatureSigner(WITNESS, private)
    second = CosignatureSigner(
        OTHER_WITNESS, Ed25519PrivateKey.from_private_bytes(OTHER_WITNESS_SEED)
    )
    impostor = CosignatureSigner(
        WITNESS, Ed25519PrivateKey.from_private_bytes(IMPOSTOR_WITNESS_SEED)
    )
    vkey = witness.verifier_key
    key_id = witness.verifier.key_id
    note = w.latest
    text = body(note).encode()
    line = witness.cosign(text, COSIGNED_AT).decode()
    cosigned = note + line
    at = struct.pack(">Q", COSIGNED_AT)
    invalid = f"invalid cosignature from cosigner {WITNESS}+{key_id.hex()}"
    absent = f"note has no cosignature from cosigner {WITNESS}+{key_id.hex()}"
    expect = {"cosigner": WITNESS, "timestamp": COSIGNED_AT, "origin": ORIGIN, "size": TREE_SIZE}

    def ok(description: str, text: str, expected: dict[str, Any] = expect) -> Case:
        return passing(description, vkey, expected, note=text)

    def bad(description: str, text: str, error: str, key: str = vkey) -> Case:
        return failing(description, key, error, note=text)

    def crafted(message: bytes, timestamp: bytes, kid: bytes = key_id) -> str:
        """A cosignature line signing ``message`` by hand, with these timestamp bytes."""
        return signature_line(WITNESS, kid, timestamp + private.sign(message)) + "\n"

    raw = base64.b64decode(line.split(" ")[2])[4:]  # timestamp || Ed25519 signature
    extension_note = w.sign_text(body(note) + "golden extension\n")
    largest = 2**63 - 1
    public = private.public_key().public_bytes_raw()
    checkpoint_type_id = hashlib.sha256(WITNESS.encode() + b"\n\x01" + public).digest()[:4]
    not_a_checkpoint = w.sign_text(f"{ORIGIN}\n{TREE_SIZE}\n")
    return {
        "valid": ok("The log's newest checkpoint, its signature line, then a witness's.", cosigned),
        "valid_among_other_signatures": ok(
            "Another witness's cosignature before this one's is ignored.",
            note + second.cosign(text, COSIGNED_AT + 1).decode() + line,
        ),
        "valid_extension_line": ok(
            "An extension line is part of the cosigned message.",
            extension_note + witness.cosign(body(extension_note).encode(), COSIGNED_AT).decode(),
        ),
        "valid_largest_timestamp": ok(
            "The largest timestamp allowed, 2^63 - 1.",
            note + witness.cosign(text, largest).decode(),
            expect | {"timestamp": largest},
        ),
        "modified_timestamp": bad(
            "The timestamp one second later, the signature unchanged.",
            note
            + signature_line(WITNESS, key_id, struct.pack(">Q", COSIGNED_AT + 1) + raw[8:])
            + "\n",
            invalid,
        ),
        "timestamp_little_endian": bad(
            "The timestamp encoded little-endian (it is big-endian).",
            note + crafted(signed_message(COSIGNED_AT, text), struct.pack("<Q", COSIGNED_AT)),
            invalid,
        ),
        "timestamp_over_limit": bad(
            "A timestamp of 2^63, validly signed: over the limit.",
            note + crafted(b"cosignature/v1\ntime %d\n" % 2**63 + text, struct.pack(">Q", 2**63)),
            "is over 2^63 - 1",
        ),
        "no_time_line": bad(
            "Signed without the time line.", note + crafted(b"cosignature/v1\n" + text, at), invalid
        ),
        "no_header_line": bad(
            "Signed without the cosignature/v1 header line.",
            note + crafted(b"time %d\n" % COSIGNED_AT + text, at),
            invalid,
        ),
        "signed_body_only": bad(
            "The checkpoint body signed as a plain note signature, no header or time line.",
            note + crafted(text, at),
            invalid,
        ),
        "signed_whole_note": bad(
            "The whole note, the log's signature line included, signed instead of its text.",
            note + crafted(signed_message(COSIGNED_AT, note.encode()), at),
            invalid,
        ),
        "modified_tree_size": bad(
            "The checkpoint's size line changed after cosigning.",
            with_line(cosigned, 1, str(TREE_SIZE + 1)),
            invalid,
        ),
        "extension_line_added": bad(
            "A line added to the checkpoint text after cosigning.",
            replaced(cosigned, "\n\n", "\nextra\n\n"),
            invalid,
        ),
        "key_id_of_checkpoint_type": bad(
            "The key id computed with signature type 0x01 (a checkpoint key's) instead of 0x04.",
            note + crafted(signed_message(COSIGNED_AT, text), at, checkpoint_type_id),
            absent,
        ),
        "key_id_little_endian": bad(
            "The key id's bytes reversed.",
            note + crafted(signed_message(COSIGNED_AT, text), at, key_id[::-1]),
            absent,
        ),
        "other_witness_only": bad(
            "Cosigned only by another witness.",
            note + second.cosign(text, COSIGNED_AT).decode(),
            absent,
        ),
        "impostor_same_name": bad(
            "Cosigned by another key under this witness's name: the key id gives it away.",
            note + impostor.cosign(text, COSIGNED_AT).decode(),
            absent,
        ),
        "truncated_signature": bad(
            "The cosignature one byte short.",
            note + signature_line(WITNESS, key_id, raw[:-1]) + "\n",
            "71 bytes, expected 72",
        ),
        "second_cosignature_invalid": bad(
            "A valid cosignature, then a broken one from the same key: the note is rejected.",
            cosigned
            + signature_line(WITNESS, key_id, struct.pack(">Q", COSIGNED_AT + 1) + raw[8:])
            + "\n",
            invalid,
        ),
        "text_not_a_checkpoint": bad(
            "A two-line text, validly signed by the log and the witness, is no checkpoint.",
            not_a_checkpoint
            + crafted(signed_message(COSIGNED_AT, body(not_a_checkpoint).encode()), at),
            "cosigned text is not a checkpoint",
        ),
        "missing_blank_line": bad(
            "The blank line between the text and the signatures removed.",
            without_line(cosigned, 3),
            "no blank line separating",
        ),
        "verifier_key_of_checkpoint_type": bad(
            "The witness's key given as a checkpoint key (type 0x01).",
            cosigned,
            "type must be 0x04",
            f"{WITNESS}+{checkpoint_type_id.hex()}+" + base64.b64encode(b"\x01" + public).decode(),
        ),
        "verifier_key_id_mismatch": bad(
            "The verifier key's id does not match its name and public key.",
            cosigned,
            "does not match its name and key",
            with_key_id(vkey, flip(key_id)),
        ),
    }


# ---- writing -----------------------------------------------------------------------------


def receipt_cases(w: World) -> dict[str, Case]:
    """Decision receipts (``infertrail-receipt/1``: a C2SP tlog-proof of the record's leaf hash),
    as every decision response carries them, for ``verifier_key``."""
    seq = 6
    rc = w.receipts[seq]
    head, note = rc["tlog_proof"].split("\n\n", 1)  # the proof lines, then the checkpoint
    lines = head.split("\n")  # header, index line, one base64 hash per line
    proof = lines[2:]
    root = note.split("\n")[2]
    missed = "inclusion proof does not lead from leaf_hash to the checkpoint root"
    not_a_hash = "of the proof is not a base64 SHA-256 hash"
    bad_index = "tlog_proof needs an 'index <decimal without leading zeros>' line"

    def text(hashes: list[str], checkpoint: str = note, top: Sequence[str] = lines[:2]) -> str:
        return "\n".join([*top, *hashes]) + "\n\n" + checkpoint

    def ok(description: str, receipt: Case) -> Case:
        size = note_size(receipt["tlog_proof"].split("\n\n", 1)[1])
        expect = {"origin": ORIGIN, "tree_size": size, "seq": receipt["seq"]}
        return passing(description, w.vkey, expect, evidence=receipt)

    def bad(description: str, receipt: Any, error: str, vkey: str = w.vkey) -> Case:
        return failing(description, vkey, error, evidence=receipt)

    newest = w.inclusion[seq]
    under_newest = format_tlog_proof(
        seq, [base64.b64decode(h) for h in newest["inclusion_proof"]], w.latest.encode()
    )
    witness_line = w.other.sign(body(note).encode()).decode().split("\n")[SIGNATURE_LINE]
    extra = base64.b64encode(b"opaque, unauthenticated").decode()
    older = w.receipts[2]  # a tree of 3: its proof does not lead to the checkpoint of 4
    return {
        "valid": ok(
            f"The receipt of record {seq} as its decision response carries it: the checkpoint "
            f"of its group commit (a tree of {seq + 1}) and its inclusion proof.",
            rc,
        ),
        "valid_first_record": ok(
            "The receipt of the first record: a tree of one, no proof hashes.", w.receipts[0]
        ),
        "valid_last_record": ok("The receipt of the last record.", w.receipts[TREE_SIZE - 1]),
        "valid_newer_checkpoint": ok(
            f"Record {seq} under the log's newest checkpoint ({TREE_SIZE} records) and its proof "
            "there: any checkpoint of the log that holds the record will do.",
            edited(rc, tlog_proof=under_newest),
        ),
        "valid_extra_line": ok(
            "An extra line (C2SP tlog-proof allows one: opaque, never trusted).",
            edited(rc, tlog_proof=text(proof, top=[lines[0], f"extra {extra}", lines[1]])),
        ),
        "valid_cosigned": ok(
            "The checkpoint with a second signature line from another key (a witness): ignored.",
            edited(rc, tlog_proof=text(proof, note + witness_line + "\n")),
        ),
        "wrong_key": bad(
            "Checked with another key of the log's name.",
            rc,
            "checkpoint: note has no signature from key",
            w.impostor.verifier_key,
        ),
        "bad_verifier_key": bad("A verifier key that is not one.", rc, "bad verifier key", "x"),
        "not_an_object": bad(
            "The receipt wrapped in a list.", [rc], "a receipt is a JSON object, got list"
        ),
        "format_changed": bad(
            "Another format version.",
            edited(rc, format="infertrail-receipt/2"),
            f"format must be {RECEIPT_FORMAT!r}",
        ),
        "origin_changed": bad(
            "origin is not the checkpoint's.",
            edited(rc, origin=OTHER_ORIGIN),
            "is not the expected",
        ),
        "checkpoint_other_origin_same_key": bad(
            "A checkpoint validly signed by the log's key, but for another origin.",
            edited(
                rc, tlog_proof=text(proof, w.sign(OTHER_ORIGIN, seq + 1, base64.b64decode(root)))
            ),
            "is not the expected",
        ),
        "shard_missing": bad("No shard field.", removed(rc, "shard"), "shard must be a str"),
        "seq_boolean": bad("seq as a boolean.", edited(rc, seq=True), "seq must be a int"),
        "seq_negative": bad("seq below zero.", edited(rc, seq=-1), "seq must be >= 0"),
        "seq_mismatch": bad(
            "seq is not the tlog-proof's index.",
            edited(rc, seq=seq + 1),
            f"tlog_proof is for index {seq}, the receipt says seq {seq + 1}",
        ),
        "seq_and_index_changed": bad(
            "seq and the index line both changed: the proof no longer fits.",
            edited(rc, seq=seq - 1, tlog_proof=text(proof, top=[lines[0], f"index {seq - 1}"])),
            missed,
        ),
        "leaf_hash_changed": bad(
            "One bit of leaf_hash flipped.",
            edited(rc, leaf_hash=flip(bytes.fromhex(rc["leaf_hash"])).hex()),
            missed,
        ),
        "leaf_hash_uppercase": bad(
            "leaf_hash in uppercase hex: the format is lowercase.",
            edited(rc, leaf_hash=rc["leaf_hash"].upper()),
            "leaf_hash must be 64 lowercase hex digits",
        ),
        "proof_hash_changed": bad(
            "One bit of one proof hash flipped.",
            edited(rc, tlog_proof=text([proof[0], flip_b64(proof[1]), *proof[2:]])),
            missed,
        ),
        "proof_hash_removed": bad(
            "The last proof hash removed.", edited(rc, tlog_proof=text(proof[:-1])), missed
        ),
        "proof_hash_extra": bad(
            "A proof hash appended.", edited(rc, tlog_proof=text([*proof, proof[0]])), missed
        ),
        "proof_hashes_reordered": bad(
            "The proof hashes in reverse order (they go from the leaf's sibling up).",
            edited(rc, tlog_proof=text(proof[::-1])),
            missed,
        ),
        "proof_hash_bad_base64": bad(
            "A proof hash that is not base64.",
            edited(rc, tlog_proof=text([proof[0][:-2] + "!=", *proof[1:]])),
            not_a_hash,
        ),
        "proof_hash_noncanonical_base64": bad(
            "A proof hash in base64 with a padding bit set: the same bytes, a second encoding.",
            edited(rc, tlog_proof=text([noncanonical_b64(proof[0]), *proof[1:]])),
            not_a_hash,
        ),
        "header_changed": bad(
            "Another tlog-proof version on the first line.",
            edited(rc, tlog_proof=text(proof, top=["c2sp.org/tlog-proof@v2", lines[1]])),
            f"tlog_proof must start with the line {TLOG_PROOF_HEADER!r}",
        ),
        "index_leading_zero": bad(
            "The index with a leading zero: one encoding per value.",
            edited(rc, tlog_proof=text(proof, top=[lines[0], f"index 0{seq}"])),
            bad_index,
        ),
        "index_line_missing": bad(
            "No index line.", edited(rc, tlog_proof=text(proof, top=lines[:1])), bad_index
        ),
        "blank_line_missing": bad(
            "No blank line between the proof and the checkpoint: the note's lines read as hashes.",
            edited(rc, tlog_proof="\n".join(lines) + "\n" + note),
            not_a_hash,
        ),
        "checkpoint_missing": bad(
            "Nothing after the blank line.",
            edited(rc, tlog_proof=head + "\n\n"),
            "tlog_proof has no checkpoint after its blank line",
        ),
        "checkpoint_root_modified": bad(
            "The checkpoint's root line changed.",
            edited(rc, tlog_proof=text(proof, with_line(note, 2, flip_b64(root)))),
            "checkpoint: invalid signature from key",
        ),
        "checkpoint_too_small": bad(
            f"The log's real checkpoint of {seq} records, which does not hold record {seq}.",
            edited(rc, tlog_proof=text(proof, w.notes[seq])),
            f"seq {seq} is not in the signed checkpoint of {seq} records",
        ),
        "checkpoint_of_another_tree": bad(
            "The receipt of record 2 (a tree of 3) with the log's checkpoint of 4 records.",
            edited(
                older,
                tlog_proof=older["tlog_proof"].split("\n\n", 1)[0] + "\n\n" + w.notes[4],
            ),
            missed,
        ),
        "crlf_line_endings": bad(
            "CRLF line endings.",
            edited(rc, tlog_proof=rc["tlog_proof"].replace("\n", "\r\n")),
            f"tlog_proof must start with the line {TLOG_PROOF_HEADER!r}",
        ),
        "tlog_proof_not_a_string": bad(
            "tlog_proof as a list of lines.",
            edited(rc, tlog_proof=rc["tlog_proof"].split("\n")),
            "tlog_proof must be a str",
        ),
    }


def all_cases(w: World) -> dict[str, dict[str, Case]]:
    """Every case, by directory and then by file name (without .json)."""
    return {
        "checkpoint": checkpoint_cases(w),
        "inclusion_evidence": inclusion_cases(w),
        "consistency_evidence": consistency_cases(w),
        "receipts": receipt_cases(w),
        "cosignature": cosignature_cases(w),
    }


def render(case: Case) -> str:
    """A case file's text: sorted keys, indent 2 (as the CLI writes evidence), final newline."""
    return json.dumps(case, indent=2, sort_keys=True) + "\n"


def generate(out: Path) -> list[Path]:
    """Build the golden log in a temporary directory and write every case file under ``out``.

    Replaces the JSON files of each case directory, so a case dropped here leaves no stale file.
    """
    with tempfile.TemporaryDirectory(prefix="infertrail-golden-") as tmp:
        cases = all_cases(build_world(Path(tmp)))
    written = []
    for kind, named in cases.items():
        directory = out / kind
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            stale.unlink()
        for name, case in sorted(named.items()):
            path = directory / f"{name}.json"
            path.write_text(render(case), encoding="utf-8")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the cases under --out (default: tests/golden)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    written = generate(args.out)
    print(f"wrote {len(written)} cases under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
