"""Who may query the audit log: users, API keys stored as SHA-256 hashes, roles and rate limits.

Keys are 32 random bytes shown once at creation (``itk_`` + base64url); only their SHA-256 is
stored, in SQLite at ``<data_dir>/access/users.db`` (directory 0700, file 0600). A fast hash is
right here because the secret is high-entropy: there is nothing to brute-force, unlike passwords.
Roles are ordered ``engineer < auditor < compliance < admin``; :data:`PERMISSIONS` is the matrix
(documented in docs/compliance-api.md).
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "KEY_PREFIX",
    "PERMISSIONS",
    "ROLES",
    "AccessDenied",
    "AccessError",
    "Permission",
    "RateLimited",
    "RateLimiter",
    "Role",
    "Unauthenticated",
    "User",
    "UserExistsError",
    "UserStore",
    "check_role",
    "users_db_path",
]

Role = Literal["engineer", "auditor", "compliance", "admin"]
#: The roles, least privileged first.
ROLES: tuple[Role, ...] = get_args(Role)

KEY_PREFIX = "itk_"
_KEY_RE = re.compile(r"itk_[A-Za-z0-9_-]{43}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_NAME_RULE = "1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"


class Permission(StrEnum):
    """What a role may do through the compliance interface."""

    READ_DECISIONS = "read_decisions"  # pseudonymized queries, exports, proofs, checkpoints
    RESOLVE_SUBJECT = "resolve_subject"  # query by a subject's real id (mapped to its pseudonym)
    ERASE = "erase"  # crypto-erase a subject
    BREAK_GLASS = "break_glass"  # read raw payloads, with a recorded justification


_AUDITOR = frozenset({Permission.READ_DECISIONS})
_COMPLIANCE = _AUDITOR | {Permission.RESOLVE_SUBJECT, Permission.ERASE}
#: The permission matrix: engineers see telemetry only, never decisions.
PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    "engineer": frozenset(),
    "auditor": _AUDITOR,
    "compliance": _COMPLIANCE,
    "admin": _COMPLIANCE | {Permission.BREAK_GLASS},
}


class AccessError(Exception):
    """A request the access layer refuses; ``status`` is its HTTP status code."""

    status = 400
    kind = "access_error"


class Unauthenticated(AccessError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    kind = "unauthenticated"


class AccessDenied(AccessError):
    """The user's role lacks the permission the operation needs."""

    status = 403
    kind = "forbidden"


class RateLimited(AccessError):
    """The user's token bucket is empty; ``retry_after`` is when one token will be back."""

    status = 429
    kind = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UserExistsError(ValueError):
    """A user of that name exists (active or revoked): names are never reused."""


@dataclass(frozen=True, slots=True)
class User:
    """A user of the compliance interface; ``key_id`` is a short prefix of the key's hash."""

    name: str
    role: Role
    key_id: str
    created: str
    revoked: str | None

    @property
    def active(self) -> bool:
        return self.revoked is None


def check_role(role: str, permission: Permission) -> None:
    """Raise AccessDenied unless ``role`` has ``permission``, naming the roles that do."""
    if permission in PERMISSIONS.get(role, frozenset()):  # type: ignore[call-overload]
        return
    allowed = [r for r in ROLES if permission in PERMISSIONS[r]]
    raise AccessDenied(f"role {role!r} may not {permission.value}; allowed roles: {allowed}")


def users_db_path(data_dir: Path) -> Path:
    """Where the users database lives: ``<data_dir>/access/users.db``."""
    return data_dir / "access" / "users.db"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    key_sha256 BLOB NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked TEXT
)
"""


class UserStore:
    """The users table in SQLite: add (returns the key once), list, revoke, authenticate.

    One connection guarded by a lock, shared by the server's worker threads; every
    authentication reads the table, so a revocation takes effect on the next request.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Create it private before SQLite writes anything into it.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, name: str, role: str) -> tuple[User, str]:
        """Create a user with a new API key; returns the user and the key (shown only now)."""
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"user name must be {_NAME_RULE}; got {name!r:.80}")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
        key = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        digest = _key_hash(key)
        created = _now()
        with self._transaction() as db:
            row = db.execute("SELECT revoked FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None:
                state = "active" if row[0] is None else f"revoked at {row[0]}"
                raise UserExistsError(
                    f"user {name!r} already exists ({state}); names are never reused so the "
                    "audit trail stays unambiguous: choose another name"
                )
            db.execute(
                "INSERT INTO users (name, role, key_sha256, created) VALUES (?, ?, ?, ?)",
                (name, role, digest, created),
            )
        return User(name, role, digest.hex()[:12], created, None), key

    def list(self) -> list[User]:
        """Every user, active and revoked, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, role, key_sha256, created, revoked FROM users ORDER BY name"
            ).fetchall()
        return [User(n, r, k.hex()[:12], c, v) for n, r, k, c, v in rows]

    def get(self, name: str) -> User | None:
        """The user called ``name`` (active or revoked), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, key_sha256, created, revoked FROM users WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        n, r, k, c, v = row
        return User(n, r, k.hex()[:12], c, v)

    def revoke(self, name: str) -> User:
        """Revoke ``name``'s key now (LookupError if there is no such user; idempotent)."""
        with self._transaction() as db:
            row = db.execute("SELECT revoked FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise LookupError(f"no user {name!r}; `infertrail users list` shows the users")
            if row[0] is None:
                db.execute("UPDATE users SET revoked = ? WHERE name = ?", (_now(), name))
        user = self.get(name)
        assert user is not None
        return user

    def authenticate(self, key: str | None) -> User:
        """The active user holding ``key``; Unauthenticated if missing, unknown or revoked."""
        if not key:
            raise Unauthenticated(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        if not _KEY_RE.fullmatch(key):
            raise Unauthenticated(
                f"malformed API key: expected {KEY_PREFIX} followed by 43 base64url characters"
            )
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, key_sha256, created, revoked FROM users WHERE key_sha256 = ?",
                (_key_hash(key),),
            ).fetchone()
        if row is None:
            raise Unauthenticated("unknown API key")
        n, r, k, c, v = row
        if v is not None:
            raise Unauthenticated(f"API key of user {n!r} was revoked at {v}")
        return User(n, r, k.hex()[:12], c, v)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


class RateLimiter:
    """A token bucket per user: ``rate_per_s`` tokens a second, holding at most ``burst``."""

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate_per_s > 0 or not math.isfinite(rate_per_s):
            raise ValueError(f"rate_per_s must be a finite number > 0, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, name: str) -> None:
        """Spend one of ``name``'s tokens, or raise RateLimited saying when to retry."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                wait = (1.0 - tokens) / self.rate_per_s
                raise RateLimited(
                    f"rate limit of {self.rate_per_s:g} requests/s (burst {self.burst}) exceeded "
                    f"for {name!r}; retry in {wait:.2f} s",
                    wait,
                )
            self._buckets[name] = (tokens - 1.0, now)
