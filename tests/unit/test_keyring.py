from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infertrail.keyring import KEY_BYTES, Keyring, KeyringError


def test_active_key_is_created_once_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    ring = Keyring(path)
    kid, secret = ring.active("input-hmac")
    assert kid == "input-hmac-1" and len(secret) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring(path).active("input-hmac") == (kid, secret)


def test_rotation_keeps_old_keys(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "k.json")
    old_id, old = ring.active("input-hmac")
    new_id = ring.rotate("input-hmac")
    assert new_id == "input-hmac-2"
    assert ring.active("input-hmac")[0] == new_id
    assert ring.get(old_id) == old
    assert ring.key_ids("input-hmac") == [old_id, new_id]


def test_purposes_are_independent(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "k.json")
    assert ring.active("input-hmac")[1] != ring.active("subject-hmac")[1]


def test_unknown_key_and_bad_purpose(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "k.json")
    with pytest.raises(KeyringError, match="no key 'nope'"):
        ring.get("nope")
    with pytest.raises(KeyringError, match="key purpose must be"):
        ring.rotate("bad purpose!")


def test_world_readable_keyring_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    Keyring(path).active("input-hmac")
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="mode 0644"):
        Keyring(path)


def test_malformed_keyring_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("[]")
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="unreadable"):
        Keyring(path)
