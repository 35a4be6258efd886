"""Checkpoint signing-key files: create them safely, load them only if they are private.

The signer key file holds one C2SP signer key line (``PRIVATE+KEY+...``), mode 0600; the public
verifier key is written beside it as ``<path>.pub`` for anyone who verifies the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from infertrail.audit.checkpoint import NoteError, NoteSigner
from infertrail.config import Settings

__all__ = [
    "KeyFileError",
    "generate_signing_key",
    "load_signer",
    "open_signer",
    "read_private_key",
    "verifier_key_path",
    "write_key_pair",
]

# A signer key line is ~100 bytes; anything far larger is not a key file.
_MAX_KEY_FILE_SIZE = 4096
_KEY_FILE_MODE = 0o600


class KeyFileError(ValueError):
    """A signing-key file is missing, malformed, too widely readable or would be overwritten."""


_log = logging.getLogger("infertrail.audit")


def verifier_key_path(path: Path) -> Path:
    """Return where the verifier key for the signer key at ``path`` is written: ``<path>.pub``."""
    return path.with_name(path.name + ".pub")


def generate_signing_key(path: Path, name: str) -> str:
    """Create a new Ed25519 signer key file at ``path`` (mode 0600) and ``<path>.pub``.

    Refuses to overwrite either file, so an existing log key is never lost. Returns the verifier
    key string. Raises KeyFileError (exists, unwritable) or NoteError (invalid key name).
    """
    skey, vkey = NoteSigner.generate(name)
    write_key_pair(path, skey, vkey)
    return vkey


def write_key_pair(path: Path, skey: str, vkey: str) -> None:
    """Write the private key line ``skey`` to ``path`` (0600) and ``vkey`` to ``<path>.pub``.

    For any C2SP key pair (the log's checkpoint key, a witness's cosigning key). Refuses to
    overwrite either file; KeyFileError if one exists or cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KeyFileError(f"cannot create key directory {path.parent}: {exc}") from exc
    _write_exclusive(path, skey, _KEY_FILE_MODE, "signing key")
    try:
        _write_exclusive(verifier_key_path(path), vkey, 0o644, "verifier key")
    except KeyFileError:
        # A .pub that is not ours (or cannot be written) would pair the new key with the wrong
        # public key: undo the key so that nothing half-made stays behind.
        path.unlink()
        raise


def load_signer(path: Path) -> NoteSigner:
    """Load the signer key at ``path``, refusing files that group or others can access.

    Raises KeyFileError for a missing, non-regular, too open, oversized or malformed file.
    """
    text = read_private_key(path, "create one with `infertrail keys init`")
    try:
        return NoteSigner.from_key(text)
    except NoteError as exc:
        # The message describes the format problem, never the key material itself.
        raise KeyFileError(f"signing key file {path} is malformed: {exc}") from None


def read_private_key(path: Path, hint: str) -> str:
    """The key line in the private key file at ``path``, refusing files others can access.

    ``hint`` says how to create a missing one. Raises KeyFileError for a missing, non-regular,
    too open, oversized or non-ASCII file; the caller parses the line.
    """
    try:
        # O_NONBLOCK: a FIFO planted at the key path must not hang the process on open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"signing key file {path} does not exist ({hint})") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open signing key file {path}: {exc.strerror}") from exc
    with os.fdopen(_checked_key_fd(fd, path), "rb") as handle:
        content = handle.read(_MAX_KEY_FILE_SIZE + 1)
    if len(content) > _MAX_KEY_FILE_SIZE:
        raise KeyFileError(
            f"signing key file {path} is larger than {_MAX_KEY_FILE_SIZE} bytes; not a key file"
        )
    try:
        return content.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"signing key file {path} is not ASCII text; not a key file") from None


def _checked_key_fd(fd: int, path: Path) -> int:
    """Return ``fd`` if it is a regular file only its owner can access; else close it and raise.

    Checks the open descriptor (fstat), so the file checked is the file read.
    """
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"signing key path {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"signing key file {path} has mode {mode:04o}, which lets group or others "
                f"access it; run `chmod 600 {path}`"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_exclusive(path: Path, text: str, mode: int, what: str) -> None:
    """Create ``path`` with ``mode`` (failing if it exists), write ``text`` + newline, fsync."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(
            f"{what} file {path} already exists; refusing to overwrite it "
            "(move it away first if you really mean to create a new key)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {what} file {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the new directory entry durable, so a crash cannot lose a key we reported created.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_signer(settings: Settings) -> NoteSigner:
    """The log's checkpoint signer, created (0600) on first use with the log's origin."""
    path = settings.signing_key_file
    if not path.exists():
        vkey = generate_signing_key(path, settings.audit_origin)
        _log.warning("created audit signing key %s; verifier key: %s", path, vkey)
    return load_signer(path)
