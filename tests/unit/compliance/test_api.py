"""The /v1/audit HTTP API over a real log + lake: each 401/403/404/422/429 case, happy paths."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from infertrail.audit.evidence import PROOF_FORMAT, check_evidence
from infertrail.audit.ledger import LogFailedError
from infertrail.compliance.access import RateLimiter
from infertrail.compliance.api import METRIC_ACCESS_DENIED, include_compliance_api
from infertrail.compliance.filters import FILTER_TEXT_PATTERN, PSEUDONYM_PATTERN

from .conftest import World

JUSTIFY = "DSAR-1142: subject asked for their decisions"
WINDOW = {"from": "2026-07-01", "to": "2026-07-04"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Api:
    client: TestClient
    world: World
    metrics: InMemoryMetricReader
    clock: Clock

    def get(self, path: str, role: str | None = None, **params: Any) -> Any:
        headers = {} if role is None else {"Authorization": f"Bearer {self.world.keys[role]}"}
        return self.client.get(f"/v1/audit{path}", params=params, headers=headers)

    def denied(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        data = self.metrics.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == METRIC_ACCESS_DENIED:
                        for point in metric.data.data_points:
                            status = int(point.attributes["http.response.status_code"])
                            counts[status] = counts.get(status, 0) + point.value
        return counts


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    clock = Clock()
    app = FastAPI()
    limiter = RateLimiter(1.0, 1000, clock=clock)
    include_compliance_api(app, world.service, world.users, limiter=limiter, meter=meter)
    with TestClient(app) as client:
        yield Api(client, world, reader, clock)


def error_of(response: Any, status: int, kind: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind
    assert body["request_id"]
    return body["detail"]


# ---- 401 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "API key is required"),
        ({"Authorization": "Bearer nope"}, "malformed"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "API key is required"),
        ({"X-API-Key": "itk_" + "x" * 43}, "unknown API key"),
    ],
)
@pytest.mark.parametrize("path", ["/records", "/export", "/proof/1", "/checkpoint"])
def test_401_without_a_valid_key(
    api: Api, path: str, headers: dict[str, str], message: str
) -> None:
    response = api.client.get(f"/v1/audit{path}", params=WINDOW, headers=headers)
    assert message in error_of(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.denied() == {401: 1}


def test_401_after_revocation_and_x_api_key_header(api: Api) -> None:
    key = api.world.keys["auditor"]
    ok = api.client.get("/v1/audit/checkpoint", headers={"X-API-Key": key})
    assert ok.status_code == 200
    api.world.users.revoke("staff-auditor")
    response = api.client.get("/v1/audit/checkpoint", headers={"X-API-Key": key})
    assert "revoked" in error_of(response, 401, "unauthenticated")


def test_401_for_erasure(api: Api) -> None:
    response = api.client.post(
        "/v1/audit/erasure", json={"subject_id": "alice-001", "justification": JUSTIFY}
    )
    error_of(response, 401, "unauthenticated")


# ---- 403 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/records", "/export", "/proof/1", "/checkpoint"])
def test_403_engineers_see_no_decisions(api: Api, path: str) -> None:
    response = api.get(path, "engineer", **WINDOW)
    assert "engineer" in error_of(response, 403, "forbidden")
    assert api.denied() == {403: 1}


def test_403_auditors_cannot_resolve_subject_ids_and_it_is_audited(api: Api) -> None:
    before = api.world.log.size
    response = api.get(
        "/records", "auditor", subject_id="alice-001", justification=JUSTIFY, **WINDOW
    )
    assert "resolve_subject" in error_of(response, 403, "forbidden")
    record = json.loads(next(iter(api.world.log.read(before, before + 1)))[1])
    assert record["event_type"] == "access_query"
    assert record["access_query"]["outcome"] == "denied"
    assert record["actor"]["id"] == "staff-auditor"
    assert record["subject"] == api.world.template.pseudonyms["alice-001"]


def test_403_auditors_cannot_erase(api: Api) -> None:
    response = api.client.post(
        "/v1/audit/erasure",
        json={"subject_id": "alice-001", "justification": JUSTIFY},
        headers={"Authorization": f"Bearer {api.world.keys['auditor']}"},
    )
    error_of(response, 403, "forbidden")


# ---- 422 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "2026-07-01"}, "from"),
        ({"from": "2026-07-01"}, "to"),
        ({"from": "2026-07-04", "to": "2026-07-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-07-01"}, "to"),
        ({"from": "last week", "to": "2026-07-01"}, "from"),
        ({**WINDOW, "limit": "many"}, "limit"),
        ({**WINDOW, "limit": "0"}, "limit"),
        ({**WINDOW, "event_type": "everything"}, "event_type"),
        ({**WINDOW, "cursor": "bogus"}, "cursor"),
        ({**WINDOW, "subject_id": "alice-001"}, "justification"),
    ],
)
def test_422_names_the_bad_parameter(api: Api, params: dict[str, str], field: str) -> None:
    response = api.get("/records", "compliance", **params)
    [problem] = error_of(response, 422, "invalid_query")
    assert problem["field"] == field
    assert problem["message"]


def test_422_unbounded_window_names_the_limit(api: Api) -> None:
    response = api.get("/records", "auditor", **{"from": "2024-01-01", "to": "2026-01-01"})
    [problem] = error_of(response, 422, "invalid_query")
    assert "366 days" in problem["message"]


@pytest.mark.parametrize("path", ["/records", "/export"])
def test_422_without_a_window_names_both_bounds(api: Api, path: str) -> None:
    problems = error_of(api.get(path, "auditor"), 422, "invalid_query")
    assert [p["field"] for p in problems] == ["from", "to"]
    assert all(
        "is required" in p["message"] and "from=2026-07-01" in p["message"] for p in problems
    )


def test_openapi_marks_the_window_required_and_states_the_filter_formats(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in ("/v1/audit/records", "/v1/audit/export"):
        params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert params["from"]["required"] and params["to"]["required"]
        assert params["pseudonym"]["schema"]["pattern"] == PSEUDONYM_PATTERN
        assert params["decision"]["schema"]["pattern"] == FILTER_TEXT_PATTERN


def test_422_cursor_reused_with_other_filters(api: Api) -> None:
    first = api.get("/records", "auditor", limit="2", **WINDOW).json()
    response = api.get(
        "/records", "auditor", cursor=first["next_cursor"], decision="approve", **WINDOW
    )
    assert error_of(response, 422, "invalid_query")[0]["field"] == "cursor"


def test_422_export_format_and_proof_seq(api: Api) -> None:
    response = api.get("/export", "auditor", format="xml", **WINDOW)
    assert error_of(response, 422, "invalid_query")[0]["field"] == "format"
    response = api.get("/proof/-1", "auditor")
    assert error_of(response, 422, "invalid_query")[0]["field"] == "seq"


# ---- 429 -----------------------------------------------------------------------------------


def test_429_with_retry_after_per_key(world: World) -> None:
    clock = Clock()
    app = FastAPI()
    limiter = RateLimiter(0.5, 2, clock=clock)
    include_compliance_api(app, world.service, world.users, limiter=limiter)
    client = TestClient(app)
    auditor = {"Authorization": f"Bearer {world.keys['auditor']}"}
    for _ in range(2):
        assert client.get("/v1/audit/checkpoint", headers=auditor).status_code == 200
    response = client.get("/v1/audit/checkpoint", headers=auditor)
    assert "rate limit" in error_of(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "2"
    admin = {"Authorization": f"Bearer {world.keys['admin']}"}
    assert client.get("/v1/audit/checkpoint", headers=admin).status_code == 200
    clock.t += 2
    assert client.get("/v1/audit/checkpoint", headers=auditor).status_code == 200


# ---- 404 and happy paths -------------------------------------------------------------------


def test_404_for_a_seq_beyond_the_log(api: Api) -> None:
    error_of(api.get("/proof/999999", "auditor"), 404, "not_found")


def test_records_page_with_proofs_checkable_offline(api: Api) -> None:
    pseudonym = api.world.template.pseudonyms["bob-002"]
    response = api.get(
        "/records", "compliance", subject_id="bob-002", justification=JUSTIFY, **WINDOW
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["count"] == len(page["rows"]) > 0
    assert page["subject"]["status"] == "resolved"
    assert page["filters"]["pseudonym"] == pseudonym
    assert "bob-002" not in response.text
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
        assert check_evidence(evidence, api.world.verifier.verifier_key).ok


def test_pages_via_cursor(api: Api) -> None:
    seen, cursor = [], None
    while True:
        params = {**WINDOW, "limit": "9"} | ({"cursor": cursor} if cursor else {})
        page = api.get("/records", "auditor", **params).json()
        seen += [r["seq"] for r in page["rows"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    want = [r["seq"] for r in api.world.written if "2026-07-01" <= r["ts"][:10] < "2026-07-04"]
    assert seen == want


def test_proof_and_checkpoint(api: Api) -> None:
    evidence = api.get("/proof/5", "auditor")
    assert evidence.status_code == 200
    assert check_evidence(evidence.json(), api.world.verifier.verifier_key).ok
    assert int(evidence.headers["X-Audit-Access-Seq"]) >= len(api.world.written)
    cp = api.get("/checkpoint", "auditor").json()
    assert cp["tree_size"] == api.world.log.size
    assert cp["checkpoint"].startswith(cp["origin"] + "\n")


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_streams(api: Api, fmt: str) -> None:
    response = api.get("/export", "auditor", format=fmt, decision="decline", **WINDOW)
    assert response.status_code == 200, response.text
    want = [
        r["seq"]
        for r in api.world.written
        if "2026-07-01" <= r["ts"][:10] < "2026-07-04" and r["decision"] == "decline"
    ]
    assert int(response.headers["X-Audit-Count"]) == len(want)
    assert base64.b64decode(response.headers["X-Audit-Checkpoint"]).startswith(b"infertrail.test")
    assert "attachment" in response.headers["Content-Disposition"]
    if fmt == "json":
        got = [r["seq"] for r in response.json()["rows"]]
    else:
        assert response.headers["content-type"].startswith("text/csv")
        got = [int(r["seq"]) for r in csv.DictReader(io.StringIO(response.text))]
    assert got == want


def test_erasure_then_query_says_erased(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.world.keys['compliance']}"}
    response = api.client.post(
        "/v1/audit/erasure",
        json={"subject_id": "carol-003", "justification": JUSTIFY},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["actor"]["id"] == "staff-compliance" and receipt["mapping_rows"] == 1
    page = api.get(
        "/records", "compliance", subject_id="carol-003", justification=JUSTIFY, **WINDOW
    ).json()
    assert page["rows"] == [] and page["subject"]["status"] == "erased"
    assert page["subject"]["erasure"]["receipt_seq"] == receipt["receipt_seq"]
    missing = api.client.post(
        "/v1/audit/erasure",
        json={"subject_id": "nobody-1", "justification": JUSTIFY},
        headers=headers,
    )
    error_of(missing, 404, "not_found")
    short = api.client.post(
        "/v1/audit/erasure",
        json={"subject_id": "alice-001", "justification": "because"},
        headers=headers,
    )
    assert error_of(short, 422, "invalid_query")[0]["field"] == "justification"


def test_openapi_documents_the_endpoints(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert {"/v1/audit/records", "/v1/audit/export", "/v1/audit/proof/{seq}"} <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/v1/audit/records"]["get"]["parameters"]}
    assert {"from", "to", "subject_id", "pseudonym", "cursor", "justification"} <= params


def test_503_when_the_access_record_cannot_be_written(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(record: Any, timeout: float | None = None) -> Any:
        raise LogFailedError("disk full")

    monkeypatch.setattr(api.world.log, "append", refuse)
    response = api.get("/records", "auditor", **WINDOW)
    assert "disk full" in error_of(response, 503, "audit_unavailable")
    response = api.get("/export", "auditor", **WINDOW)
    assert "disk full" in error_of(response, 503, "audit_unavailable")
