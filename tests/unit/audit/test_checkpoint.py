"""Tests for infertrail.audit.checkpoint: C2SP signed notes and tlog checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit.checkpoint import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from infertrail.audit.merkle import EMPTY_ROOT

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "data" / "rfc6962_vectors.json").read_text()
)
SIGNED_NOTE = VECTORS["signed_note"]
EXAMPLE_CHECKPOINT_NOTE = VECTORS["checkpoint_example_unverifiable"]["note"].encode()
EM_DASH = "\N{EM DASH}".encode()
ORIGIN = "example.com/infertrail/test-log"
ROOT = hashlib.sha256(b"some root").digest()


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def signer(keypair: tuple[str, str]) -> NoteSigner:
    return NoteSigner.from_key(keypair[0])


@pytest.fixture
def verifier(keypair: tuple[str, str]) -> NoteVerifier:
    return NoteVerifier.from_key(keypair[1])


def _text_of(note: bytes) -> bytes:
    return note[: note.rfind(b"\n\n") + 1]


def _signature_line(name: str, key_id: bytes, signature: bytes) -> bytes:
    return EM_DASH + b" " + name.encode() + b" " + base64.b64encode(key_id + signature) + b"\n"


# --- published examples -------------------------------------------------------------------


def test_c2sp_signed_note_example_verifies() -> None:
    verifier = NoteVerifier.from_key(SIGNED_NOTE["vkey"])
    assert verifier.name == "example.com/foo"
    assert verifier.key_id.hex() == "530d903a"
    assert verifier.verifier_key == SIGNED_NOTE["vkey"]
    assert verifier.verify(SIGNED_NOTE["note"].encode()) == SIGNED_NOTE["signed_text"].encode()


def test_key_id_rule() -> None:
    verifier = NoteVerifier.from_key(SIGNED_NOTE["vkey"])
    public = base64.b64decode(SIGNED_NOTE["vkey"].split("+", 2)[2])[1:]
    expected = hashlib.sha256(b"example.com/foo\n\x01" + public).digest()[:4]
    assert verifier.key_id == expected


def test_c2sp_checkpoint_example_parses_and_round_trips() -> None:
    text = _text_of(EXAMPLE_CHECKPOINT_NOTE)
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.body() == text


def test_c2sp_checkpoint_example_is_not_verifiable_by_another_key(
    verifier: NoteVerifier,
) -> None:
    with pytest.raises(NoteError, match="no signature from key"):
        open_checkpoint(EXAMPLE_CHECKPOINT_NOTE, verifier)


# --- round trips --------------------------------------------------------------------------


def test_sign_and_open_checkpoint(signer: NoteSigner, verifier: NoteVerifier) -> None:
    checkpoint = Checkpoint(ORIGIN, 42, ROOT)
    note = sign_checkpoint(checkpoint, signer)
    assert note.startswith(checkpoint.body() + b"\n" + EM_DASH + b" " + ORIGIN.encode() + b" ")
    assert note.endswith(b"\n")
    assert open_checkpoint(note, verifier) == checkpoint
    assert open_checkpoint(note, verifier, expected_origin=ORIGIN) == checkpoint
    # Ed25519 is deterministic: the same checkpoint always gives the same note bytes.
    assert sign_checkpoint(checkpoint, signer) == note


def test_open_checkpoint_rejects_other_origin(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = sign_checkpoint(Checkpoint("example.com/other-log", 1, ROOT), signer)
    with pytest.raises(NoteError, match=re.escape(f"not the expected {ORIGIN!r}")):
        open_checkpoint(note, verifier, expected_origin=ORIGIN)


def test_empty_tree_and_extensions_round_trip(signer: NoteSigner, verifier: NoteVerifier) -> None:
    checkpoint = Checkpoint(ORIGIN, 0, EMPTY_ROOT, ("ext one", "— two"))
    assert checkpoint.body() == (
        f"{ORIGIN}\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\next one\n— two\n".encode()
    )
    assert open_checkpoint(sign_checkpoint(checkpoint, signer), verifier) == checkpoint


def test_signer_key_round_trip(keypair: tuple[str, str], signer: NoteSigner) -> None:
    skey, vkey = keypair
    assert skey.startswith(f"PRIVATE+KEY+{ORIGIN}+{signer.key_id.hex()}+")
    assert vkey == signer.verifier_key
    assert vkey.startswith(f"{ORIGIN}+{signer.key_id.hex()}+")
    assert signer.name == ORIGIN
    assert skey.split("+", 4)[4] not in repr(signer)


def test_note_text_may_contain_blank_lines(signer: NoteSigner, verifier: NoteVerifier) -> None:
    text = b"first\n\nsecond after a blank line\n\n"
    assert verifier.verify(signer.sign(text)) == text


def test_unknown_signatures_are_ignored(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(b"hello\n")
    other_skey, _ = NoteSigner.generate("witness.example/w1")
    other_note = NoteSigner.from_key(other_skey).sign(b"hello\n")
    other_line = other_note[other_note.rfind(b"\n\n") + 2 :]
    assert verifier.verify(note + other_line) == b"hello\n"
    text_end = note.rfind(b"\n\n") + 2
    assert verifier.verify(note[:text_end] + other_line + note[text_end:]) == b"hello\n"


def test_many_signatures_accepted_up_to_limit(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(b"hello\n")
    stranger = _signature_line("witness.example/w", b"\x00\x00\x00\x01", b"\x07" * 64)
    assert verifier.verify(note + stranger * (MAX_SIGNATURES - 1)) == b"hello\n"
    with pytest.raises(NoteError, match=f"over the limit of {MAX_SIGNATURES}"):
        verifier.verify(note + stranger * MAX_SIGNATURES)


@settings(max_examples=50, deadline=None)
@given(
    origin=st.text(
        alphabet=st.characters(
            min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=("Cs",)
        ),
        min_size=1,
        max_size=40,
    ),
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(
            alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",)),
            min_size=1,
            max_size=20,
        ),
        max_size=3,
    ),
)
def test_checkpoint_round_trip_property(
    origin: str, size: int, root: bytes, extensions: list[str], keypair: tuple[str, str]
) -> None:
    signer = NoteSigner.from_key(keypair[0])
    verifier = NoteVerifier.from_key(keypair[1])
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse(checkpoint.body()) == checkpoint
    assert open_checkpoint(sign_checkpoint(checkpoint, signer), verifier) == checkpoint


@pytest.mark.parametrize(("origin", "extensions"), [("log\ud800", ()), ("log", ("x\udfff",))])
def test_lone_surrogates_are_refused_by_name(origin: str, extensions: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="must be valid Unicode, got lone surrogate U\\+D"):
        Checkpoint(origin, 0, bytes(32), extensions)


# --- tampered or malformed notes ----------------------------------------------------------


def test_altered_text_is_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), signer)
    altered = note.replace(b"\n42\n", b"\n43\n", 1)
    with pytest.raises(NoteError, match="invalid signature from key"):
        open_checkpoint(altered, verifier)


def test_altered_signature_is_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    note = signer.sign(b"hello\n")
    text_end = note.rfind(b"\n\n") + 2
    raw = bytearray(base64.b64decode(note[text_end:].split(b" ")[-1]))
    for position in (4, 40, len(raw) - 1):  # inside R, inside S, last byte
        mutated = bytearray(raw)
        mutated[position] ^= 0x01
        line = _signature_line(ORIGIN, bytes(mutated[:4]), bytes(mutated[4:]))
        with pytest.raises(NoteError, match="invalid signature"):
            verifier.verify(note[:text_end] + line)


def test_truncated_signature_from_known_key_is_rejected(
    signer: NoteSigner, verifier: NoteVerifier
) -> None:
    note = signer.sign(b"hello\n")
    line = _signature_line(ORIGIN, signer.key_id, b"\x01" * 10)
    with pytest.raises(NoteError, match="invalid signature"):
        verifier.verify(_text_of(note) + b"\n" + line)


def test_bad_signature_from_known_key_rejects_even_with_a_good_one(
    signer: NoteSigner, verifier: NoteVerifier
) -> None:
    note = signer.sign(b"hello\n")
    forged = _signature_line(ORIGIN, signer.key_id, b"\x00" * 64)
    with pytest.raises(NoteError, match="invalid signature"):
        verifier.verify(note + forged)


def test_wrong_key_is_rejected(signer: NoteSigner) -> None:
    _, other_vkey = NoteSigner.generate(ORIGIN)
    with pytest.raises(NoteError, match="no signature from key"):
        NoteVerifier.from_key(other_vkey).verify(signer.sign(b"hello\n"))


def test_signature_with_wrong_key_name_but_right_id_is_ignored(
    signer: NoteSigner, verifier: NoteVerifier
) -> None:
    note = signer.sign(b"hello\n")
    text_end = note.rfind(b"\n\n") + 2
    renamed = note[:text_end] + note[text_end:].replace(ORIGIN.encode(), b"example.com/impostor", 1)
    with pytest.raises(NoteError, match="no signature from key"):
        verifier.verify(renamed)


def test_signature_with_right_name_but_wrong_id_is_ignored(
    signer: NoteSigner, verifier: NoteVerifier
) -> None:
    note = signer.sign(b"hello\n")
    raw = base64.b64decode(note[note.rfind(b"\n\n") + 2 :].split(b" ")[-1])
    line = _signature_line(ORIGIN, b"\xff\xff\xff\xff", raw[4:])
    with pytest.raises(NoteError, match="no signature from key"):
        verifier.verify(_text_of(note) + b"\n" + line)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda n: n[:-1], "must end with a newline after its last signature"),
        (lambda n: n + b"\n", "no signature lines after the blank line"),
        (lambda n: n.replace(b"\n\n", b"\n", 1), "no blank line"),
        (lambda n: _text_of(n) + b"\n", "no signature lines"),
        (lambda n: n.replace(EM_DASH, b"-", 1), "does not start with an em dash"),
        (lambda n: n.replace(EM_DASH + b" ", EM_DASH, 1), "does not start with an em dash"),
        (lambda n: n[:-2] + b"!\n", "signature line 1 is malformed"),
        (lambda n: n[:-3] + b"\n", "signature line 1 is malformed"),
        (lambda n: n.replace(b"hello", b"hel\x01lo"), "control character"),
        (lambda n: n.replace(b"hello", b"hel\rlo"), "control character"),
        (lambda n: n.replace(b"hello", b"hel\xfflo"), "not valid UTF-8"),
        (lambda n: n + b"\xe2\x80\x94 x AAAA\n", "signature line 2 is malformed"),
        (lambda n: n + b"\xe2\x80\x94  AAAAAAAA\n", "signature line 2 is malformed"),
        (lambda n: b"", "note is empty"),
    ],
)
def test_malformed_notes_are_rejected(
    signer: NoteSigner, verifier: NoteVerifier, mutate: Any, message: str
) -> None:
    with pytest.raises(NoteError, match=message):
        verifier.verify(mutate(signer.sign(b"hello\n")))


def test_non_canonical_base64_signature_is_rejected(
    signer: NoteSigner, verifier: NoteVerifier
) -> None:
    note = signer.sign(b"hello\n")
    # 68 bytes encode with "=" padding; unpadded base64 of the same bytes must not be accepted.
    assert note.endswith(b"=\n")
    with pytest.raises(NoteError, match="malformed"):
        verifier.verify(note[:-2] + b"\n")


def test_oversize_note_is_rejected(signer: NoteSigner, verifier: NoteVerifier) -> None:
    big_text = b"x" * (MAX_NOTE_SIZE - 200) + b"\n"
    note = signer.sign(big_text)
    assert verifier.verify(note) == big_text
    with pytest.raises(NoteError, match="over the"):
        verifier.verify(b"y" * MAX_NOTE_SIZE + note)
    with pytest.raises(NoteError, match="over"):
        signer.sign(b"x" * MAX_NOTE_SIZE + b"\n")


def test_note_must_be_bytes(verifier: NoteVerifier) -> None:
    with pytest.raises(NoteError, match="note must be bytes, got str"):
        verifier.verify(SIGNED_NOTE["note"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"no final newline", "must end with a newline"),
        (b"", "empty"),
        (b"bell\x07\n", "control character"),
        (b"\xc3\x28\n", "not valid UTF-8"),
        ("str text\n", "must be bytes"),
    ],
)
def test_sign_rejects_bad_text(signer: NoteSigner, text: Any, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        signer.sign(text)


# --- checkpoint bodies --------------------------------------------------------------------

GOOD_ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{ORIGIN}\n5\n{GOOD_ROOT_B64}", "must end with a newline"),
        (f"{ORIGIN}\n5\n", "at least 3 lines"),
        (f"\n5\n{GOOD_ROOT_B64}\n", r"line 1 \(origin\) is empty"),
        (f"{ORIGIN}\n-1\n{GOOD_ROOT_B64}\n", r"line 2 \(size\).*'-1'"),
        (f"{ORIGIN}\n+1\n{GOOD_ROOT_B64}\n", r"line 2 \(size\)"),
        (f"{ORIGIN}\n0x10\n{GOOD_ROOT_B64}\n", r"line 2 \(size\)"),
        (f"{ORIGIN}\n05\n{GOOD_ROOT_B64}\n", "without leading zeros"),
        (f"{ORIGIN}\n 5\n{GOOD_ROOT_B64}\n", r"line 2 \(size\)"),
        (f"{ORIGIN}\n1_000\n{GOOD_ROOT_B64}\n", r"line 2 \(size\)"),
        (f"{ORIGIN}\n\u0665\n{GOOD_ROOT_B64}\n", r"line 2 \(size\)"),  # Arabic-Indic digit five
        (f"{ORIGIN}\n{2**64}\n{GOOD_ROOT_B64}\n", r"\[0, 2\*\*64 - 1\]"),
        (f"{ORIGIN}\n\n{GOOD_ROOT_B64}\n", r"line 2 \(size\)"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", r"line 3 \(root\)"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n", r"line 3 \(root\)"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT_B64.rstrip('=')}\n", r"line 3 \(root\)"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT_B64[:-2]}!=\n", r"line 3 \(root\)"),
        (f"{ORIGIN}\n5\n{ROOT.hex()}\n", r"line 3 \(root\)"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT_B64}\next\n\n", r"line 5 \(extension\) is empty"),
        (f"{ORIGIN}\n5\n{GOOD_ROOT_B64}\n\nsig\n", r"line 4 \(extension\) is empty"),
        (f"{ORIGIN}\t\n5\n{GOOD_ROOT_B64}\n", "control character"),
    ],
)
def test_checkpoint_parse_rejects(body: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(body.encode())


def test_checkpoint_parse_rejects_non_canonical_base64_root() -> None:
    # Last base64 char 'I' -> 'J' changes only unused trailing bits: same bytes, other spelling.
    text = _text_of(EXAMPLE_CHECKPOINT_NOTE).decode()
    assert "q2I=" in text
    with pytest.raises(NoteError, match=r"line 3 \(root\)"):
        Checkpoint.parse(text.replace("q2I=", "q2J=").encode())


def test_checkpoint_parse_rejects_non_bytes() -> None:
    with pytest.raises(NoteError, match="must be bytes"):
        Checkpoint.parse(f"{ORIGIN}\n5\n{GOOD_ROOT_B64}\n")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "origin must be a non-empty string"),
        ({"origin": "two\nlines"}, "must not contain control characters"),
        ({"size": -1}, r"size must be an integer in \[0, 2\*\*64 - 1\], got -1"),
        ({"size": 2**64}, "size must be an integer"),
        ({"size": True}, "size must be an integer"),
        ({"size": 1.0}, "size must be an integer"),
        ({"root": ROOT[:31]}, "root must be 32 bytes, got 31 bytes"),
        ({"root": ROOT.hex()}, "root must be 32 bytes"),
        ({"extensions": ["a"]}, "extensions must be a tuple"),
        ({"extensions": ("",)}, "extension lines must be non-empty"),
        ({"extensions": ("a\nb",)}, "must not contain control characters"),
    ],
)
def test_checkpoint_rejects_bad_fields(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"origin": ORIGIN, "size": 5, "root": ROOT, **kwargs}
    with pytest.raises(ValueError, match=message):
        Checkpoint(**fields)


# --- key strings --------------------------------------------------------------------------


def test_generate_rejects_bad_names() -> None:
    for name in ("", "has space", "has+plus", "tab\there", "nbsp\u00a0here", "lone\ud800"):
        with pytest.raises(NoteError, match="key name must be non-empty"):
            NoteSigner.generate(name)


def _replace_part(key: str, index: int, value: str, parts: int) -> str:
    pieces = key.split("+", parts - 1)
    pieces[index] = value
    return "+".join(pieces)


def test_signer_from_key_errors(keypair: tuple[str, str]) -> None:
    skey, _ = keypair
    seed_b64 = skey.split("+", 4)[4]
    seed = base64.b64decode(seed_b64)
    cases = [
        ("PRIVATE+KEY+only", "must look like PRIVATE\\+KEY"),
        (skey.replace("PRIVATE", "PUBLIC", 1), "must look like PRIVATE\\+KEY"),
        (_replace_part(skey, 3, "zzzzzzzz", 5), "id must be 8 hex digits"),
        (_replace_part(skey, 3, "abc", 5), "id must be 8 hex digits"),
        (_replace_part(skey, 3, "00000000", 5), "does not match its name and key"),
        (_replace_part(skey, 2, "other.example/log", 5), "does not match its name and key"),
        (_replace_part(skey, 4, "not base64!", 5), "not valid base64"),
        (
            _replace_part(skey, 4, base64.b64encode(b"\x02" + seed[1:]).decode(), 5),
            "algorithm must be 0x01",
        ),
        (
            _replace_part(skey, 4, base64.b64encode(seed[:-1]).decode(), 5),
            "32-byte Ed25519 key, got 31",
        ),
        (_replace_part(skey, 4, "", 5), "algorithm must be 0x01"),
    ]
    for bad, message in cases:
        with pytest.raises(NoteError, match=message):
            NoteSigner.from_key(bad)
    with pytest.raises(NoteError, match="must be a string"):
        NoteSigner.from_key(skey.encode())  # type: ignore[arg-type]


def test_verifier_from_key_errors() -> None:
    vkey = SIGNED_NOTE["vkey"]
    cases = [
        ("example.com/foo+530d903a", "must look like <name>"),
        (_replace_part(vkey, 1, "530d903b", 3), "does not match its name and key"),
        (_replace_part(vkey, 0, "example.com/bar", 3), "does not match its name and key"),
        (_replace_part(vkey, 0, "", 3), "key name must be non-empty"),
        (_replace_part(vkey, 1, "530d903", 3), "id must be 8 hex digits"),
        (_replace_part(vkey, 2, "AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2", 3), "base64"),
        (_replace_part(vkey, 2, base64.b64encode(b"\x01" * 5).decode(), 3), "32-byte"),
    ]
    for bad, message in cases:
        with pytest.raises(NoteError, match=message):
            NoteVerifier.from_key(bad)


def test_key_strings_tolerate_surrounding_whitespace(keypair: tuple[str, str]) -> None:
    skey, vkey = keypair
    assert NoteSigner.from_key(skey + "\n").verifier_key == vkey
    assert NoteVerifier.from_key(f"  {vkey}\n").verifier_key == vkey
