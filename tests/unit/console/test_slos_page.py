"""The SLOs & alerts page: budgets, burn rates and their history from the SLO counter of the
demo service (real traffic, plus an hour of past buckets written into the same counter), the
evaluator's status, open alerts from the alert engine, bad ranges, a service without SLOs."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.config import Settings
from infertrail.runtime.asgi import instrument
from infertrail.slo.burnrate import evaluate_slo
from infertrail.slo.definitions import parse_duration
from tests.unit.console.test_explorer import Demo, _login, demo_settings, running_demo

SLOS = """
version: infertrail/v1
service: infertrail-demo
slos:
  - name: sentiment-latency
    description: Sentiment answered within 250 ms.
    model: sentiment
    objective: 99
    window: 28d
    sli:
      kind: latency
      threshold_seconds: 0.25
"""
SLO = "sentiment-latency"


@pytest.fixture
def demo(settings: Settings, tmp_path: Path) -> Iterator[Demo]:
    slo_file = tmp_path / "slos.yaml"
    slo_file.write_text(SLOS)
    with running_demo(demo_settings(settings, slo_file=slo_file)) as d:
        yield d


def _past_buckets(demo: Demo) -> int:
    """Write 60 all-bad minutes (89 to 30 minutes ago) and 29 all-good ones after them into
    the SLO's counts; return the current bucket index."""
    service = demo.services.runtime.slo
    assert service is not None
    counter = service.counter
    now_idx = int(time.time() // counter.bucket_s)
    with counter.locked():
        counts = counter.counts(SLO)
        for ago in range(89, 0, -1):
            counts.add(now_idx - ago, good=0 if ago >= 30 else 10, total=10)
    return now_idx


def test_budget_burn_rates_and_their_history(demo: Demo) -> None:
    now_idx = _past_buckets(demo)
    _login(demo.client, demo.keys["engineer"])
    r = demo.client.get("/ui/slos.json")
    assert r.status_code == 200, r.text
    page = r.json()
    (slo,) = page["slos"]
    assert slo["name"] == SLO and slo["evaluated_by"] == "page"
    # 600 bad of 890 counted events in the 28-day window: the budget is long spent.
    assert slo["period"] == {"good": 290, "total": 890}
    assert slo["budget_remaining"] == pytest.approx(1 - (600 / 890) / 0.01)
    windows = {w["window"]: w for w in slo["windows"]}
    assert windows["5m"]["burn_rate"] == pytest.approx(0.0)
    assert windows["1h"]["total"] == 600 and windows["1h"]["good"] == 290
    # The chart's points agree with the evaluator's own computation at each point.
    service = demo.services.runtime.slo
    assert service is not None
    spec = next(s for s in service.counter.slos if s.name == SLO)
    series = slo["history"]["series"]
    for label, points in series.items():
        for t, value in points[::7]:
            with service.counter.locked():
                expected = evaluate_slo(spec, service.counter.counts(SLO), t)
            burn = expected.burn_rate(parse_duration(label))
            assert (value is None) == math.isnan(burn), (label, t)
            if value is not None:
                assert value == pytest.approx(burn)
    # History: the page pair held from the first bad minute until the 30-minute window had
    # only one bad minute in it (1/30 is below 6 x budget); the ticket pair still holds.
    fired = {f["severity"]: f for f in slo["history"]["fired"]}
    assert fired["page"]["start"] == (now_idx - 88) * 60
    assert fired["page"]["end"] == now_idx * 60
    assert fired["page"]["peak"] > 1
    assert fired["ticket"]["start"] == (now_idx - 88) * 60 and fired["ticket"]["end"] is None
    for f in fired.values():
        with service.counter.locked():
            at_start = evaluate_slo(spec, service.counter.counts(SLO), f["start"])
            before = evaluate_slo(spec, service.counter.counts(SLO), f["start"] - 60)
        assert at_start.firing[f["severity"]] and not before.firing[f["severity"]]
    html = demo.client.get("/ui/slos")
    assert html.status_code == 200
    assert '<svg class="chart"' in html.text and "sentiment-latency: burn rates" in html.text
    assert "still firing" in html.text


def test_the_evaluators_status_and_the_open_alert(demo: Demo) -> None:
    _login(demo.client, demo.keys["auditor"])
    # Only the current (unfinished) minute has events: nothing is measured yet, so nothing
    # is shown as a number.
    (empty,) = demo.client.get("/ui/slos.json").json()["slos"]
    assert empty["budget_remaining"] is None
    assert [a["margin"] for a in empty["alerts"]] == [None, None]
    assert all(w["burn_rate"] is None for w in empty["windows"])
    _past_buckets(demo)
    service = demo.services.runtime.slo
    assert service is not None
    service.evaluator.evaluate()  # what the timer does every minute: the engine judges it
    page = demo.client.get("/ui/slos.json").json()
    (slo,) = page["slos"]
    assert slo["evaluated_by"] == "evaluator"
    alerts = {a["severity"]: a for a in slo["alerts"]}
    assert alerts["ticket"]["firing"] is True and alerts["page"]["firing"] is False
    open_alerts = page["alerts"]["open"]
    assert [a["signal"] for a in open_alerts] == ["slo.sentiment_latency.burn.ticket"]
    assert open_alerts[0]["model"] == "sentiment" and open_alerts[0]["since"]
    states = {s["signal"]: s["status"] for s in page["alerts"]["states"]}
    assert states["slo.sentiment_latency.burn.ticket"] == "firing"
    assert states["slo.sentiment_latency.burn.page"] == "inactive"
    assert "firing" in demo.client.get("/ui/slos").text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-07-02", "to": "2026-07-01"}, "to"),
        ({"from": "2026-07-01", "to": "2026-07-30"}, "to"),
        ({"from": "nan"}, "from"),
    ],
)
def test_bad_ranges_are_422_naming_the_field(
    bare: TestClient, params: dict[str, str], field: str
) -> None:
    r = bare.get("/ui/slos.json", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}: ")


def test_a_service_without_slos_says_so(bare: TestClient) -> None:
    page = bare.get("/ui/slos.json", params={"from": "2026-07-01", "to": "2026-07-02"}).json()
    assert page["slos"] == [] and "slo_file" in page["note"]
    assert page["alerts"]["configured"] is False
    html = bare.get("/ui/slos").text
    assert "no SLOs are defined" in html and "nothing can fire" in html


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[TestClient]:
    """A service with no models, SLOs or rules, an engineer logged in."""
    settings = Settings(
        data_dir=tmp_path / "data", set_global_providers=False, telemetry_files=False
    )
    app = FastAPI()
    runtime = instrument(app, settings, console=True)
    assert runtime.compliance is not None
    _, key = runtime.compliance.users.add("u-engineer", "engineer")
    with TestClient(app, base_url="http://testserver") as client:
        _login(client, key)
        yield client
