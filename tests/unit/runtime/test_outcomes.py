"""Cost and outcomes as build_services wires them into the real service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.cost import cost_db_path, cost_report
from infertrail.models.credit import as_application, load_dataset
from infertrail.server.app import build_services, create_app


def test_credit_decisions_cost_and_outcomes(settings: Settings) -> None:
    services = build_services(settings)
    assert services.runtime.outcomes is not None  # cost_enabled and outcomes_enabled by default
    app = create_app(services)
    data = load_dataset()
    try:
        with TestClient(app) as client:
            rids = []
            for i in range(5):
                body = {"applicant_id": f"a-{i}", **as_application(data.X[i])}
                r = client.post("/v1/credit/score", json=body)
                assert r.status_code == 200, r.text
                rids.append(r.json()["request_id"])
            services.monitor.flush()
            outcomes = [
                {"request_id": rid, "outcome": int(data.y[i])} for i, rid in enumerate(rids)
            ]
            r = client.post("/v1/outcomes", json=outcomes)
            assert r.status_code == 200 and r.json()["accepted"] == 5, r.text
            metrics = client.get("/metrics").text
            assert 'infertrail_cost_cpu_seconds_total{infertrail_endpoint="/v1/credit/score"' in (
                metrics
            )
            assert "infertrail_outcomes_total" in metrics
            perf = client.get("/v1/outcomes/performance", params={"model": "credit"}).json()
            assert perf["groups"][0]["n"] == 5
    finally:
        services.monitor.flush()
        services.close()
    now = datetime.now(UTC)
    report = cost_report(
        cost_db_path(settings),
        start=now - timedelta(hours=1),
        end=now,
        by=("team", "model", "endpoint"),
    )
    [row] = report.rows
    assert row.group == {"team": settings.team, "model": "credit", "endpoint": "/v1/credit/score"}
    assert row.requests == 5 and row.cpu_seconds > 0
    assert report.process_cpu_seconds > report.attributed_cpu_seconds > 0


def test_an_outcome_right_after_its_prediction_is_joined(settings: Settings) -> None:
    services = build_services(settings)
    # A batch window no request would outlast: only the ingest's hand-over indexes the event.
    services.monitor._window = 60.0
    data = load_dataset()
    try:
        with TestClient(create_app(services)) as client:
            body = {"applicant_id": "a-0", **as_application(data.X[0])}
            rid = client.post("/v1/credit/score", json=body).json()["request_id"]
            r = client.post("/v1/outcomes", json=[{"request_id": rid, "outcome": 1}])
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    finally:
        services.close()
