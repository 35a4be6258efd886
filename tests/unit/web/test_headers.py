"""Security headers on every answer of an instrumented app, refusals included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.runtime import instrument

ALWAYS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = FastAPI()

    @app.get("/v1/audit/thing")
    def audit_thing() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/plain")
    def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/v1/audit/own-cache")
    def own_cache() -> JSONResponse:
        return JSONResponse({"ok": "yes"}, headers={"Cache-Control": "private, max-age=60"})

    @app.post("/decide")
    def decide(body: dict[str, int]) -> dict[str, int]:
        return body

    instrument(app, settings, models=[ModelInfo("m", "1", "ab" * 32)])
    with TestClient(app) as c:
        yield c


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for response in (
        client.get("/plain"),
        client.get("/no-such-route"),  # 404 from the router
        client.post("/decide", content=b"x=1", headers={"content-type": "text/plain"}),  # 415
        client.get("/metrics"),
    ):
        for name, value in ALWAYS.items():
            assert response.headers[name] == value, (response.status_code, name)
        assert response.headers["referrer-policy"] == "no-referrer"


def test_audit_answers_are_never_stored_by_a_cache(client: TestClient) -> None:
    assert client.get("/v1/audit/thing").headers["cache-control"] == "no-store"
    assert "cache-control" not in client.get("/plain").headers


def test_a_header_the_app_set_is_kept(client: TestClient) -> None:
    # an audit route, where no-store would be added: the app's own choice wins
    assert client.get("/v1/audit/own-cache").headers["cache-control"] == "private, max-age=60"
