"""Issue 4's acceptance, end to end: credit decisions over a simulated quarter, one subject's
Q3 decisions through the API and the CLI with offline-checked proofs, role denials, erasure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from infertrail import monitor as monitor_module
from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.evidence import PROOF_FORMAT, check_evidence
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.record import Actor
from infertrail.audit.verify import verify_log
from infertrail.cli import main
from infertrail.config import Settings
from infertrail.models.credit import as_application, load_dataset
from infertrail.privacy.errors import PrivacyError
from infertrail.server.app import DemoService, build_services, create_app
from tests.integration.conftest import LOOPBACK, free_port

pytestmark = pytest.mark.integration

SUBJECT = "applicant-0042"
OTHERS = ("applicant-0007", "applicant-0099")
# (subject, decision time): the subject has decisions before, inside and after Q3.
SCHEDULE = [
    (SUBJECT, "2026-06-20T10:00:00"),
    (OTHERS[0], "2026-07-02T09:00:00"),
    (SUBJECT, "2026-07-15T11:30:00"),
    (OTHERS[1], "2026-08-01T08:00:00"),
    (SUBJECT, "2026-08-28T16:45:00"),
    (SUBJECT, "2026-09-30T23:59:00"),
    (OTHERS[0], "2026-09-10T12:00:00"),
    (SUBJECT, "2026-10-01T00:00:01"),
]
Q3 = {"from": "2026-07-01", "to": "2026-10-01"}
JUSTIFICATION = "DSAR 2026-117: subject asked for all Q3 decisions"


class _Clock:
    """Stands in for the `time` module inside infertrail.monitor: a settable wall clock."""

    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def time_ns(self) -> int:
        return self.now_ns

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class Running:
    base: str
    services: DemoService
    settings: Settings
    keys: dict[str, str]
    decisions: dict[str, list[dict[str, Any]]]


@pytest.fixture
def running(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    settings = settings.model_copy(update={"raw_payloads_enabled": True})
    services = build_services(settings)
    assert services.runtime.compliance.users is not None and services.runtime.audit is not None
    keys = {role: services.runtime.compliance.users.add(f"{role}-1", role)[1] for role in
            ("engineer", "auditor", "compliance", "admin")}  # fmt: skip
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host=LOOPBACK, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    clock = _Clock()
    monkeypatch.setattr(monitor_module, "time", clock)
    rows = load_dataset().X
    decisions: dict[str, list[dict[str, Any]]] = {}
    base = f"http://{LOOPBACK}:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for i, (subject, at) in enumerate(SCHEDULE):
                clock.now_ns = int(datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp() * 1e9)
                body = {"applicant_id": subject, **as_application(rows[i])}
                r = client.post("/v1/credit/score", json=body)
                assert r.status_code == 200, r.text
                decisions.setdefault(subject, []).append({**r.json(), "at": at})
                if i == 4:
                    # some decisions in the lake, some in the WAL
                    services.runtime.audit.sealer.seal()
        yield Running(base, services, settings, keys, decisions)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        services.close()


def get(r: Running, role: str | None, path: str, **params: str) -> httpx.Response:
    headers = {} if role is None else {"Authorization": f"Bearer {r.keys[role]}"}
    return httpx.get(f"{r.base}/v1/audit{path}", params=params, headers=headers, timeout=30)


def check_rows_offline(page: dict[str, Any], vkey: str) -> None:
    for row in page["rows"]:
        evidence = {
            "format": PROOF_FORMAT,
            "origin": page["origin"],
            "seq": row["seq"],
            "record": row["record"],
            "leaf_hash": row["leaf_hash"],
            "tree_size": page["tree_size"],
            "inclusion_proof": row["inclusion_proof"],
            "checkpoint": page["checkpoint"],
        }
        result = check_evidence(evidence, vkey)
        assert result.ok, result


def test_a_subjects_quarter_queried_proved_denied_and_erased(running: Running) -> None:
    r = running
    vkey = verifier_key_path(r.settings.signing_key_file).read_text().strip()
    in_q3 = [d for d in r.decisions[SUBJECT] if "2026-07-01" <= d["at"] < "2026-10-01"]
    assert len(in_q3) == 3

    # -- the compliance role asks for the subject's Q3 decisions, with proofs --------------
    resp = get(r, "compliance", "/records", subject_id=SUBJECT, justification=JUSTIFICATION,
               event_type="inference", **Q3)  # fmt: skip
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["subject"]["status"] == "resolved"
    assert sorted(row["seq"] for row in page["rows"]) == sorted(d["audit_seq"] for d in in_q3)
    assert SUBJECT not in resp.text  # the answer names the pseudonym only
    records = [json.loads(row["record"]) for row in page["rows"]]
    assert {rec["subject"] for rec in records} == {page["filters"]["pseudonym"]}
    assert {rec["request_id"] for rec in records} == {d["request_id"] for d in in_q3}
    check_rows_offline(page, vkey)

    # -- its CLI twin, while the server holds the log: the CLI goes through the API -------
    cli = CliRunner().invoke(
        main,
        ["--data-dir", str(r.settings.data_dir), "audit", "query", "--subject", SUBJECT,
         "--from", Q3["from"], "--to", Q3["to"], "--event-type", "inference",
         "--justification", JUSTIFICATION, "--format", "json", "--url", r.base],
        env={"INFERTRAIL_API_KEY": r.keys["compliance"]},
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    cli_page = json.loads(cli.output)
    assert [row["seq"] for row in cli_page["rows"]] == [row["seq"] for row in page["rows"]]
    check_rows_offline(cli_page, vkey)

    # -- denials ------------------------------------------------------------------------------
    assert get(r, None, "/records", **Q3).status_code == 401
    assert get(r, "engineer", "/records", **Q3).status_code == 403
    denied = get(r, "auditor", "/records", subject_id=SUBJECT, justification=JUSTIFICATION, **Q3)
    assert denied.status_code == 403
    assert (
        get(
            r, "compliance", "/records", subject_id=SUBJECT, justification=JUSTIFICATION
        ).status_code
        == 422
    )  # fmt: skip  (no window)
    # and who looked is answerable by the same interface
    looked = get(r, "auditor", "/records", event_type="access_query",
                 pseudonym=page["filters"]["pseudonym"],
                 **{"from": "2026-01-01", "to": "2027-01-01"})  # fmt: skip
    assert looked.status_code == 200, looked.text
    assert looked.json()["count"] >= 2  # the compliance query, its CLI twin, the 403 attempt

    # -- erasure -----------------------------------------------------------------------------
    erased = httpx.post(
        f"{r.base}/v1/audit/erasure",
        json={"subject_id": SUBJECT, "justification": "GDPR Art. 17 request 2026-118"},
        headers={"Authorization": f"Bearer {r.keys['compliance']}"},
        timeout=30,
    )
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    # One data key per month the subject has payloads in (June to October: docs/retention.md).
    assert receipt["mapping_rows"] == 1 and receipt["data_keys"] == 5
    # 1. queries for the subject return nothing, and say an erasure happened, when, by whom
    after = get(r, "compliance", "/records", subject_id=SUBJECT, justification=JUSTIFICATION, **Q3)
    assert after.status_code == 200, after.text
    assert after.json()["rows"] == []
    status = after.json()["subject"]
    assert status["status"] == "erased"
    assert status["erasure"]["erased_at"] == receipt["erased_at"]
    assert status["erasure"]["by"]["id"] == "compliance-1"
    assert status["erasure"]["receipt_seq"] == receipt["receipt_seq"]
    # 2. the raw payloads cannot be decrypted any more, even by break-glass
    assert r.services.runtime.audit is not None
    payloads = r.services.runtime.audit.privacy.payloads
    assert payloads is not None
    with pytest.raises(PrivacyError):
        payloads.read(in_q3[0]["request_id"], Actor(id="admin-1", role="admin"),
                      "incident 77: need the raw application")  # fmt: skip
    # 3. no silent new pseudonym: the subject's next application is refused
    rows = load_dataset().X
    again = httpx.post(
        f"{r.base}/v1/credit/score",
        json={"applicant_id": SUBJECT, **as_application(rows[0])},
        timeout=30,
    )
    assert again.status_code == 409
    assert again.json()["error"] == "subject_erased"
    # 4. the full log still verifies (after the final seal and checkpoint)
    r.services.close()
    report = verify_log(r.settings.audit_log_dir, r.settings.lake_url, NoteVerifier.from_key(vkey))
    assert report.ok, report
    assert report.records >= len(SCHEDULE) + 1  # decisions + accesses + the erasure receipt
