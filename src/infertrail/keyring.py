"""A local keyring file: named secrets with key ids, grouped by purpose, with rotation.

The default key source (``<data_dir>/keys/keyring.json``, mode 0600). Each purpose
(``input-hmac``, ``subject-hmac``, ...) has one active key; rotation adds a new active key and
keeps the old ones so that records written under them stay checkable. An external KMS or Vault
is a different implementation of the same three calls (``active``, ``get``, ``rotate``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEY_BYTES = 32
_MODE = 0o600


class KeyringError(RuntimeError):
    """The keyring file is unreadable, malformed, too open, or lacks the asked key."""


class Keyring:
    """Secrets by key id; one active key id per purpose. Thread- and process-safe writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = self._load()
        self._secrets: dict[str, bytes] = {}  # decoded once: active() is on the hot path
        self._thread_lock = threading.Lock()  # flock orders processes; this, our threads

    def active(self, purpose: str) -> tuple[str, bytes]:
        """The active ``(key_id, secret)`` for ``purpose``, created on first use."""
        key_id = self._data["active"].get(purpose)
        if key_id is None:
            key_id = self._add_key(purpose, first=True)
        return key_id, self.get(key_id)

    def get(self, key_id: str) -> bytes:
        """The secret of ``key_id``; KeyringError if it does not exist."""
        secret = self._secrets.get(key_id)
        if secret is None:
            try:
                secret = base64.b64decode(self._data["keys"][key_id]["secret"])
            except KeyError:
                raise KeyringError(f"no key {key_id!r} in keyring {self.path}") from None
            self._secrets[key_id] = secret
        return secret

    def rotate(self, purpose: str) -> str:
        """Create a new key for ``purpose`` and make it active; returns its key id."""
        return self._add_key(purpose, first=False)

    def _add_key(self, purpose: str, *, first: bool) -> str:
        """Add a key under the file lock; ``first``: unless another thread or process just did.

        Without that check, concurrent first uses would each create a key, and one subject or
        input would be hashed under two keys.
        """
        if not purpose or not purpose.replace("-", "").isalnum():
            raise KeyringError(f"key purpose must be letters, digits and '-', got {purpose!r}")
        with self._thread_lock, self._locked():
            self._data = self._load()
            existing: str | None = self._data["active"].get(purpose)
            if first and existing is not None:
                return existing
            n = sum(1 for k in self._data["keys"].values() if k["purpose"] == purpose) + 1
            key_id = f"{purpose}-{n}"
            self._data["keys"][key_id] = {
                "purpose": purpose,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "secret": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
            }
            self._data["active"][purpose] = key_id
            self._save()
        return key_id

    def reload(self) -> None:
        """Re-read the file, so keys another process added since we opened it become visible."""
        with self._thread_lock:
            self._data = self._load()

    def key_ids(self, purpose: str | None = None) -> list[str]:
        return [k for k, v in self._data["keys"].items() if purpose in (None, v["purpose"])]

    # -- storage ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": 1, "keys": {}, "active": {}}
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise KeyringError(
                f"keyring {self.path} has mode {mode:04o}; it must not be readable by group or "
                f"others (chmod 600 {self.path})"
            )
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("format") != 1:
                raise ValueError("not an infertrail keyring (format 1)")
            if not isinstance(data.get("keys"), dict):
                raise ValueError("'keys' must be an object")
            data.setdefault("active", {})
        except (ValueError, OSError) as exc:
            raise KeyringError(f"keyring {self.path} is unreadable: {exc}") from exc
        result: dict[str, Any] = data
        return result

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _MODE)
        with os.fdopen(fd, "w") as f:
            json.dump(self._data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
