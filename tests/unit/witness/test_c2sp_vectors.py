"""The C2SP published examples and transparency-dev/formats vectors (tests/data, attributed).

What they pin: the cosignature/v1 signed message byte for byte, the key id and timestamp layout
of a cosignature line, the add-checkpoint request body (parsed and re-encoded to the same
bytes), the answer's signature-line layout, which cosigner vkeys are keys, and the timestamp
field's position. The examples publish no witness public key, so nothing here verifies a
signature; the golden cases (tests/golden/cosignature) do.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit.checkpoint import Checkpoint, split_note
from infertrail.audit.cosignature import (
    CosignatureError,
    CosignatureVerifier,
    cosignature_timestamp,
    signed_message,
)
from infertrail.audit.witness_protocol import AddCheckpoint, parse_cosignature_answer

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "c2sp_witness_vectors.json").read_text()
)


def test_signed_message_is_the_specs_example() -> None:
    example = VECTORS["cosignature_example"]
    text, _ = split_note(example["note"].encode())
    message = signed_message(example["timestamp"], text)
    assert message == example["signed_message"].encode()


def test_the_specs_cosignature_line_decodes_to_its_key_id_and_time() -> None:
    example = VECTORS["cosignature_example"]
    text, signatures = split_note(example["note"].encode())
    assert Checkpoint.parse(text).size == 20852163
    (name, key_id, signature) = signatures[1]
    assert name == example["cosigner"]
    assert key_id.hex() == example["key_id"]
    assert len(key_id + signature) == 76  # key id, u64 timestamp, Ed25519 signature
    encoded = base64.b64encode(key_id + signature).decode()
    assert cosignature_timestamp(encoded) == example["timestamp"]


def test_the_specs_request_body_parses_and_encodes_back_to_the_same_bytes() -> None:
    example = VECTORS["add_checkpoint_request_example"]
    body = example["body"].encode()
    request = AddCheckpoint.parse(body)
    assert request.old_size == example["old_size"]
    assert [base64.b64encode(h).decode() for h in request.proof] == example["proof"]
    text, signatures = split_note(request.checkpoint)
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size) == (example["origin"], example["size"])
    assert len(signatures) == 2  # "The submitted checkpoint MAY include multiple signatures."
    assert request.encode() == body


def test_the_specs_answer_is_three_signature_lines() -> None:
    example = VECTORS["add_checkpoint_answer_example"]
    lines = parse_cosignature_answer(example["body"].encode())
    assert b"".join(lines) == example["body"].encode()
    assert [line.decode().split(" ")[1] for line in lines] == example["names"]


@pytest.mark.parametrize(
    "case", VECTORS["cosigner_verifier_keys"], ids=lambda c: c["vkey"].split("+")[0]
)
def test_cosigner_verifier_keys(case: dict[str, Any]) -> None:
    if case["valid"]:
        assert CosignatureVerifier.from_key(case["vkey"]).verifier_key == case["vkey"]
    else:
        with pytest.raises(CosignatureError):
            CosignatureVerifier.from_key(case["vkey"])


@pytest.mark.parametrize("case", VECTORS["cosignature_timestamps"], ids=range(3))
def test_cosignature_timestamps(case: dict[str, Any]) -> None:
    if case["timestamp"] is None:
        with pytest.raises(CosignatureError):
            cosignature_timestamp(case["signature"])
    else:
        assert cosignature_timestamp(case["signature"]) == case["timestamp"]
