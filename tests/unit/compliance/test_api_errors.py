"""The compliance API's errors in an app shaped like the server's (request ids, its own routes
and handlers): every error kind, the handler's reach (compliance routes only), the fallback of
a bare router, and the OpenAPI documentation of the errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from infertrail.audit.ledger import LogFailedError
from infertrail.compliance.access import RateLimiter
from infertrail.compliance.api import (
    METRIC_ACCESS_DENIED,
    PREFIX,
    compliance_router,
    include_compliance_api,
)
from infertrail.compliance.engine import LakeIntegrityError
from infertrail.compliance.export import FORMATS
from infertrail.compliance.filters import MAX_PAGE_SIZE
from infertrail.privacy.errors import AccessRefusedError, PrivacyError
from infertrail.web.requestid import RequestIdMiddleware

from .conftest import World

JUSTIFY = "DSAR-1142: subject asked for their decisions"
WINDOW = {"from": "2026-07-01", "to": "2026-07-04"}
RID = "req-errors-1"
LOGGER = "infertrail.compliance"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Host:
    """The app: the compliance API next to routes and handlers of the app's own."""

    app: FastAPI
    client: TestClient
    world: World
    metrics: InMemoryMetricReader

    def get(self, path: str, role: str | None = None, **params: Any) -> Any:
        headers = {"X-Request-ID": RID}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.world.keys[role]}"
        return self.client.get(f"{PREFIX}{path}", params=params, headers=headers)

    def erase(self, body: Any, role: str | None = "compliance") -> Any:
        headers = {"X-Request-ID": RID}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.world.keys[role]}"
        if isinstance(body, str):
            headers["Content-Type"] = "application/json"
            return self.client.post(f"{PREFIX}/erasure", content=body, headers=headers)
        return self.client.post(f"{PREFIX}/erasure", json=body, headers=headers)

    def denied(self) -> dict[tuple[int, str], int]:
        return denials(self.metrics)


def denials(reader: InMemoryMetricReader) -> dict[tuple[int, str], int]:
    """The denial counter's points: (status, path) -> count."""
    counts: dict[tuple[int, str], int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != METRIC_ACCESS_DENIED:
                    continue
                for point in metric.data.data_points:
                    status = int(point.attributes["http.response.status_code"])
                    key = (status, str(point.attributes["http.route"]))
                    counts[key] = counts.get(key, 0) + point.value
    return counts


def host_app(world: World, limiter: RateLimiter, meter: Any) -> FastAPI:
    """An app like the server's: request ids, its own validation and privacy handlers, and
    routes of its own raising the errors the compliance API answers (one under its prefix)."""
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, on_invalid=lambda rid, msg, path: None)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_input", "detail": str(exc.errors())}, 422)

    @app.exception_handler(PrivacyError)
    async def privacy(request: Request, exc: PrivacyError) -> JSONResponse:
        return JSONResponse({"error": "host_privacy"}, 451)

    @app.get("/v1/other/timeout")
    def other_timeout() -> None:
        raise TimeoutError("the model server did not answer")

    @app.get(f"{PREFIX}/legacy")
    def legacy_timeout() -> None:
        raise TimeoutError("a route of the app's own, under the compliance prefix")

    @app.get("/v1/other/privacy")
    def other_privacy() -> None:
        raise PrivacyError("the app's own privacy rule")

    @app.get("/v1/other/items")
    def items(n: int) -> dict[str, int]:
        return {"n": n}

    include_compliance_api(app, world.service, world.users, limiter=limiter, meter=meter)
    return app


@pytest.fixture
def host(world: World) -> Iterator[Host]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    app = host_app(world, RateLimiter(1.0, 1000), meter)
    with TestClient(app) as client:
        yield Host(app, client, world, reader)


def error_of(response: Any, status: int, kind: str) -> Any:
    """The detail of an error answer, after checking its status, kind and request id."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == kind
    assert body["request_id"] == RID == response.headers["X-Request-ID"]
    return body["detail"]


# ---- 401, 403, 429: refused, counted and logged -------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "API key is required"),
        ({"Authorization": "Bearer itk_short"}, "malformed API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "API key is required"),
        ({"X-API-Key": "itk_" + "A" * 43}, "unknown API key"),
    ],
)
def test_401_missing_or_invalid_key(
    host: Host, headers: dict[str, str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        response = host.client.get(
            f"{PREFIX}/records", params=WINDOW, headers={"X-Request-ID": RID, **headers}
        )
    assert message in error_of(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert host.denied() == {(401, f"{PREFIX}/records"): 1}
    [line] = [r for r in caplog.records if r.name == LOGGER]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith(f"compliance API GET {PREFIX}/records refused ({RID}):")


def test_401_revoked_key(host: Host) -> None:
    assert host.get("/checkpoint", "auditor").status_code == 200
    host.world.users.revoke("staff-auditor")
    assert "revoked" in error_of(host.get("/checkpoint", "auditor"), 401, "unauthenticated")


def test_401_comes_before_parameter_errors(host: Host) -> None:
    """Nothing about a request is judged before its key: no 422 for a caller without one."""
    error_of(host.get("/records", limit="many", **WINDOW), 401, "unauthenticated")
    error_of(host.get("/proof/-1"), 401, "unauthenticated")
    error_of(host.get("/export", format="xml"), 401, "unauthenticated")
    error_of(host.erase({"subject_id": ""}, role=None), 401, "unauthenticated")


def test_403_role_counted_and_audited(host: Host) -> None:
    before = host.world.log.size
    response = host.get("/export", "engineer", **WINDOW)
    assert "engineer" in error_of(response, 403, "forbidden")
    assert host.denied() == {(403, f"{PREFIX}/export"): 1}
    record = json.loads(next(iter(host.world.log.read(before, before + 1)))[1])
    assert record["access_query"]["outcome"] == "denied"
    assert record["request_id"] == RID


def test_429_with_retry_after(world: World) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    clock = Clock()
    app = host_app(world, RateLimiter(0.25, 1, clock=clock), meter)
    auditor = {"Authorization": f"Bearer {world.keys['auditor']}", "X-Request-ID": RID}
    with TestClient(app) as client:
        assert client.get(f"{PREFIX}/checkpoint", headers=auditor).status_code == 200
        # Rate limiting comes before parameters too: a bad request still spends a token.
        response = client.get(f"{PREFIX}/proof/-1", headers=auditor)
        assert "rate limit" in error_of(response, 429, "rate_limited")
        assert response.headers["Retry-After"] == "4"
        clock.t += 4
        assert client.get(f"{PREFIX}/checkpoint", headers=auditor).status_code == 200
    assert denials(reader) == {(429, f"{PREFIX}/proof/{{seq}}"): 1}


# ---- 404, 422 ------------------------------------------------------------------------------


def test_404_unknown_seq_and_subject(host: Host) -> None:
    error_of(host.get("/proof/999999", "auditor"), 404, "not_found")
    missing = host.erase({"subject_id": "nobody-1", "justification": JUSTIFY})
    error_of(missing, 404, "not_found")
    assert host.denied() == {}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/records", {**WINDOW, "limit": "many"}, "limit"),
        ("/records", {**WINDOW, "limit": "0"}, "limit"),
        ("/records", {**WINDOW, "limit": str(MAX_PAGE_SIZE + 1)}, "limit"),
        ("/proof/-1", {}, "seq"),
        ("/proof/five", {}, "seq"),
        (f"/proof/{10**16}", {}, "seq"),
        ("/export", {**WINDOW, "format": "xml"}, "format"),
        ("/export", {**WINDOW, "proofs": "perhaps"}, "proofs"),
        ("/records", {"from": "last week", "to": "2026-07-01"}, "from"),
        ("/export", {"to": "2026-07-01"}, "from"),
    ],
)
def test_422_names_the_parameter(host: Host, path: str, params: dict[str, str], field: str) -> None:
    [problem] = error_of(host.get(path, "auditor", **params), 422, "invalid_query")
    assert problem["field"] == field
    assert problem["message"]
    assert set(problem) == {"field", "message"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subject_id": "alice-001"}, "justification"),
        ({"subject_id": "alice-001", "justification": "because"}, "justification"),
        ({"subject_id": "", "justification": JUSTIFY}, "subject_id"),
        ({"subject_id": "alice-001", "justification": JUSTIFY, "why": "x"}, "why"),
        ('{"subject_id": ', "body"),
    ],
)
def test_422_erasure_body(host: Host, body: Any, field: str) -> None:
    [problem] = error_of(host.erase(body), 422, "invalid_query")
    assert problem["field"] == field


# ---- 409, 503 and the other errors of the layers below -------------------------------------


def test_503_when_the_log_is_closed(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    host.world.log.close()
    with caplog.at_level(logging.ERROR, LOGGER):
        for path in ("/records", "/export"):
            response = host.get(path, "auditor", **WINDOW)
            assert "audit log unavailable" in error_of(response, 503, "audit_unavailable")
        error_of(host.get("/proof/3", "auditor"), 503, "audit_unavailable")
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 3
    assert all(line.startswith(f"compliance API {RID}: audit log unavailable:") for line in lines)


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (LogFailedError("disk full"), 503, "audit_unavailable"),
        (TimeoutError("no durable ack in 5 s"), 503, "audit_unavailable"),
        (LakeIntegrityError("leaf hash mismatch at seq 3"), 503, "integrity_error"),
        (PrivacyError("erasure in progress"), 409, "privacy_conflict"),
        (AccessRefusedError("justification refused"), 403, "forbidden"),
    ],
)
def test_errors_of_the_layers_below(
    host: Host, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, kind: str
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(host.world.engine, "checkpoint", fail)
    detail = error_of(host.get("/checkpoint", "auditor"), status, kind)
    assert str(error) in detail
    assert host.denied() == {}  # refusals of the privacy layer are not access-layer denials


def test_an_error_no_handler_answers_stays_a_500(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(host.world.engine, "checkpoint", fail)
    with pytest.raises(KeyError):
        host.get("/checkpoint", "auditor")


# ---- the handler answers compliance routes only ---------------------------------------------


@pytest.mark.parametrize("path", ["/v1/other/timeout", f"{PREFIX}/legacy"])
def test_timeout_of_another_route_is_not_a_compliance_503(
    host: Host, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, LOGGER), pytest.raises(TimeoutError):
        host.client.get(path)
    with TestClient(host.app, raise_server_exceptions=False) as client:
        response = client.get(path)
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_the_apps_own_handlers_keep_their_errors(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app's PrivacyError handler answers its routes; compliance routes keep their 409.
    assert host.client.get("/v1/other/privacy").json() == {"error": "host_privacy"}

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise PrivacyError("erasure in progress")

    monkeypatch.setattr(host.world.engine, "checkpoint", fail)
    error_of(host.get("/checkpoint", "auditor"), 409, "privacy_conflict")
    # Likewise the app's validation handler: its shape for its routes, ours for ours.
    assert host.client.get("/v1/other/items", params={"n": "x"}).json()["error"] == "invalid_input"
    error_of(host.get("/records", "auditor", limit="x", **WINDOW), 422, "invalid_query")


# ---- mounting ------------------------------------------------------------------------------


def test_one_request_id_without_the_middleware(world: World) -> None:
    """No RequestIdMiddleware: the audit record and the answer still name the same request."""
    app = FastAPI()
    include_compliance_api(app, world.service, world.users)
    before = world.log.size
    with TestClient(app) as client:
        response = client.get(
            f"{PREFIX}/records",
            params={**WINDOW, "subject_id": "alice-001", "justification": JUSTIFY},
            headers={"Authorization": f"Bearer {world.keys['auditor']}"},
        )
    assert response.status_code == 403
    record = json.loads(next(iter(world.log.read(before, before + 1)))[1])
    assert record["request_id"] == response.json()["request_id"]


def test_a_bare_router_still_answers_status_and_headers(world: World) -> None:
    """Included without the handler, errors fall back to FastAPI's HTTPException answer."""
    app = FastAPI()
    app.include_router(compliance_router(world.service, world.users))
    with TestClient(app) as client:
        response = client.get(f"{PREFIX}/checkpoint")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "API key is required" in response.json()["detail"]
        headers = {"Authorization": f"Bearer {world.keys['auditor']}"}
        response = client.get(f"{PREFIX}/proof/x", headers=headers)
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "seq"


# ---- OpenAPI -------------------------------------------------------------------------------


def test_openapi_documents_security_and_errors(host: Host) -> None:
    spec = host.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `infertrail users add`.",
    }
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    assert set(spec["components"]["schemas"]["ErrorResponse"]["required"]) == {
        "error",
        "detail",
        "request_id",
    }
    operations = [
        ("/records", "get"),
        ("/export", "get"),
        ("/proof/{seq}", "get"),
        ("/checkpoint", "get"),
        ("/erasure", "post"),
    ]
    for path, method in operations:
        op = spec["paths"][f"{PREFIX}{path}"][method]
        assert op["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], path
        for status in ("401", "403", "404", "422", "429", "503"):
            response = op["responses"][status]
            assert response["content"]["application/json"]["schema"] == error_ref, (path, status)
            assert response["description"]
        assert "Retry-After" in op["responses"]["429"]["headers"]
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    erasure = spec["paths"][f"{PREFIX}/erasure"]["post"]["responses"]
    assert erasure["409"]["content"]["application/json"]["schema"] == error_ref


def test_openapi_documents_the_parameter_bounds(host: Host) -> None:
    paths = host.client.get("/openapi.json").json()["paths"]

    def params(path: str) -> dict[str, Any]:
        return {p["name"]: p for p in paths[f"{PREFIX}{path}"]["get"]["parameters"]}

    records = params("/records")
    assert list(records)[:2] == ["from", "to"] and list(records)[-2:] == ["cursor", "limit"]
    assert records["limit"]["schema"]["minimum"] == 1
    assert records["limit"]["schema"]["maximum"] == MAX_PAGE_SIZE
    assert params("/export")["format"]["schema"]["enum"] == list(FORMATS)
    assert params("/proof/{seq}")["seq"]["schema"]["minimum"] == 0
