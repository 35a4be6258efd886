"""cosignature/v1 keys, signing and policies (verdicts on documents: tests/golden/cosignature)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteSigner, sign_checkpoint
from infertrail.audit.cosignature import (
    MAX_TIMESTAMP,
    CosignatureError,
    CosignatureSigner,
    CosignatureVerifier,
    WitnessPolicy,
    add_signature_lines,
    cosigner_key_id,
    signed_message,
)

ORIGIN = "example.test/log"
ROOT = bytes(range(32))


def witness(name: str) -> CosignatureSigner:
    return CosignatureSigner.from_key(CosignatureSigner.generate(name)[0])


def log_note(size: int = 5) -> bytes:
    skey, _ = NoteSigner.generate(ORIGIN)
    return sign_checkpoint(Checkpoint(ORIGIN, size, ROOT), NoteSigner.from_key(skey))


def text_of(note: bytes) -> bytes:
    return note[: note.rindex(b"\n\n") + 1]


def test_generated_keys_round_trip_and_hide_the_secret() -> None:
    skey, vkey = CosignatureSigner.generate("witness.test/w1")
    signer = CosignatureSigner.from_key(skey)
    assert signer.verifier_key == vkey
    assert CosignatureVerifier.from_key(vkey).verifier_key == vkey
    assert skey.split("+", 4)[4] not in repr(signer)
    assert skey.split("+")[3] == vkey.split("+")[1]  # the same key id in both
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04


def test_key_id_is_sha256_of_name_newline_type_4_and_key() -> None:
    signer = witness("witness.test/w1")
    public = base64.b64decode(signer.verifier_key.split("+", 2)[2])[1:]
    assert signer.verifier.key_id == cosigner_key_id("witness.test/w1", public)
    expected = hashlib.sha256(b"a\n\x04" + bytes(32)).digest()[:4]
    assert cosigner_key_id("a", bytes(32)) == expected


@pytest.mark.parametrize(
    ("skey", "error"),
    [
        ("KEY+w+00000000+BA==", "must look like PRIVATE"),
        ("PRIVATE+KEY+w+zz+BA==", "8 hex digits"),
        ("PRIVATE+KEY+w+00000000+!!", "not valid base64"),
        ("PRIVATE+KEY+w+00000000+" + base64.b64encode(b"\x01" + b"\x00" * 32).decode(), "0x01"),
        ("PRIVATE+KEY+w+00000000+" + base64.b64encode(b"\x04" + b"\x00" * 31).decode(), "seed"),
        ("PRIVATE+KEY+w+00000000+" + base64.b64encode(b"\x04" + b"\x00" * 32).decode(), "match"),
        ("PRIVATE+KEY+has space+00000000+BA==", "name must be"),
    ],
)
def test_bad_signer_keys_are_named(skey: str, error: str) -> None:
    with pytest.raises(CosignatureError, match=error):
        CosignatureSigner.from_key(skey)


def test_signed_message_bounds() -> None:
    assert signed_message(0, b"a\n") == b"cosignature/v1\ntime 0\na\n"
    assert signed_message(MAX_TIMESTAMP, b"a\n").endswith(b"time 9223372036854775807\na\n")
    for bad in (-1, MAX_TIMESTAMP + 1, True, 1.0):
        with pytest.raises(CosignatureError):
            signed_message(bad, b"a\n")  # type: ignore[arg-type]
    with pytest.raises(CosignatureError, match="newline"):
        signed_message(1, b"a")


def test_a_witness_cosigns_checkpoints_only() -> None:
    signer = witness("witness.test/w1")
    with pytest.raises(CosignatureError, match="not a checkpoint"):
        signer.cosign(b"hello\nworld\n", 1)


def test_cosign_then_open() -> None:
    signer = witness("witness.test/w1")
    note = log_note()
    line = signer.cosign(text_of(note), 1_700_000_000)
    assert line.startswith("\N{EM DASH} witness.test/w1 ".encode()) and line.endswith(b"\n")
    assert len(base64.b64decode(line.split(b" ")[2])) == 76
    found = signer.verifier.open(note + line)
    assert (found.name, found.timestamp, found.line) == ("witness.test/w1", 1_700_000_000, line)
    # The log's own key cannot read a cosignature, nor a cosigner the log's signature.
    with pytest.raises(CosignatureError, match="no cosignature"):
        signer.verifier.open(note)


def test_policy_counts_trusted_cosignatures_against_the_quorum() -> None:
    w1, w2, w3, stranger = (witness(f"witness.test/w{i}") for i in (1, 2, 3, 4))
    policy = WitnessPolicy.of([w.verifier_key for w in (w1, w2, w3)])
    assert policy.quorum == 2  # a majority by default
    note = log_note()
    text = text_of(note)
    lines = [w.cosign(text, 100) for w in (w1, stranger)]
    found = policy.cosignatures(note + b"".join(lines))
    assert set(found) == {"witness.test/w1"}  # the stranger's line is ignored
    assert not policy.satisfied(found)
    found = policy.cosignatures(note + b"".join([*lines, w3.cosign(text, 101)]))
    assert policy.satisfied(found) and set(found) == {"witness.test/w1", "witness.test/w3"}
    assert WitnessPolicy.of([w1.verifier_key], quorum=1).satisfied(["witness.test/w1"])


def test_policy_refuses_a_bad_trusted_line() -> None:
    w1 = witness("witness.test/w1")
    policy = WitnessPolicy.of([w1.verifier_key])
    note = log_note()
    good = w1.cosign(text_of(note), 100)
    raw = bytearray(base64.b64decode(good.split(b" ")[2].strip()))
    raw[-1] ^= 1
    broken = good.rsplit(b" ", 1)[0] + b" " + base64.b64encode(bytes(raw)) + b"\n"
    with pytest.raises(CosignatureError, match="invalid cosignature"):
        policy.cosignatures(note + good + broken)


def test_policy_shape_is_checked() -> None:
    w1, w2 = witness("witness.test/w1"), witness("witness.test/w2")
    with pytest.raises(ValueError, match="between 1 and the 2"):
        WitnessPolicy.of([w1.verifier_key, w2.verifier_key], quorum=3)
    with pytest.raises(ValueError, match="distinct"):
        WitnessPolicy.of([w1.verifier_key, w1.verifier_key])
    same_key = CosignatureVerifier(
        "witness.test/other", CosignatureVerifier.from_key(w1.verifier_key)._public_key
    )
    with pytest.raises(ValueError, match="share one public key"):
        WitnessPolicy((w1.verifier, same_key), 1)


def test_add_signature_lines_appends_once_and_keeps_the_text() -> None:
    w1 = witness("witness.test/w1")
    note = log_note()
    line = w1.cosign(text_of(note), 100)
    once = add_signature_lines(note, [line])
    assert once == note + line
    assert add_signature_lines(once, [line, line]) == once
    with pytest.raises(NoteError):
        add_signature_lines(note, [b"not a signature line\n"])
