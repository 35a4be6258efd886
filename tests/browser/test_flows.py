"""What the console is for, clicked through in a real browser: a request followed from the
overview to its verified proof, a compliance query whose evidence is downloaded and checked
offline, an erasure confirmed and its receipt shown."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from infertrail.audit.evidence import check_evidence
from infertrail.audit.keys import verifier_key_path
from tests.browser.conftest import ERASE_SUBJECT, QUERY_SUBJECT, BrowserErrors, Console, OpenAs

JUSTIFICATION = "browser test: data subject access request, ticket BT-1"


def _window() -> tuple[str, str]:
    """Today and tomorrow (UTC dates): a window holding every record of the session."""
    today = datetime.now(UTC).date()
    return today.isoformat(), (today + timedelta(days=1)).isoformat()


def _query_subject(page: Page, subject_id: str) -> None:
    """Run the compliance page's query for ``subject_id`` over today."""
    start, end = _window()
    query = page.get_by_role("region", name="Query decisions")
    query.get_by_label("From (inclusive)").fill(start)
    query.get_by_label("To (exclusive)").fill(end)
    query.get_by_label("Subject id").fill(subject_id)
    query.get_by_label("Justification").fill(JUSTIFICATION)
    query.get_by_role("button", name="Run query").click()


def _verifier_key(console_service: Console) -> str:
    settings = console_service.service.services.settings
    return verifier_key_path(settings.signing_key_file).read_text().strip()


def test_a_request_id_followed_from_the_overview_to_its_verified_proof(
    open_as: OpenAs, console_service: Console
) -> None:
    request_id = console_service.request_ids[QUERY_SUBJECT][0]
    page = open_as("auditor")
    # The overview's credit row links to that model's requests in the explorer.
    credit_row = page.get_by_role("row").filter(has_text="credit").first
    credit_row.get_by_role("link", name="requests").click()
    expect(page).to_have_url(re.compile(r"/ui/explorer\?model=credit"))
    # ... which lists its newest requests: open ours by its audit seq.
    newest = page.get_by_role("table").filter(has_text="open one to explore it")
    newest.get_by_role("row").filter(has_text=request_id).get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/ui/explorer\?seq=\d+$"))
    expect(page.locator("main")).to_contain_text(request_id)
    status = page.get_by_role("status").filter(has_text="Verified")
    expect(status).to_contain_text("✔ Verified: record is included in the signed checkpoint")
    # The record shown is the one the service answered for that request.
    record = page.get_by_role("table").filter(has_text="Fields of record")
    expect(record).to_contain_text(request_id)
    # The span tree of the same request came from the telemetry files.
    expect(page.get_by_role("heading", name="Span tree")).to_be_visible()


def test_an_engineer_follows_a_request_without_seeing_its_record(
    open_as: OpenAs, console_service: Console
) -> None:
    request_id = console_service.request_ids[QUERY_SUBJECT][1]
    page = open_as("engineer")
    page.goto(f"/ui/explorer?id={request_id}")
    expect(page.locator("main")).to_contain_text("they need the auditor role")
    expect(page.get_by_text("Verified")).to_have_count(0)
    expect(page.get_by_role("table").filter(has_text="Fields of record")).to_have_count(0)


def test_a_compliance_query_and_its_evidence_download(
    open_as: OpenAs, console_service: Console, tmp_path: Path
) -> None:
    page = open_as("compliance")
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Compliance"
    ).click()
    _query_subject(page, QUERY_SUBJECT)
    results = page.get_by_role("table").filter(has_text="Matching records")
    expected_ids = console_service.request_ids[QUERY_SUBJECT]
    for request_id in expected_ids:
        expect(results).to_contain_text(request_id)
    # The subject's decisions, and the access records of the queries about it: all proven.
    expect(results.get_by_text("✗ not verified")).to_have_count(0)
    expect(results.get_by_text("✓ verified")).to_have_count(results.locator("tbody tr").count())
    # The subject's real id is never shown back, only its pseudonym.
    expect(results).not_to_contain_text(QUERY_SUBJECT)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the evidence").click()
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.name.startswith("audit-export-") and saved.suffix == ".json"
    doc = json.loads(saved.read_text())
    assert doc["count"] == len(doc["rows"]) >= len(expected_ids)
    records = [json.loads(row["record"]) for row in doc["rows"]]
    decided = sorted(r["request_id"] for r in records if r["event_type"] == "inference")
    assert decided == sorted(expected_ids)
    vkey = _verifier_key(console_service)
    for row in doc["rows"]:
        evidence = {
            "format": "infertrail-proof/1",
            "origin": doc["origin"],
            "seq": row["seq"],
            "record": row["record"],
            "leaf_hash": row["leaf_hash"],
            "tree_size": doc["tree_size"],
            "inclusion_proof": row["inclusion_proof"],
            "checkpoint": doc["checkpoint"],
        }
        result = check_evidence(evidence, vkey)
        assert result.ok, f"record {row['seq']} of the download: {result.reason}"


def test_an_auditor_may_query_but_not_erase(open_as: OpenAs, browser_errors: BrowserErrors) -> None:
    browser_errors.expect_status(403)
    page = open_as("auditor")
    page.goto("/ui/compliance")
    expect(page.get_by_role("heading", name="Query decisions")).to_be_visible()
    expect(page.get_by_label("Subject id")).to_have_count(0)  # resolve_subject: compliance+
    expect(page.get_by_role("heading", name="Erase a subject")).to_have_count(0)
    response = page.goto("/ui/compliance/erase")
    assert response is not None and response.status == 403
    expect(page.locator("main")).to_contain_text("your role (auditor) may not see this page")


def test_an_erasure_is_confirmed_then_shows_its_receipt(
    open_as: OpenAs, console_service: Console
) -> None:
    page = open_as("compliance")
    page.goto("/ui/compliance")
    erase = page.locator("section").filter(has=page.get_by_role("heading", name="Erase a subject"))
    erase.get_by_label("Subject id").fill(ERASE_SUBJECT)
    erase.get_by_role("button", name="Continue to confirm").click()
    expect(page.get_by_role("heading", name="Confirm the erasure")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(f"erase subject {ERASE_SUBJECT}")
    page.get_by_label("Subject id, again").fill(ERASE_SUBJECT)
    page.get_by_label("Justification").fill("browser test: erasure request under GDPR Art. 17")
    page.get_by_role("button", name="Erase this subject").click()
    receipt = page.get_by_role("table").filter(has_text="The erasure, as recorded")
    expect(receipt).to_contain_text("browser-compliance (compliance")
    expect(receipt).to_contain_text("browser test: erasure request under GDPR Art. 17")
    seq_cell = receipt.get_by_role("row", name="Receipt (audit record seq)").get_by_role("cell")
    receipt_seq = int(seq_cell.inner_text())
    mapping = receipt.get_by_role("row", name="Pseudonym mapping rows deleted")
    expect(mapping.get_by_role("cell")).to_have_text("1")
    expect(page.locator("main")).not_to_contain_text(ERASE_SUBJECT)
    # The erased subject's query now shows the erasure notice with the same receipt.
    page.goto("/ui/compliance")
    _query_subject(page, ERASE_SUBJECT)
    notice = page.get_by_role("status").filter(has_text="Erased subject")
    expect(notice).to_contain_text(f"erasure receipt: audit record {receipt_seq}")
