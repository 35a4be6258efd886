"""The console's web layer: login, sessions, pages with JSON twins, static assets.

:class:`Console` holds what every page needs (the runtime, the user store, the session codec,
the templates) and registers routes on a Starlette app under ``prefix`` (``/ui``):

- ``GET /ui/login`` and ``POST /ui/login`` (an API key, the same keys and roles as the
  compliance API), ``POST /ui/logout``; a session is a signed cookie (``sessions.py``), HttpOnly,
  SameSite=Strict, Path=/ui, for ``console_session_minutes``;
- every page registered with :meth:`Console.page` at ``/ui/<name>`` and its JSON twin at
  ``/ui/<name>.json`` (or the same URL with ``Accept: application/json``): the page function
  returns one JSON-ready dict, which the template renders or the twin returns as it is;
- forms post ``application/x-www-form-urlencoded`` with the session's CSRF token, checked
  before the handler runs (403 otherwise), and the ``Origin`` header, when sent, must be the
  service's own;
- ``/ui/static/...``: the CSS and the little JavaScript the console has, from the package (no
  CDN). Pages read without JavaScript; scripts only add conveniences.

Who may see what is the compliance API's permission matrix (``compliance.access``): every
logged-in role sees the telemetry pages (overview, drift, SLOs, request timings); pages showing
decisions need ``read_decisions`` and go through the compliance query service, which writes an
``access_query`` record for each use (the self-audit).
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from infertrail.compliance.access import (
    PERMISSIONS,
    AccessError,
    Permission,
    Unauthenticated,
    User,
    UserStore,
)
from infertrail.compliance.queries import Caller
from infertrail.console.formats import environment
from infertrail.console.sessions import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    Session,
    SessionCodec,
    SessionError,
    new_login_token,
)
from infertrail.web.responses import request_id_of

if TYPE_CHECKING:
    from infertrail.runtime.assembly import Runtime

__all__ = ["Console", "PageContext", "PageError"]

_log = logging.getLogger("infertrail.console")

#: Every console answer: its own origin only, no framing, forms back to itself.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Referrer-Policy same-origin, not the service's no-referrer: under no-referrer Chromium sends
# ``Origin: null`` with the console's own form posts, which the Origin check must refuse.
_HEADERS = {
    "content-security-policy": CSP,
    "cache-control": "no-store",
    "referrer-policy": "same-origin",
}
_MAX_FORM_BYTES = 16_384


class PageError(Exception):
    """A page refuses a request: ``status`` and a message for the person (or the JSON twin).

    With ``data``, the page's own template is shown again at ``status`` with ``data`` and the
    message as ``error`` (a form re-shown with what was wrong); else the error page.
    """

    def __init__(self, status: int, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


@dataclass
class PageContext:
    """What a page function gets: who asks, what they sent, and the service's parts."""

    request: Request
    user: User
    session: Session
    runtime: Runtime
    form: Mapping[str, str] = field(default_factory=dict)

    @property
    def caller(self) -> Caller:
        """The user as the compliance query service knows callers (for its access records)."""
        return Caller(self.user, "console", request_id=request_id_of(self.request))

    def may(self, permission: Permission) -> bool:
        """Whether the user's role has ``permission``."""
        return permission in PERMISSIONS.get(self.user.role, frozenset())

    def param(self, name: str, default: str = "") -> str:
        """A query parameter (or form field), stripped; ``default`` when absent."""
        value = self.form.get(name) if name in self.form else self.request.query_params.get(name)
        return default if value is None else value.strip()


#: A page returns the data its template and JSON twin show, or (a download) a Response.
PageFunction = Callable[[PageContext], Mapping[str, Any] | Response]


@dataclass(frozen=True)
class _Page:
    name: str
    title: str
    template: str
    fn: PageFunction
    permission: Permission | None
    methods: tuple[str, ...]
    nav: bool


class Console:
    """The console of one service (see the module doc)."""

    def __init__(
        self,
        runtime: Runtime,
        users: UserStore,
        codec: SessionCodec,
        *,
        prefix: str = "/ui",
    ) -> None:
        if not prefix.startswith("/") or prefix.endswith("/") or len(prefix) < 2:
            raise ValueError(f"prefix must look like '/ui', got {prefix!r}")
        self.runtime = runtime
        self.users = users
        self.codec = codec
        self.prefix = prefix
        self.pages: dict[str, _Page] = {}
        self.env = environment()
        self.env.globals["url"] = self.url

    # -- registration ----------------------------------------------------------------------
    def page(
        self,
        name: str,
        *,
        title: str,
        template: str | None = None,
        permission: Permission | None = None,
        methods: tuple[str, ...] = ("GET",),
        nav: bool = True,
    ) -> Callable[[PageFunction], PageFunction]:
        """Register a page function at ``/ui/<name>`` (and ``.json``); see the module doc.

        ``permission``: the role permission it needs (None: any logged-in user). ``methods``
        with POST: a form handler (CSRF-checked; its fields are ``ctx.form``). ``nav``: listed
        in the navigation bar.
        """

        def register(fn: PageFunction) -> PageFunction:
            if name in self.pages:
                raise ValueError(f"page {name!r} is registered twice")
            self.pages[name] = _Page(
                name, title, template or f"{name}.html", fn, permission, methods, nav
            )
            return fn

        return register

    def url(self, name: str, **params: Any) -> str:
        """The URL of page ``name`` (``static/x.css`` for an asset) with query ``params``."""
        path = f"{self.prefix}/{name}"
        query = "&".join(
            f"{quote(str(k))}={quote(str(v))}" for k, v in params.items() if v not in (None, "")
        )
        return f"{path}?{query}" if query else path

    def mount(self, app: Starlette) -> None:
        """Add the console's routes to ``app``."""
        p = self.prefix
        app.router.add_route(p, self._home, methods=["GET"], include_in_schema=False)
        app.router.add_route(f"{p}/", self._home, methods=["GET"], include_in_schema=False)
        app.router.add_route(f"{p}/login", self._login_form, methods=["GET"])
        app.router.add_route(f"{p}/login", self._login, methods=["POST"])
        app.router.add_route(f"{p}/logout", self._logout, methods=["POST"])
        app.router.add_route(f"{p}/static/{{path:path}}", self._static, methods=["GET"])
        for page in self.pages.values():
            handler = self._handler(page)
            for path in (f"{p}/{page.name}", f"{p}/{page.name}.json"):
                app.router.add_route(path, handler, methods=list(page.methods))

    # -- login and sessions ----------------------------------------------------------------
    async def _home(self, request: Request) -> Response:
        return _redirect(self.url("overview"))

    async def _login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        token = new_login_token()
        response = self._html(
            "login.html",
            {
                "title": "Log in",
                "error": error,
                "login_csrf": token,
                "next": _safe_next(request.query_params.get("next"), self.prefix),
            },
            user=None,
            status=status,
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            path=f"{self.prefix}/login",
            secure=request.url.scheme == "https",
            max_age=3600,
        )
        return response

    async def _login(self, request: Request) -> Response:
        form = await _read_form(request)
        if form is None:
            return await self._login_form(request, "the login form was not sent as a form", 400)
        token = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not token or form.get("login_csrf") != token or not _same_origin(request):
            return await self._login_form(request, "the form expired: log in again", 403)
        try:
            user = await run_in_threadpool(self.users.authenticate, form.get("api_key", ""))
        except Unauthenticated:
            _log.info("console login refused (unknown or revoked API key)")
            return await self._login_form(request, "unknown or revoked API key", 401)
        _, cookie = self.codec.issue(user.name)
        response = _redirect(_safe_next(form.get("next"), self.prefix) or self.url("overview"))
        response.set_cookie(
            COOKIE,
            cookie,
            httponly=True,
            samesite="strict",
            path=self.prefix,
            secure=request.url.scheme == "https",
            max_age=self.codec.lifetime_s,
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{self.prefix}/login")
        return response

    async def _logout(self, request: Request) -> Response:
        form = await _read_form(request) or {}
        try:
            session = self.codec.read(request.cookies.get(COOKIE))
        except SessionError:
            return _redirect(self.url("login"))
        if not self.codec.check_csrf(session, form.get("csrf_token")) or not _same_origin(request):
            return self._error(request, None, 403, "the form expired: reload the page")
        self.codec.revoke(session)
        response = _redirect(self.url("login"))
        response.delete_cookie(COOKIE, path=self.prefix)
        return response

    def _session_user(self, request: Request) -> tuple[Session, User]:
        """The request's session and its (still active) user, or SessionError."""
        session = self.codec.read(request.cookies.get(COOKIE))
        user = self.users.get(session.user)
        if user is None or not user.active:
            raise SessionError("this user's API key was revoked: log in with another")
        return session, user

    # -- pages -----------------------------------------------------------------------------
    def _handler(self, page: _Page) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            wants_json = _wants_json(request)
            try:
                session, user = await run_in_threadpool(self._session_user, request)
            except SessionError as exc:
                if wants_json:
                    return _json({"error": "unauthenticated", "detail": str(exc)}, 401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return _redirect(self.url("login", next=target))
            form: dict[str, str] = {}
            if request.method == "POST":
                got = await _read_form(request)
                if got is None:
                    return self._error(request, user, 415, "send the form as a form")
                form = got
                if not self.codec.check_csrf(session, form.get("csrf_token")) or not (
                    _same_origin(request)
                ):
                    return self._error(request, user, 403, "the form expired: reload the page")
            if page.permission is not None and page.permission not in PERMISSIONS.get(
                user.role, frozenset()
            ):
                return self._error(
                    request,
                    user,
                    403,
                    f"your role ({user.role}) may not see this page: it needs "
                    f"{page.permission.value}",
                    session,
                )
            ctx = PageContext(request, user, session, self.runtime, form)
            base = {"title": page.title, "page": page.name, "request_query": request.url.query}
            try:
                result = await run_in_threadpool(page.fn, ctx)
            except PageError as exc:
                if exc.data is not None and not wants_json:
                    shown = {**base, **exc.data, "error": exc.message}
                    return self._html(page.template, shown, user, session, exc.status)
                return self._error(request, user, exc.status, exc.message, session)
            except AccessError as exc:
                return self._error(request, user, exc.status, str(exc), session)
            if isinstance(result, Response):  # a download: the page set its own headers
                result.headers.update(_HEADERS)
                return result
            data = dict(result)
            if wants_json:
                return _json(data, 200)
            return self._html(page.template, {**base, **data}, user, session)

        return handle

    def _html(
        self,
        template: str,
        data: Mapping[str, Any],
        user: User | None,
        session: Session | None = None,
        status: int = 200,
    ) -> Response:
        nav = [
            {"name": p.name, "title": p.title, "url": self.url(p.name)}
            for p in self.pages.values()
            if p.nav
            and (p.permission is None or (user and p.permission in PERMISSIONS.get(user.role, ())))
        ]
        body = self.env.get_template(template).render(
            **{"page": "", "request_query": "", **data},
            user=user,
            nav=nav,
            prefix=self.prefix,
            csrf_token=self.codec.csrf_token(session) if session else "",
            service=self.runtime.settings.service_name,
        )
        return Response(body, status, headers=_HEADERS, media_type="text/html; charset=utf-8")

    def _error(
        self,
        request: Request,
        user: User | None,
        status: int,
        message: str,
        session: Session | None = None,
    ) -> Response:
        if _wants_json(request):
            return _json({"error": _ERROR_KINDS.get(status, "error"), "detail": message}, status)
        return self._html(
            "error.html",
            {"title": f"{status}", "page": "", "status": status, "message": message},
            user,
            session,
            status,
        )

    async def _static(self, request: Request) -> Response:
        name = PurePosixPath(request.path_params["path"])
        if name.is_absolute() or ".." in name.parts or len(name.parts) != 1:
            return Response("not found", 404, headers=_HEADERS)
        asset = resources.files("infertrail.console") / "static" / name.name
        if not asset.is_file():
            return Response("not found", 404, headers=_HEADERS)
        media = mimetypes.guess_type(name.name)[0] or "application/octet-stream"
        return Response(
            asset.read_bytes(),
            headers={"content-security-policy": CSP, "cache-control": "max-age=3600"},
            media_type=media,
        )


_ERROR_KINDS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}


async def _read_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (None if it is not one or is too big)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return dict(pairs)


def _same_origin(request: Request) -> bool:
    """False when the request names another site as its origin (a cross-site form post)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def _wants_json(request: Request) -> bool:
    if request.url.path.endswith(".json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _safe_next(target: str | None, prefix: str) -> str:
    """A redirect target inside the console only (no open redirect)."""
    if not target or not target.startswith(f"{prefix}/") or target.startswith("//"):
        return ""
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return ""
    return target


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers=_HEADERS)


def _json(data: Mapping[str, Any], status: int) -> Response:
    return JSONResponse(_jsonable(data), status, headers=_HEADERS)


def _jsonable(value: Any) -> Any:
    """Mappings, sequences, dates and non-finite floats as JSON can hold them."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value, default=str))
