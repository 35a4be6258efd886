"""Fixtures of the console's browser tests: the demo service on loopback with real traffic,
one user per role, and Debian's Chromium driven by Playwright.

``scripts/browser-tools.sh`` installs Chromium (/usr/bin/chromium) and axe-core
(.tools/axe); without them these tests FAIL with the command to run, never skip, so a broken
install cannot pass CI unnoticed. The service is the one ``infertrail serve`` runs, in-process
on a real socket (tests/integration/conftest.py), fed by the traffic simulator over HTTP: a few
hundred sentiment and credit requests, the credit ones with applicant ids (audit subjects).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from infertrail.demo.simulate import ENDPOINTS, bodies, simulate_traffic
from tests.integration.conftest import (
    RunningService,
    isolated_environment,
    settings_for,
    start_service,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE_JS = REPO_ROOT / ".tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ROLES = ("engineer", "auditor", "compliance", "admin")
#: Subjects (credit applicant ids) the tests send requests for, by purpose, so a test that
#: erases one never changes what another test queries.
QUERY_SUBJECT = "browser-query-applicant"
ERASE_SUBJECT = "browser-erase-applicant"


@dataclass
class Console:
    """The running service, its users' API keys, and requests whose ids the tests follow."""

    service: RunningService
    keys: dict[str, str]
    #: request ids of credit decisions, by subject
    request_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def url(self, path: str) -> str:
        return f"{self.service.base_url}{path}"


def _send_decisions(base_url: str, subject: str, n: int) -> list[str]:
    """Score ``n`` applications of ``subject``; the X-Request-ID of each answer."""
    ids: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for body in bodies("credit", "clean", 1, n, seed=7):  # rows of the demo data set
            r = client.post(ENDPOINTS["credit"], json={**body, "applicant_id": subject})
            assert r.status_code == 200, f"credit scoring failed: {r.status_code} {r.text}"
            ids.append(r.headers["x-request-id"])
    return ids


@pytest.fixture(scope="package")
def console_service(
    tmp_path_factory: pytest.TempPathFactory, trained_models: Path
) -> Iterator[Console]:
    """The demo service with its console, real traffic and one user per role."""
    scratch = tmp_path_factory.mktemp("browser")
    with isolated_environment(scratch):
        settings = settings_for(
            scratch / "data",
            set_global_providers=False,
            metric_export_interval_ms=60_000,
            drift_window_size=100,  # a few drift windows close with the traffic below
        )
        service = start_service(settings, trained_models)
        try:
            compliance = service.services.runtime.compliance
            assert compliance is not None, "the demo service runs without compliance access"
            keys = {role: compliance.users.add(f"browser-{role}", role)[1] for role in ROLES}
            for model in ("sentiment", "credit"):
                result = simulate_traffic(
                    service.base_url, model=model, scenario="clean", requests=250, seed=3
                )
                assert result.ok == 250, f"{model} traffic failed: {result.statuses}"
            console = Console(service, keys)
            for subject in (QUERY_SUBJECT, ERASE_SUBJECT):
                console.request_ids[subject] = _send_decisions(service.base_url, subject, 3)
            yield console
        finally:
            service.stop()


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main
# thread while it lives, so every later test calling asyncio.run() would fail, and a fork
# (the audit log's fork tests) would crash the child. Both end with this package's tests.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright (no `playwright install`)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser-tools.sh", pytrace=False)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed by scripts/browser-tools.sh."""
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS} is missing: run scripts/browser-tools.sh", pytrace=False)
    return AXE_JS.read_text()


_FAILED_LOAD = "Failed to load resource: the server responded with a status of"


@dataclass
class BrowserErrors:
    """What the pages of a context reported as broken: console errors and uncaught errors."""

    messages: list[str] = field(default_factory=list)
    #: HTTP statuses a test asked for: Chromium logs a console error for every document
    #: answered with an error status, which is then the page working as intended.
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, status: int) -> None:
        """Allow Chromium's console error for a page answered ``status`` (a test's 403)."""
        self.expected_statuses.add(status)

    def watch(self, page: Page) -> None:
        def on_console(msg: ConsoleMessage) -> None:
            if msg.type != "error":
                return
            for status in self.expected_statuses:
                if msg.text.startswith(f"{_FAILED_LOAD} {status} "):
                    return
            source = msg.location.get("url") or page.url
            self.messages.append(f"console error on {page.url} (from {source}): {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.messages.append(f"page error on {page.url}: {exc}"))


@pytest.fixture
def browser_errors() -> BrowserErrors:
    """Errors of the test's pages; asserted empty by the test (see :func:`open_as`)."""
    return BrowserErrors()


OpenAs = Callable[..., Page]


@pytest.fixture
def open_as(
    browser: Browser, console_service: Console, browser_errors: BrowserErrors
) -> Iterator[OpenAs]:
    """``open_as(role, javascript=True)``: a fresh browser context logged in as ``role`` (through
    the login form), on the overview. Every context is closed after the test, and the test
    fails if any page logged a console error or threw."""
    contexts: list[BrowserContext] = []

    def open_page(role: str | None, *, javascript: bool = True) -> Page:
        context = browser.new_context(
            base_url=console_service.base_url,
            viewport={"width": 1280, "height": 800},
            java_script_enabled=javascript,
            accept_downloads=True,
        )
        contexts.append(context)
        page = context.new_page()
        browser_errors.watch(page)
        page.goto("/ui/login")
        if role is not None:
            log_in(page, console_service.keys[role])
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not browser_errors.messages, "\n".join(browser_errors.messages)


def log_in(page: Page, api_key: str) -> None:
    """Fill the login form (on the page already) and wait for the console to answer; fail
    with the login page's own message if it refused."""
    page.get_by_label("API key").fill(api_key)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Log in").click()
    response = navigation.value
    if "/ui/login" in page.url:
        status = response.status if response is not None else "no answer"
        alert = page.get_by_role("alert")
        why = alert.inner_text() if alert.count() else page.inner_text("main")
        pytest.fail(f"the console refused the login ({status}): {why}", pytrace=False)


def wait_until(probe: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``probe`` until true; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}", pytrace=False)
        time.sleep(0.2)
