"""C2SP signed notes (Ed25519) and tlog-checkpoint bodies.

A checkpoint says "the log ``origin`` has ``size`` leaves with Merkle root ``root``"; the signed
note around it lets anyone holding the verifier key check who said so. Formats follow
c2sp.org/signed-note and c2sp.org/tlog-checkpoint; parsing rules follow golang.org/x/mod/sumdb/note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infertrail.audit.merkle import HASH_SIZE

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "is_valid_key_name",
    "open_checkpoint",
    "sign_checkpoint",
    "split_note",
    "strict_b64decode",
]

# Bounds against hostile input. C2SP requires accepting at least 16 signatures of up to ~5 kB
# (post-quantum); 100 signatures is golang.org/x/mod/sumdb/note's limit.
MAX_NOTE_SIZE = 256 * 1024
MAX_SIGNATURES = 100

_ALG_ED25519 = 0x01
_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_SIGNATURE_PREFIX = "\N{EM DASH} ".encode()
_MAX_TREE_SIZE = 2**64 - 1  # tree sizes are uint64 in every other implementation
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # C2SP: no ASCII controls but newline
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only: int() would also take "٣" or " 3"


class NoteError(ValueError):
    """A note or checkpoint is malformed, or lacks a valid signature from the expected key."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log ``origin`` had ``size`` leaves with Merkle ``root``.

    ``extensions`` are optional extra body lines (C2SP discourages them); validated on creation.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise ValueError(f"checkpoint origin must be a non-empty string, got {self.origin!r}")
        _check_line(self.origin, "checkpoint origin")
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= _MAX_TREE_SIZE
        ):
            raise ValueError(
                f"checkpoint size must be an integer in [0, 2**64 - 1], got {self.size!r}"
            )
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            got = f"{len(self.root)} bytes" if isinstance(self.root, bytes) else repr(self.root)
            raise ValueError(f"checkpoint root must be {HASH_SIZE} bytes, got {got}")
        if not isinstance(self.extensions, tuple):
            raise ValueError(
                f"checkpoint extensions must be a tuple of strings, got {self.extensions!r}"
            )
        for extension in self.extensions:
            if not isinstance(extension, str) or not extension:
                raise ValueError(
                    f"checkpoint extension lines must be non-empty strings, got {extension!r}"
                )
            _check_line(extension, "checkpoint extension line")

    def body(self) -> bytes:
        """Return the note text: origin, size, base64 root and extension lines, each + newline."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint note text strictly; NoteError names the offending line.

        Requires at least three non-empty lines and a final newline; the size must be decimal
        without leading zeros and the root canonical base64 of exactly 32 bytes.
        """
        text = _decode_note_bytes(body, "checkpoint")
        if not text.endswith("\n"):
            raise NoteError("checkpoint body must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(
                f"checkpoint body needs at least 3 lines (origin, size, root), got {len(lines)}"
            )
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise NoteError("checkpoint line 1 (origin) is empty")
        if not _DECIMAL.fullmatch(size_line) or int(size_line) > _MAX_TREE_SIZE:
            raise NoteError(
                f"checkpoint line 2 (size) must be a decimal integer in [0, 2**64 - 1] "
                f"without leading zeros, got {size_line!r}"
            )
        root = _strict_b64decode(root_line)
        if root is None or len(root) != HASH_SIZE:
            raise NoteError(
                f"checkpoint line 3 (root) must be base64 of {HASH_SIZE} bytes, got {root_line!r}"
            )
        for number, extension in enumerate(extensions, start=4):
            if not extension:
                raise NoteError(f"checkpoint line {number} (extension) is empty")
        return cls(origin, int(size_line), root, tuple(extensions))


class NoteSigner:
    """An Ed25519 note signing key with its C2SP key name and key id.

    Built from a ``PRIVATE+KEY+name+keyid+base64(0x01||seed)`` string; ``repr`` hides the key.
    """

    __slots__ = ("_private_key", "key_id", "name", "verifier_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Wrap an Ed25519 private key under the key ``name``; raises NoteError on a bad name."""
        _check_key_name(name)
        public = private_key.public_key().public_bytes_raw()
        self.name = name
        self.key_id = _key_id(name, public)
        self.verifier_key = _format_verifier_key(name, self.key_id, public)
        self._private_key = private_key

    @classmethod
    def from_key(cls, skey: str) -> NoteSigner:
        """Parse a signer key string; NoteError says which part is malformed or mismatched."""
        if not isinstance(skey, str):
            raise NoteError(f"signer key must be a string, got {type(skey).__name__}")
        parts = skey.strip().split("+", 4)  # base64 may itself contain "+"
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError(
                "signer key must look like PRIVATE+KEY+<name>+<8 hex key id>+<base64 key>"
            )
        _, _, name, key_id_hex, key_b64 = parts
        _check_key_name(name)
        key_id = _parse_key_id(key_id_hex, "signer key")
        seed = _parse_ed25519_key(key_b64, "signer key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        if signer.key_id != key_id:
            raise NoteError(
                f"signer key id {key_id_hex} does not match its name and key "
                f"(expected {signer.key_id.hex()})"
            )
        return signer

    @staticmethod
    def generate(name: str) -> tuple[str, str]:
        """Create a new random Ed25519 key named ``name``; return (signer key, verifier key).

        The signer key string is secret; the verifier key string is what third parties need.
        """
        _check_key_name(name)
        private_key = Ed25519PrivateKey.generate()
        seed = private_key.private_bytes_raw()
        public = private_key.public_key().public_bytes_raw()
        key_id = _key_id(name, public)
        encoded_seed = base64.b64encode(bytes([_ALG_ED25519]) + seed).decode()
        skey = f"PRIVATE+KEY+{name}+{key_id.hex()}+{encoded_seed}"
        return skey, _format_verifier_key(name, key_id, public)

    def sign(self, text: bytes) -> bytes:
        """Return the signed note: ``text``, a blank line and this key's signature line.

        ``text`` must be non-empty UTF-8 ending in a newline, without other control characters.
        """
        decoded = _decode_note_bytes(text, "note text")
        if not decoded.endswith("\n"):
            raise NoteError("note text must end with a newline")
        signature = self._private_key.sign(text)
        encoded = base64.b64encode(self.key_id + signature)
        note = text + b"\n" + _SIGNATURE_PREFIX + self.name.encode() + b" " + encoded + b"\n"
        if len(note) > MAX_NOTE_SIZE:
            raise NoteError(f"signed note would be {len(note)} bytes, over {MAX_NOTE_SIZE}")
        return note

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()})"


class NoteVerifier:
    """An Ed25519 note verifier key: checks that a note carries a valid signature from it.

    Built from a ``name+keyid+base64(0x01||pubkey)`` verifier key string.
    """

    __slots__ = ("_public_key", "key_id", "name", "verifier_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        """Wrap an Ed25519 public key under the key ``name``; raises NoteError on a bad name."""
        _check_key_name(name)
        public = public_key.public_bytes_raw()
        self.name = name
        self.key_id = _key_id(name, public)
        self.verifier_key = _format_verifier_key(name, self.key_id, public)
        self._public_key = public_key

    @classmethod
    def from_key(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string; NoteError says which part is malformed or mismatched."""
        if not isinstance(vkey, str):
            raise NoteError(f"verifier key must be a string, got {type(vkey).__name__}")
        parts = vkey.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise NoteError(
                f"verifier key must look like <name>+<8 hex key id>+<base64 key>, got {vkey!r}"
            )
        name, key_id_hex, key_b64 = parts
        _check_key_name(name)
        key_id = _parse_key_id(key_id_hex, "verifier key")
        public = _parse_ed25519_key(key_b64, "verifier key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(public))
        if verifier.key_id != key_id:
            raise NoteError(
                f"verifier key id {key_id_hex} does not match its name and key "
                f"(expected {verifier.key_id.hex()})"
            )
        return verifier

    def verify(self, note: bytes) -> bytes:
        """Return the note text if the note has a valid signature from this key, else NoteError.

        Signatures from other keys (a different name or key id) are ignored, as C2SP requires;
        a signature that claims to be from this key but does not verify rejects the whole note.
        """
        text, signatures = _split_note(note)
        found = False
        for name, key_id, signature in signatures:
            if name != self.name or key_id != self.key_id:
                continue
            try:
                if len(signature) != _ED25519_SIGNATURE_SIZE:
                    raise InvalidSignature
                self._public_key.verify(signature, text)
            except InvalidSignature:
                raise NoteError(
                    f"invalid signature from key {self.name}+{self.key_id.hex()}"
                ) from None
            found = True
        if not found:
            raise NoteError(f"note has no signature from key {self.name}+{self.key_id.hex()}")
        return text

    def __repr__(self) -> str:
        return f"NoteVerifier({self.verifier_key!r})"


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> bytes:
    """Return ``cp`` as a signed note (C2SP tlog-checkpoint), signed by ``signer``."""
    return signer.sign(cp.body())


def open_checkpoint(
    note: bytes, verifier: NoteVerifier, *, expected_origin: str | None = None
) -> Checkpoint:
    """Verify the note's signature, then parse its text as a checkpoint; NoteError otherwise.

    With ``expected_origin``, a checkpoint for another log is rejected even if the key matches.
    """
    checkpoint = Checkpoint.parse(verifier.verify(note))
    if expected_origin is not None and checkpoint.origin != expected_origin:
        raise NoteError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected {expected_origin!r}"
        )
    return checkpoint


def split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and (key name, key id, signature) triples, unverified.

    The layout is checked as strictly as :meth:`NoteVerifier.verify` checks it (NoteError), for
    signature types this module does not verify (witness cosignatures, audit/cosignature.py).
    """
    return _split_note(note)


def is_valid_key_name(name: str) -> bool:
    """Whether ``name`` may name a note key: non-empty, no spaces, '+' or control characters."""
    return _is_valid_key_name(name)


def strict_b64decode(text: str) -> bytes | None:
    """Standard padded base64, canonical only (one encoding per value); None if it is not."""
    return _strict_b64decode(text)


def _split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and (name, key id, signature) triples, strictly."""
    if not isinstance(note, bytes):
        raise NoteError(f"note must be bytes, got {type(note).__name__}")
    if len(note) > MAX_NOTE_SIZE:
        raise NoteError(f"note is {len(note)} bytes, over the {MAX_NOTE_SIZE}-byte limit")
    _decode_note_bytes(note, "note")
    # The text ends at the last blank line; the text itself may contain blank lines.
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating the text from its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise NoteError("note has no signature lines after the blank line")
    if not block.endswith(b"\n"):
        raise NoteError("note must end with a newline after its last signature line")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, over the limit of {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise NoteError(f"signature line {number} does not start with an em dash and a space")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].decode().partition(" ")
        decoded = _strict_b64decode(encoded)
        if not _is_valid_key_name(name) or decoded is None or len(decoded) <= _KEY_ID_SIZE:
            raise NoteError(f"signature line {number} is malformed: {line.decode()!r}")
        signatures.append((name, decoded[:_KEY_ID_SIZE], decoded[_KEY_ID_SIZE:]))
    return text, signatures


def _decode_note_bytes(data: bytes, what: str) -> str:
    """Decode UTF-8 and reject ASCII control characters other than newline (C2SP note rules)."""
    if not isinstance(data, bytes):
        raise NoteError(f"{what} must be bytes, got {type(data).__name__}")
    if not data:
        raise NoteError(f"{what} is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    control = _CONTROL.search(text)
    if control:
        raise NoteError(
            f"{what} contains control character {control.group()!r} at position {control.start()}"
        )
    return text


def _check_line(value: str, what: str) -> None:
    for char in value:
        if char < " ":
            raise ValueError(f"{what} must not contain control characters, got {value!r}")
        if "\ud800" <= char <= "\udfff":  # has no UTF-8 form: the note could not be written
            raise ValueError(
                f"{what} must be valid Unicode, got lone surrogate U+{ord(char):04X} in {value!r}"
            )


def _is_valid_key_name(name: str) -> bool:
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or c < " " or "\ud800" <= c <= "\udfff" for c in name)
    )


def _check_key_name(name: str) -> None:
    if not isinstance(name, str) or not _is_valid_key_name(name):
        raise NoteError(
            "key name must be non-empty valid Unicode, without spaces, '+' or control "
            f"characters, got {name!r}"
        )


def _key_id(name: str, public_key: bytes) -> bytes:
    """C2SP key id: SHA-256(name || 0x0A || signature type || public key)[:4]."""
    material = name.encode() + b"\n" + bytes([_ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:_KEY_ID_SIZE]


def _format_verifier_key(name: str, key_id: bytes, public_key: bytes) -> str:
    encoded = base64.b64encode(bytes([_ALG_ED25519]) + public_key).decode()
    return f"{name}+{key_id.hex()}+{encoded}"


def _parse_key_id(text: str, what: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{8}", text):
        raise NoteError(f"{what} id must be 8 hex digits, got {text!r}")
    return bytes.fromhex(text)


def _parse_ed25519_key(text: str, what: str) -> bytes:
    """Decode base64(0x01 || 32-byte key) and return the 32 key bytes."""
    raw = _strict_b64decode(text)
    if raw is None:
        raise NoteError(f"{what} material is not valid base64")
    if not raw or raw[0] != _ALG_ED25519:
        algorithm = f"0x{raw[0]:02x}" if raw else "none"
        raise NoteError(f"{what} algorithm must be 0x01 (Ed25519), got {algorithm}")
    if len(raw) != 1 + _ED25519_KEY_SIZE:
        raise NoteError(
            f"{what} must hold a {_ED25519_KEY_SIZE}-byte Ed25519 key, got {len(raw) - 1} bytes"
        )
    return raw[1:]


def _strict_b64decode(text: str) -> bytes | None:
    """Standard base64 with padding, canonical only (one encoding per value), else None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode() != text:
        return None
    return raw
