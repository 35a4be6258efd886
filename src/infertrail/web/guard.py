"""ASGI middleware: what a request body must be before any route of the app sees it.

Every request that carries a body (a ``Content-Length`` above 0, or ``Transfer-Encoding``) is
checked here, so that a route, an exception handler or a JSON parser never meets what would
make it fail (a ``RecursionError``, a ``UnicodeDecodeError``) or answer in another shape:

- **415** ``unsupported_media_type``: the body is not declared ``application/json`` (or
  ``application/*+json``) in UTF-8. A cross-site "simple" request (``text/plain``, a form,
  multipart) therefore never reaches a route that acts on a body;
- **413** ``body_too_large``: the body is longer than its route's limit (the declared
  ``Content-Length`` is refused before a byte is read; a chunked body when it passes the limit);
- **400** ``invalid_json``: the body is not UTF-8, or nests deeper than the limit;
- **422** ``invalid_input``: a string holds a lone UTF-16 surrogate escape (``"\\ud800"``),
  which JSON's syntax admits but which is not Unicode text: it could be neither hashed into an
  audit record nor logged. The answer names the field, never the value.

Syntax errors are left to the route's own parser, which answers 400 ``invalid_json`` itself.
Paths listed in :attr:`GuardPolicy.raw_body_paths` take bodies that are not JSON (a file
upload): only their size is limited. Requests without a body pass untouched.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infertrail.events import new_request_id
from infertrail.web.responses import error_response

if TYPE_CHECKING:
    from infertrail.config import Settings

__all__ = [
    "GuardPolicy",
    "Rejection",
    "RequestGuardMiddleware",
    "content_type_problem",
    "json_body_problem",
    "nesting_depth",
]

#: ``on_reject(request_id, kind, message, path)``: count and log a refused request.
OnReject = Callable[[str, str, str, str], None]

_JSON_SUBTYPE = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json", re.ASCII)
# A JSON string literal: the unrolled form is linear and never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Everything but brackets, deleted to leave a body's nesting structure.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
# A UTF-16 surrogate escape, lone or in a pair: only then is the body parsed to tell which.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_MAX_SHOWN = 40


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused by the guard: status, error kind, the ``detail`` of the error body,
    and a one-line message for logs and span events (neither echoes the body)."""

    status: int
    kind: str
    detail: Any
    message: str


@dataclass(frozen=True)
class GuardPolicy:
    """The body limits of an app: a default, per-path overrides, JSON depth, non-JSON paths.

    ``body_limits`` and ``raw_body_paths`` match path prefixes at a segment boundary
    (``/v1/outcomes`` covers ``/v1/outcomes`` and ``/v1/outcomes/...``); the longest wins.
    """

    max_body_bytes: int = 65_536
    body_limits: Mapping[str, int] = field(default_factory=dict)
    max_json_depth: int = 32
    raw_body_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        limits = {"max_body_bytes": self.max_body_bytes, **self.body_limits}
        bad = {name: n for name, n in limits.items() if n < 1}
        if bad:
            raise ValueError(f"body limits must be at least 1 byte, got {bad}")
        if self.max_json_depth < 1:
            raise ValueError(f"max_json_depth must be at least 1, got {self.max_json_depth}")
        for prefix in [*self.body_limits, *self.raw_body_paths]:
            if not prefix.startswith("/"):
                raise ValueError(f"a path prefix must start with '/', got {prefix!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardPolicy:
        """The policy of ``settings.http_*``."""
        return cls(
            max_body_bytes=settings.http_max_body_bytes,
            body_limits=dict(settings.http_body_limits),
            max_json_depth=settings.http_max_json_depth,
            raw_body_paths=tuple(settings.http_raw_body_paths),
        )

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``: its longest matching prefix's, else the default."""
        matches = [p for p in self.body_limits if _covers(p, path)]
        return self.body_limits[max(matches, key=len)] if matches else self.max_body_bytes

    def is_raw(self, path: str) -> bool:
        """Whether ``path`` takes bodies that are not JSON."""
        return any(_covers(p, path) for p in self.raw_body_paths)


def _covers(prefix: str, path: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or not prefix


def content_type_problem(value: str | None) -> str | None:
    """Why a body declared as ``value`` is not a JSON body in UTF-8; None when it is."""
    if value is None or not value.strip():
        return "the request has a body but no Content-Type; send Content-Type: application/json"
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if not _JSON_SUBTYPE.fullmatch(media):
        return (
            f"Content-Type {_shown(media)} is not accepted; send the body as JSON with "
            "Content-Type: application/json"
        )
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        charset = charset.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return f"charset {_shown(charset)} is not accepted; JSON bodies are UTF-8"
    return None


def _shown(text: str) -> str:
    """A header value for an error message: quoted, escaped, at most 40 characters."""
    return ascii(text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "...")


def nesting_depth(body: bytes) -> int:
    """How deep a JSON text's arrays and objects nest (brackets inside strings do not count).

    Linear in the body; correct for any valid JSON text, and bounded by the number of
    brackets for any other (whose syntax the route's parser then refuses).
    """
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def json_body_problem(body: bytes, max_depth: int) -> Rejection | None:
    """What is wrong with a JSON body that a route's parser must not meet; None if nothing.

    Checked in order: UTF-8 (400), nesting depth (400), lone surrogate escapes (422). A body
    that is not JSON at all passes: the route's parser answers that in its own words.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"request body is not valid UTF-8 at byte {exc.start} ({exc.reason})"
        return Rejection(400, "invalid_json", message, message)
    if body.count(b"[") + body.count(b"{") > max_depth:
        depth = nesting_depth(body)
        if depth > max_depth:
            message = (
                f"request body nests arrays and objects {depth} levels deep; the limit is "
                f"{max_depth}"
            )
            return Rejection(400, "invalid_json", message, message)
    if _SURROGATE_ESCAPE.search(body) is None:
        return None
    try:
        # Safe to parse now: the depth is bounded, so no RecursionError.
        parsed = json.loads(body)
    except ValueError:
        return None  # not JSON: the route says so
    fields = list(itertools.islice(_lone_surrogates(parsed, ()), 10))
    if not fields:
        return None
    detail = [
        {
            "field": f,
            "message": f"{f} contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), "
            "which is not Unicode text",
            "type": "lone_surrogate",
        }
        for f in fields
    ]
    return Rejection(422, "invalid_input", detail, "; ".join(d["message"] for d in detail))


def _lone_surrogates(value: Any, path: tuple[str, ...]) -> Iterator[str]:
    """The field paths (``a.b[2]``) of strings and keys holding a lone surrogate."""
    if isinstance(value, str):
        if _has_surrogate(value):
            yield _field_name(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _has_surrogate(key):
                # The key itself is the bad input: name where it is, not what it is.
                yield _field_name((*path, "<key>"))
            else:
                yield from _lone_surrogates(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _lone_surrogates(item, (*path, f"[{i}]"))


def _has_surrogate(text: str) -> bool:
    # json.loads joins a valid pair into one character: what remains in range is lone.
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _field_name(path: tuple[str, ...]) -> str:
    name = ""
    for part in path:
        part = part if len(part) <= 64 else part[:61] + "..."
        name += part if part.startswith("[") or not name else "." + part
    return name or "body"


class _BodyTooLarge(Exception):
    """Raised into the app by the receive of a non-JSON path that passed its limit."""


class RequestGuardMiddleware:
    """Applies a :class:`GuardPolicy` to every HTTP request (see the module docstring).

    Install it inside :class:`~infertrail.web.requestid.RequestIdMiddleware` (added before
    it), so that refusals carry the request id; ``on_reject`` counts and logs each of them.
    """

    def __init__(self, app: ASGIApp, policy: GuardPolicy, on_reject: OnReject | None = None):
        self.app = app
        self.policy = policy
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        declared = _content_length(headers)
        if not declared and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        path: str = scope.get("path", "")
        limit = self.policy.limit_for(path)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, _too_large(path, limit, f"{declared} bytes"))
            return
        if self.policy.is_raw(path):
            await self._pass_counting(scope, receive, send, limit)
            return
        ctype = headers.get(b"content-type")
        problem = content_type_problem(None if ctype is None else ctype.decode("latin-1"))
        if problem is not None:
            await self._refuse(
                scope, send, Rejection(415, "unsupported_media_type", problem, problem)
            )
            return
        try:
            body = await _read_body(receive, limit)
        except _ClientGone:
            return  # nobody to answer
        if body is None:
            await self._refuse(scope, send, _too_large(path, limit, "more"))
            return
        rejection = json_body_problem(body, self.policy.max_json_depth)
        if rejection is not None:
            await self._refuse(scope, send, rejection)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _pass_counting(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass a non-JSON body through, answering 413 once it passes ``limit``."""
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app makes of the interruption, the answer is 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await self._refuse(scope, send, _too_large(scope.get("path", ""), limit, "more"))

    async def _refuse(self, scope: Scope, send: Send, rejection: Rejection) -> None:
        rid = _request_id(scope)
        if self.on_reject is not None:
            self.on_reject(rid, rejection.kind, rejection.message, scope.get("path", ""))
        response = error_response(rejection.status, rejection.kind, rejection.detail, rid)
        await response(scope, _no_body, send)


def _too_large(path: str, limit: int, got: str) -> Rejection:
    size = f"has {got}" if got != "more" else "is longer than that"
    message = f"the request body {size}; the limit for {_shown(path)} is {limit} bytes"
    return Rejection(413, "body_too_large", message, message)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _content_length(headers: Mapping[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    # The server (uvicorn's h11/httptools) refuses a malformed Content-Length before us.
    return int(value) if value is not None and value.strip().isdigit() else None


def _request_id(scope: Scope) -> str:
    rid: str = scope.get("state", {}).get("request_id") or new_request_id()
    return rid


class _ClientGone(Exception):
    """The client disconnected before its body was complete."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then the server's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
