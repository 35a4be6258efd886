"""Envelope encryption: AES-GCM round trips, every tampering detected, pluggable KEK sources."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infertrail.keyring import Keyring, KeyringError
from infertrail.privacy.crypto import (
    DEK_BYTES,
    KEK_PURPOSE,
    KeyringKEK,
    KeyWrapper,
    WrappedKey,
    load_key_wrapper,
    new_data_key,
    open_sealed,
    payload_aad,
    seal,
)
from infertrail.privacy.errors import PayloadIntegrityError

KEY = bytes(range(32))


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@given(st.binary(max_size=4096), st.binary(max_size=256))
def test_seal_open_round_trip(plaintext: bytes, aad: bytes) -> None:
    nonce, sealed = seal(KEY, plaintext, aad)
    assert len(nonce) == 12 and len(sealed) == len(plaintext) + 16
    assert open_sealed(KEY, nonce, sealed, aad, "payload") == plaintext


def test_nonces_are_fresh() -> None:
    assert len({seal(KEY, b"same", b"aad")[0] for _ in range(200)}) == 200


@pytest.mark.parametrize("part", ["ciphertext", "tag", "nonce", "aad", "key"])
def test_any_tampering_fails_with_a_named_error(part: str) -> None:
    nonce, sealed = seal(KEY, b'{"age_years":35}', b"row-aad")
    key, aad = KEY, b"row-aad"
    if part == "ciphertext":
        sealed = flip(sealed, 0)
    elif part == "tag":
        sealed = flip(sealed, len(sealed) - 1)
    elif part == "nonce":
        nonce = flip(nonce)
    elif part == "aad":
        aad = b"row-aae"
    else:
        key = flip(key)
    with pytest.raises(PayloadIntegrityError, match="payload of req-1: authentication failed"):
        open_sealed(key, nonce, sealed, aad, "payload of req-1")


def test_a_short_nonce_is_named() -> None:
    _, sealed = seal(KEY, b"x", b"")
    with pytest.raises(PayloadIntegrityError, match="nonce is 11 bytes, expected 12"):
        open_sealed(KEY, b"\x00" * 11, sealed, b"", "payload")


def test_payload_aad_binds_every_field() -> None:
    base = payload_aad("p-1", "req-1", 100)
    assert base != payload_aad("p-2", "req-1", 100)
    assert base != payload_aad("p-1", "req-2", 100)
    assert base != payload_aad("p-1", "req-1", 101)
    assert payload_aad("p-1", "req-1", 100) == base


def test_data_keys_are_random_aes256() -> None:
    keys = {new_data_key() for _ in range(50)}
    assert len(keys) == 50 and all(len(k) == DEK_BYTES for k in keys)


def test_keyring_kek_wraps_under_the_active_key_and_survives_rotation(keyring: Keyring) -> None:
    kek = KeyringKEK(keyring)
    dek = new_data_key()
    wrapped = kek.wrap(dek, b"p-1")
    assert wrapped.kek_id == f"{KEK_PURPOSE}-1" and dek not in wrapped.blob
    assert kek.unwrap(wrapped, b"p-1") == dek
    keyring.rotate(KEK_PURPOSE)
    rewrapped = kek.wrap(dek, b"p-1")
    assert rewrapped.kek_id == f"{KEK_PURPOSE}-2"
    assert kek.unwrap(wrapped, b"p-1") == dek  # the old KEK is kept for old wrapped keys
    assert kek.unwrap(rewrapped, b"p-1") == dek


def test_keyring_kek_detects_a_tampered_or_moved_wrapped_key(keyring: Keyring) -> None:
    kek = KeyringKEK(keyring)
    wrapped = kek.wrap(new_data_key(), b"p-1")
    with pytest.raises(PayloadIntegrityError, match="wrapped data key under kek-1"):
        kek.unwrap(WrappedKey(wrapped.kek_id, flip(wrapped.blob, 20)), b"p-1")
    with pytest.raises(PayloadIntegrityError, match="wrapped data key under kek-1"):
        kek.unwrap(wrapped, b"p-2")  # another subject's row
    with pytest.raises(KeyringError, match="no key 'kek-9'"):
        kek.unwrap(WrappedKey("kek-9", wrapped.blob), b"p-1")


def test_keyring_kek_refuses_a_wrapped_value_of_the_wrong_size(keyring: Keyring) -> None:
    kek = KeyringKEK(keyring)
    _, secret = keyring.active(KEK_PURPOSE)
    nonce, sealed = seal(secret, b"short", b"p-1")
    with pytest.raises(PayloadIntegrityError, match="holds 5 bytes, not 32"):
        kek.unwrap(WrappedKey("kek-1", nonce + sealed), b"p-1")


class ReversingKMS:
    """A stand-in external KEK source (it is not secure: it only proves the plug-in path)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def wrap(self, dek: bytes, context: bytes) -> WrappedKey:
        return WrappedKey("kms-test", context + b"|" + dek[::-1])

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        return wrapped.blob[len(context) + 1 :][::-1]


def make_kms(keyring: Keyring) -> ReversingKMS:
    return ReversingKMS(keyring)


def make_nothing(keyring: Keyring) -> object:
    return object()


def test_kek_source_is_configuration(keyring: Keyring) -> None:
    assert isinstance(load_key_wrapper("keyring", keyring), KeyringKEK)
    plugged = load_key_wrapper(f"{__name__}:make_kms", keyring)
    assert isinstance(plugged, ReversingKMS) and isinstance(plugged, KeyWrapper)
    dek = new_data_key()
    assert plugged.unwrap(plugged.wrap(dek, b"p-1"), b"p-1") == dek


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("vault", "must be 'keyring' or 'package.module:factory', got 'vault'"),
        ("module:", "must be 'keyring' or 'package.module:factory'"),
        ("no.such.module:factory", "cannot load KEK source 'no.such.module:factory'"),
        (f"{__name__}:missing", f"cannot load KEK source '{__name__}:missing'"),
        (f"{__name__}:make_nothing", "returned object, which has no wrap/unwrap"),
    ],
)
def test_bad_kek_sources_are_named(keyring: Keyring, source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_key_wrapper(source, keyring)
