"""Estimated beside realized through the skins: the digits route's probabilities reach the
index, ``GET /v1/outcomes/performance`` and ``infertrail outcomes report`` show the estimates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.estimation import cbpe_path
from infertrail.models import digits
from infertrail.models.digits import DigitsModel
from infertrail.monitor import Monitor
from infertrail.outcomes.cli import outcomes
from infertrail.outcomes.report_models import PerformanceReportOut
from infertrail.runtime.outcomes import OutcomeLoop
from infertrail.server.digits import digits_router
from infertrail.web.requestid import RequestIdMiddleware

N = 60  # digit requests
LABELLED = 40  # of which outcomes arrive


@dataclass
class Digits:
    settings: Settings
    client: TestClient
    loop: OutcomeLoop
    rids: list[str]


@pytest.fixture
def served(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Digits]:
    """The digits route and the outcomes loop on one Monitor (no audit trail: not the point),
    N held-out images classified, outcomes posted for the first LABELLED of them."""
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(settings.data_dir))  # for the CLI
    monitor = Monitor(settings)
    loop = OutcomeLoop.open(settings, monitor.telemetry.meter, audit=None)
    monitor.add_sink(loop)
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, on_invalid=lambda rid, msg, path: None)
    app.include_router(digits_router(monitor, DigitsModel.load(settings.models_dir), settings))
    app.include_router(loop.router())
    data = digits.split()
    try:
        with TestClient(app) as client:
            rids = []
            for image in data.test_images[:N]:
                r = client.post("/v1/digits", json={"pixels": image.tolist()})
                assert r.status_code == 200, r.text
                rids.append(r.json()["request_id"])
            monitor.flush()
            truth = [
                {"request_id": rid, "outcome": str(y)}
                for rid, y in zip(rids, data.test_labels[:N], strict=True)
            ]
            r = client.post("/v1/outcomes", json=truth[:LABELLED])
            assert r.status_code == 200 and r.json()["accepted"] == LABELLED, r.text
            yield Digits(settings, client, loop, rids)
    finally:
        monitor.shutdown()


def performance(d: Digits, **params: Any) -> tuple[int, Any]:
    r = d.client.get("/v1/outcomes/performance", params=params)
    return r.status_code, r.json()


def test_the_route_probabilities_reach_the_estimates(served: Digits) -> None:
    p = served.loop.store.prediction(served.rids[0])
    assert p is not None and p.probabilities is not None
    assert list(p.probabilities) == list(digits.LABELS)
    assert p.model_sha256 == DigitsModel.load(served.settings.models_dir).info.sha256
    status, body = performance(served, model="digits")
    assert status == 200, body
    [group] = body["groups"]
    assert group["n"] == LABELLED  # the realized view: joined outcomes only
    e = group["estimated"]
    assert e["status"] == "estimated" and e["reason"] is None and e["kind"] == "multiclass"
    assert (e["n_predictions"], e["n_estimated"], e["n_realized"]) == (N, N, LABELLED)
    assert list(e["metrics"]) == ["roc_auc", "accuracy", "f1", "precision", "recall"]
    acc = e["metrics"]["accuracy"]
    assert acc["realized"] == group["accuracy"]  # same rows, same definition
    assert acc["difference"] == pytest.approx(acc["estimated"] - acc["realized"])
    assert acc["lower_band"] <= acc["estimated"] <= acc["upper_band"]
    PerformanceReportOut.model_validate(body)  # the documented shape


def test_the_openapi_document_describes_the_estimates(served: Digits) -> None:
    spec = served.client.get("/openapi.json").json()
    answer = spec["paths"]["/v1/outcomes/performance"]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/PerformanceReportOut")
    schemas = spec["components"]["schemas"]
    assert {"from", "to", "groups"} <= set(schemas["PerformanceReportOut"]["properties"])
    assert "estimated" in schemas["GroupOut"]["properties"]
    fields = schemas["MetricComparisonOut"]["properties"]
    assert {"estimated", "lower_band", "upper_band", "realized", "difference"} <= set(fields)
    assert "no_estimator" in json.dumps(schemas["EstimatedOut"])


def test_a_model_without_an_estimator_says_so(served: Digits) -> None:
    cbpe_path(served.settings.models_dir, "digits").unlink()
    status, body = performance(served, model="digits")
    assert status == 200
    e = body["groups"][0]["estimated"]
    assert e["status"] == "no_estimator" and e["metrics"] == {}
    assert e["reason"].startswith("no estimator fitted: model 'digits' has no cbpe.json")
    assert str(served.settings.models_dir) not in e["reason"]


@pytest.mark.parametrize(
    "params",
    [{"every_s": "0"}, {"bins": "0"}, {"kind": "A B"}, {"from": "yesterday"}, {"to": "0.5"}],
)
def test_bad_query_parameters_are_still_422(served: Digits, params: dict[str, str]) -> None:
    status, _ = performance(served, **params)
    assert status == 422


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(outcomes, list(args))
    return result.exit_code, result.output


def test_the_cli_report_shows_both_side_by_side(served: Digits) -> None:
    served.loop.flush()
    code, out = run("report", "--model", "digits")
    assert code == 0, out
    lines = out.splitlines()
    head = lines.index(
        f"  estimated (cbpe) over {N} of {N} predictions, realized over the {LABELLED} with "
        "outcomes"
    )
    assert lines[head + 1].split() == [
        "metric", "estimated", "band", "(3", "se)", "realized", "est", "-", "real", "flags"
    ]  # fmt: skip
    row = lines[head + 3].split()  # accuracy: estimate, band, realized, gap
    assert row[0] == "accuracy" and len(row) == 6 and row[2].startswith("[")
    code, text = run("report", "--model", "digits", "--format", "json")
    assert code == 0
    from_cli = json.loads(text)["groups"][0]["estimated"]
    assert from_cli == performance(served, model="digits")[1]["groups"][0]["estimated"]
    code, text = run("report", "--model", "digits", "--format", "json", "--no-estimates")
    assert json.loads(text)["groups"][0]["estimated"] is None
    code, out = run("report", "--model", "digits", "--no-estimates")
    assert code == 0 and "estimated" not in out


def test_the_cli_says_why_there_is_no_estimate(served: Digits) -> None:
    served.loop.flush()
    cbpe_path(served.settings.models_dir, "digits").write_text("{}")
    code, out = run("report", "--model", "digits")
    assert code == 0, out
    assert "  estimated: none (estimator file" in out and "format is None" in out
