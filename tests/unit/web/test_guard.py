"""The request guard on its own: content types, body limits, JSON depth, UTF-8, surrogates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from infertrail.web.guard import (
    GuardPolicy,
    RequestGuardMiddleware,
    content_type_problem,
    json_body_problem,
    nesting_depth,
)
from infertrail.web.requestid import RequestIdMiddleware

Rejected = list[tuple[str, str, str]]


def make_app(policy: GuardPolicy, rejected: Rejected) -> FastAPI:
    """An app whose routes echo what reached them, behind the guard and the request id."""
    app = FastAPI()

    @app.post("/echo")
    @app.post("/v1/batch")
    @app.post("/upload")
    async def echo(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"bytes": len(body), "parsed": json.loads(body) if body.startswith(b"{") else None}

    def on_reject(rid: str, kind: str, message: str, path: str) -> None:
        rejected.append((kind, message, path))

    app.add_middleware(RequestGuardMiddleware, policy=policy, on_reject=on_reject)
    app.add_middleware(RequestIdMiddleware, on_invalid=lambda *_: None)
    return app


@pytest.fixture
def rejected() -> Rejected:
    return []


@pytest.fixture
def client(rejected: Rejected) -> TestClient:
    policy = GuardPolicy(
        max_body_bytes=1024,
        body_limits={"/v1/batch": 4096},
        max_json_depth=4,
        raw_body_paths=("/upload",),
    )
    return TestClient(make_app(policy, rejected))


def error_of(response: Any, status: int, kind: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == kind
    assert body["request_id"] == response.headers["x-request-id"]
    return body["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "application/json; charset=latin-1"},
        {"content-type": "application/jsonx"},
        {},
    ],
)
def test_a_body_not_declared_json_is_415_before_the_route(
    client: TestClient, rejected: Rejected, headers: dict[str, str]
) -> None:
    # What a cross-site "simple" request can send: it never reaches the route.
    response = client.post("/echo", content=b'{"a": 1}', headers=headers)
    detail = error_of(response, 415, "unsupported_media_type")
    assert "application/json" in detail or "JSON bodies are UTF-8" in detail
    assert [r[0] for r in rejected] == ["unsupported_media_type"]


@pytest.mark.parametrize(
    "ctype",
    ["application/json", "Application/JSON; charset=UTF-8", "application/problem+json"],
)
def test_json_media_types_pass(client: TestClient, ctype: str) -> None:
    response = client.post("/echo", content=b'{"a": 1}', headers={"content-type": ctype})
    assert response.status_code == 200
    assert response.json() == {"bytes": 8, "parsed": {"a": 1}}


def test_requests_without_a_body_pass_whatever_their_content_type(client: TestClient) -> None:
    response = client.post("/echo", headers={"content-type": "text/plain"})
    assert response.status_code == 200 and response.json()["bytes"] == 0


def test_body_limits_per_path_prefix(client: TestClient, rejected: Rejected) -> None:
    big = json.dumps({"x": "y" * 2000}).encode()
    detail = error_of(
        client.post("/echo", content=big, headers={"content-type": "application/json"}),
        413,
        "body_too_large",
    )
    assert "1024 bytes" in detail and str(len(big)) in detail
    # the outcome-batch style route has its own, larger limit
    ok = client.post("/v1/batch", content=big, headers={"content-type": "application/json"})
    assert ok.status_code == 200 and ok.json()["bytes"] == len(big)
    huge = json.dumps({"x": "y" * 5000}).encode()
    response = client.post("/v1/batch", content=huge, headers={"content-type": "application/json"})
    assert "4096 bytes" in error_of(response, 413, "body_too_large")
    assert [r[0] for r in rejected] == ["body_too_large", "body_too_large"]


def test_a_chunked_body_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 100  # no Content-Length: the limit applies as it arrives

    response = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert "is longer than that" in error_of(response, 413, "body_too_large")


def test_raw_body_paths_take_any_type_but_keep_their_limit(client: TestClient) -> None:
    ok = client.post("/upload", content=b"a,b\n1,2\n", headers={"content-type": "text/csv"})
    assert ok.status_code == 200 and ok.json()["bytes"] == 8

    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 100

    response = client.post("/upload", content=chunks(), headers={"content-type": "text/csv"})
    error_of(response, 413, "body_too_large")


def test_deep_json_is_400_not_a_recursion_error(client: TestClient) -> None:
    for body in (b"[" * 500 + b"]" * 500, b'{"a":' * 5 + b"1" + b"}" * 5):
        response = client.post("/echo", content=body, headers={"content-type": "application/json"})
        assert "the limit is 4" in error_of(response, 400, "invalid_json")
    # brackets inside strings are text, not nesting
    text = json.dumps({"t": '[[[[[[[[{{{{{{ \\" ]]]'}).encode()
    ok = client.post("/echo", content=text, headers={"content-type": "application/json"})
    assert ok.status_code == 200


def test_invalid_utf8_is_400(client: TestClient) -> None:
    for body in (b'{"t": "\xff"}', b'{"t": "\xc3"}', b'{"t": "\xed\xa0\x80"}'):
        response = client.post("/echo", content=body, headers={"content-type": "application/json"})
        assert "not valid UTF-8" in error_of(response, 400, "invalid_json")


def test_a_lone_surrogate_is_422_naming_the_field_never_the_value(client: TestClient) -> None:
    body = b'{"a": {"b": ["ok", "x\\udc00"]}, "c": "\\ud83d\\ude00", "\\ud800k": 1}'
    response = client.post("/echo", content=body, headers={"content-type": "application/json"})
    detail = error_of(response, 422, "invalid_input")
    assert [d["field"] for d in detail] == ["a.b[1]", "<key>"]
    assert all(d["type"] == "lone_surrogate" for d in detail)
    assert "udc00" not in response.text
    # a valid pair (an emoji) passes
    ok = client.post(
        "/echo", content=b'{"c": "\\ud83d\\ude00"}', headers={"content-type": "application/json"}
    )
    assert ok.status_code == 200 and ok.json()["parsed"] == {"c": "\U0001f600"}


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1 byte"):
        GuardPolicy(max_body_bytes=0)
    with pytest.raises(ValueError, match="must start with '/'"):
        GuardPolicy(body_limits={"v1/outcomes": 10})
    with pytest.raises(ValueError, match="max_json_depth"):
        GuardPolicy(max_json_depth=0)


def test_limit_for_matches_whole_segments_longest_first() -> None:
    policy = GuardPolicy(max_body_bytes=10, body_limits={"/v1": 20, "/v1/outcomes": 30})
    assert policy.limit_for("/v1/outcomes") == 30
    assert policy.limit_for("/v1/outcomes/performance") == 30
    assert policy.limit_for("/v1/outcomesx") == 20
    assert policy.limit_for("/v2/x") == 10


def test_pure_checks() -> None:
    assert content_type_problem("application/json") is None
    assert "no Content-Type" in str(content_type_problem(None))
    assert nesting_depth(b'{"a": [1, {"b": "]]]"}]}') == 3
    assert nesting_depth(b"42") == 0
    assert json_body_problem(b"not json at all [", 4) is None  # the route's parser says so
    assert json_body_problem(b'"\\ud800 but not JSON', 4) is None
