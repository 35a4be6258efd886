"""Console sessions: a signed cookie naming the user, a CSRF token bound to it, an expiry.

A session is stateless, so every worker of a service accepts it: the cookie is
``base64url(json) "." base64url(HMAC-SHA256(key, json))`` holding the user's name, a random
nonce, when it was issued and when it expires. The key is the keyring's ``console-session``
key (one per data directory, created on first use). Each request re-reads the user from the
user store, so revoking an API key ends its sessions at once; logging out also revokes the
session's nonce in this process. The CSRF token of a session is the HMAC of its nonce under
another label: a form posts it back, and a request from another site cannot know it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass

__all__ = ["COOKIE", "LOGIN_CSRF_COOKIE", "Session", "SessionCodec", "SessionError"]

#: The session cookie, and the double-submit cookie of the login form (no session yet).
COOKIE = "infertrail_session"
LOGIN_CSRF_COOKIE = "infertrail_login_csrf"
_MAX_COOKIE = 4096


class SessionError(ValueError):
    """A cookie that is not a valid, unexpired session of this service."""


@dataclass(frozen=True, slots=True)
class Session:
    """Who is logged in, until when, and the nonce the CSRF token derives from."""

    user: str
    nonce: str
    issued: int
    expires: int


class SessionCodec:
    """Issues and checks session cookies and their CSRF tokens under one key."""

    def __init__(self, key: bytes, *, lifetime_s: int) -> None:
        if len(key) < 32:
            raise ValueError(f"the session key must be at least 32 bytes, got {len(key)}")
        if lifetime_s < 60:
            raise ValueError(f"a session must last at least 60 s, got {lifetime_s}")
        self._key = key
        self.lifetime_s = lifetime_s
        self._revoked: dict[str, int] = {}  # nonce -> expiry, until it expires anyway
        self._lock = threading.Lock()

    def issue(self, user: str, *, now: float | None = None) -> tuple[Session, str]:
        """A new session of ``user`` and its cookie value."""
        issued = int(time.time() if now is None else now)
        session = Session(user, os.urandom(16).hex(), issued, issued + self.lifetime_s)
        body = json.dumps(
            {"u": session.user, "n": session.nonce, "i": session.issued, "e": session.expires},
            separators=(",", ":"),
        ).encode()
        return session, f"{_b64(body)}.{_b64(self._mac(b'session', body))}"

    def read(self, cookie: str | None, *, now: float | None = None) -> Session:
        """The session of a cookie; SessionError saying why it is not one."""
        if not cookie:
            raise SessionError("not logged in")
        if len(cookie) > _MAX_COOKIE or cookie.count(".") != 1:
            raise SessionError("malformed session cookie")
        body_b64, mac_b64 = cookie.split(".")
        try:
            body, mac = _unb64(body_b64), _unb64(mac_b64)
        except ValueError:
            raise SessionError("malformed session cookie") from None
        if not hmac.compare_digest(mac, self._mac(b"session", body)):
            raise SessionError("session cookie signature does not verify")
        try:
            data = json.loads(body)
            session = Session(str(data["u"]), str(data["n"]), int(data["i"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            raise SessionError("malformed session cookie") from None
        at = time.time() if now is None else now
        if at >= session.expires:
            raise SessionError("session expired: log in again")
        with self._lock:
            if session.nonce in self._revoked:
                raise SessionError("session ended: log in again")
        return session

    def revoke(self, session: Session) -> None:
        """End ``session`` (logout) in this process; it would expire anyway."""
        now = int(time.time())
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e > now}
            self._revoked[session.nonce] = session.expires

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of ``session``'s forms."""
        return _b64(self._mac(b"csrf", session.nonce.encode()))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is ``session``'s CSRF token (constant time)."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))

    def _mac(self, label: bytes, body: bytes) -> bytes:
        return hmac.new(self._key, label + b"\0" + body, hashlib.sha256).digest()


def new_login_token() -> str:
    """A random double-submit token for the login form (cookie and hidden field)."""
    return os.urandom(16).hex()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
