"""The console's login, sessions, CSRF, role checks and JSON twins, through a real app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from infertrail.compliance.access import Permission
from infertrail.config import Settings
from infertrail.console import Console, PageContext, PageError
from infertrail.console.app import CSP
from infertrail.console.sessions import COOKIE, SessionCodec, SessionError
from infertrail.runtime.asgi import instrument
from infertrail.runtime.assembly import Runtime


@dataclass
class App:
    client: TestClient
    runtime: Runtime
    keys: dict[str, str]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    settings = Settings(
        data_dir=tmp_path / "data", set_global_providers=False, telemetry_files=False
    )
    fastapi = FastAPI()
    runtime = instrument(fastapi, settings, console=True)
    assert runtime.compliance is not None
    users = runtime.compliance.users
    keys = {role: users.add(f"u-{role}", role)[1] for role in ("engineer", "auditor")}
    with TestClient(fastapi, base_url="http://testserver") as client:
        yield App(client, runtime, keys)


def _login(client: TestClient, key: str, next_url: str = "") -> httpx.Response:
    page = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    response: httpx.Response = client.post(
        "/ui/login",
        data={"api_key": key, "login_csrf": token.group(1), "next": next_url},
        follow_redirects=False,
    )
    return response


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_pages_need_a_login_and_the_login_returns_to_the_page(app: App) -> None:
    r = app.client.get("/ui/overview?range=1h", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/ui/overview%3Frange%3D1h"
    assert app.client.get("/ui/overview.json").status_code == 401
    r = _login(app.client, app.keys["engineer"], "/ui/overview?range=1h")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/overview?range=1h")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    page = app.client.get("/ui/overview")
    assert page.status_code == 200 and "u-engineer (engineer)" in page.text
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["cache-control"] == "no-store"
    # not the service's no-referrer: under it Chromium posts the console's forms with
    # Origin: null, which the Origin check refuses (tests/browser logs in for real)
    assert page.headers["referrer-policy"] == "same-origin"


def test_a_wrong_key_or_a_missing_form_token_is_refused(app: App) -> None:
    r = _login(app.client, "itk_" + "x" * 43)
    assert r.status_code == 401 and "unknown or revoked API key" in r.text
    r = app.client.post("/ui/login", data={"api_key": app.keys["auditor"], "login_csrf": "forged"})
    assert r.status_code == 403
    assert COOKIE not in app.client.cookies


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/v1/x", "/ui\\x"])
def test_the_login_never_redirects_out_of_the_console(app: App, target: str) -> None:
    r = _login(app.client, app.keys["engineer"], target)
    assert r.headers["location"] == "/ui/overview"


def test_forms_need_the_sessions_csrf_token_and_logout_ends_the_session(app: App) -> None:
    _login(app.client, app.keys["engineer"])
    page = app.client.get("/ui/overview")
    r = app.client.post("/ui/logout", data={"csrf_token": "nope"})
    assert r.status_code == 403
    r = app.client.post(
        "/ui/logout",
        data={"csrf_token": _csrf(page.text)},
        headers={"origin": "https://evil.example"},
    )
    assert r.status_code == 403  # a cross-site post, even with the token
    stolen = app.client.cookies[COOKIE]
    r = app.client.post("/ui/logout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    app.client.cookies.set(COOKIE, stolen, path="/ui")  # the cookie replayed after logout
    assert app.client.get("/ui/overview.json").status_code == 401


def test_revoking_the_key_ends_its_sessions(app: App) -> None:
    _login(app.client, app.keys["auditor"])
    assert app.client.get("/ui/overview.json").status_code == 200
    app.runtime.compliance.users.revoke("u-auditor")  # type: ignore[union-attr]
    r = app.client.get("/ui/overview.json")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_a_forged_or_expired_cookie_is_no_session() -> None:
    codec = SessionCodec(b"k" * 32, lifetime_s=60)
    session, cookie = codec.issue("ana", now=1000)
    assert codec.read(cookie, now=1030) == session
    with pytest.raises(SessionError, match="expired"):
        codec.read(cookie, now=1060)
    body, mac = cookie.split(".")
    with pytest.raises(SessionError, match="signature"):
        codec.read(f"{body}.{mac[:-2]}AA", now=1030)
    _, other = SessionCodec(b"j" * 32, lifetime_s=60).issue("ana", now=1000)
    with pytest.raises(SessionError, match="signature"):
        codec.read(other, now=1030)
    for bad in ("", "x", "a.b.c", "%%%.%%%", "x" * 5000):
        with pytest.raises(SessionError):
            codec.read(bad, now=1030)
    assert codec.check_csrf(session, codec.csrf_token(session))
    assert not codec.check_csrf(session, None) and not codec.check_csrf(session, "x")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SessionCodec(b"short", lifetime_s=60)


def test_roles_json_twins_and_page_errors(app: App) -> None:
    assert app.runtime.compliance is not None
    users = app.runtime.compliance.users
    console = Console(app.runtime, users, SessionCodec(b"k" * 32, lifetime_s=600))
    fastapi = FastAPI()

    @console.page("secret", title="Secret", permission=Permission.READ_DECISIONS)
    def secret(ctx: PageContext) -> dict[str, object]:
        if ctx.param("n") and not ctx.param("n").isdigit():
            raise PageError(422, f"n must be a number, got {ctx.param('n')!r}")
        return {"n": ctx.param("n"), "nan": float("nan"), "who": ctx.user.name}

    console.mount(fastapi)
    with TestClient(fastapi, base_url="http://testserver") as client:
        assert client.get("/ui/login").status_code == 200
        client.cookies.set(COOKIE, console.codec.issue("u-engineer")[1], path="/ui")
        r = client.get("/ui/secret.json")
        assert r.status_code == 403 and "needs read_decisions" in r.json()["detail"]
        assert client.get("/ui/secret").status_code == 403
        client.cookies.set(COOKIE, console.codec.issue("u-auditor")[1], path="/ui")
        assert client.get("/ui/secret.json?n=7").json() == {
            "n": "7",
            "nan": None,
            "who": "u-auditor",
        }
        r = client.get("/ui/secret?n=7", headers={"accept": "application/json"})
        assert r.json()["n"] == "7"
        r = client.get("/ui/secret.json?n=seven")
        assert r.status_code == 422 and "n must be a number" in r.json()["detail"]
        html = client.get("/ui/secret?n=seven")
        assert html.status_code == 422 and "n must be a number" in html.text
        assert client.get("/ui/static/console.css").status_code == 200
        assert client.get("/ui/static/../app.py").status_code == 404


def test_sessions_survive_another_worker_sharing_the_data_directory(tmp_path: Path) -> None:
    """Two services over one data directory (two workers): a login at one is valid at both."""
    settings = Settings(
        data_dir=tmp_path / "data", set_global_providers=False, telemetry_files=False
    )
    first = Runtime.start(settings)
    try:
        assert first.audit is not None
        _, key = first.audit.keyring.active("console-session")
    finally:
        first.shutdown()
    second = Runtime.start(settings)
    try:
        assert second.audit is not None
        assert second.audit.keyring.active("console-session")[1] == key
    finally:
        second.shutdown()


def test_a_form_is_shown_again_with_its_error_and_a_page_may_answer_a_download(app: App) -> None:
    from starlette.responses import Response

    assert app.runtime.compliance is not None
    console = Console(
        app.runtime, app.runtime.compliance.users, SessionCodec(b"k" * 32, lifetime_s=600)
    )
    fastapi = FastAPI()

    @console.page("login-like", title="Form", template="login.html")
    def form(ctx: PageContext) -> dict[str, object]:
        data = {"login_csrf": "t", "next": ""}
        raise PageError(422, "api_key is too short", data=data)

    @console.page("download", title="Download", nav=False)
    def download(ctx: PageContext) -> Response:
        return Response(
            b"a,b\n1,2\n",
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="x.csv"'},
        )

    console.mount(fastapi)
    with TestClient(fastapi, base_url="http://testserver") as client:
        client.cookies.set(COOKIE, console.codec.issue("u-auditor")[1], path="/ui")
        r = client.get("/ui/login-like")
        assert r.status_code == 422
        assert 'role="alert">api_key is too short' in r.text and 'name="api_key"' in r.text
        assert client.get("/ui/login-like.json").json()["detail"] == "api_key is too short"
        r = client.get("/ui/download")
        assert r.content == b"a,b\n1,2\n"
        assert r.headers["content-disposition"] == 'attachment; filename="x.csv"'
        assert r.headers["cache-control"] == "no-store"
