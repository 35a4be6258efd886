"""The sentiment service over HTTP (in-process ASGI client), read back from exported files."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.server.app import DemoService, build_services, create_app
from infertrail.telemetry import conventions as c
from infertrail.telemetry.readback import find_request, iter_logs, iter_spans


@pytest.fixture
def services(settings: Settings) -> Iterator[DemoService]:
    s = build_services(settings)
    yield s
    s.close()


@pytest.fixture
def client(services: DemoService) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_one_request_yields_span_log_and_exemplar_sharing_a_trace_id(
    client: TestClient, services: DemoService, settings: Settings
) -> None:
    r = client.post("/v1/sentiment", json={"text": "Great phone, excellent battery."})
    assert r.status_code == 200
    body = r.json()
    assert body["label"] == "positive"
    assert 0.5 <= body["confidence"] <= 1.0
    assert r.headers["x-request-id"] == body["request_id"]
    services.monitor.flush()

    view = find_request(settings.telemetry_dir, body["request_id"])  # from the files on disk
    assert view is not None
    assert view.trace_id == body["trace_id"]
    names = [s.name for _, s in view.tree()]
    assert names == ["POST /v1/sentiment", "inference"]
    inference = next(s for s in view.spans if s.name == "inference")
    http = next(s for s in view.spans if s.name != "inference")
    assert inference.parent_span_id == http.span_id
    assert inference.attributes[c.MODEL_SHA256] == services.sentiment.info.sha256
    assert inference.attributes[c.PREDICTION_LABEL] == "positive"
    assert len(view.logs) == 1
    assert view.logs[0]["span_id"] == inference.span_id
    assert view.logs[0]["body"]["request_id"] == body["request_id"]
    durations = [e for e in view.exemplars if e.metric == c.METRIC_DURATION]
    assert durations and durations[0].span_id == inference.span_id
    # the flat JSON log line carries the same ids
    line = json.loads((settings.telemetry_dir / "inference.log.jsonl").read_text().splitlines()[0])
    assert (line["trace_id"], line["span_id"]) == (view.trace_id, inference.span_id)


def test_supplied_request_id_is_kept(client: TestClient) -> None:
    r = client.post("/v1/sentiment", json={"text": "fine"}, headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-123" == r.json()["request_id"]


BAD_BODIES = [
    ({"text": ""}, 422, "at least one non-whitespace"),
    ({"text": "   \n"}, 422, "at least one non-whitespace"),
    ({"text": "x" * 10_001}, 422, "10001 characters; the limit is 10000"),
    ({"text": 42}, 422, "valid string"),
    ({"text": None}, 422, "valid string"),
    ({"text": ["a"]}, 422, "valid string"),
    ({}, 422, "Field required"),
    ({"text": "ok", "extra": 1}, 422, "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_BODIES)
def test_bad_bodies_get_a_precise_4xx_and_are_counted(
    client: TestClient, services: DemoService, body: object, status: int, needle: str
) -> None:
    r = client.post("/v1/sentiment", json=body)
    assert r.status_code == status
    payload = r.json()
    assert payload["error"] == "invalid_input"
    assert needle in json.dumps(payload["detail"])
    assert payload["request_id"] == r.headers["x-request-id"]
    services.monitor.flush()
    metrics = client.get("/metrics").text
    assert (
        metric_value(metrics, "infertrail_inference_errors_total", error_type="invalid_input") == 1
    )
    # and the service keeps serving
    assert client.post("/v1/sentiment", json={"text": "still here"}).status_code == 200


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"text": "unterminated'])
def test_non_json_bodies_get_400(client: TestClient, content: bytes) -> None:
    r = client.post("/v1/sentiment", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400
    payload = r.json()
    assert payload["error"] == "invalid_json"
    assert "not valid JSON" in payload["detail"]
    assert payload["request_id"] == r.headers["x-request-id"]


def test_too_long_text_limit_is_configurable(
    settings: Settings,
) -> None:
    s = build_services(settings.model_copy(update={"max_text_chars": 5}))
    try:
        with TestClient(create_app(s)) as c:
            assert c.post("/v1/sentiment", json={"text": "12345"}).status_code == 200
            r = c.post("/v1/sentiment", json={"text": "123456"})
            assert r.status_code == 422
            assert "limit is 5" in r.text
    finally:
        s.close()


def test_invalid_request_id_is_rejected_traced_logged_and_counted(
    client: TestClient, services: DemoService, settings: Settings
) -> None:
    r = client.post("/v1/sentiment", json={"text": "hi"}, headers={"X-Request-ID": "bad id!"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request_id"
    assert "1-128 characters" in r.json()["detail"]
    rid = r.headers["x-request-id"]
    services.monitor.flush()
    assert "bad id" not in rid
    metrics = client.get("/metrics").text
    assert (
        metric_value(metrics, "infertrail_inference_errors_total", error_type="invalid_request_id")
        == 1
    )
    spans = [s for s in iter_spans(settings.telemetry_dir) if s.attributes.get(c.REQUEST_ID) == rid]
    assert spans and spans[0].attributes[c.ERROR_TYPE] == "invalid_request_id"
    logs = [r for r in iter_logs(settings.telemetry_dir) if r["body"]["request_id"] == rid]
    assert logs and logs[0]["severity"] == "ERROR"


def test_health_readiness_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["models"] == ["sentiment", "credit", "digits"]
    client.post("/v1/sentiment", json={"text": "good"})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "infertrail_inference_duration_seconds_bucket" in metrics.text
    assert "http_server_request_duration_seconds_bucket" in metrics.text  # stable HTTP semconv
    spec = client.get("/openapi.json").json()
    assert "/v1/sentiment" in spec["paths"]


def test_each_series_appears_once_per_scrape_even_after_flushes(
    client: TestClient, services: DemoService
) -> None:
    client.post("/v1/sentiment", json={"text": "good"})
    services.monitor.flush()
    services.monitor.flush()
    text = client.get("/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("infertrail_predictions_total{")]
    assert len(lines) == 1
    assert lines[0].endswith(" 1.0")


def test_freeze_gc_moves_start_up_objects_out_of_the_collector(services: DemoService) -> None:
    app = create_app(services, freeze_gc=True)
    try:
        with TestClient(app) as client:
            assert gc.get_freeze_count() > 0
            assert client.post("/v1/sentiment", json={"text": "good"}).status_code == 200
    finally:
        gc.unfreeze()


def test_a_lone_surrogate_is_a_422_naming_the_field_not_an_outage(
    client: TestClient, services: DemoService
) -> None:
    """Regression: {"text": "\\ud800"} reached the audit log, which could not encode it: 503."""
    r = client.post(
        "/v1/sentiment",
        content=b'{"text": "fine \\ud800 words"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    payload = r.json()
    assert payload["error"] == "invalid_input"
    assert [d["field"] for d in payload["detail"]] == ["text"]
    assert "words" not in r.text and "ud800 " not in r.text  # the input is not echoed
    services.monitor.flush()
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "infertrail_inference_errors_total", error_type="invalid_input")
    assert metric_value(metrics, "infertrail_predictions_total") == 0


CROSS_SITE_BODIES = [
    {"content": b'{"applicant_id": "a"}', "headers": {"content-type": "text/plain"}},
    {"data": {"applicant_id": "a"}},  # application/x-www-form-urlencoded
    {"files": {"f": ("a.json", b"{}", "application/json")}},  # multipart/form-data
    {"content": b'{"applicant_id": "a"}', "headers": {"content-type": ""}},
]


@pytest.mark.parametrize("request_kwargs", CROSS_SITE_BODIES)
def test_decisions_need_a_json_content_type(
    client: TestClient, services: DemoService, request_kwargs: dict[str, Any]
) -> None:
    """Regression: the credit route decided on text/plain, forms and multipart (a cross-site
    simple request could create decisions)."""
    size = services.runtime.audit.log.size  # type: ignore[union-attr]
    for path in ("/v1/credit/score", "/v1/sentiment", "/v1/digits", "/v1/outcomes"):
        r = client.post(path, **request_kwargs)
        assert r.status_code == 415, (path, r.text)
        payload = r.json()
        assert payload["error"] == "unsupported_media_type"
        assert payload["request_id"] == r.headers["x-request-id"]
    services.monitor.flush()
    assert services.runtime.audit.log.size == size  # type: ignore[union-attr]


def test_deep_json_and_bad_utf8_are_400_in_the_one_shape(client: TestClient) -> None:
    """Regression: FastAPI answered these {"detail": ...} (sentiment) or 500 (digits)."""
    for path in ("/v1/sentiment", "/v1/digits", "/v1/credit/score", "/v1/audit/erasure"):
        for content in (b"[" * 10_000 + b"]" * 10_000, b'{"text": "\xff"}'):
            r = client.post(path, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert set(r.json()) == {"error", "detail", "request_id"}
            assert r.json()["error"] == "invalid_json"


def test_bodies_over_the_limit_are_413(client: TestClient) -> None:
    r = client.post("/v1/sentiment", json={"text": "x" * 70_000})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    # an outcome batch may be larger
    batch = [{"request_id": f"r-{i}", "outcome": 1} for i in range(2000)]
    assert len(json.dumps(batch)) > 65_536
    assert client.post("/v1/outcomes", json=batch).status_code == 200


@pytest.mark.parametrize("blank", [" ", "\x1c", "\u3000", "\u2028", "\t\n\x85\xa0"])
def test_blank_texts_are_refused_as_the_schema_says(client: TestClient, blank: str) -> None:
    from infertrail.server.sentiment import CONTENT_PATTERN

    schema = client.get("/openapi.json").json()["paths"]["/v1/sentiment"]["post"]
    text = schema["requestBody"]["content"]["application/json"]["schema"]["properties"]["text"]
    assert (text["minLength"], text["maxLength"], text["pattern"]) == (1, 10_000, CONTENT_PATTERN)
    assert re.search(text["pattern"], blank) is None  # the schema too calls it blank
    r = client.post("/v1/sentiment", json={"text": blank})
    assert r.status_code == 422 and "non-whitespace" in r.text
    assert client.post("/v1/sentiment", json={"text": blank + "ok"}).status_code == 200
