"""Tests for infertrail.audit.keys: signing-key files."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.checkpoint import sign_checkpoint as sign
from infertrail.audit.keys import (
    KeyFileError,
    generate_signing_key,
    load_signer,
    verifier_key_path,
)
from infertrail.audit.merkle import EMPTY_ROOT

NAME = "example.com/infertrail/keys-test"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_verifier_key_path_is_beside_the_key(tmp_path: Path) -> None:
    assert verifier_key_path(tmp_path / "log.key") == tmp_path / "log.key.pub"
    assert verifier_key_path(Path("keys/signer")) == Path("keys/signer.pub")


def test_generate_then_load_and_sign(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "log.key"
    vkey = generate_signing_key(key_path, NAME)
    assert _mode(key_path) == 0o600
    assert key_path.read_text().startswith(f"PRIVATE+KEY+{NAME}+")
    assert key_path.read_text().endswith("\n")
    assert verifier_key_path(key_path).read_text() == vkey + "\n"

    signer = load_signer(key_path)
    assert signer.name == NAME
    assert signer.verifier_key == vkey
    checkpoint = Checkpoint(NAME, 0, EMPTY_ROOT)
    assert open_checkpoint(sign(checkpoint, signer), NoteVerifier.from_key(vkey)) == checkpoint


def test_generate_refuses_to_overwrite_key(tmp_path: Path) -> None:
    key_path = tmp_path / "log.key"
    first = generate_signing_key(key_path, NAME)
    verifier_key_path(key_path).unlink()
    before = key_path.read_bytes()
    message = re.escape(f"signing key file {key_path} already exists")
    with pytest.raises(KeyFileError, match=message):
        generate_signing_key(key_path, NAME)
    assert key_path.read_bytes() == before
    assert load_signer(key_path).verifier_key == first
    assert not verifier_key_path(key_path).exists()


def test_generate_refuses_to_overwrite_public_key(tmp_path: Path) -> None:
    key_path = tmp_path / "log.key"
    verifier_key_path(key_path).write_text("someone else's key\n")
    with pytest.raises(KeyFileError, match=r"verifier key file .*log\.key\.pub already exists"):
        generate_signing_key(key_path, NAME)
    assert not key_path.exists()
    assert verifier_key_path(key_path).read_text() == "someone else's key\n"


def test_generate_rejects_bad_name(tmp_path: Path) -> None:
    with pytest.raises(NoteError, match="key name must be non-empty"):
        generate_signing_key(tmp_path / "log.key", "bad name")
    assert list(tmp_path.iterdir()) == []


def test_generate_where_no_directory_can_be(tmp_path: Path) -> None:
    # A file where the key directory should be fails for root too (permission bits would not).
    blocker = tmp_path / "keys"
    blocker.write_text("not a directory")
    with pytest.raises(KeyFileError, match="cannot create key directory"):
        generate_signing_key(blocker / "log.key", NAME)
    assert blocker.read_text() == "not a directory"


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(KeyFileError, match=re.escape(f"signing key file {missing} does not exist")):
        load_signer(missing)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o601])
def test_load_rejects_open_modes(tmp_path: Path, mode: int) -> None:
    key_path = tmp_path / "log.key"
    generate_signing_key(key_path, NAME)
    key_path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"has mode {mode:04o}.*chmod 600"):
        load_signer(key_path)


def test_load_accepts_owner_only_modes(tmp_path: Path) -> None:
    key_path = tmp_path / "log.key"
    generate_signing_key(key_path, NAME)
    key_path.chmod(0o400)
    assert load_signer(key_path).name == NAME


def _private_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "malformed: signer key must look like"),
        (b"not a key\n", "malformed: signer key must look like"),
        (b"PRIVATE+KEY+name+zzzzzzzz+AAAA\n", "malformed: signer key id must be 8 hex"),
        (b"\xff\xfe binary\n", "not ASCII text"),
        (b"A" * 5000, "larger than 4096 bytes"),
    ],
)
def test_load_rejects_bad_content(tmp_path: Path, content: bytes, message: str) -> None:
    key_path = _private_file(tmp_path / "log.key", content)
    with pytest.raises(KeyFileError, match=message):
        load_signer(key_path)


def test_load_error_does_not_echo_key_material(tmp_path: Path) -> None:
    key_path = tmp_path / "log.key"
    generate_signing_key(key_path, NAME)
    secret = key_path.read_text().strip().split("+", 4)[4]
    tampered = key_path.read_text().replace(f"+{NAME}+", "+example.com/other+")
    key_path.write_text(tampered)
    with pytest.raises(KeyFileError) as excinfo:
        load_signer(key_path)
    assert "does not match its name and key" in str(excinfo.value)
    assert secret not in str(excinfo.value)


def test_load_rejects_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dir.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_signer(directory)


def test_key_file_error_is_a_value_error() -> None:
    assert issubclass(KeyFileError, ValueError)


def test_generate_where_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(KeyFileError, match="cannot create key directory"):
        generate_signing_key(blocker / "log.key", NAME)


def test_load_rejects_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_signer(fifo)


def test_generate_with_unusable_file_name(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create signing key file"):
        generate_signing_key(tmp_path / ("k" * 300), NAME)


def test_generate_rolls_back_key_when_public_key_cannot_be_written(tmp_path: Path) -> None:
    key_path = tmp_path / ("k" * 254)  # fits in NAME_MAX (255), but "<name>.pub" does not
    with pytest.raises(KeyFileError, match="cannot create verifier key file"):
        generate_signing_key(key_path, NAME)
    assert list(tmp_path.iterdir()) == []
