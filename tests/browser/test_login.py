"""Logging in and out of the console in a real browser, per role, and what each role may not
see; cookies that are not a live session land on the login page."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from infertrail.console import SESSION_KEY_PURPOSE
from infertrail.console.sessions import COOKIE, SessionCodec
from tests.browser.conftest import ROLES, BrowserErrors, Console, OpenAs

if TYPE_CHECKING:
    from playwright._impl._api_structures import SetCookieParam  # the type of add_cookies

#: Pages every logged-in role sees in the navigation (docs/console.md).
TELEMETRY_PAGES = ("overview", "explorer", "drift", "slos", "auditlog")


def nav_links(page: Page) -> list[str]:
    """The hrefs of the navigation bar."""
    nav = page.get_by_role("navigation", name="Console pages")
    return [a.get_attribute("href") or "" for a in nav.get_by_role("link").all()]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_logs_in_and_lands_on_the_overview(open_as: OpenAs, role: str) -> None:
    page = open_as(role)
    expect(page).to_have_url(re.compile(r"/ui/overview$"))
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.locator("header .who")).to_have_text(f"browser-{role} ({role})")
    links = nav_links(page)
    for name in TELEMETRY_PAGES:
        assert f"/ui/{name}" in links, f"{role} misses {name} in the navigation: {links}"


def test_an_engineer_sees_no_decisions(open_as: OpenAs, browser_errors: BrowserErrors) -> None:
    browser_errors.expect_status(403)
    page = open_as("engineer")
    links = nav_links(page)
    assert "/ui/compliance" not in links, f"an engineer's navigation lists compliance: {links}"
    response = page.goto("/ui/compliance")
    assert response is not None and response.status == 403
    expect(page.locator("main")).to_contain_text(
        "your role (engineer) may not see this page: it needs read_decisions"
    )
    response = page.goto("/ui/compliance.json")
    assert response is not None and response.status == 403


@pytest.mark.parametrize("role", ("auditor", "compliance", "admin"))
def test_roles_with_decisions_have_the_compliance_page(open_as: OpenAs, role: str) -> None:
    page = open_as(role)
    assert "/ui/compliance" in nav_links(page)
    response = page.goto("/ui/compliance")
    assert response is not None and response.status == 200


def test_a_wrong_key_is_refused_without_saying_more(
    open_as: OpenAs, browser_errors: BrowserErrors
) -> None:
    browser_errors.expect_status(401)
    page = open_as(None)
    page.get_by_label("API key").fill("itk_" + "x" * 43)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("unknown or revoked API key")
    expect(page).to_have_url(re.compile(r"/ui/login$"))


def test_logout_ends_the_session(open_as: OpenAs) -> None:
    page = open_as("auditor")
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert COOKIE not in {c["name"] for c in page.context.cookies()}
    page.goto("/ui/overview")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/overview$"))
    # The old cookie, replayed to the worker that served the logout, is refused too.
    page.context.add_cookies(
        [{"name": COOKIE, "value": cookie["value"], "domain": cookie["domain"], "path": "/ui"}]
    )
    page.goto("/ui/overview")
    expect(page.get_by_label("API key")).to_be_visible()


def _cookie(console_service: Console, value: str) -> SetCookieParam:
    host = console_service.base_url.split("://", 1)[1].split(":")[0]
    return {"name": COOKIE, "value": value, "domain": host, "path": "/ui"}


def _codec(console_service: Console) -> SessionCodec:
    """A codec under the service's own session key (what a cookie of this service is)."""
    audit = console_service.service.services.runtime.audit
    assert audit is not None
    _, key = audit.keyring.active(SESSION_KEY_PURPOSE)
    return SessionCodec(key, lifetime_s=3600)


def test_an_expired_cookie_lands_on_the_login_page(
    open_as: OpenAs, console_service: Console
) -> None:
    page = open_as(None)
    # Issued two hours ago for an hour, under the service's real key: only its age is wrong.
    _, expired = _codec(console_service).issue("browser-admin", now=time.time() - 7200)
    page.context.add_cookies([_cookie(console_service, expired)])
    page.goto("/ui/overview")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/overview$"))
    expect(page.get_by_label("API key")).to_be_visible()


def test_a_forged_cookie_lands_on_the_login_page(open_as: OpenAs, console_service: Console) -> None:
    page = open_as(None)
    # A well-formed session for the admin, signed with a key that is not the service's.
    _, forged = SessionCodec(b"k" * 32, lifetime_s=3600).issue("browser-admin")
    for value in (forged, "not-a-session", forged.split(".")[0] + ".AAAA"):
        page.context.clear_cookies()
        page.context.add_cookies([_cookie(console_service, value)])
        page.goto("/ui/overview")
        expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/overview$"))


def test_only_an_admin_may_break_the_glass(open_as: OpenAs, browser_errors: BrowserErrors) -> None:
    browser_errors.expect_status(403)
    page = open_as("compliance")
    page.goto("/ui/compliance")
    expect(page.get_by_role("heading", name="Break-glass: read a raw payload")).to_have_count(0)
    response = page.goto("/ui/compliance/break-glass")
    assert response is not None and response.status == 403
    expect(page.locator("main")).to_contain_text("your role (compliance) may not see this page")
    page = open_as("admin")
    page.goto("/ui/compliance")
    page.get_by_role("link", name="Open the break-glass form").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Break-glass: read a raw payload")
    expect(page.get_by_label("Request id")).to_be_visible()
