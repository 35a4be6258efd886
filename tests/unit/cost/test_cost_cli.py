"""``infertrail cost report``: options, formats, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infertrail.config import Settings
from infertrail.cost.attribution import CostAttribution, cost_db_path
from infertrail.cost.cli import cost

from .helpers import NS, FakeClocks, event, prices


@pytest.fixture
def data_dir(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    clocks = FakeClocks()
    sink = CostAttribution(
        cost_db_path(Settings()),
        prices(),
        start=False,
        clock_ns=clocks.wall,
        cpu_clock_ns=clocks.cpu,
        memory_bytes=clocks.memory,
    )
    sink(event(team="risk", model="credit", cpu_s=2.0))
    sink(event(team="nlp", model="llm", cpu_s=1.0, tokens=(1000, 0)))
    clocks.wall_ns += 10 * NS
    clocks.cpu_ns += 5 * NS
    sink.close()
    return tmp_path / "data"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cost, ["report", *args])
    return result.exit_code, result.output


def test_json_report(data_dir: Path) -> None:
    code, out = run(
        "--by", "team", "--from", "2026-03-01", "--to", "2026-03-02", "--format", "json"
    )
    assert code == 0, out
    data = json.loads(out)
    assert [r["group"]["team"] for r in data["rows"]] == ["nlp", "risk"]
    # nlp: 1 CPU-s = 0.001, 1000 input tokens at 2/M = 0.002, 1 request at 0.01
    assert data["rows"][0]["total"] == pytest.approx(0.013)
    assert data["shared"][0]["cpu_seconds"] == pytest.approx(2.0)  # 5 - (2 + 1)
    assert data["start"] == "2026-03-01T00:00:00Z" and data["end"] == "2026-03-02T00:00:00Z"


def test_table_and_csv(data_dir: Path) -> None:
    code, out = run(
        "--from",
        "2026-03-01T10:00:00Z",
        "--to",
        "2026-03-01T11:00:00+00:00",
        "--reserved-cores",
        "2",
        "--allocation",
        "proportional",
    )
    assert code == 0, out
    assert "(idle reserved capacity)" in out and "allocation: proportional" in out
    code, out = run(
        "--by", "model,tenant", "--from", "2026-03-01", "--to", "2026-03-02", "--format", "csv"
    )
    assert code == 0 and out.splitlines()[1].startswith("credit,(none),1,")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "region"], "unknown dimension 'region'"),
        (["--from", "last week"], "'last week' is not a date"),
        (["--from", "2026-03-01T10:00:00"], "has no UTC offset"),
        (["--from", "2026-03-02", "--to", "2026-03-01"], "is not before --to"),
        (["--format", "xml"], "'xml' is not one of"),
        (["--reserved-cores", "0"], "--reserved-cores"),
    ],
)
def test_bad_options(data_dir: Path, args: list[str], message: str) -> None:
    code, out = run(*args)
    assert code == 2 and message in out


def test_no_data_yet(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "empty"))
    code, out = run()
    assert code == 1 and "no cost data yet" in out
