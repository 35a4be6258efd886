"""C2SP ``cosignature/v1``: a witness's timestamped Ed25519 cosignature on a checkpoint.

A cosignature says "at this time, this is the largest tree consistent with everything I have
seen for the log". It is one signed-note signature line (c2sp.org/tlog-cosignature@v1.0.1):

- key id: SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 public key)[:4], big-endian;
- signature bytes: u64 big-endian POSIX timestamp || Ed25519 signature (72 bytes; 76 with the
  key id on the line);
- signed message: ``cosignature/v1\\n``, ``time <decimal timestamp>\\n``, then the checkpoint's
  whole note text (extension lines and final newline included, no signature lines).

The name is not signed, so a cosigner has one key of its own. Verifier keys are vkeys of type
0x04 (``name+keyid+base64(0x04 || key)``), signer keys ``PRIVATE+KEY+name+keyid+base64(0x04 ||
seed)``. :class:`WitnessPolicy` counts the cosignatures of a set of trusted witnesses against a
k-of-n quorum. Pure functions and key objects: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infertrail.audit.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    is_valid_key_name,
    split_note,
    strict_b64decode,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_TIMESTAMP",
    "Cosignature",
    "CosignatureError",
    "CosignatureSigner",
    "CosignatureVerifier",
    "WitnessPolicy",
    "add_signature_lines",
    "cosignature_timestamp",
    "cosigner_key_id",
    "signature_line",
    "signed_message",
]

#: The signed-note signature type of Ed25519 cosignature/v1 (c2sp.org/signed-note).
ALG_COSIGNATURE_V1 = 0x04
#: Timestamps must not exceed 2^63 - 1 (c2sp.org/tlog-cosignature).
MAX_TIMESTAMP = 2**63 - 1

_HEADER = b"cosignature/v1\n"
_KEY_ID_SIZE = 4
_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_TIMESTAMP = struct.Struct(">Q")
_SIGNATURE_SIZE = _TIMESTAMP.size + _ED25519_SIGNATURE_SIZE
_SIGNATURE_PREFIX = "\N{EM DASH} "


class CosignatureError(NoteError):
    """A cosignature or cosigner key is malformed, or a cosignature does not verify."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 cosigner: SHA-256(name || 0x0A || 0x04 || key)[:4]."""
    if not is_valid_key_name(name):
        raise CosignatureError(
            f"cosigner name must be non-empty, without spaces, '+' or control characters, "
            f"got {name!r}"
        )
    if len(public_key) != _KEY_SIZE:
        raise CosignatureError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    material = name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    return hashlib.sha256(material).digest()[:_KEY_ID_SIZE]


def signed_message(timestamp: int, body: bytes) -> bytes:
    """The bytes a cosigner signs: the header line, the time line, then the checkpoint body.

    ``body`` is the checkpoint's note text (ending in a newline, no signature lines).
    """
    _check_timestamp(timestamp)
    if not body.endswith(b"\n"):
        raise CosignatureError("the cosigned note text must end with a newline")
    return _HEADER + b"time %d\n" % timestamp + body


def cosignature_timestamp(encoded: str) -> int:
    """The timestamp inside a cosignature line's base64 field (key id || timestamp || sig).

    Reads the field without verifying it (for display and for monitoring clocks).
    """
    raw = strict_b64decode(encoded)
    if raw is None or len(raw) != _KEY_ID_SIZE + _SIGNATURE_SIZE:
        raise CosignatureError(
            f"a cosignature/v1 signature is base64 of {_KEY_ID_SIZE + _SIGNATURE_SIZE} bytes"
        )
    (timestamp,) = _TIMESTAMP.unpack_from(raw, _KEY_ID_SIZE)
    _check_timestamp(timestamp)
    return int(timestamp)


@dataclass(frozen=True)
class Cosignature:
    """One verified cosignature: who (``name``, ``key_id``), when, and its signature line."""

    name: str
    key_id: bytes
    timestamp: int
    line: bytes  # the note signature line, final newline included


class CosignatureVerifier:
    """A cosigner's Ed25519 public key, from a vkey ``name+keyid+base64(0x04 || key)``."""

    __slots__ = ("_public_key", "key_id", "name", "verifier_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        """Wrap ``public_key`` under the cosigner ``name``; CosignatureError on a bad name."""
        raw = public_key.public_bytes_raw()
        self.key_id = cosigner_key_id(name, raw)
        self.name = name
        self.verifier_key = _vkey(name, self.key_id, raw)
        self._public_key = public_key

    @classmethod
    def from_key(cls, vkey: str) -> CosignatureVerifier:
        """Parse a cosigner verifier key; CosignatureError names the part that is wrong."""
        name, key_id, material = _parse_key(vkey, "cosigner verifier key", 3)
        if len(material) != _KEY_SIZE:
            raise CosignatureError(
                f"cosigner verifier key must hold a 32-byte Ed25519 key, got {len(material)} bytes"
            )
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(material))
        if verifier.key_id != key_id:
            raise CosignatureError(
                f"cosigner verifier key id {key_id.hex()} does not match its name and key "
                f"(expected {verifier.key_id.hex()})"
            )
        return verifier

    def verify_signature(self, body: bytes, signature: bytes) -> int:
        """Return the timestamp of ``signature`` (timestamp || Ed25519) over ``body``.

        CosignatureError if it is not a valid cosignature of this key on ``body``.
        """
        if len(signature) != _SIGNATURE_SIZE:
            raise CosignatureError(
                f"invalid cosignature from {self._describe()}: {len(signature)} bytes, "
                f"expected {_SIGNATURE_SIZE}"
            )
        (timestamp,) = _TIMESTAMP.unpack_from(signature)
        if timestamp > MAX_TIMESTAMP:
            raise CosignatureError(
                f"invalid cosignature from {self._describe()}: timestamp {timestamp} is over "
                "2^63 - 1"
            )
        try:
            self._public_key.verify(signature[_TIMESTAMP.size :], signed_message(timestamp, body))
        except InvalidSignature:
            raise CosignatureError(f"invalid cosignature from {self._describe()}") from None
        return int(timestamp)

    def open(self, note: bytes) -> Cosignature:
        """This cosigner's verified cosignature on ``note``, a signed checkpoint.

        Lines of other keys are ignored (C2SP); CosignatureError if the note holds none of this
        key, if one of them does not verify, or if the note text is not a checkpoint.
        """
        text, signatures = split_note(note)
        found = self.find(text, signatures)
        if found is None:
            raise CosignatureError(f"note has no cosignature from {self._describe()}")
        return found

    def find(
        self, text: bytes, signatures: Sequence[tuple[str, bytes, bytes]]
    ) -> Cosignature | None:
        """The cosignature of this key among ``signatures`` of ``text``, verified; None if none.

        Raises CosignatureError if one claiming this key does not verify (the whole note is
        then suspect) or if ``text`` is not a checkpoint.
        """
        found = None
        for name, key_id, signature in signatures:
            if name != self.name or key_id != self.key_id:
                continue
            if found is None:
                _checkpoint_text(text)
            timestamp = self.verify_signature(text, signature)
            found = Cosignature(name, key_id, timestamp, signature_line(name, key_id + signature))
        return found

    def _describe(self) -> str:
        return f"cosigner {self.name}+{self.key_id.hex()}"

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.verifier_key!r})"


class CosignatureSigner:
    """A witness's Ed25519 cosigning key, from ``PRIVATE+KEY+name+keyid+base64(0x04 || seed)``.

    ``repr`` hides the key.
    """

    __slots__ = ("_private_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Wrap ``private_key`` under the cosigner ``name``; CosignatureError on a bad name."""
        self.verifier = CosignatureVerifier(name, private_key.public_key())
        self._private_key = private_key

    @property
    def name(self) -> str:
        """The cosigner's key name (a schema-less URL, by convention)."""
        return self.verifier.name

    @property
    def verifier_key(self) -> str:
        """The vkey to give to whoever verifies this cosigner's cosignatures."""
        return self.verifier.verifier_key

    @classmethod
    def from_key(cls, skey: str) -> CosignatureSigner:
        """Parse a cosigner signer key; CosignatureError names the part that is wrong."""
        if not isinstance(skey, str) or not skey.strip().startswith("PRIVATE+KEY+"):
            raise CosignatureError(
                "cosigner signer key must look like PRIVATE+KEY+<name>+<8 hex key id>+<base64>"
            )
        name, key_id, seed = _parse_key(
            skey.strip().removeprefix("PRIVATE+KEY+"), "cosigner signer key", 3
        )
        if len(seed) != _KEY_SIZE:
            raise CosignatureError(
                f"cosigner signer key must hold a 32-byte Ed25519 seed, got {len(seed)} bytes"
            )
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        if signer.verifier.key_id != key_id:
            raise CosignatureError(
                f"cosigner signer key id {key_id.hex()} does not match its name and key "
                f"(expected {signer.verifier.key_id.hex()})"
            )
        return signer

    @staticmethod
    def generate(name: str) -> tuple[str, str]:
        """A new random cosigner key named ``name``: (signer key, verifier key)."""
        private_key = Ed25519PrivateKey.generate()
        public = private_key.public_key().public_bytes_raw()
        key_id = cosigner_key_id(name, public)
        seed = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + private_key.private_bytes_raw())
        return f"PRIVATE+KEY+{name}+{key_id.hex()}+{seed.decode()}", _vkey(name, key_id, public)

    def cosign(self, body: bytes, timestamp: int) -> bytes:
        """The cosignature line (with its newline) on the checkpoint ``body`` at ``timestamp``.

        ``body`` must be a checkpoint's note text: a witness cosigns nothing else.
        """
        _checkpoint_text(body)
        signature = self._private_key.sign(signed_message(timestamp, body))
        verifier = self.verifier
        return signature_line(
            verifier.name, verifier.key_id + _TIMESTAMP.pack(timestamp) + signature
        )

    def __repr__(self) -> str:
        return f"CosignatureSigner(name={self.name!r}, key_id={self.verifier.key_id.hex()})"


@dataclass(frozen=True)
class WitnessPolicy:
    """Trusted witnesses and how many of them must cosign a checkpoint (k of n).

    A simple tlog-policy quorum (c2sp.org/tlog-policy ``group k``) without nested groups.
    """

    witnesses: tuple[CosignatureVerifier, ...]
    quorum: int

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise ValueError(f"witness names must be distinct, got {names}")
        keys = [w.verifier_key.split("+", 2)[2] for w in self.witnesses]
        if len(set(keys)) != len(keys):
            raise ValueError("two witnesses share one public key (tlog-policy forbids it)")
        if not 1 <= self.quorum <= max(1, len(self.witnesses)):
            raise ValueError(
                f"quorum must be between 1 and the {len(self.witnesses)} witnesses, "
                f"got {self.quorum}"
            )

    @classmethod
    def of(cls, vkeys: Iterable[str], quorum: int | None = None) -> WitnessPolicy:
        """A policy from cosigner verifier keys; ``quorum`` None: a majority of them."""
        witnesses = tuple(CosignatureVerifier.from_key(v) for v in vkeys)
        return cls(witnesses, len(witnesses) // 2 + 1 if quorum is None else quorum)

    def cosignatures(self, note: bytes) -> dict[str, Cosignature]:
        """The trusted witnesses' verified cosignatures on ``note``, by witness name.

        Other signature lines (the log's own, unknown witnesses') are ignored; CosignatureError
        if a line of a trusted witness does not verify.
        """
        text, signatures = split_note(note)
        found = {}
        for witness in self.witnesses:
            cosignature = witness.find(text, signatures)
            if cosignature is not None:
                found[witness.name] = cosignature
        return found

    def satisfied(self, cosigners: Iterable[str]) -> bool:
        """Whether these witnesses (names) make a quorum."""
        trusted = {w.name for w in self.witnesses}
        return len(trusted.intersection(cosigners)) >= self.quorum


def add_signature_lines(note: bytes, lines: Iterable[bytes]) -> bytes:
    """``note`` with signature ``lines`` appended (each ``— name base64\\n``), duplicates dropped.

    The result is checked as a note (layout, at most MAX_SIGNATURES lines); nothing is verified.
    """
    text, signatures = split_note(note)
    have = {signature_line(name, key_id + sig) for name, key_id, sig in signatures}
    out = [signature_line(name, key_id + sig) for name, key_id, sig in signatures]
    for line in lines:
        if line not in have:
            have.add(line)
            out.append(line)
    if len(out) > MAX_SIGNATURES:
        raise CosignatureError(f"a note may hold at most {MAX_SIGNATURES} signatures")
    joined = text + b"\n" + b"".join(out)
    split_note(joined)  # each added line must be a well-formed signature line
    return joined


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise CosignatureError(f"cosignature timestamp must be an integer, got {timestamp!r}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp must be in [0, 2^63 - 1], got {timestamp}")


def _checkpoint_text(text: bytes) -> Checkpoint:
    try:
        return Checkpoint.parse(text)
    except NoteError as exc:
        raise CosignatureError(f"cosigned text is not a checkpoint: {exc}") from None


def signature_line(name: str, raw: bytes) -> bytes:
    """A note signature line ``— <name> <base64(raw)>`` with its newline (raw: key id + sig)."""
    return f"{_SIGNATURE_PREFIX}{name} {base64.b64encode(raw).decode()}\n".encode()


def _vkey(name: str, key_id: bytes, public_key: bytes) -> str:
    material = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + public_key).decode()
    return f"{name}+{key_id.hex()}+{material}"


def _parse_key(text: str, what: str, parts: int) -> tuple[str, bytes, bytes]:
    """Split ``name+keyid+base64(type || material)``; check the name, id and type 0x04."""
    if not isinstance(text, str):
        raise CosignatureError(f"{what} must be a string, got {type(text).__name__}")
    fields = text.strip().split("+", parts - 1)  # base64 may itself contain "+"
    if len(fields) != parts:
        raise CosignatureError(f"{what} must look like <name>+<8 hex key id>+<base64 key>")
    name, key_id_hex, encoded = fields
    if not is_valid_key_name(name):
        raise CosignatureError(
            f"{what} name must be non-empty, without spaces, '+' or control characters, "
            f"got {name!r}"
        )
    if not re.fullmatch(r"[0-9a-fA-F]{8}", key_id_hex):
        raise CosignatureError(f"{what} id must be 8 hex digits, got {key_id_hex!r}")
    raw = strict_b64decode(encoded)
    if raw is None or not raw:
        raise CosignatureError(f"{what} material is not valid base64")
    if raw[0] != ALG_COSIGNATURE_V1:
        hint = " (0x01 is a log's checkpoint key, not a cosigner's)" if raw[0] == 0x01 else ""
        raise CosignatureError(
            f"{what} type must be 0x04 (Ed25519 cosignature/v1), got 0x{raw[0]:02x}{hint}"
        )
    return name, bytes.fromhex(key_id_hex), raw[1:]
