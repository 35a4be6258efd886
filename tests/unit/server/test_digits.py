"""POST /v1/digits over HTTP (in-process): response, validation naming the problem, audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from infertrail.audit.record import validate_record
from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.models import digits
from infertrail.models.digits import DigitsModel
from infertrail.monitor import Monitor
from infertrail.runtime.audit import AuditTrail
from infertrail.server.digits import DIGITS_PATH, digits_router, pixel_problems
from infertrail.web.requestid import RequestIdMiddleware
from infertrail.web.responses import install_error_handlers


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> DigitsModel:
    root = tmp_path_factory.mktemp("digits-models")
    digits.train(root)
    return DigitsModel.load(root)


@pytest.fixture
def app_settings(tmp_path: Path, clean_env: None) -> Settings:
    s = Settings(data_dir=tmp_path / "data", metric_export_interval_ms=60_000)
    s.ensure_dirs()
    return s


@pytest.fixture
def monitor(app_settings: Settings) -> Iterator[Monitor]:
    m = Monitor(app_settings)
    yield m
    m.shutdown()


def make_client(monitor: Monitor, model: DigitsModel, s: Settings) -> TestClient:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, on_invalid=lambda *_: None)
    install_error_handlers(app)
    app.include_router(digits_router(monitor, model, s))
    return TestClient(app)


@pytest.fixture
def client(monitor: Monitor, model: DigitsModel, app_settings: Settings) -> Iterator[TestClient]:
    with make_client(monitor, model, app_settings) as c:
        yield c


def image(i: int = 0) -> list[int]:
    return [int(v) for v in digits.split().test_images[i]]


def test_a_digit_is_classified_with_all_probabilities(
    client: TestClient, model: DigitsModel
) -> None:
    data = digits.split()
    r = client.post(DIGITS_PATH, json={"pixels": image(0)}, headers={"X-Request-ID": "scan-1"})
    assert r.status_code == 200
    out = r.json()
    assert out["label"] == str(data.test_labels[0])
    assert list(out["probabilities"]) == list(digits.LABELS)
    assert sum(out["probabilities"].values()) == pytest.approx(1.0)
    assert (
        out["confidence"]
        == out["probabilities"][out["label"]]
        == max(out["probabilities"].values())
    )
    assert out["request_id"] == r.headers["x-request-id"] == "scan-1"
    assert len(out["trace_id"]) == 32
    assert out["model"] == {
        "name": "digits",
        "version": digits.VERSION,
        "sha256": model.info.sha256,
    }
    assert out["audit_seq"] is None  # no audit trail on this app


def test_floats_and_the_bounds_are_accepted(client: TestClient) -> None:
    pixels: list[float] = [0, 16, 0.5, 15.99, *([8.0] * 60)]
    r = client.post(DIGITS_PATH, json={"pixels": pixels})
    assert r.status_code == 200, r.text


def post_raw(client: TestClient, content: bytes) -> Any:
    return client.post(DIGITS_PATH, content=content, headers={"content-type": "application/json"})


def pixels_with(i: int, value: str) -> bytes:
    """A body whose element ``i`` is the raw JSON token ``value`` (NaN, Infinity, ...)."""
    tokens = [str(v) for v in image(0)]
    tokens[i] = value
    return ('{"pixels": [' + ", ".join(tokens) + "]}").encode()


BAD: list[tuple[str, bytes, str, str]] = [
    # (case, raw body, field, message)
    ("too short", json.dumps({"pixels": [0] * 63}).encode(), "pixels",
     "pixels has 63 values; expected exactly 64 (8x8, row-major)"),
    ("too long", json.dumps({"pixels": [0] * 65}).encode(), "pixels",
     "pixels has 65 values; expected exactly 64"),
    ("empty", b'{"pixels": []}', "pixels", "pixels has 0 values; expected exactly 64"),
    ("above range", pixels_with(5, "17"), "pixels[5]", "pixels[5] is 17; expected a number 0..16"),
    ("below range", pixels_with(0, "-1"), "pixels[0]", "pixels[0] is -1; expected a number 0..16"),
    ("just above", pixels_with(63, "16.5"), "pixels[63]", "pixels[63] is 16.5; expected"),
    ("NaN", pixels_with(7, "NaN"), "pixels[7]", "pixels[7] is NaN; expected a number 0..16"),
    ("Infinity", pixels_with(8, "Infinity"), "pixels[8]", "pixels[8] is inf; expected"),
    ("-Infinity", pixels_with(8, "-Infinity"), "pixels[8]", "pixels[8] is -inf; expected"),
    ("huge", pixels_with(1, "1e400"), "pixels[1]", "pixels[1] is inf; expected"),
    ("string", pixels_with(2, '"3"'), "pixels[2]", 'pixels[2] is "3" (str); expected a number'),
    ("null", pixels_with(3, "null"), "pixels[3]", "pixels[3] is null (null); expected a number"),
    ("bool", pixels_with(4, "true"), "pixels[4]", "pixels[4] is true (bool); expected a number"),
    ("nested", pixels_with(9, "[1]"), "pixels[9]", "pixels[9] is [1] (list); expected a number"),
    ("object", pixels_with(9, '{"a": 1}'), "pixels[9]", "(dict); expected a number"),
    ("not a list", b'{"pixels": "0,0,0"}', "pixels",
     "pixels must be a list of 64 numbers 0..16, got str"),
    ("pixels null", b'{"pixels": null}', "pixels",
     "pixels must be a list of 64 numbers 0..16, got null"),
    ("missing", b"{}", "pixels", 'pixels is required: {"pixels": [64 numbers 0..16]}'),
    ("extra field", json.dumps({"pixels": image(0), "label": 3}).encode(), "label",
     "'label' is not a field of this API; valid: pixels"),
    ("not an object", b"[1, 2, 3]", "body", 'the body must be a JSON object {"pixels": [64'),
    ("a number", b"42", "body", "the body must be a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "raw", "field", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_422_naming_the_problem(
    client: TestClient, monitor: Monitor, case: str, raw: bytes, field: str, message: str
) -> None:
    r = post_raw(client, raw)
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["error"] == "invalid_input" and out["request_id"]
    [problem] = out["detail"]
    assert problem["field"] == field
    assert message in problem["message"]
    monitor.flush()
    metrics = generate_latest(monitor.telemetry.prometheus_registry).decode()
    assert 'error_type="invalid_input"' in metrics
    assert 'infertrail_model_name="digits"' in metrics


def test_every_problem_is_reported_at_once(client: TestClient) -> None:
    pixels: list[Any] = [0] * 63
    pixels[1], pixels[2] = 99, "x"
    r = client.post(DIGITS_PATH, json={"pixels": pixels, "extra": 1})
    fields = [p["field"] for p in r.json()["detail"]]
    assert fields == ["extra", "pixels", "pixels[1]", "pixels[2]"]


def test_many_bad_values_are_listed_up_to_a_limit(client: TestClient) -> None:
    r = client.post(DIGITS_PATH, json={"pixels": [20] * 64})
    detail = r.json()["detail"]
    assert [p["field"] for p in detail[:10]] == [f"pixels[{i}]" for i in range(10)]
    assert detail[10] == {
        "field": "pixels",
        "message": "... and 54 more invalid values",
        "type": "more",
    }


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b'{"pixels": [1, 2',
        b"\xff\xfe",
        # Regression: 10,000 nested arrays were a RecursionError (500) in the JSON parser, also
        # where the router is mounted without infertrail.instrument()'s guard, as here.
        b"[" * 10_000 + b"]" * 10_000,
    ],
)
def test_invalid_json_is_a_400(client: TestClient, content: bytes) -> None:
    r = post_raw(client, content)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_json"
    assert "not valid JSON" in r.json()["detail"]


def test_openapi_documents_the_body(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"][DIGITS_PATH]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    pixels = schema["properties"]["pixels"]
    assert (pixels["minItems"], pixels["maxItems"]) == (64, 64)
    assert schema["required"] == ["pixels"]
    # what pixel_problems refuses, the schema says: no other fields, every value 0..16
    assert schema["additionalProperties"] is False
    assert (pixels["items"]["minimum"], pixels["items"]["maximum"]) == (0, 16)
    assert {"200", "400", "422", "503"} <= set(op["responses"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 16) | st.integers(0, 16), min_size=64, max_size=64))
def test_any_64_numbers_in_range_are_valid(pixels: list[float]) -> None:
    assert pixel_problems({"pixels": pixels}) == []


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 63),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0 <= v <= 16)
    | st.integers().filter(lambda v: not 0 <= v <= 16)
    | st.text(max_size=3)
    | st.none()
    | st.booleans(),
)
def test_one_bad_value_is_named_by_its_index(i: int, value: Any) -> None:
    pixels: list[Any] = [1.0] * 64
    pixels[i] = value
    [problem] = pixel_problems({"pixels": pixels})
    assert problem["field"] == f"pixels[{i}]"
    assert problem["message"].startswith(f"pixels[{i}] is ")


# -- audit -----------------------------------------------------------------------------------


def test_the_decision_is_audited_and_durable_before_the_answer(
    monitor: Monitor, model: DigitsModel, app_settings: Settings
) -> None:
    trail = AuditTrail.open(app_settings, fsync=False)
    monitor.add_sink(trail, on_request_thread=True)
    try:
        with make_client(monitor, model, app_settings) as c:
            out = c.post(DIGITS_PATH, json={"pixels": image(3)}).json()
        assert isinstance(out["audit_seq"], int)
        trail.log.flush()
        [(_, raw)] = list(trail.log.read(out["audit_seq"], out["audit_seq"] + 1))
        record = json.loads(raw)
        validate_record(record)
        assert record["request_id"] == out["request_id"]
        assert record["model_name"] == "digits"
        assert record["model_sha256"] == model.info.sha256
        assert record["decision"] == out["label"]
        assert record["confidence"] == out["confidence"]
        assert record["input_hmac"]
    finally:
        trail.close()


def test_a_failed_audit_write_is_a_503_and_the_label_is_not_returned(
    monitor: Monitor, model: DigitsModel, app_settings: Settings
) -> None:
    def failing_sink(ev: InferenceEvent) -> None:
        receipt: Future[Any] = Future()
        receipt.set_exception(OSError("disk full"))
        ev.audit = receipt

    monitor.add_sink(failing_sink, on_request_thread=True)
    with make_client(monitor, model, app_settings) as c:
        r = c.post(DIGITS_PATH, json={"pixels": image(0)})
    assert r.status_code == 503
    assert r.json()["error"] == "audit_unavailable"
    assert "label" not in r.json()


def test_the_event_carries_the_pixels_for_the_drift_monitor(
    monitor: Monitor, model: DigitsModel, app_settings: Settings
) -> None:
    seen: list[InferenceEvent] = []
    monitor.add_sink(seen.append)
    with make_client(monitor, model, app_settings) as c:
        c.post(DIGITS_PATH, json={"pixels": image(1)})
        post_raw(c, b'{"pixels": [1]}')
    monitor.flush()
    ok = [e for e in seen if e.status == "ok"]
    assert len(ok) == 1 and ok[0].inputs == [float(v) for v in image(1)]
    assert (ok[0].label, ok[0].confidence) == (model.predict(image(1)).label, ok[0].score)
    assert [e.error_type for e in seen if e.status == "error"] == ["invalid_input"]
