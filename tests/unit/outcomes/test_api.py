"""POST /v1/outcomes through a service-shaped app: idempotent, audited, nothing lost on errors."""

from __future__ import annotations

from typing import Any

import pytest

from infertrail.audit.record import validate_record

from .conftest import Service


def post(service: Service, body: Any) -> tuple[int, Any]:
    r = service.client.post("/v1/outcomes", json=body)
    return r.status_code, r.json()


def setup_predictions(service: Service, n: int = 6) -> None:
    for i in range(n):
        service.predict(f"req-{i}", score=0.1 + 0.15 * i)
    service.monitor.flush()  # the index sink has them; the service flushes it to SQLite


def test_accept_repeat_unknown(service: Service) -> None:
    setup_predictions(service)
    status, body = post(
        service,
        [
            {"request_id": "req-0", "outcome": 0, "ts": "2026-03-01T10:00:00Z"},
            {"request_id": "req-1", "outcome": 1},
            {"request_id": "req-404", "outcome": 1},
            {"request_id": "req-2", "outcome": 12.5, "kind": "revenue"},
        ],
    )
    assert status == 200, body
    assert (body["received"], body["accepted"], body["duplicates"]) == (4, 3, 0)
    assert body["unknown"] == ["req-404"]
    assert body["audit_seq_last"] - body["audit_seq_first"] == 2
    # one outcome record per accepted outcome, valid under the record schema
    records = service.audit_records()
    assert len(records) == 3
    for r in records:
        validate_record(r)
    first = next(r for r in records if r["request_id"] == "req-0")
    assert first["model_name"] == "credit" and first["model_version"] == "1.0.0"
    assert first["team"] == service.settings.team and first["endpoint"] == "/v1/credit/score"
    assert first["outcome"] == {
        "kind": "label",
        "label": "0",
        "value": 0.0,
        "observed_at": "2026-03-01T10:00:00.000000Z",
    }
    assert first["seq"] == body["audit_seq_first"]
    # the same outcomes again (a retry): no-ops, no new audit records; a single object works
    status, again = post(service, {"request_id": "req-1", "outcome": True})
    assert (status, again["accepted"], again["duplicates"]) == (200, 0, 1)
    assert again["audit_seq_first"] is None
    assert len(service.audit_records()) == 3


def test_conflict_is_409_and_writes_nothing(service: Service) -> None:
    setup_predictions(service)
    assert post(service, {"request_id": "req-0", "outcome": 1})[0] == 200
    status, body = post(
        service, [{"request_id": "req-1", "outcome": 1}, {"request_id": "req-0", "outcome": 0}]
    )
    assert status == 409 and body["error"] == "outcome_conflict"
    assert body["detail"] == [
        {
            "request_id": "req-0",
            "kind": "label",
            "stored": {"label": "1", "value": 1.0},
            "received": {"label": "0", "value": 0.0},
        }
    ]
    assert service.loop.store.counts()["outcomes"] == 1  # req-1 was not written either
    assert len(service.audit_records()) == 1
    assert post(service, {"request_id": "req-1", "outcome": 1})[0] == 200  # it can be resent


def test_bad_payloads_are_4xx_and_keep_what_was_accepted(service: Service) -> None:
    setup_predictions(service)
    assert post(service, [{"request_id": "req-0", "outcome": 1}])[0] == 200
    status, body = post(
        service,
        [
            {"request_id": "req-1", "outcome": 1},
            {"request_id": "req-2", "outcome": None},
            {"request_id": "req 3", "outcome": 1, "colour": "red"},
        ],
    )
    assert status == 422 and body["error"] == "invalid_outcomes"
    assert [(d["index"], d["field"]) for d in body["detail"]] == [
        (1, "outcome"),
        (2, "request_id"),
        (2, "colour"),
    ]
    r = service.client.post(
        "/v1/outcomes",
        content=b'[{"request_id": "req-1",',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    assert post(service, [])[0] == 422
    assert post(service, [{"request_id": f"r{i}", "outcome": 1} for i in range(10_001)])[1][
        "detail"
    ][0]["message"].startswith("10001 outcomes in one batch")
    # the earlier outcome is intact and nothing of the bad batches was stored or audited
    assert service.loop.store.counts()["outcomes"] == 1
    assert len(service.audit_records()) == 1
    assert "X-Request-ID".lower() in {k.lower() for k in r.headers}


def test_audit_failure_is_503_and_stores_nothing(service: Service) -> None:
    setup_predictions(service)
    assert post(service, {"request_id": "req-0", "outcome": 1})[0] == 200
    service.trail.log.close()
    status, body = post(service, {"request_id": "req-1", "outcome": 1})
    assert status == 503 and body["error"] == "audit_unavailable"
    assert "nothing was stored" in body["detail"]
    assert service.loop.store.counts()["outcomes"] == 1


def test_late_outcomes_join(service: Service) -> None:
    """An outcome arriving long after its prediction joins like any other."""
    service.predict("old-1", score=0.9)
    service.monitor.flush()
    status, body = post(
        service, {"request_id": "old-1", "outcome": 1, "ts": "2030-01-01T00:00:00Z"}
    )
    assert status == 200 and body["accepted"] == 1


def test_performance_endpoint(service: Service) -> None:
    setup_predictions(service)
    outcomes = [{"request_id": f"req-{i}", "outcome": int(i >= 3)} for i in range(6)]
    assert post(service, outcomes)[0] == 200
    r = service.client.get("/v1/outcomes/performance", params={"model": "credit"})
    assert r.status_code == 200
    [group] = r.json()["groups"]
    # scores 0.1 .. 0.85; truth 1 from req-3 (0.55) on: threshold 0.5 gets every one right
    assert group["mode"] == "binary" and group["positive"] == "1"
    assert group["accuracy"] == 1.0 and group["roc_auc"] == 1.0 and group["n"] == 6
    assert sum(b["count"] for b in group["by_latency_ms"]) == 6
    r = service.client.get("/v1/outcomes/performance", params={"from": "2026-01-01T00:00:00"})
    assert r.status_code == 422


def performance(service: Service, **params: str) -> tuple[int, Any]:
    r = service.client.get("/v1/outcomes/performance", params=params)
    return r.status_code, r.json()


def test_performance_window_at_the_ends_of_time_is_no_bound(service: Service) -> None:
    """Regression: to=9999-... and from=0001-... were an OverflowError (500) in SQLite."""
    setup_predictions(service)
    assert post(service, [{"request_id": f"req-{i}", "outcome": 1} for i in range(6)])[0] == 200
    everything = performance(service)
    for params in (
        {"to": "9999-12-31T00:00:00Z"},
        {"from": "0001-01-01T00:00:00Z"},
        {"from": "0001-01-01T00:00:00+23:59", "to": "9999-12-31T23:59:60-23:59"},
    ):
        status, body = performance(service, **params)
        assert status == 200, body
        assert body["groups"] == everything[1]["groups"]
        assert body["from"] is None and body["to"] is None  # what the window really was
    # bounds that exclude everything are kept, clamped to what can be stored
    status, body = performance(service, **{"from": "9999-01-01T00:00:00Z"})
    assert status == 200 and body["groups"] == [] and body["from"].startswith("2262-04-11")
    status, body = performance(service, to="0001-01-01T00:00:00Z")
    assert status == 200 and body["groups"] == [] and body["to"].startswith("1677-09-21")


@pytest.mark.parametrize(
    ("params", "field", "why"),
    [
        ({"to": "0.5"}, "to", "RFC 3339"),  # FastAPI's datetime took numbers as Unix times
        ({"from": "20260101T000000Z"}, "from", "RFC 3339"),  # ISO 8601, not RFC 3339
        ({"from": ""}, "from", "RFC 3339"),
        ({"to": "2026-02-30T00:00:00Z"}, "to", "not a valid time"),
        ({"from": "2026-01-01T00:00:00"}, "from", "UTC offset"),
    ],
)
def test_performance_window_must_be_rfc3339(
    service: Service, params: dict[str, str], field: str, why: str
) -> None:
    status, body = performance(service, **params)
    assert status == 422 and body["error"] == "invalid_query"
    [problem] = body["detail"]
    assert problem["field"] == field
    assert why in problem["message"]


def test_performance_query_bounds(service: Service) -> None:
    for params in ({"every_s": "0"}, {"every_s": str(10**12)}, {"bins": "101"}, {"kind": "A B"}):
        r = service.client.get("/v1/outcomes/performance", params=params)
        assert r.status_code == 422, params


@pytest.mark.parametrize("ts", ["9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z", "0.5"])
def test_outcome_times_outside_what_is_stored_are_422(service: Service, ts: str) -> None:
    setup_predictions(service)
    status, body = post(service, {"request_id": "req-0", "outcome": 1, "ts": ts})
    assert status == 422, body
    [problem] = body["detail"]
    assert problem["field"] == "ts"
    assert service.loop.store.counts()["outcomes"] == 0


def test_outcome_schema_states_the_rules(service: Service) -> None:
    spec = service.client.get("/openapi.json").json()
    body = spec["paths"]["/v1/outcomes"]["post"]["requestBody"]["content"]["application/json"]
    item, batch = body["schema"]["anyOf"]
    assert batch["minItems"] == 1 and batch["maxItems"] == service.settings.outcome_batch_max
    assert item["properties"]["request_id"]["pattern"].startswith("^[A-Za-z0-9]")
    assert {"format": "date-time", "type": "string"} in item["properties"]["ts"]["anyOf"]
