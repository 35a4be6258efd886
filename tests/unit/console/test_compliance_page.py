"""The console's compliance pages against a real runtime: real decisions through observe(), the
real audit log, lake query service, pseudonym table and raw-payload store; logged in per role
through the login form, every POST with the session's CSRF token."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from infertrail.audit.evidence import check_evidence
from infertrail.audit.keys import verifier_key_path
from infertrail.compliance.access import ROLES
from infertrail.config import Settings
from infertrail.console.pages.compliance import EXPORT_MAX_ROWS
from infertrail.events import ModelInfo
from infertrail.runtime.asgi import instrument
from infertrail.runtime.assembly import Runtime

MODEL = ModelInfo("credit-lr", "1.0.0", "ab" * 32)
SUBJECTS = ("alice-001", "bob-002", "carol-003", "dave-004")
INPUTS = {"income": 52_000, "age": 41, "region": "north"}
JUSTIFICATION = "DSAR-1142: subject access request"
PER_SUBJECT = 3


@dataclass
class World:
    app: FastAPI
    runtime: Runtime
    keys: dict[str, str]  # role -> API key
    requests: dict[str, list[str]]  # subject -> its request ids
    seqs: dict[str, list[int]]  # subject -> its decisions' seqs
    vkey: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("compliance-console")
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("INFERTRAIL_", "OTEL_")):
                mp.delenv(var)
        mp.chdir(root)
        settings = Settings(
            data_dir=root / "data",
            set_global_providers=False,
            telemetry_files=False,
            raw_payloads_enabled=True,
        )
        app = FastAPI()
        runtime = instrument(app, settings, models=[MODEL], console=True)
        assert runtime.compliance is not None and runtime.audit is not None
        users = runtime.compliance.users
        keys: dict[str, str] = {role: users.add(f"staff-{role}", role)[1] for role in ROLES}
        requests: dict[str, list[str]] = {s: [] for s in SUBJECTS}
        seqs: dict[str, list[int]] = {s: [] for s in SUBJECTS}
        for i in range(PER_SUBJECT):
            for k, subject in enumerate(SUBJECTS):
                rid = f"req-{subject}-{i}"
                with runtime.observe(
                    MODEL, {**INPUTS, "n": i}, subject=subject, request_id=rid
                ) as ev:
                    ev.decision = ("approve", "decline")[(i + k) % 2]
                    ev.score = 0.25 + 0.1 * k
                receipt = runtime.audit_receipt(ev, timeout_s=30)
                assert receipt is not None
                requests[subject].append(rid)
                seqs[subject].append(receipt.seq)
        payloads = runtime.audit.privacy.payloads
        assert payloads is not None
        payloads.flush(10)
        vkey = verifier_key_path(settings.signing_key_file).read_text().strip()
        with TestClient(app, base_url="http://testserver"):  # runs the lifespan once
            yield World(app, runtime, keys, requests, seqs, vkey)


def login(world: World, role: str) -> TestClient:
    client = TestClient(world.app, base_url="http://testserver")
    page = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/ui/login",
        data={"api_key": world.keys[role], "login_csrf": token.group(1), "next": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client


def csrf(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match is not None
    return match.group(1)


def pseudonym(world: World, subject: str) -> str:
    assert world.runtime.audit is not None
    p = world.runtime.audit.privacy.pseudonyms.lookup(subject)
    assert p is not None
    return p


def window() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}


def access_records(world: World, since: int) -> list[dict[str, Any]]:
    """The access_query records appended to the log from seq ``since`` on."""
    assert world.runtime.audit is not None
    log = world.runtime.audit.log
    log.flush()
    out = []
    for _, raw in log.read(since, log.size):
        record = json.loads(raw)
        if record["event_type"] == "access_query":
            out.append(record)
    return out


def log_size(world: World) -> int:
    assert world.runtime.audit is not None
    world.runtime.audit.log.flush()
    return world.runtime.audit.log.size


@pytest.fixture(scope="module")
def auditor(world: World) -> TestClient:
    return login(world, "auditor")


@pytest.fixture(scope="module")
def compliance(world: World) -> TestClient:
    return login(world, "compliance")


@pytest.fixture(scope="module")
def admin(world: World) -> TestClient:
    return login(world, "admin")


# -- roles -----------------------------------------------------------------------------------


def test_an_engineer_sees_no_compliance_page_and_no_nav_entry(world: World) -> None:
    engineer = login(world, "engineer")
    for path in (
        "/ui/compliance",
        "/ui/compliance.json",
        "/ui/compliance/export.json?from=2026-01-01&to=2026-02-01",
        "/ui/compliance/trail",
        "/ui/compliance/erase",
        "/ui/compliance/break-glass",
    ):
        r = engineer.get(path)
        assert r.status_code == 403, path
    assert "read_decisions" in engineer.get("/ui/compliance.json").json()["detail"]
    assert 'href="/ui/compliance"' not in engineer.get("/ui/overview").text


def test_an_auditor_queries_by_pseudonym_with_every_proof_verified(
    world: World, auditor: TestClient
) -> None:
    p = pseudonym(world, "alice-001")
    before = log_size(world)
    page = auditor.get("/ui/compliance.json", params={**window(), "pseudonym": p}).json()
    result = page["result"]
    assert [r["seq"] for r in result["rows"]] == world.seqs["alice-001"]
    assert {r["subject"] for r in result["rows"]} == {p}
    assert result["verified"] == PER_SUBJECT
    assert all(
        r["proof_check"] == {"ok": True, "reason": "record is included in the signed checkpoint"}
        for r in result["rows"]
    )
    assert page["can"] == {"resolve_subject": False, "erase": False, "break_glass": False}
    # The rows are evidence an outsider can check with the public key alone.
    for row in result["rows"]:
        evidence = {
            "format": "infertrail-proof/1",
            "origin": result["origin"],
            "seq": row["seq"],
            "record": row["record"],
            "leaf_hash": row["leaf_hash"],
            "tree_size": result["tree_size"],
            "inclusion_proof": row["inclusion_proof"],
            "checkpoint": result["checkpoint"],
        }
        assert check_evidence(evidence, world.vkey).ok
    (record,) = access_records(world, before)
    assert record["seq"] == result["access_seq"]
    assert record["actor"] == {"id": "staff-auditor", "role": "auditor", "channel": "console"}
    assert record["subject"] == p
    assert record["access_query"]["operation"] == "query"
    assert record["access_query"]["result_count"] == PER_SUBJECT


def test_the_html_query_page_shows_rows_proofs_and_export_link(
    world: World, auditor: TestClient
) -> None:
    p = pseudonym(world, "bob-002")
    r = auditor.get("/ui/compliance", params={**window(), "pseudonym": p})
    assert r.status_code == 200
    html = r.text
    assert html.count("✓ verified") == PER_SUBJECT
    assert 'download="audit-export-' in html and "/ui/compliance/export.json?" in html
    assert 'name="subject_id"' not in html  # an auditor may not resolve subjects
    assert "Erase a subject" not in html and "Break-glass" not in html
    for rid, seq in zip(world.requests["bob-002"], world.seqs["bob-002"], strict=True):
        assert rid in html
        assert f'href="/ui/explorer?seq={seq}"' in html  # the record's view, proof and all
    # The bare page runs no query and so writes no access record.
    before = log_size(world)
    bare = auditor.get("/ui/compliance")
    assert bare.status_code == 200 and "Results" not in bare.text
    assert access_records(world, before) == []


def test_pagination_follows_the_cursor(world: World, auditor: TestClient) -> None:
    params = {**window(), "model_name": MODEL.name, "event_type": "inference", "limit": "5"}
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = auditor.get("/ui/compliance.json", params={**params, "cursor": cursor or ""})
        result = page.json()["result"]
        seen += [r["seq"] for r in result["rows"]]
        cursor = result["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(s for seqs in world.seqs.values() for s in seqs)


def test_an_auditor_may_not_query_by_subject_id_and_the_refusal_is_recorded(
    world: World, auditor: TestClient
) -> None:
    before = log_size(world)
    r = auditor.get(
        "/ui/compliance.json",
        params={**window(), "subject_id": "alice-001", "justification": JUSTIFICATION},
    )
    assert r.status_code == 403
    assert "resolve_subject" in r.json()["detail"]
    assert "alice-001" not in r.text
    (record,) = access_records(world, before)
    assert record["access_query"]["outcome"] == "denied"
    assert record["subject"] == pseudonym(world, "alice-001")  # who tried to look at whom


def test_compliance_queries_by_subject_id_with_a_justification(
    world: World, compliance: TestClient
) -> None:
    params = {**window(), "subject_id": "carol-003"}
    r = compliance.get("/ui/compliance.json", params=params)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("justification: is required")
    before = log_size(world)
    page = compliance.get(
        "/ui/compliance.json", params={**params, "justification": JUSTIFICATION}
    ).json()
    result = page["result"]
    assert result["subject"]["status"] == "resolved"
    assert [r["seq"] for r in result["rows"]] == world.seqs["carol-003"]
    (record,) = access_records(world, before)
    assert record["access_query"]["justification"] == JUSTIFICATION
    assert record["access_query"]["subject_lookup"] == "resolved"
    assert "carol-003" not in json.dumps(record)


# -- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"to": "2026-02-01"}, 422, "from: is required"),
        (
            {"from": "2026-02-01", "to": "2026-01-01"},
            422,
            "to: 2026-01-01T00:00:00.000000Z is not after from",
        ),
        ({"from": "yesterday", "to": "2026-01-01"}, 422, "from: 'yesterday' is not a date"),
        (
            {"from": "2025-01-01", "to": "2026-06-01"},
            422,
            "to: the window is 516 days long; the limit is 366 days",
        ),
        ({**window(), "pseudonym": "alice-001"}, 422, "pseudonym:"),
        ({**window(), "event_type": "gossip"}, 422, "event_type: 'gossip' is unknown"),
        ({**window(), "limit": "0"}, 422, "limit: must be a whole number from 1 to 1000"),
        ({**window(), "limit": "ten"}, 422, "limit: must be a whole number"),
        ({**window(), "cursor": "bogus"}, 422, "cursor:"),
        ({**window(), "decision": "a\x1bb"}, 422, "decision:"),
    ],
)
def test_bad_query_parameters_are_answered_422_naming_the_field(
    auditor: TestClient, params: dict[str, str], status: int, message: str
) -> None:
    r = auditor.get("/ui/compliance.json", params=params)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    html = auditor.get("/ui/compliance", params=params)
    assert html.status_code == status
    assert 'role="alert"' in html.text


def test_a_too_long_subject_id_is_refused_without_quoting_it(compliance: TestClient) -> None:
    subject = "x" * 300
    r = compliance.get(
        "/ui/compliance.json",
        params={**window(), "subject_id": subject, "justification": JUSTIFICATION},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "subject_id: must be 1 to 256 characters"


# -- export ----------------------------------------------------------------------------------


def test_the_export_download_is_the_evidence_document_and_verifies_offline(
    world: World, auditor: TestClient
) -> None:
    page = auditor.get("/ui/compliance", params={**window(), "model_name": MODEL.name}).text
    link = re.search(r'href="(/ui/compliance/export\.json\?[^"]+)" download="([^"]+)"', page)
    assert link is not None
    href = link.group(1).replace("&amp;", "&")
    assert re.fullmatch(r"audit-export-\d{8}-\d{8}\.json", link.group(2))
    before = log_size(world)
    r = auditor.get(href)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["count"] == len(doc["rows"]) == PER_SUBJECT * len(SUBJECTS)
    assert doc["filters"]["model_name"] == MODEL.name
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
        result = check_evidence(evidence, world.vkey)
        assert result.ok, result.reason
    (record,) = access_records(world, before)
    assert record["seq"] == doc["access_seq"]
    assert record["access_query"]["operation"] == "export"
    assert record["access_query"]["result_count"] == doc["count"]
    html = auditor.get(href.replace("export.json", "export"))
    assert html.status_code == 200
    assert re.search(r"This export is audit\s+record \d+", html.text)
    assert html.text.count('<tr><td class="n">') == doc["count"]


def test_an_export_refuses_a_cursor_and_a_missing_window(auditor: TestClient) -> None:
    r = auditor.get("/ui/compliance/export.json", params={**window(), "cursor": "x"})
    assert r.status_code == 422 and r.json()["detail"].startswith("cursor:")
    r = auditor.get("/ui/compliance/export.json")
    assert r.status_code == 422 and r.json()["detail"].startswith("from: is required")
    assert EXPORT_MAX_ROWS >= 1000


# -- erasure ---------------------------------------------------------------------------------


def test_an_auditor_may_not_erase(world: World, auditor: TestClient) -> None:
    token = csrf(auditor, "/ui/compliance")
    r = auditor.post(
        "/ui/compliance/erase",
        data={"csrf_token": token, "step": "confirm", "subject_id": "alice-001"},
    )
    assert r.status_code == 403


def test_erasure_takes_two_steps_and_shows_its_receipt(
    world: World, compliance: TestClient
) -> None:
    token = csrf(compliance, "/ui/compliance/erase")
    subject = "dave-004"
    p = pseudonym(world, subject)
    first = compliance.post(
        "/ui/compliance/erase",
        data={"csrf_token": token, "step": "confirm", "subject_id": subject},
    )
    assert first.status_code == 200
    assert f"You are about to erase subject <strong><code>{subject}</code>" in first.text
    assert 'name="confirm_subject_id"' in first.text
    assert world.runtime.audit is not None
    assert world.runtime.audit.privacy.pseudonyms.lookup(subject) == p  # nothing erased yet

    mismatch = compliance.post(
        "/ui/compliance/erase",
        data={
            "csrf_token": token,
            "step": "erase",
            "subject_id": subject,
            "confirm_subject_id": "dave-005",
            "justification": JUSTIFICATION,
        },
    )
    assert mismatch.status_code == 422
    assert "confirm_subject_id: does not match" in mismatch.text and "dave-005" not in mismatch.text
    # the confirmation form is shown again, to type the id once more
    assert 'name="confirm_subject_id"' in mismatch.text and 'name="csrf_token"' in mismatch.text
    short = compliance.post(
        "/ui/compliance/erase.json",
        data={
            "csrf_token": token,
            "step": "erase",
            "subject_id": subject,
            "confirm_subject_id": subject,
            "justification": "because",
        },
    )
    assert short.status_code == 422 and short.json()["detail"].startswith("justification:")
    assert world.runtime.audit.privacy.pseudonyms.lookup(subject) == p

    done = compliance.post(
        "/ui/compliance/erase.json",
        data={
            "csrf_token": token,
            "step": "erase",
            "subject_id": subject,
            "confirm_subject_id": subject,
            "justification": "GDPR Art. 17 request #77",
        },
    )
    assert done.status_code == 200, done.text
    receipt = done.json()["receipt"]
    assert receipt["mapping_rows"] == 1
    assert receipt["payloads"] == PER_SUBJECT
    assert receipt["actor"]["id"] == "staff-compliance"
    assert subject not in done.text
    assert world.runtime.audit.privacy.pseudonyms.lookup(subject) is None
    world.runtime.audit.log.flush()
    ((_, raw),) = world.runtime.audit.log.read(receipt["receipt_seq"], receipt["receipt_seq"] + 1)
    erasure = json.loads(raw)
    assert erasure["event_type"] == "erasure" and subject not in raw.decode()
    assert erasure["actor"] == {
        "id": "staff-compliance",
        "role": "compliance",
        "channel": "console",
    }

    # A query by the erased subject's id shows the erasure notice, and no decision.
    q = compliance.get(
        "/ui/compliance",
        params={**window(), "subject_id": subject, "justification": JUSTIFICATION},
    )
    assert q.status_code == 200
    assert "Erased subject" in q.text and f"audit record {receipt['receipt_seq']}" in q.text
    twin = compliance.get(
        "/ui/compliance.json",
        params={**window(), "subject_id": subject, "justification": JUSTIFICATION},
    ).json()["result"]
    assert twin["subject"]["status"] == "erased" and twin["rows"] == []
    # The trail lists the erasure.
    trail = compliance.get("/ui/compliance/trail.json", params={"kind": "erasure"}).json()
    assert [e["seq"] for e in trail["entries"]][-1] == receipt["receipt_seq"]
    assert trail["entries"][-1]["justification"] == "GDPR Art. 17 request #77"


def test_erasing_an_unknown_subject_is_404_and_bad_steps_are_refused(
    compliance: TestClient,
) -> None:
    token = csrf(compliance, "/ui/compliance/erase")
    base = {"csrf_token": token, "subject_id": "nobody-999"}
    r = compliance.post(
        "/ui/compliance/erase.json",
        data={
            **base,
            "step": "erase",
            "confirm_subject_id": "nobody-999",
            "justification": JUSTIFICATION,
        },
    )
    assert r.status_code == 404
    assert "no pseudonym was ever issued" in r.json()["detail"] and "nobody" not in r.text
    r = compliance.post("/ui/compliance/erase.json", data={**base, "step": "now"})
    assert r.status_code == 400 and r.json()["detail"].startswith("step:")
    r = compliance.post("/ui/compliance/erase.json", data={**base, "subject_id": ""})
    assert r.status_code == 422 and r.json()["detail"].startswith("subject_id:")
    r = compliance.post("/ui/compliance/erase.json", data={**base, "subject_id": "a\x00b"})
    assert r.status_code == 422 and "control characters" in r.json()["detail"]


def test_posts_without_the_csrf_token_are_refused(world: World, compliance: TestClient) -> None:
    data = {
        "step": "erase",
        "subject_id": "alice-001",
        "confirm_subject_id": "alice-001",
        "justification": JUSTIFICATION,
    }
    for token in (None, "forged"):
        form = data if token is None else {**data, "csrf_token": token}
        r = compliance.post("/ui/compliance/erase", data=form)
        assert r.status_code == 403
        assert "the form expired" in r.text
    token = csrf(compliance, "/ui/compliance/erase")
    cross = compliance.post(
        "/ui/compliance/erase",
        data={**data, "csrf_token": token},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert world.runtime.audit is not None
    assert world.runtime.audit.privacy.pseudonyms.lookup("alice-001") is not None


# -- break-glass -----------------------------------------------------------------------------


def test_only_an_admin_may_break_glass(compliance: TestClient) -> None:
    assert compliance.get("/ui/compliance/break-glass").status_code == 403
    assert 'href="/ui/compliance/break-glass"' not in compliance.get("/ui/compliance").text


def test_break_glass_records_the_access_then_shows_the_payload_once(
    world: World, admin: TestClient
) -> None:
    token = csrf(admin, "/ui/compliance/break-glass")
    rid = world.requests["alice-001"][1]
    before = log_size(world)
    r = admin.post(
        "/ui/compliance/break-glass",
        data={"csrf_token": token, "request_id": rid, "justification": "INC-2291 fraud review"},
    )
    assert r.status_code == 200, r.text
    shown = unescape(r.text)
    assert '"income": 52000' in shown and '"n": 1' in shown
    assert world.runtime.audit is not None
    world.runtime.audit.log.flush()
    records = [json.loads(raw) for _, raw in world.runtime.audit.log.read(before, log_size(world))]
    (bg,) = [rec for rec in records if rec["event_type"] == "break_glass"]
    assert bg["request_id"] == rid
    assert bg["actor"] == {"id": "staff-admin", "role": "admin", "channel": "console"}
    assert bg["break_glass"]["justification"] == "INC-2291 fraud review"
    assert f"audit record {bg['seq']}" in r.text
    # Shown once: the page's GET has no payload, only the form.
    assert "52000" not in admin.get("/ui/compliance/break-glass").text
    trail = admin.get("/ui/compliance/trail.json", params={"kind": "break_glass"}).json()
    assert trail["entries"][-1]["seq"] == bg["seq"]
    assert trail["entries"][-1]["actor"] == "staff-admin"


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        (
            {"request_id": "req-alice-001-0", "justification": "short"},
            422,
            "justification: must be 10 to 1000 characters (got 5)",
        ),
        (
            {"request_id": "bad id!", "justification": JUSTIFICATION},
            422,
            "request_id: must be 1-128 characters",
        ),
        ({"request_id": "", "justification": JUSTIFICATION}, 422, "request_id:"),
        (
            {"request_id": "req-never-seen", "justification": JUSTIFICATION},
            404,
            "no raw payload for request 'req-never-seen'",
        ),
    ],
)
def test_break_glass_bad_inputs(
    world: World, admin: TestClient, form: dict[str, str], status: int, message: str
) -> None:
    token = csrf(admin, "/ui/compliance/break-glass")
    before = log_size(world)
    r = admin.post("/ui/compliance/break-glass.json", data={**form, "csrf_token": token})
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(message) or message in r.json()["detail"]
    assert log_size(world) == before  # nothing decrypted, nothing recorded


# -- the self-audit trail --------------------------------------------------------------------


def test_the_trail_lists_who_looked_at_whom(world: World, auditor: TestClient) -> None:
    p = pseudonym(world, "bob-002")
    params = {**window(), "pseudonym": p, "event_type": "inference"}
    looked = auditor.get("/ui/compliance.json", params=params).json()
    time.sleep(0.01)
    trail = auditor.get("/ui/compliance/trail.json", params={"pseudonym": p}).json()
    mine = [e for e in trail["entries"] if e["seq"] == looked["result"]["access_seq"]]
    assert mine, trail["entries"]
    (entry,) = mine
    assert entry["actor"] == "staff-auditor" and entry["role"] == "auditor"
    assert entry["channel"] == "console" and entry["operation"] == "query"
    assert entry["subject"] == p and entry["result_count"] == PER_SUBJECT
    html = auditor.get("/ui/compliance/trail", params={"pseudonym": p})
    assert html.status_code == 200 and "staff-auditor (auditor, console)" in html.text
    r = auditor.get("/ui/compliance/trail.json", params={"kind": "gossip"})
    assert r.status_code == 422 and r.json()["detail"].startswith("kind: must be one of")


def test_every_query_leaves_exactly_one_access_record(world: World, admin: TestClient) -> None:
    before = log_size(world)
    calls = [
        ("/ui/compliance.json", {**window()}),
        (
            "/ui/compliance.json",
            {**window(), "subject_id": "bob-002", "justification": JUSTIFICATION},
        ),
        ("/ui/compliance/export.json", {**window(), "decision": "approve"}),
        ("/ui/compliance/trail.json", {"kind": "access_query"}),
    ]
    for path, params in calls:
        assert admin.get(path, params=params).status_code == 200
    records = access_records(world, before)
    assert [r["access_query"]["operation"] for r in records] == [
        "query",
        "query",
        "export",
        "query",
    ]
    assert all(r["actor"]["id"] == "staff-admin" for r in records)
    assert all("bob-002" not in json.dumps(r) for r in records)


def test_pages_need_a_session(world: World) -> None:
    anonymous = TestClient(world.app, base_url="http://testserver")
    r = anonymous.get("/ui/compliance", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
    assert anonymous.get("/ui/compliance/export.json").status_code == 401


def test_no_subject_id_reaches_the_service_log(
    world: World, compliance: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    compliance.get(
        "/ui/compliance", params={**window(), "subject_id": "carol-003", "justification": "x"}
    )
    compliance.get(
        "/ui/compliance",
        params={**window(), "subject_id": "carol-003", "justification": JUSTIFICATION},
    )
    service_lines = [r.getMessage() for r in caplog.records if r.name != "httpx"]
    assert service_lines and not any("carol-003" in line for line in service_lines)
