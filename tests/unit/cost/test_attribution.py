"""The cost sink: prices events as they come, samples the process, writes sums, exports metrics."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infertrail.config import Settings
from infertrail.cost import attribution as a
from infertrail.cost.attribution import CostAttribution, cost_db_path
from infertrail.cost.prices import parse_price_table
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

from .helpers import H10, HOUR, NS, PRICES, FakeClocks, event, prices


@pytest.fixture
def settings(tmp_path: Path, clean_env: None) -> Settings:
    s = Settings(data_dir=tmp_path / "data", metric_export_interval_ms=60_000)
    s.ensure_dirs()
    return s


def samples(text: str, name: str, where: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    """The samples of ``name`` whose labels include ``where``, with the other labels."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and where.items() <= s.labels.items():
                rest = {
                    k: v
                    for k, v in s.labels.items()
                    if k not in where and not k.startswith("otel_scope")
                }
                out.append((rest, s.value))
    return out


def rows(db: Path, table: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(f"SELECT * FROM {table} ORDER BY hour").fetchall()


def test_sums_per_key_are_written_on_flush(tmp_path: Path) -> None:
    db = tmp_path / "cost.db"
    clocks = FakeClocks()
    cost = CostAttribution(
        db,
        prices(),
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )
    for _ in range(3):
        cost(event(team="risk", model="credit", tenant="acme", cpu_s=0.5, wall_s=1.0))
    cost(event(team="risk", model="credit", at_ns=H10 + 3600 * NS, cpu_s=1.0))
    assert rows(db, "usage") == []  # nothing written before a flush
    cost.flush()
    first, second = rows(db, "usage")
    assert (first["hour"], first["tenant"], first["requests"], first["cpu_ns"]) == (
        HOUR,
        "acme",
        3,
        3 * NS // 2,
    )
    assert first["cpu_cost"] == pytest.approx(0.0015) and first["wall_ns"] == 3 * NS
    assert (second["hour"], second["tenant"], second["requests"]) == (HOUR + 3600, "", 1)
    # a second flush adds to the same rows rather than writing new ones
    cost(event(team="risk", model="credit", tenant="acme", cpu_s=0.5))
    cost.close()
    assert rows(db, "usage")[0]["requests"] == 4
    assert cost.events == 5
    cost(event(team="risk", model="credit"))  # after close: ignored, not an error
    cost.close()  # idempotent


def test_process_time_is_split_at_hour_and_price_boundaries(tmp_path: Path) -> None:
    table = parse_price_table(
        {
            "versions": [
                PRICES["versions"][0],
                {
                    "version": "dearer",
                    "effective_from": "2026-03-01T10:59:30Z",
                    "cpu_core_hour": 7.2,
                    "ram_gib_hour": 0.36,
                },
            ]
        }
    )
    clocks = FakeClocks(wall_ns=H10 + 3590 * NS)  # 10:59:50
    cost = CostAttribution(
        tmp_path / "cost.db",
        table,
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )
    clocks.wall_ns += 20 * NS  # to 11:00:10: 10 s in each hour
    clocks.cpu_ns += 4 * NS
    cost.close()
    first, second = rows(tmp_path / "cost.db", "process")
    assert (first["hour"], second["hour"]) == (HOUR, HOUR + 3600)
    assert first["price_version"] == second["price_version"] == "dearer"
    assert first["cpu_ns"] == second["cpu_ns"] == 2 * NS  # by wall-time share
    assert first["wall_ns"] == 10 * NS
    assert first["rss_gib_seconds"] == pytest.approx(20.0)  # 2 GiB x 10 s
    assert first["cpu_cost"] == pytest.approx(2 * 7.2 / 3600)
    assert first["ram_cost"] == pytest.approx(20 * 0.36 / 3600)


def test_a_failed_flush_loses_nothing(tmp_path: Path) -> None:
    clocks = FakeClocks()
    cost = CostAttribution(
        tmp_path / "cost.db",
        prices(),
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )
    cost(event(team="risk", model="credit", cpu_s=1.0))
    good = cost._conn
    broken = sqlite3.connect(":memory:", check_same_thread=False)  # no tables: inserts fail
    cost._conn = broken
    clocks.wall_ns += 5 * NS
    with pytest.raises(sqlite3.OperationalError):
        cost.flush()
    cost._conn = good
    broken.close()
    cost(event(team="risk", model="credit", cpu_s=1.0))
    clocks.wall_ns += 5 * NS
    cost.close()
    [usage] = rows(tmp_path / "cost.db", "usage")
    assert usage["requests"] == 2 and usage["cpu_ns"] == 2 * NS
    [proc] = rows(tmp_path / "cost.db", "process")
    assert proc["wall_ns"] == 10 * NS  # the failed interval was sampled again, not dropped


def test_flusher_thread_writes_periodically(tmp_path: Path) -> None:
    cost = CostAttribution(tmp_path / "cost.db", prices(), flush_interval_s=0.05)
    try:
        cost(event(team="risk", model="credit", cpu_s=1.0))
        done = threading.Event()
        for _ in range(200):
            if rows(tmp_path / "cost.db", "usage"):
                done.set()
                break
            done.wait(0.05)
        assert done.is_set()
    finally:
        cost.close()
    with pytest.raises(ValueError, match="flush_interval_s must be > 0, got 0"):
        CostAttribution(tmp_path / "x.db", flush_interval_s=0)


def test_metrics_on_the_service_meter(settings: Settings) -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry(settings, metric_readers=[reader])
    cost = CostAttribution(
        tmp := settings.data_dir / "c.db", prices(), meter=telemetry.meter, start=False
    )
    try:
        cost(
            event(
                team="nlp",
                model="llm",
                version="7",
                endpoint="/v1/chat",
                tenant="acme",
                cpu_s=0.5,
                accel_s=3.0,
                tokens=(1000, 500),
            )
        )
        text = generate_latest(telemetry.prometheus_registry).decode()
    finally:
        cost.close()
        telemetry.shutdown()
    assert tmp.exists()
    where = {
        "infertrail_endpoint": "/v1/chat",
        "infertrail_model_name": "llm",
        "infertrail_model_version": "7",
        "infertrail_team": "nlp",
    }
    assert samples(text, "infertrail_cost_cpu_seconds_total", where) == [({}, 0.5)]
    assert samples(text, "infertrail_cost_accelerator_seconds_total", where) == [({}, 3.0)]
    tokens = samples(text, "infertrail_cost_tokens_total", where)
    assert sorted(tokens, key=str) == [
        ({"infertrail_token_direction": "input"}, 1000.0),
        ({"infertrail_token_direction": "output"}, 500.0),
    ]
    amounts = samples(
        text,
        "infertrail_cost_amount_total",
        {**where, "infertrail_cost_currency": "USD", "infertrail_cost_price_version": "test-2026"},
    )
    by_component = {labels["infertrail_cost_component"]: v for labels, v in amounts}
    assert by_component == pytest.approx(
        {"cpu": 0.0005, "gpu": 0.006, "tokens": 0.007, "request": 0.01}
    )
    assert "acme" not in text  # tenants stay off metrics: unbounded cardinality
    assert "infertrail_cost_process_cpu_seconds_total" in text


def test_with_a_real_monitor(settings: Settings) -> None:
    """Events from Monitor.observe carry their request-thread CPU time into the cost rows."""
    monitor = Monitor(settings)
    cost = CostAttribution.open(settings, meter=monitor.telemetry.meter)
    monitor.add_sink(cost)
    model = ModelInfo("busy", "1", "0" * 64)
    try:
        for _ in range(5):
            with monitor.observe(model, [1, 2, 3], endpoint="/v1/busy", tenant="t1") as ev:
                sum(i * i for i in range(200_000))  # burn some CPU in the observed block
                ev.label = "done"
        monitor.flush()
    finally:
        cost.close()
        monitor.shutdown()
    [row] = rows(cost_db_path(settings), "usage")
    assert row["requests"] == 5 and row["tenant"] == "t1" and row["team"] == settings.team
    assert row["cpu_ns"] > 0 and row["cpu_cost"] > 0
    assert row["price_version"] == "opencost-default-gcp-us-central1"
    assert rows(cost_db_path(settings), "process")


def test_rss_probe_reads_this_process() -> None:
    assert a.rss_bytes() > 1 << 20  # a Python process holds more than 1 MiB
    assert c.TEAM == "infertrail.team"
