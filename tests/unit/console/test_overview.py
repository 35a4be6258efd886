"""The overview page through a real service: traffic recorded by the runtime, sealed in part into
the lake, the page's numbers against numbers computed here from the records themselves."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertrail.audit.typed import FILE_SCHEMA
from infertrail.console.data import (
    MAX_RANGE,
    LakeSlice,
    RangeError,
    TimeRange,
    bucket_seconds,
    lake_slice,
    model_series,
    model_stats,
    parse_range,
)
from infertrail.events import ModelInfo

from .conftest import ConsoleApp

CREDIT_1 = ModelInfo("credit", "1.0", "a" * 64)
CREDIT_2 = ModelInfo("credit", "2.0", "b" * 64)
CHURN = ModelInfo("churn", "0.3", "c" * 64)
IDLE = ModelInfo("idle", "1", "d" * 64)
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def _traffic(app: ConsoleApp, model: ModelInfo, n: int, seed: int) -> None:
    """``n`` inferences: every 7th fails, every 5th has no confidence."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        try:
            with app.runtime.observe(model, {"x": i}) as ev:
                ev.label = "yes" if i % 2 else "no"
                if i % 5:
                    ev.confidence = float(rng.uniform(0.5, 1.0))
                if i % 7 == 0:
                    raise RuntimeError("model failed")
        except RuntimeError:
            pass


def _records(app: ConsoleApp) -> list[dict[str, Any]]:
    trail = app.runtime.audit
    assert trail is not None and trail.flush(10)
    return [json.loads(payload) for _, payload in trail.log.read(0, trail.log.size)]


def _expected(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model, version), computed from the records, independently of the console."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["event_type"] == "inference":
            groups.setdefault((r["model_name"], r["model_version"]), []).append(r)
    for key, rows in groups.items():
        latency = np.array([r["latency_ms"] for r in rows])
        conf = [r["confidence"] for r in rows if r["confidence"] is not None]
        errors = sum(r["status"] == "error" for r in rows)
        out[key] = {
            "requests": len(rows),
            "errors": errors,
            "error_rate": errors / len(rows),
            "p50_ms": float(np.percentile(latency, 50)),
            "p99_ms": float(np.percentile(latency, 99)),
            "mean_confidence": float(np.mean(conf)) if conf else None,
            "with_confidence": len(conf),
        }
    return out


@pytest.fixture
def served(console_app_factory: Callable[..., ConsoleApp]) -> ConsoleApp:
    """Three model versions with traffic, one without; part sealed into the lake, part not."""
    app = console_app_factory((CREDIT_1, CHURN, IDLE))  # 2.0: a canary, observed only
    _traffic(app, CREDIT_1, 120, 1)
    _traffic(app, CHURN, 40, 2)
    trail = app.runtime.audit
    assert trail is not None and trail.sealer is not None and trail.flush(10)
    trail.sealer.seal()
    _traffic(app, CREDIT_2, 30, 3)  # stays in the unsealed tail
    _traffic(app, CREDIT_1, 10, 4)
    assert trail.flush(10)
    return app


def test_numbers_on_the_page_are_the_records_numbers(served: ConsoleApp) -> None:
    expected = _expected(_records(served))
    served.login("auditor")
    page = served.client.get("/ui/overview.json").json()
    rows = {(m["model"], m["version"]): m for m in page["models"]}
    assert set(rows) == {*expected, ("idle", "1")}
    for key, want in expected.items():
        got = rows[key]
        for name in ("requests", "errors", "with_confidence"):
            assert got[name] == want[name], (key, name)
        for name in ("error_rate", "p50_ms", "p99_ms", "mean_confidence"):
            assert got[name] == pytest.approx(want[name], rel=1e-9), (key, name)
        assert got["drift_url"] == f"/ui/drift?model={key[0]}"
        assert got["explorer_url"] == f"/ui/explorer?model={key[0]}&version={key[1]}"
    idle = rows[("idle", "1")]
    assert idle["requests"] == 0
    assert all(idle[k] is None for k in ("error_rate", "p50_ms", "p99_ms", "mean_confidence"))
    assert page["range"]["name"] == "24h"
    # the traffic chart's points add up to the requests (per minute x bucket minutes)
    minutes = page["bucket_s"] / 60
    charted = {
        s["name"]: round(sum(y for _, y in s["points"]) * minutes)
        for s in page["charts"]["traffic"]["series"]
    }
    assert charted == {"credit": 160, "churn": 40}
    # a bucket without records: no requests (0), and no latency (a gap, not 0)
    traffic = dict(page["charts"]["traffic"]["series"][0]["points"])
    latency = dict(page["charts"]["latency"]["series"][0]["points"])
    assert traffic.keys() == latency.keys() and len(traffic) >= 96
    assert {x for x, y in latency.items() if y is None} == {x for x, y in traffic.items() if not y}
    assert sum(y is not None for y in latency.values()) in (1, 2)  # the traffic's minute(s)
    # the cost attribution counted the same requests
    assert served.runtime.cost is not None and served.runtime.cost.flush()
    cost = served.client.get("/ui/overview.json").json()["cost"]
    by_model = {(r["model"], r["version"]): r["requests"] for r in cost["rows"]}
    assert by_model == {k: v["requests"] for k, v in expected.items()}


def test_part_of_the_traffic_is_sealed_and_part_in_the_tail(served: ConsoleApp) -> None:
    engine = served.runtime.compliance.engine  # type: ignore[union-attr]
    now = datetime.now(UTC)
    span = TimeRange(now - timedelta(hours=1), now + timedelta(minutes=1))
    source = lake_slice(engine, span)
    assert source.files and source.tail.num_rows >= 40
    sealed_only = {
        (s.model, s.version): s.requests
        for s in model_stats(LakeSlice.of_files(source.files), span)
    }
    assert sealed_only == {("credit", "1.0"): 120, ("churn", "0.3"): 40}
    both = {(s.model, s.version): s.requests for s in model_stats(source, span)}
    assert both == {("credit", "1.0"): 130, ("churn", "0.3"): 40, ("credit", "2.0"): 30}
    series = model_series(source, span, 60)
    assert sum(p.requests for p in series["credit"]) == 160
    assert sum(p.errors for p in series["churn"]) == len(range(0, 40, 7))
    # a range before any traffic holds nothing
    empty = TimeRange(now - timedelta(days=2), now - timedelta(days=1))
    assert model_stats(lake_slice(engine, empty), empty) == []


def test_html_page_for_a_role_without_decisions(served: ConsoleApp) -> None:
    served.login("engineer")
    r = served.client.get("/ui/overview?range=1h")
    assert r.status_code == 200
    html = r.text
    assert '<h2 id="models">Models</h2>' in html
    row = re.search(r"<th scope=\"row\">idle</th>(.*?)</tr>", html, re.S)
    assert row is not None and row.group(1).count("\u2013") >= 4 and ">0<" in row.group(1)
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.get("role") == "figure"  # it holds the zoom links
    assert 'href="/ui/overview?from=' in html  # zoom links
    assert 'aria-current="true">last 1h' in html
    assert "No alert rules are configured" in html and "No SLOs are defined" in html


@pytest.mark.parametrize(
    ("query", "param", "words"),
    [
        ("range=2h", "range", "is not one of 1h, 6h, 24h, 7d"),
        ("from=yesterday", "from", "is not a date"),
        ("from=2026-07-02&to=2026-07-01", "to", "is not after from"),
        ("from=2026-01-01&to=2026-07-01", "to", "the limit is 31"),
        ("to=2026-07-01", "from", "is required with to"),
        ("range=1h&from=2026-07-01", "range", "not both"),
        ("from=2026-07-01T00:00:00", "from", "has no time zone"),
        ("model=credit", "model", "unknown parameter"),
    ],
)
def test_bad_ranges_are_refused_naming_the_parameter(
    console_app: ConsoleApp, query: str, param: str, words: str
) -> None:
    console_app.login("engineer")
    r = console_app.client.get(f"/ui/overview.json?{query}")
    assert r.status_code == 400
    assert r.json()["detail"].startswith(f"{param}: ") and words in r.json()["detail"]
    page = console_app.client.get(f"/ui/overview?{query}")
    assert page.status_code == 400 and words in page.text


def test_zoom_link_ranges_are_accepted(served: ConsoleApp) -> None:
    served.login("compliance")
    page = served.client.get("/ui/overview.json?range=6h").json()
    assert len(page["zoom"]) == 4
    last = page["zoom"][-1]["url"]
    zoomed = served.client.get(last.replace("/ui/overview", "/ui/overview.json")).json()
    assert zoomed["range"]["name"] is None
    assert sum(m["requests"] for m in zoomed["models"]) == 200


def test_parse_range() -> None:
    assert parse_range("", "", "", NOW) == TimeRange(NOW - timedelta(hours=24), NOW, "24h")
    assert parse_range("7d", "", "", NOW).start == NOW - timedelta(days=7)
    got = parse_range("", "1782896400", "2026-07-01T12:00:00+02:00", NOW)
    assert got.start == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert got.end == datetime(2026, 7, 1, 10, 0, tzinfo=UTC) and got.name == ""
    assert parse_range("", "2026-06-30", "", NOW).end == NOW
    with pytest.raises(RangeError) as caught:
        parse_range("", "2026-01-01", "", NOW)
    assert caught.value.param == "to" and f"{MAX_RANGE.days}" in caught.value.message


def test_bucket_seconds() -> None:
    def span(seconds: float) -> TimeRange:
        return TimeRange(NOW - timedelta(seconds=seconds), NOW)

    assert bucket_seconds(span(3600)) == 60
    assert bucket_seconds(span(6 * 3600)) == 300
    assert bucket_seconds(span(86400)) == 900
    assert bucket_seconds(span(7 * 86400)) == 7200
    assert all(span(s).seconds / bucket_seconds(span(s)) <= 120 for s in (60, 7200, 31 * 86400))


def test_an_empty_lake_gives_no_rows(console_app: ConsoleApp) -> None:
    span = TimeRange(NOW - timedelta(hours=1), NOW)
    assert model_stats(LakeSlice.of_files(()), span) == []
    assert model_series(LakeSlice.of_files(()), span, 60) == {}
    with pytest.raises(ValueError, match="bucket_s"):
        model_series(LakeSlice.of_files(()), span, 0)
    console_app.login("admin")
    page = console_app.client.get("/ui/overview.json").json()
    assert page["models"] == [] and page["charts"]["traffic"]["series"] == []
    assert not math.isnan(page["bucket_s"])


def test_a_lake_on_another_filesystem_is_read_through_it() -> None:
    fs = fsspec.filesystem("memory")
    now = datetime.now(UTC)
    columns: dict[str, list[Any]] = {name: [None, None, None] for name in FILE_SCHEMA.names}
    columns.update(
        seq=[0, 1, 2],
        canonical=[b"a", b"b", b"c"],
        leaf_hash=[b"x" * 32, b"y" * 32, b"z" * 32],
        ts=[now, now, now - timedelta(hours=2)],
        event_type=["inference", "inference", "inference"],
        model_name=["m", "m", "m"],
        model_version=["1", "1", "1"],
        status=["ok", "error", "ok"],
        latency_ms=[1.0, 3.0, 100.0],
    )
    with fs.open("/console-test/a.parquet", "wb") as f:
        pq.write_table(pa.table(columns, schema=FILE_SCHEMA), f)
    source = LakeSlice(("memory:///console-test/a.parquet",), FILE_SCHEMA.empty_table(), fs)
    (got,) = model_stats(source, TimeRange(now - timedelta(hours=1), now + timedelta(hours=1)))
    assert (got.requests, got.errors, got.p50_ms, got.mean_confidence) == (2, 1, 2.0, None)


SLOS = """
version: infertrail/v1
service: infertrail-demo
slos:
  - name: credit-latency
    model: credit
    objective: 99.5
    window: 28d
    sli:
      kind: latency
      threshold_seconds: 0.25
"""


def test_slos_are_evaluated_now(
    console_app_factory: Callable[..., ConsoleApp], tmp_path: Path
) -> None:
    slo_file = tmp_path / "slos.yaml"
    slo_file.write_text(SLOS)
    app = console_app_factory((CREDIT_1,), slo_file=slo_file)
    _traffic(app, CREDIT_1, 20, 9)
    app.login("engineer")
    page = app.client.get("/ui/overview.json").json()
    (slo,) = page["slos"]
    assert (slo["slo"], slo["model"], slo["objective"], slo["window"]) == (
        "credit-latency", "credit", 99.5, "28d"
    )  # fmt: skip
    assert [b["window"] for b in slo["burn_rates"]] == ["5m", "1h", "6h", "1d"]
    # the minute being filled is not counted yet (as the SLO evaluator does): without events
    # there is no budget figure and no burn rate, shown as missing rather than as 0 or 100 %
    assert slo["events"] in (0, 20) and slo["firing"] == []
    assert (slo["budget_remaining"] is None) == (slo["events"] == 0)
    if slo["events"] == 0:  # (unless the minute turned during the traffic)
        assert all(b["rate"] is None for b in slo["burn_rates"])
        html = app.client.get("/ui/overview").text
        row = re.search(r"<th scope=\"row\">credit-latency</th>(.*?)</tr>", html, re.S)
        assert row is not None and row.group(1).count("\u2013") == 5
        assert "not firing" in row.group(1)
