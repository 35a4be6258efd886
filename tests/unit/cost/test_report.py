"""The cost report against a hand-computed example, allocation rules, grouping, bad input."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infertrail.cost.attribution import CostAttribution
from infertrail.cost.report import IDLE, UNATTRIBUTED, cost_report, parse_dimensions, render

from .helpers import H10, HOUR, NS, FakeClocks, event, prices

T0 = datetime.fromtimestamp(HOUR, UTC)


def sink(db: Path, clocks: FakeClocks) -> CostAttribution:
    return CostAttribution(
        db,
        prices(),
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """Four requests of two teams in the hour from 10:00, and 100 s of process life."""
    db = tmp_path / "cost.db"
    clocks = FakeClocks()
    cost = sink(db, clocks)
    cost(event(team="risk", model="credit", tenant="acme", cpu_s=2.0, wall_s=2.5))
    cost(event(team="risk", model="credit", tenant="globex", cpu_s=1.0, wall_s=1.5))
    cost(
        event(
            team="nlp",
            model="llm",
            version="7",
            tenant="acme",
            cpu_s=0.5,
            wall_s=4.0,
            accel_s=3.0,
            tokens=(1000, 500),
        )
    )
    cost(event(team="nlp", model="llm", version="7", cpu_s=0.25, wall_s=0.5, status="error"))
    clocks.wall_ns += 100 * NS  # the process lived 100 s of the hour ...
    clocks.cpu_ns += 10 * NS  # ... and used 10 CPU-seconds in all threads
    cost.close()
    return db


def test_hand_computed_example(example: Path) -> None:
    report = cost_report(example, start=T0, end=T0 + timedelta(hours=1), by=("team",))
    risk, nlp = sorted(report.rows, key=lambda r: r.group["team"], reverse=True)
    assert risk.group == {"team": "risk"} and nlp.group == {"team": "nlp"}
    # risk: 2 credit requests, 3 CPU-seconds at 0.001/s; no GPU, tokens or per-request price.
    assert (risk.requests, risk.errors) == (2, 0)
    assert risk.cpu_seconds == pytest.approx(3.0)
    assert risk.wall_seconds == pytest.approx(4.0)
    assert risk.cpu_cost == pytest.approx(0.003)
    assert risk.total == pytest.approx(0.003)
    # nlp: 2 llm requests (one failed), 0.75 CPU-s = 0.00075; 3 GPU-s at 0.002/s = 0.006;
    # 1000 in * 2/M + 500 out * 10/M = 0.002 + 0.005 = 0.007; 2 requests * 0.01 = 0.02.
    assert (nlp.requests, nlp.errors) == (2, 1)
    assert (nlp.tokens_in, nlp.tokens_out) == (1000, 500)
    assert nlp.accelerator_seconds == pytest.approx(3.0)
    assert nlp.cpu_cost == pytest.approx(0.00075)
    assert nlp.gpu_cost == pytest.approx(0.006)
    assert nlp.token_cost == pytest.approx(0.007)
    assert nlp.request_cost == pytest.approx(0.02)
    assert nlp.total == pytest.approx(0.03375)
    # The process used 10 CPU-s; requests 3.75 of them: 6.25 s = 0.00625 is unattributed.
    # Its 2 GiB for 100 s = 200 GiB-s at 0.0001 = 0.02 of RAM, shared as well.
    assert report.process_cpu_seconds == pytest.approx(10.0)
    assert report.attributed_cpu_seconds == pytest.approx(3.75)
    [shared] = report.shared
    assert shared.group == {"team": UNATTRIBUTED}
    assert shared.cpu_seconds == pytest.approx(6.25)
    assert shared.cpu_cost == pytest.approx(0.00625)
    assert shared.ram_cost == pytest.approx(0.02)
    assert shared.total == pytest.approx(0.02625)
    # 0.003 + 0.03375 + 0.02625
    assert report.total == pytest.approx(0.063)
    assert report.currency == "USD" and report.price_versions == ["test-2026"]


def test_proportional_allocation(example: Path) -> None:
    report = cost_report(
        example, start=T0, end=T0 + timedelta(hours=1), by=("team",), allocation="proportional"
    )
    rows = {r.group["team"]: r for r in report.rows}
    # The shared 0.02625 goes by direct compute cost (CPU + GPU): risk 0.003, nlp 0.00675.
    assert rows["risk"].shared_cost == pytest.approx(0.02625 * 0.003 / 0.00975)
    assert rows["nlp"].shared_cost == pytest.approx(0.02625 * 0.00675 / 0.00975)
    assert report.total == pytest.approx(0.063)  # allocated, not counted twice
    assert "proportion" in report.rule


def test_idle_reserved_capacity(example: Path) -> None:
    report = cost_report(
        example, start=T0, end=T0 + timedelta(hours=1), by=("team",), reserved_cores=1.0
    )
    idle = report.shared[1]
    # 1 reserved core for 100 s = 100 core-s, of which the process used 10: 90 s = 0.09.
    assert idle.group == {"team": IDLE}
    assert idle.cpu_seconds == pytest.approx(90.0)
    assert idle.cpu_cost == pytest.approx(0.09)
    assert report.total == pytest.approx(0.153)


def test_group_by_several_dimensions(example: Path) -> None:
    report = cost_report(
        example, start=T0, end=T0 + timedelta(hours=1), by=("model", "version", "tenant")
    )
    keys = [tuple(r.group.values()) for r in report.rows]
    assert keys == [
        ("credit", "1", "acme"),
        ("credit", "1", "globex"),
        ("llm", "7", ""),
        ("llm", "7", "acme"),
    ]
    by_hour = cost_report(example, start=T0, end=T0 + timedelta(hours=1), by=("hour",))
    assert [r.group["hour"] for r in by_hour.rows] == ["2026-03-01T10:00:00Z"]


def test_period_is_whole_hours(example: Path) -> None:
    inside = cost_report(
        example, start=T0 + timedelta(minutes=59), end=T0 + timedelta(minutes=61), by=("team",)
    )
    assert (inside.start, inside.end) == (T0, T0 + timedelta(hours=2))
    assert sum(r.requests for r in inside.rows) == 4
    before = cost_report(example, start=T0 - timedelta(hours=3), end=T0, by=("team",))
    assert before.rows == [] and before.process_cpu_seconds == 0 and before.currency is None
    assert before.total == 0


def test_render_formats(example: Path) -> None:
    report = cost_report(example, start=T0, end=T0 + timedelta(hours=1), by=("team", "model"))
    table = render(report, "table")
    assert "risk" in table and UNATTRIBUTED in table and "total 0.063000 USD" in table
    assert "attributed to requests 3.750 s (37.5%)" in table
    lines = render(report, "csv").splitlines()
    assert lines[0].startswith("team,model,requests,errors,cpu_s")
    assert lines[-1].startswith(UNATTRIBUTED) and lines[-1].endswith(",shared")
    data = json.loads(render(report, "json"))
    assert data["total"] == pytest.approx(0.063)
    assert data["shared"][0]["cpu_seconds"] == pytest.approx(6.25)
    assert data["allocation_rule"].startswith("Shared costs")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render(report, "xml")  # type: ignore[arg-type]


def test_bad_report_arguments(example: Path) -> None:
    end = T0 + timedelta(hours=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        cost_report(example, start=T0.replace(tzinfo=None), end=end)
    with pytest.raises(ValueError, match="must be after start"):
        cost_report(example, start=end, end=T0)
    with pytest.raises(ValueError, match="unknown dimension 'region'"):
        cost_report(example, start=T0, end=end, by=("region",))
    with pytest.raises(ValueError, match="unknown allocation 'even'"):
        cost_report(example, start=T0, end=end, allocation="even")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved_cores must be > 0"):
        cost_report(example, start=T0, end=end, reserved_cores=0)


def test_mixed_currencies_are_refused(example: Path) -> None:
    with sqlite3.connect(example) as conn:
        conn.execute("UPDATE usage SET currency = 'EUR' WHERE team = 'nlp'")
    with pytest.raises(ValueError, match=r"mixes currencies \['EUR', 'USD'\]"):
        cost_report(example, start=T0, end=T0 + timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one"),
        ("team,region", "unknown dimension 'region'"),
        ("team,team", "repeated"),
    ],
)
def test_parse_dimensions_errors(text: str, message: str) -> None:
    assert parse_dimensions(" team , model ") == ("team", "model")
    with pytest.raises(ValueError, match=message):
        parse_dimensions(text)


usage = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["m1", "llm"]),
        st.sampled_from([None, "t1", "t2"]),
        st.integers(0, 7200),  # seconds after 10:00
        st.floats(0, 5),
        st.one_of(st.none(), st.floats(0, 5)),
        st.one_of(st.none(), st.tuples(st.integers(0, 10**5), st.integers(0, 10**5))),
    ),
    max_size=40,
)


@given(usage)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_grouping_adds_up_to_the_same_total(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Any]
) -> None:
    db = tmp_path_factory.mktemp("cost") / "cost.db"
    clocks = FakeClocks()
    cost = sink(db, clocks)
    expected = 0.0
    for team, model, tenant, offset, cpu, accel, tokens in rows:
        ev = event(
            team=team,
            model=model,
            tenant=tenant,
            at_ns=H10 + offset * NS,
            cpu_s=cpu,
            accel_s=accel,
            tokens=tokens,
        )
        cost(ev)
        c = (
            prices()
            .at(ev.start_time_ns)
            .cost_of(
                model,
                requests=1,
                cpu_seconds=ev.cpu_ns / NS,
                accelerator_seconds=accel or 0.0,
                tokens_in=tokens[0] if tokens else 0,
                tokens_out=tokens[1] if tokens else 0,
            )
        )
        expected += c.total
    cost.close()
    end = T0 + timedelta(hours=3)
    totals = [
        sum(r.total for r in cost_report(db, start=T0, end=end, by=by).rows)
        for by in [("team",), ("model", "tenant"), ("hour", "team", "endpoint", "version")]
    ]
    assert totals == pytest.approx([expected] * 3)
