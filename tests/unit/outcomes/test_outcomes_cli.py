"""``infertrail outcomes ingest|report``: whole-file validation, local audit, --url, reports."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI

from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import validate_record
from infertrail.config import Settings
from infertrail.outcomes.cli import outcomes
from infertrail.outcomes.ingest import OutcomeService
from infertrail.outcomes.store import OutcomeStore, outcomes_db_path

from .helpers import NS, T0, prediction


@pytest.fixture
def settings(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    s = Settings()
    store = OutcomeStore(outcomes_db_path(s))
    store.add_predictions(
        prediction(f"r{i}", score=0.1 * i, ts_ns=T0 + i * 3600 * NS) for i in range(10)
    )
    store.close()
    return s


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(outcomes, list(args))
    return result.exit_code, result.output


def audit_outcomes(s: Settings) -> list[dict[str, Any]]:
    with AuditLog.open(s.audit_log_dir, signer=open_signer(s), origin=s.audit_origin) as log:
        records = [json.loads(b) for _, b in log.read(0, log.size)]
    return [r for r in records if r["event_type"] == "outcome"]


def test_ingest_jsonl_then_csv(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "outcomes.jsonl"
    f.write_text(
        "\n".join(json.dumps({"request_id": f"r{i}", "outcome": int(i >= 5)}) for i in range(8))
        + '\n\n{"request_id": "ghost", "outcome": 1}\n'
    )
    code, out = run("ingest", str(f))
    assert code == 0, out
    assert out.splitlines()[0] == "received 9, accepted 8, duplicates 0, unknown request ids 1"
    assert "unknown: ghost" in out
    records = audit_outcomes(settings)
    assert len(records) == 8 and all(validate_record(r) for r in records)
    assert records[0]["producer"].startswith("infertrail/")
    c = tmp_path / "more.csv"
    c.write_text(
        "request_id,outcome,ts,kind\nr0,0,,\nr8,1,2026-03-02T00:00:00Z,\n"
        "r9,1,,label\nr9,19.5,,revenue\n"
    )
    code, out = run("ingest", str(c), "--json")
    assert code == 0, out
    assert json.loads(out) | {"audit_seq_first": None, "audit_seq_last": None} == {
        "received": 4,
        "accepted": 3,
        "duplicates": 1,
        "unknown": [],
        "audit_seq_first": None,
        "audit_seq_last": None,
    }
    assert len(audit_outcomes(settings)) == 11


def test_a_bad_file_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(
        '{"request_id": "r0", "outcome": 1}\n{"request_id": "r1"\n'
        '{"request_id": "r2", "outcome": null}\n'
    )
    code, out = run("ingest", str(f))
    assert code == 2 and "line 2: not valid JSON" in out and "nothing was ingested" in out
    f.write_text(
        '{"request_id": "r0", "outcome": 1}\n\n{"request_id": "r2", "outcome": null}\n'
        '{"request_id": "r 3", "outcome": 1}\n'
    )
    code, out = run("ingest", str(f))
    assert code == 2 and "line 3: outcome: must be a label" in out
    assert "line 4: request_id: must be 1-128 characters" in out
    c = tmp_path / "bad.csv"
    c.write_text("id,outcome\nr0,1\n")
    code, out = run("ingest", str(c))
    assert code == 2 and "CSV header must be request_id,outcome" in out
    e = tmp_path / "empty.jsonl"
    e.write_text("\n")
    assert run("ingest", str(e))[0] == 2
    store = OutcomeStore(outcomes_db_path(settings))
    assert store.counts()["outcomes"] == 0
    store.close()


def test_labels_flag_and_conflicts(settings: Settings, tmp_path: Path) -> None:
    c = tmp_path / "labels.csv"
    c.write_text("request_id,outcome\nr0,007\n")
    assert run("ingest", str(c), "--labels")[0] == 0
    store = OutcomeStore(outcomes_db_path(settings))
    [row] = store.joined(kind="label")
    assert (row.outcome.label, row.outcome.value) == ("007", None)
    store.close()
    c.write_text("request_id,outcome\nr1,1\nr0,7\n")  # 7 is not the label "007"
    code, out = run("ingest", str(c))
    assert code == 1 and "r0 (label)" in out and "ingest the file again" in out


def test_report(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "o.jsonl"
    f.write_text(
        "\n".join(json.dumps({"request_id": f"r{i}", "outcome": int(i >= 5)}) for i in range(10))
    )
    assert run("ingest", str(f))[0] == 0
    code, out = run("report", "--model", "credit", "--format", "json")
    assert code == 0, out
    [group] = json.loads(out)["groups"]
    assert group["accuracy"] == 1.0 and group["n"] == 10  # scores 0 .. 0.9, truth from 0.5 on
    code, out = run("report", "--every", "12h", "--positive", "0")
    assert code == 0 and out.count("window") == 2 and "positive = '0'" in out
    code, out = run("report", "--from", "2026-03-01T12:00:00Z", "--to", "2026-03-02")
    assert code == 0 and "10 joined" not in out and "8 joined" in out
    for args, message in [
        (["--every", "soon"], "not a duration"),
        (["--from", "2026-03-02", "--to", "2026-03-01"], "is not before"),
        (["--threshold", "2"], "--threshold"),
    ]:
        code, out = run("report", *args)
        assert code == 2 and message in out


def test_report_without_data(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "none"))
    code, out = run("report")
    assert code == 1 and "no outcomes yet" in out


def test_audit_log_held_by_a_service(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "o.jsonl"
    f.write_text('{"request_id": "r0", "outcome": 1}\n')
    with AuditLog.open(
        settings.audit_log_dir, signer=open_signer(settings), origin=settings.audit_origin
    ):
        code, out = run("ingest", str(f))
    assert code == 1 and "held by a running service" in out and "--url" in out


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """A real HTTP server with the outcomes router (no audit), on a free port."""
    from infertrail.outcomes.api import outcomes_router
    from infertrail.outcomes.join import spec_from_settings

    store = OutcomeStore(outcomes_db_path(settings))
    app = FastAPI()
    app.include_router(
        outcomes_router(OutcomeService(store, batch_max=3), spec_from_settings(settings))
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        threading.Event().wait(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    store.close()


def test_ingest_to_a_running_service(settings: Settings, server: str, tmp_path: Path) -> None:
    f = tmp_path / "o.jsonl"
    f.write_text("\n".join(json.dumps({"request_id": f"r{i}", "outcome": 1}) for i in range(4)))
    code, out = run("ingest", str(f), "--url", server, "--batch-size", "3")
    assert code == 0, out
    assert out.startswith("received 4, accepted 4")
    f.write_text('{"request_id": "r0", "outcome": 0}\n')
    code, out = run("ingest", str(f), "--url", server)
    assert code == 1 and "answered 409" in out
    assert run("ingest", str(f), "--url", "ftp://x")[0] == 2
