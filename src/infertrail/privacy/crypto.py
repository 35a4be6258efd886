"""Envelope encryption of raw payloads: AES-256-GCM data keys wrapped by a key-encryption key.

Pure functions and one small key-source protocol, no storage. A payload is sealed under its
subject's data key (DEK) with an AAD that binds it to its row (pseudonym, request id, time); the
DEK is sealed under a key-encryption key (KEK) with the pseudonym as context, so neither a
ciphertext nor a wrapped key can be moved to another row or subject without failing its tag.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infertrail.keyring import Keyring
from infertrail.privacy.errors import PayloadIntegrityError

__all__ = [
    "DEK_BYTES",
    "KEK_PURPOSE",
    "NONCE_BYTES",
    "KeyWrapper",
    "KeyringKEK",
    "WrappedKey",
    "load_key_wrapper",
    "new_data_key",
    "open_sealed",
    "payload_aad",
    "seal",
]

DEK_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is specified for; random per message
KEK_PURPOSE = "kek"
_AAD_VERSION = b"infertrail-payload/1"


def new_data_key() -> bytes:
    """A fresh random AES-256 data key (from the OS CSPRNG via cryptography)."""
    return AESGCM.generate_key(bit_length=DEK_BYTES * 8)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` with AES-GCM under ``key``; returns ``(nonce, ciphertext+tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, what: str) -> bytes:
    """Decrypt and authenticate; PayloadIntegrityError naming ``what`` if anything was altered."""
    if len(nonce) != NONCE_BYTES:
        raise PayloadIntegrityError(
            f"{what}: nonce is {len(nonce)} bytes, expected {NONCE_BYTES} (tampered?)"
        )
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise PayloadIntegrityError(
            f"{what}: authentication failed (ciphertext, nonce, AAD or key altered)"
        ) from None


def payload_aad(pseudonym: str, request_id: str, ts_us: int) -> bytes:
    """The AAD of a payload row: binds the ciphertext to who, which request and when."""
    return b"\x00".join(
        (_AAD_VERSION, pseudonym.encode(), request_id.encode(), str(ts_us).encode())
    )


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under the key-encryption key ``kek_id``."""

    kek_id: str
    blob: bytes


@runtime_checkable
class KeyWrapper(Protocol):
    """A key-encryption-key source: the local keyring, or a KMS / Vault transit engine.

    ``context`` is bound to the wrapped key (AAD, or the KMS "encryption context"): unwrapping
    under another context must fail.
    """

    def wrap(self, dek: bytes, context: bytes) -> WrappedKey:
        """Encrypt ``dek`` under the current KEK."""
        ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt a key wrapped by :meth:`wrap`; PayloadIntegrityError if it was altered."""
        ...


class KeyringKEK:
    """KEKs from the local keyring (purpose ``kek``): AES-256-GCM with the context as AAD.

    Rotation (``Keyring.rotate("kek")``, or every month when the keyring makes ``kek`` a
    period key, :mod:`infertrail.privacy.keys`) wraps new data keys under the new KEK; keys
    wrapped under older ones stay readable because each wrapped key names its KEK id, until
    retention destroys that KEK.
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def wrap(self, dek: bytes, context: bytes) -> WrappedKey:
        """Wrap ``dek`` under the active KEK: blob = nonce || ciphertext+tag."""
        kek_id, kek = self._keyring.active(KEK_PURPOSE)
        nonce, sealed = seal(kek, dek, context)
        return WrappedKey(kek_id, nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Unwrap with the KEK the wrapped key names."""
        kek = self._keyring.get(wrapped.kek_id)
        nonce, sealed = wrapped.blob[:NONCE_BYTES], wrapped.blob[NONCE_BYTES:]
        dek = open_sealed(kek, nonce, sealed, context, f"wrapped data key under {wrapped.kek_id}")
        if len(dek) != DEK_BYTES:
            raise PayloadIntegrityError(
                f"wrapped data key under {wrapped.kek_id} holds {len(dek)} bytes, not {DEK_BYTES}"
            )
        return dek


def load_key_wrapper(source: str, keyring: Keyring) -> KeyWrapper:
    """The KEK source named by the ``raw_payloads_kek_source`` setting.

    ``"keyring"`` is the local keyring; ``"package.module:factory"`` imports ``factory`` and
    calls it with the keyring, so a KMS or Vault client is configuration, not a code change.
    """
    if source == "keyring":
        return KeyringKEK(keyring)
    module_name, sep, attr = source.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"raw_payloads_kek_source must be 'keyring' or 'package.module:factory', got {source!r}"
        )
    try:
        factory: Callable[[Keyring], object] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load KEK source {source!r}: {exc}") from exc
    wrapper = factory(keyring)
    if not isinstance(wrapper, KeyWrapper):
        raise ValueError(
            f"KEK source {source!r} returned {type(wrapper).__name__}, which has no wrap/unwrap"
        )
    return wrapper
