"""What instrument() gives any FastAPI app: the guard, one error shape, offline docs, a true
OpenAPI document. The app here is a user's own, with its own routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

import infertrail
from infertrail.config import Settings
from infertrail.runtime.asgi import runtime_of
from infertrail.web.docs import ASSET_FILES, ASSETS_PATH

MODEL = infertrail.ModelInfo("churn", "1.0.0", "c" * 64)


class Customer(BaseModel):
    customer_id: str
    tenure_months: int


def make_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="churn-api")
    infertrail.instrument(app, settings, models=[MODEL])

    @app.post("/predict")
    async def predict(customer: Customer) -> dict[str, Any]:
        return {"customer": customer.customer_id, "churn": customer.tenure_months < 6}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    return app


@pytest.fixture
def base_settings(tmp_path: Path, clean_env: None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        service_name="churn-api",
        metric_export_interval_ms=60_000,
        set_global_providers=False,
        telemetry_files=False,
        drift_enabled=False,
        cost_enabled=False,
        outcomes_enabled=False,
    )


@pytest.fixture
def client(base_settings: Settings) -> Iterator[TestClient]:
    with TestClient(make_app(base_settings)) as c:
        yield c


def error_of(response: Any, status: int, kind: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == kind
    assert body["request_id"] == response.headers["x-request-id"]
    return body["detail"]


def rejections(client: TestClient, kind: str) -> float:
    text = client.get("/metrics").text
    pattern = rf'^infertrail_inference_errors_total\{{[^}}]*error_type="{kind}"[^}}]*\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def test_the_users_route_is_guarded_and_rejections_counted(client: TestClient) -> None:
    ok = client.post("/predict", json={"customer_id": "c-1", "tenure_months": 3})
    assert ok.status_code == 200 and ok.json() == {"customer": "c-1", "churn": True}
    form = client.post("/predict", data={"customer_id": "c-1", "tenure_months": "3"})
    error_of(form, 415, "unsupported_media_type")
    deep = client.post(
        "/predict", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"}
    )
    error_of(deep, 400, "invalid_json")
    big = client.post("/predict", json={"customer_id": "x" * 70_000, "tenure_months": 1})
    assert "65536 bytes" in error_of(big, 413, "body_too_large")
    runtime_of(client.app).monitor.flush()  # type: ignore[union-attr, arg-type]
    assert rejections(client, "unsupported_media_type") == 1
    assert rejections(client, "body_too_large") == 1


@pytest.mark.parametrize(
    ("content", "status", "kind"),
    [
        (b"{oops", 400, "invalid_json"),
        (b'{"customer_id": "c-1"}', 422, "invalid_input"),
        (b'{"customer_id": "\\udabc", "tenure_months": 1}', 422, "invalid_input"),
        (b'{"customer_id": "c-\xff", "tenure_months": 1}', 400, "invalid_json"),
    ],
)
def test_fastapi_validation_errors_come_in_the_one_shape(
    client: TestClient, content: bytes, status: int, kind: str
) -> None:
    response = client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )
    detail = error_of(response, status, kind)
    if status == 422:
        assert {d["field"] for d in detail} <= {"tenure_months", "customer_id"}
        assert "udabc" not in response.text


def test_unknown_routes_methods_and_parameters_in_the_one_shape(client: TestClient) -> None:
    assert error_of(client.get("/nowhere"), 404, "not_found") == "Not Found"
    response = client.delete("/predict")
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    [problem] = error_of(client.get("/items/seven"), 422, "invalid_input")
    assert problem["field"] == "item_id" and "seven" not in problem["message"]


def test_docs_pages_load_nothing_from_another_host(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
        assert urls, html
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert "http://" not in html and "https://" not in html
        assert "fonts.googleapis" not in html and "cdn." not in html
    for name in ASSET_FILES:
        asset = client.get(f"{ASSETS_PATH}/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000, name
    swagger = client.get("/docs").text
    assert f"{ASSETS_PATH}/swagger-ui-bundle.js" in swagger


def test_openapi_documents_the_guard_and_metrics(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= set(responses)
    ref = responses["415"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorResponse"
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "413" not in spec["paths"]["/items/{item_id}"]["get"]["responses"]  # no body
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    [content_type] = metrics
    assert content_type.startswith("text/plain")
    assert client.get("/metrics").headers["content-type"] == content_type


def test_limits_come_from_the_settings(base_settings: Settings) -> None:
    settings = base_settings.model_copy(
        update={
            "http_max_body_bytes": 100,
            "http_body_limits": {"/predict": 50},
            "http_raw_body_paths": ["/items"],
        }
    )
    with TestClient(make_app(settings)) as client:
        body = {"customer_id": "c" * 40, "tenure_months": 1}
        assert "50 bytes" in error_of(client.post("/predict", json=body), 413, "body_too_large")


def test_an_apps_own_handlers_are_kept(base_settings: Settings) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def mine(_request: Any, _exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("mine", 418)

    infertrail.instrument(app, base_settings)

    @app.get("/n/{n}")
    async def n(n: int) -> int:
        return n

    with TestClient(app) as client:
        assert client.get("/n/x").status_code == 418
        assert error_of(client.get("/elsewhere"), 404, "not_found")
