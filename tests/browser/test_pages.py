"""Every console page in a real browser: no console errors, no serious or critical axe-core
violations, and the reading pages work with JavaScript off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import QUERY_SUBJECT, BrowserErrors, Console, OpenAs

#: axe-core impacts a page must not have (moderate and minor are reported, not failed).
FAILING_IMPACTS = ("serious", "critical")


#: Every page, at a URL where it shows its content (not only an empty form); filled in with
#: a request id of the session's traffic and a window of today.
PAGE_URLS = {
    "overview": "/ui/overview",
    "explorer": "/ui/explorer?id={request_id}",
    "drift": "/ui/drift?model=credit",
    "slos": "/ui/slos",
    "compliance": "/ui/compliance?{window}&model_name=credit",
    "compliance/export": "/ui/compliance/export?{window}&model_name=credit",
    "compliance/trail": "/ui/compliance/trail",
    "compliance/erase": "/ui/compliance/erase",
    "compliance/break-glass": "/ui/compliance/break-glass",
    "auditlog": "/ui/auditlog",
}


def page_url(console_service: Console, name: str) -> str:
    today = datetime.now(UTC).date()
    return PAGE_URLS[name].format(
        request_id=console_service.request_ids[QUERY_SUBJECT][0],
        window=f"from={today.isoformat()}&to={(today + timedelta(days=1)).isoformat()}",
    )


def axe_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now.

    The script is evaluated through the DevTools protocol, which the console's
    Content-Security-Policy (script-src 'self') does not govern: an injected <script> would be
    refused, as it should be.
    """
    page.evaluate(axe_source)
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(' '),
                                                              summary: n.failureSummary}))}))"""
    )
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        lines += [f"    {n['target']}: {n['summary']}" for n in v["nodes"]]
    return "\n".join(lines)


def check_page(page: Page, url: str, axe_source: str, *, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None, f"no answer for {url}"
    assert response.status == status, f"{url}: {response.status} {page.content()[:2000]}"
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    violations = axe_violations(page, axe_source)
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    assert not failing, f"axe-core on {url}:\n{describe(failing)}"


@pytest.mark.parametrize("name", PAGE_URLS)
def test_each_page_is_accessible_and_logs_no_error(
    open_as: OpenAs, console_service: Console, axe_source: str, name: str
) -> None:
    page = open_as("admin")
    check_page(page, page_url(console_service, name), axe_source)


def test_the_login_and_error_pages_are_accessible(
    open_as: OpenAs, axe_source: str, browser_errors: BrowserErrors
) -> None:
    browser_errors.expect_status(403)
    page = open_as(None)
    check_page(page, "/ui/login", axe_source)
    page = open_as("engineer")
    check_page(page, "/ui/compliance", axe_source, status=403)


def test_the_overview_and_the_explorer_read_without_javascript(
    open_as: OpenAs, console_service: Console
) -> None:
    page = open_as("auditor", javascript=False)  # logs in through the plain form
    expect(page).to_have_url(re.compile(r"/ui/overview$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_role("row").filter(has_text="credit").first).to_be_visible()
    # The explorer's search form is a plain GET form.
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Request explorer"
    ).click()
    request_id = console_service.request_ids[QUERY_SUBJECT][2]
    page.get_by_label("Request id, trace id or audit seq").fill(request_id)
    page.get_by_role("button", name="Explore").click()
    expect(page).to_have_url(re.compile(r"/ui/explorer\?id="))
    expect(page.get_by_role("status").filter(has_text="Verified")).to_contain_text(
        "✔ Verified: record is included in the signed checkpoint"
    )
