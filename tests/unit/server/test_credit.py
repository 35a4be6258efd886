"""POST /v1/credit/score over HTTP (in-process): validation, response, audit record."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from infertrail.audit.record import validate_record
from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.models import credit
from infertrail.models.credit import CreditModel, as_application, load_dataset
from infertrail.models.reason_codes import REASON_CODES_VERSION
from infertrail.monitor import Monitor
from infertrail.runtime.audit import AuditTrail
from infertrail.server.credit import CREDIT_SCORE_PATH, credit_router
from infertrail.web.requestid import RequestIdMiddleware
from infertrail.web.responses import install_error_handlers

APPLICANT = "applicant-4711@example"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> CreditModel:
    root = tmp_path_factory.mktemp("credit-models")
    credit.train(root)
    return CreditModel.load(root)


@pytest.fixture
def settings(tmp_path: Path, clean_env: None) -> Settings:
    s = Settings(data_dir=tmp_path / "data", metric_export_interval_ms=60_000)
    s.ensure_dirs()
    return s


@pytest.fixture
def monitor(settings: Settings) -> Iterator[Monitor]:
    m = Monitor(settings)
    yield m
    m.shutdown()


def make_client(monitor: Monitor, model: CreditModel, settings: Settings) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(credit_router(monitor, model, settings))
    return TestClient(app)


@pytest.fixture
def client(monitor: Monitor, model: CreditModel, settings: Settings) -> Iterator[TestClient]:
    with make_client(monitor, model, settings) as c:
        yield c


@pytest.fixture
def audited(
    monitor: Monitor, model: CreditModel, settings: Settings
) -> Iterator[tuple[TestClient, AuditTrail]]:
    trail = AuditTrail.open(settings, fsync=False)
    monitor.add_sink(trail, on_request_thread=True)
    try:
        with make_client(monitor, model, settings) as c:
            yield c, trail
    finally:
        trail.close()


@functools.cache
def dataset() -> credit.CreditData:
    return load_dataset()


def body(row: int = 1, **changes: Any) -> dict[str, Any]:
    return {"applicant_id": APPLICANT, **as_application(dataset().X[row]), **changes}


def test_a_decline_carries_reasons_interval_and_an_exact_explanation(
    client: TestClient, model: CreditModel
) -> None:
    r = client.post(CREDIT_SCORE_PATH, json=body(1))  # row 1 of german.data: a bad risk
    assert r.status_code == 200
    out = r.json()
    assert out["decision"] == "decline"
    assert 0.0 < out["ci_low"] <= out["score"] <= out["ci_high"] < 1.0
    assert 0.0 <= out["confidence"] <= 1.0
    assert out["model"] == {
        "name": "credit",
        "version": credit.VERSION,
        "sha256": model.info.sha256,
    }
    assert out["reason_codes_version"] == REASON_CODES_VERSION
    assert out["audit_seq"] is None  # no audit trail on this app
    reasons = out["reason_codes"]
    assert 1 <= len(reasons) <= 4
    assert [r["contribution"] for r in reasons] == sorted(r["contribution"] for r in reasons)
    assert all(r["contribution"] < 0 and r["text"] for r in reasons)
    explanation = out["explanation"]
    values = explanation["values"]
    assert list(values) == list(credit.ATTRIBUTE_NAMES)
    log_odds = math.log(out["score"] / (1 - out["score"]))
    assert explanation["base_value"] + math.fsum(values.values()) == pytest.approx(
        log_odds, abs=1e-6
    )
    assert {r["contribution"] for r in reasons} <= set(values.values())


def test_an_approval_has_no_reason_codes(client: TestClient, model: CreditModel) -> None:
    approved = next(
        i
        for i, row in enumerate(dataset().X)
        if model.assess(as_application(row)).decision == "approve"
    )
    out = client.post(CREDIT_SCORE_PATH, json=body(approved)).json()
    assert out["decision"] == "approve"
    assert out["score"] >= 5 / 6 and out["reason_codes"] == []


def test_request_id_comes_from_the_middleware_when_mounted(
    monitor: Monitor, model: CreditModel, settings: Settings
) -> None:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, on_invalid=lambda *_: None)
    app.include_router(credit_router(monitor, model, settings))
    with TestClient(app) as c:
        r = c.post(CREDIT_SCORE_PATH, json=body(), headers={"X-Request-ID": "loan-77"})
        assert r.json()["request_id"] == r.headers["x-request-id"] == "loan-77"
        bad = c.post(CREDIT_SCORE_PATH, json={}, headers={"X-Request-ID": "loan-78"})
        assert bad.json()["request_id"] == "loan-78"


# -- bad input -------------------------------------------------------------------------------

CODES_1 = ["A11", "A12", "A13", "A14"]
RANGE_DURATION = {"min": 4, "max": 72}
ID_RULE = "1-128 characters of letters, digits"


def without(field: str) -> dict[str, Any]:
    b = body()
    del b[field]
    return b


BAD_BODIES: list[tuple[str, dict[str, Any], str, str, Any]] = [
    # (case, body, field, message fragment, allowed)
    (
        "unknown code",
        body(checking_status="A15"),
        "checking_status",
        "is 'A15'; expected one of A11, A12, A13, A14",
        CODES_1,
    ),
    (
        "documented but unseen code",
        body(purpose="A47"),
        "purpose",
        "is 'A47'; expected one of A40, A41",
        None,
    ),
    (
        "code of another attribute",
        body(housing="A11"),
        "housing",
        "expected one of A151, A152, A153",
        ["A151", "A152", "A153"],
    ),
    (
        "lower-case code",
        body(checking_status="a11"),
        "checking_status",
        "expected one of A11",
        CODES_1,
    ),
    (
        "number above range",
        body(duration_months=73),
        "duration_months",
        "is 73; expected an integer from 4 to 72",
        RANGE_DURATION,
    ),
    (
        "number below range",
        body(duration_months=3),
        "duration_months",
        "is 3; expected an integer from 4 to 72",
        RANGE_DURATION,
    ),
    (
        "negative amount",
        body(credit_amount=-1),
        "credit_amount",
        "expected an integer from 250 to 18424",
        {"min": 250, "max": 18424},
    ),
    (
        "age out of range",
        body(age_years=120),
        "age_years",
        "is 120; expected an integer from 19 to 75",
        {"min": 19, "max": 75},
    ),
    (
        "number as string",
        body(duration_months="12"),
        "duration_months",
        "is '12'; expected an integer",
        RANGE_DURATION,
    ),
    (
        "float for integer",
        body(duration_months=12.5),
        "duration_months",
        "is 12.5; expected an integer",
        RANGE_DURATION,
    ),
    (
        "bool for integer",
        body(people_liable=True),
        "people_liable",
        "is True; expected an integer from 1 to 2",
        {"min": 1, "max": 2},
    ),
    (
        "null code",
        body(telephone=None),
        "telephone",
        "is None; expected one of A191, A192",
        ["A191", "A192"],
    ),
    (
        "missing attribute",
        without("savings"),
        "savings",
        "savings is required: one of A61, A62, A63, A64, A65",
        ["A61", "A62", "A63", "A64", "A65"],
    ),
    (
        "missing number",
        without("age_years"),
        "age_years",
        "age_years is required: an integer from 19 to 75",
        {"min": 19, "max": 75},
    ),
    (
        "missing applicant id",
        without("applicant_id"),
        "applicant_id",
        "applicant_id is required: " + ID_RULE,
        None,
    ),
    (
        "extra field",
        body(income=5000),
        "income",
        "'income' is not a field of this API; valid: applicant_id, checking_status",
        None,
    ),
    ("empty applicant id", body(applicant_id=""), "applicant_id", "got 0 characters", None),
    (
        "too long applicant id",
        body(applicant_id="a" * 129),
        "applicant_id",
        "got 129 characters",
        None,
    ),
    ("applicant id with spaces", body(applicant_id="jane doe"), "applicant_id", ID_RULE, None),
    ("applicant id not a string", body(applicant_id=4711), "applicant_id", "got int", None),
]


@pytest.mark.parametrize(
    ("payload", "field", "fragment", "allowed"),
    [pytest.param(b, f, m, a, id=case) for case, b, f, m, a in BAD_BODIES],
)
def test_bad_input_is_a_422_naming_the_field_and_the_allowed_values(
    client: TestClient,
    monitor: Monitor,
    payload: dict[str, Any],
    field: str,
    fragment: str,
    allowed: Any,
) -> None:
    r = client.post(CREDIT_SCORE_PATH, json=payload)
    assert r.status_code == 422
    out = r.json()
    assert out["error"] == "invalid_input" and out["request_id"]
    [problem] = [p for p in out["detail"] if p["field"] == field]
    assert len(out["detail"]) == 1
    assert fragment in problem["message"]
    if allowed is not None:
        assert problem["allowed"] == allowed
    applicant_id = payload.get("applicant_id")
    if field == "applicant_id" and isinstance(applicant_id, str) and applicant_id:
        assert applicant_id not in r.text  # personal data: never echoed (errors are logged)
    monitor.flush()
    metrics = generate_latest(monitor.telemetry.prometheus_registry).decode()
    assert 'error_type="invalid_input"' in metrics


def test_every_problem_is_reported_at_once(client: TestClient) -> None:
    payload = body(checking_status="A10", duration_months=0, extra=1)
    del payload["job"]
    r = client.post(CREDIT_SCORE_PATH, json=payload)
    assert r.status_code == 422
    fields = sorted(p["field"] for p in r.json()["detail"])
    assert fields == ["checking_status", "duration_months", "extra", "job"]


@pytest.mark.parametrize("content", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_a_body_that_is_not_an_object_lists_the_fields(client: TestClient, content: bytes) -> None:
    r = client.post(
        CREDIT_SCORE_PATH, content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["field"] == "body"
    assert problem["allowed"] == ["applicant_id", *credit.ATTRIBUTE_NAMES]


def test_an_integer_written_with_a_zero_fraction_is_that_integer(
    client: TestClient, model: CreditModel
) -> None:
    """JSON Schema's integer includes 54.0: the OpenAPI document says integer, so it is one."""
    as_int = client.post(CREDIT_SCORE_PATH, json=body(duration_months=12))
    as_float = client.post(CREDIT_SCORE_PATH, json=body(duration_months=12.0, age_years=35.0))
    assert as_int.status_code == as_float.status_code == 200, as_float.text
    assert (
        as_float.json()["explanation"]["values"]
        == client.post(CREDIT_SCORE_PATH, json=body(duration_months=12, age_years=35)).json()[
            "explanation"
        ]["values"]
    )
    for bad in (12.5, True, "12", 1e300):
        r = client.post(CREDIT_SCORE_PATH, json=body(duration_months=bad))
        assert r.status_code == 422, bad


@pytest.mark.parametrize(
    "content", [b"{not json", b"", b'{"applicant_id": "a",', b"[" * 10_000 + b"]" * 10_000]
)
def test_invalid_json_is_a_400(client: TestClient, content: bytes) -> None:
    r = client.post(
        CREDIT_SCORE_PATH, content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_json"
    assert "not valid JSON" in r.json()["detail"]


def test_openapi_documents_the_codes_and_ranges(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"][CREDIT_SCORE_PATH]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["checking_status"]["enum"] == CODES_1
    assert schema["properties"]["duration_months"]["minimum"] == 4
    assert schema["properties"]["duration_months"]["maximum"] == 72
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"applicant_id", *credit.ATTRIBUTE_NAMES}
    assert {"200", "400", "422", "503"} <= set(op["responses"])


# -- audit -----------------------------------------------------------------------------------


def read_record(trail: AuditTrail, seq: int) -> tuple[dict[str, Any], bytes]:
    trail.log.flush()
    [(_, raw)] = list(trail.log.read(seq, seq + 1))
    return json.loads(raw), raw


def test_the_audit_record_holds_the_decision_and_the_pseudonym_not_the_applicant_id(
    audited: tuple[TestClient, AuditTrail],
) -> None:
    client, trail = audited
    r = client.post(CREDIT_SCORE_PATH, json=body(1))
    assert r.status_code == 200
    out = r.json()
    assert isinstance(out["audit_seq"], int)
    record, raw = read_record(trail, out["audit_seq"])
    validate_record(record)
    assert record["subject"] == trail.pseudonym(APPLICANT)
    assert APPLICANT.encode() not in raw and b"applicant-4711" not in raw
    assert record["request_id"] == out["request_id"]
    assert record["model_sha256"] == out["model"]["sha256"]
    assert record["input_hmac"] is not None
    for key in ("decision", "score", "ci_low", "ci_high", "confidence"):
        assert record[key] == out[key]
    explanation = record["explanation"]
    assert explanation["values"] == out["explanation"]["values"]
    assert explanation["base_value"] == out["explanation"]["base_value"]
    assert explanation["reason_codes"] == [rc["code"] for rc in out["reason_codes"]]
    assert explanation["reason_codes_version"] == REASON_CODES_VERSION
    # the stored explanation still adds up to the model's output
    log_odds = math.log(record["score"] / (1 - record["score"]))
    total = explanation["base_value"] + math.fsum(explanation["values"].values())
    assert total == pytest.approx(log_odds, abs=1e-6)


def test_the_same_applicant_gets_the_same_pseudonym_and_others_a_different_one(
    audited: tuple[TestClient, AuditTrail],
) -> None:
    client, trail = audited
    seqs = [
        client.post(CREDIT_SCORE_PATH, json=body(i, applicant_id=a)).json()["audit_seq"]
        for i, a in ((1, "alice"), (2, "alice"), (3, "bob"))
    ]
    subjects = [read_record(trail, s)[0]["subject"] for s in seqs]
    assert subjects[0] == subjects[1] != subjects[2]


def test_a_failed_audit_write_is_a_503_and_the_decision_is_not_returned(
    monitor: Monitor, model: CreditModel, settings: Settings
) -> None:
    def failing_sink(ev: InferenceEvent) -> None:
        receipt: Future[Any] = Future()
        receipt.set_exception(OSError("disk full"))
        ev.audit = receipt

    monitor.add_sink(failing_sink, on_request_thread=True)
    with make_client(monitor, model, settings) as c:
        r = c.post(CREDIT_SCORE_PATH, json=body())
    assert r.status_code == 503
    assert r.json()["error"] == "audit_unavailable"
    assert "disk full" not in r.json()["detail"]  # the cause is for the operator's log
    assert "decision" not in r.json()


def test_not_waiting_for_durability_returns_no_seq(
    monitor: Monitor, model: CreditModel, settings: Settings
) -> None:
    relaxed = settings.model_copy(update={"audit_wait_durable": False})
    trail = AuditTrail.open(relaxed, fsync=False)
    monitor.add_sink(trail, on_request_thread=True)
    try:
        with make_client(monitor, model, relaxed) as c:
            assert c.post(CREDIT_SCORE_PATH, json=body()).json()["audit_seq"] is None
    finally:
        trail.close()
