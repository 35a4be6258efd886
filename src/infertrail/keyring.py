"""A local keyring file: named secrets with key ids, grouped by purpose, with rotation.

The default key source (``<data_dir>/keys/keyring.json``, mode 0600). Each purpose
(``input-hmac``, ``subject-hmac``, ...) has one active key; rotation adds a new active key and
keeps the old ones so that records written under them stay checkable. An external KMS or Vault
is a different implementation of the same calls (``active``, ``get``, ``rotate``, and for
period keys ``period_key``, ``destroy``).

**Period keys.** A purpose named in ``periodic`` rotates by itself every UTC month: what is
written in month ``2026-11`` uses ``<purpose>@2026-11``, which records ``keep_until``, the last
day anything it protects must stay readable (the month's last day plus the purpose's days).
After that day retention may :meth:`Keyring.destroy` it: the secret leaves the file, the entry
stays as a tombstone, and everything written under it is crypto-shredded.
"""

from __future__ import annotations

import base64
import calendar
import fcntl
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "KEY_BYTES",
    "KeyDestroyedError",
    "Keyring",
    "KeyringError",
    "PeriodKey",
    "keep_until",
    "month_of",
    "period_key_id",
]

KEY_BYTES = 32
_MODE = 0o600
_PERIOD_SEP = "@"  # not allowed in purposes: a period key id never looks like "<purpose>-<n>"


class KeyringError(RuntimeError):
    """The keyring file is unreadable, malformed, too open, or lacks the asked key."""


class KeyDestroyedError(KeyringError):
    """The key was destroyed by retention: what it protected can no longer be read or added."""

    def __init__(self, key_id: str, destroyed: str) -> None:
        self.key_id = key_id
        self.destroyed = destroyed
        super().__init__(
            f"key {key_id!r} was destroyed at {destroyed} (retention): what it protected is "
            "crypto-shredded, and nothing more can be written under it"
        )


# -- months ----------------------------------------------------------------------------------


def month_of(at_s: float) -> str:
    """The UTC month (``YYYY-MM``) of a Unix time in seconds: the period of a period key."""
    tm = time.gmtime(at_s)
    return f"{tm.tm_year:04d}-{tm.tm_mon:02d}"


def _month_bounds(period: str) -> tuple[float, float]:
    """Unix seconds of the first instant of ``period`` and of the month after it."""
    year, month = (int(part) for part in period.split("-"))
    start = calendar.timegm((year, month, 1, 0, 0, 0))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return float(start), float(calendar.timegm((year, month, 1, 0, 0, 0)))


def keep_until(period: str, days: int) -> date:
    """The last day a key of ``period`` must stay: the month's last day plus ``days``.

    A record stamped on day D of the month has ``retention_until = D + days``, so this is the
    latest ``retention_until`` of anything written in the month under a ``days`` policy.
    """
    year, month = (int(part) for part in period.split("-"))
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last + timedelta(days=days)


def period_key_id(purpose: str, period: str) -> str:
    """The id of ``purpose``'s key for ``period``: ``input-hmac@2026-11``."""
    return f"{purpose}{_PERIOD_SEP}{period}"


@dataclass(frozen=True, slots=True)
class PeriodKey:
    """What the keyring holds about a period key, without its secret."""

    key_id: str
    purpose: str
    period: str
    keep_until: date
    created: str
    destroyed: str | None  # when retention destroyed it (RFC 3339), None while it is live
    receipt_seq: int | None  # seq of the audit record of its destruction, once appended

    @property
    def live(self) -> bool:
        """True until the key is destroyed."""
        return self.destroyed is None


class _Cached(NamedTuple):
    start: float
    end: float
    key_id: str
    secret: bytes


def _check_purpose(purpose: str) -> None:
    if not purpose or not purpose.replace("-", "").isalnum():
        raise KeyringError(f"key purpose must be letters, digits and '-', got {purpose!r}")


def _utc_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Keyring:
    """Secrets by key id; one active key id per purpose. Thread- and process-safe writes.

    ``periodic`` maps the purposes whose keys rotate every UTC month to the days each key must
    be kept after its month ends; ``clock`` (Unix seconds) picks the current month for
    :meth:`active`.
    """

    def __init__(
        self,
        path: Path,
        *,
        periodic: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.periodic: dict[str, int] = dict(periodic or {})
        for purpose, days in self.periodic.items():
            _check_purpose(purpose)
            if days < 0:
                raise KeyringError(f"days to keep {purpose} keys must be >= 0, got {days}")
        self._clock = clock
        self._data = self._load()
        self._secrets: dict[str, bytes] = {}  # decoded once: active() is on the hot path
        self._periods: dict[str, _Cached] = {}  # purpose -> its last period key used
        self._thread_lock = threading.Lock()  # flock orders processes; this, our threads

    def active(self, purpose: str) -> tuple[str, bytes]:
        """The active ``(key_id, secret)`` for ``purpose``, created on first use.

        For a periodic purpose, the key of the current month.
        """
        if purpose in self.periodic:
            return self.period_key(purpose, self._clock())
        key_id = self._data["active"].get(purpose)
        if key_id is None:
            key_id = self._add_key(purpose, first=True)
        return key_id, self.get(key_id)

    def period_key(self, purpose: str, at_s: float) -> tuple[str, bytes]:
        """``(key_id, secret)`` of periodic ``purpose`` for the month holding ``at_s``.

        Created (durably) on first use, or its ``keep_until`` extended if this keyring keeps
        the purpose longer than the process that created it. KeyDestroyedError if retention
        destroyed it: nothing more may be written for that month.
        """
        cached = self._periods.get(purpose)
        if cached is not None and cached.start <= at_s < cached.end:
            return cached.key_id, cached.secret
        days = self.periodic.get(purpose)
        if days is None:
            raise KeyringError(f"purpose {purpose!r} is not periodic in keyring {self.path}")
        period = month_of(at_s)
        key_id = period_key_id(purpose, period)
        needed = keep_until(period, days)
        entry = self._data["keys"].get(key_id)
        if entry is None or "secret" not in entry or _keep_until(entry) < needed:
            self._ensure_period_key(purpose, period, needed)
        secret = self.get(key_id)
        start, end = _month_bounds(period)
        self._periods[purpose] = _Cached(start, end, key_id, secret)
        return key_id, secret

    def get(self, key_id: str) -> bytes:
        """The secret of ``key_id``; KeyringError if it does not exist (KeyDestroyedError if
        retention destroyed it)."""
        secret = self._secrets.get(key_id)
        if secret is None:
            entry = self._data["keys"].get(key_id)
            if entry is None:
                raise KeyringError(f"no key {key_id!r} in keyring {self.path}")
            if "secret" not in entry:
                raise KeyDestroyedError(key_id, str(entry.get("destroyed")))
            secret = base64.b64decode(entry["secret"])
            self._secrets[key_id] = secret
        return secret

    def rotate(self, purpose: str) -> str:
        """Create a new key for ``purpose`` and make it active; returns its key id."""
        if purpose in self.periodic:
            raise KeyringError(
                f"{purpose} keys rotate by themselves every month (period keys); "
                "rotate() is for the other purposes"
            )
        return self._add_key(purpose, first=False)

    def period_keys(self, purpose: str | None = None) -> list[PeriodKey]:
        """Every period key (live or destroyed), by period then purpose."""
        found = [
            _period_key(key_id, entry)
            for key_id, entry in self._data["keys"].items()
            if "period" in entry and purpose in (None, entry["purpose"])
        ]
        return sorted(found, key=lambda k: (k.period, k.purpose))

    def destroy(self, key_id: str, *, today: date) -> bool:
        """Destroy period key ``key_id`` (crypto-shredding); False if it was destroyed already.

        Refused (KeyringError) for a key that is not a period key, and for one whose
        ``keep_until`` is not before ``today``: something it protects must still be kept. The
        secret is removed from the file (replaced atomically, fsynced); the entry stays, with
        the time of destruction.
        """
        with self._thread_lock, self._locked():
            self._data = self._load()
            entry = self._data["keys"].get(key_id)
            if entry is None or "period" not in entry:
                raise KeyringError(f"{key_id!r} is not a period key in keyring {self.path}")
            if "secret" not in entry:
                return False
            until = _keep_until(entry)
            if until >= today:
                raise KeyringError(
                    f"key {key_id!r} must be kept until {until.isoformat()} inclusive; "
                    f"refusing to destroy it on {today.isoformat()}"
                )
            del entry["secret"]
            entry["destroyed"] = _utc_stamp()
            entry["receipt_seq"] = None
            self._save()
            self._forget(key_id)
        return True

    def record_destruction(self, key_ids: Iterable[str], receipt_seq: int) -> None:
        """Note the seq of the audit record that reports these destroyed keys."""
        with self._thread_lock, self._locked():
            self._data = self._load()
            for key_id in key_ids:
                entry = self._data["keys"].get(key_id)
                if entry is None or "destroyed" not in entry:
                    raise KeyringError(f"{key_id!r} is not a destroyed key in {self.path}")
                entry["receipt_seq"] = receipt_seq
            self._save()

    def reload(self) -> None:
        """Re-read the file, so keys another process added since we opened it become visible."""
        with self._thread_lock:
            self._data = self._load()
            self._secrets = {}
            self._periods = {}

    def key_ids(self, purpose: str | None = None) -> list[str]:
        """Ids of the keys (of ``purpose``) that still have their secret."""
        return [
            k
            for k, v in self._data["keys"].items()
            if purpose in (None, v["purpose"]) and "secret" in v
        ]

    # -- writes ----------------------------------------------------------------------------
    def _add_key(self, purpose: str, *, first: bool) -> str:
        """Add a key under the file lock; ``first``: unless another thread or process just did.

        Without that check, concurrent first uses would each create a key, and one subject or
        input would be hashed under two keys.
        """
        _check_purpose(purpose)
        with self._thread_lock, self._locked():
            self._data = self._load()
            existing: str | None = self._data["active"].get(purpose)
            if first and existing is not None:
                return existing
            n = sum(
                1
                for k in self._data["keys"].values()
                if k["purpose"] == purpose and "period" not in k
            )
            key_id = f"{purpose}-{n + 1}"
            self._data["keys"][key_id] = _new_entry(purpose)
            self._data["active"][purpose] = key_id
            self._save()
        return key_id

    def _ensure_period_key(self, purpose: str, period: str, needed: date) -> None:
        """Create the period key, or extend its keep_until to ``needed``, durably."""
        key_id = period_key_id(purpose, period)
        with self._thread_lock, self._locked():
            self._data = self._load()
            entry = self._data["keys"].get(key_id)
            if entry is not None and "secret" not in entry:
                raise KeyDestroyedError(key_id, str(entry.get("destroyed")))
            if entry is None:
                entry = _new_entry(purpose) | {"period": period}
                self._data["keys"][key_id] = entry
            elif _keep_until(entry) >= needed:
                return  # another thread or process did it
            entry["keep_until"] = needed.isoformat()
            self._save()

    def _forget(self, key_id: str) -> None:
        self._secrets.pop(key_id, None)
        self._periods = {p: c for p, c in self._periods.items() if c.key_id != key_id}

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
        """Replace the file atomically; durable (file and directory fsynced) on return.

        The directory fsync matters for destruction: a destroyed key must not come back after
        a power loss once the audit record saying so is written.
        """
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _MODE)
        with os.fdopen(fd, "w") as f:
            json.dump(self._data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

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


def _new_entry(purpose: str) -> dict[str, Any]:
    return {
        "purpose": purpose,
        "created": _utc_stamp(),
        "secret": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
    }


def _keep_until(entry: Mapping[str, Any]) -> date:
    return date.fromisoformat(entry["keep_until"])


def _period_key(key_id: str, entry: Mapping[str, Any]) -> PeriodKey:
    return PeriodKey(
        key_id=key_id,
        purpose=entry["purpose"],
        period=entry["period"],
        keep_until=_keep_until(entry),
        created=entry["created"],
        destroyed=entry.get("destroyed"),
        receipt_seq=entry.get("receipt_seq"),
    )
