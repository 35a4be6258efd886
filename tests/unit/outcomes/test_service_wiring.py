"""Cost and outcomes wired into the real service the way docs/cost.md and docs/outcomes.md say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.cost import CostAttribution, cost_db_path, cost_report
from infertrail.demo.credit import as_application, load_dataset
from infertrail.outcomes import OutcomeLoop
from infertrail.server.app import build_services, create_app


def test_credit_decisions_cost_and_outcomes(settings: Settings) -> None:
    services = build_services(settings)
    cost = CostAttribution.open(settings, meter=services.monitor.telemetry.meter)
    services.monitor.add_sink(cost)
    services.closers.append(cost.close)
    loop = OutcomeLoop.open(settings, services.monitor, audit=services.audit)
    services.closers.append(loop.close)
    app = create_app(services)
    app.include_router(loop.router())
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
