"""The CLI through click's runner and, once, as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from infertrail.cli import main
from infertrail.config import Settings
from infertrail.server.app import build_services, create_app


def test_help_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "infertrail", "--help"], capture_output=True, text=True, check=True
    )
    assert "trace" in out.stdout and "serve" in out.stdout


def test_train_writes_a_verified_model(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "train", "sentiment"])
    assert r.exit_code == 0, r.output
    assert "sha256=" in r.output
    assert (tmp_path / "models" / "sentiment" / "model.joblib").is_file()


def test_train_json_lists_what_it_trained_and_nothing_else(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "train", "sentiment", "--json"])
    assert r.exit_code == 0, r.output
    (trained,) = json.loads(r.stdout)  # stdout is the JSON document alone
    assert trained["name"] == "sentiment" and len(trained["sha256"]) == 64
    assert Path(trained["path"]) == tmp_path / "models" / "sentiment"
    assert trained["seconds"] >= 0


def test_serve_refuses_a_corrupt_model_with_a_clear_error(settings: Settings) -> None:
    artifact = settings.models_dir / "sentiment" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    r = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "serve"])
    assert r.exit_code == 1
    assert str(artifact) in r.output and "corrupt or was replaced" in r.output


def test_trace_shows_span_tree_log_and_exemplar(settings: Settings) -> None:
    services = build_services(settings)
    with TestClient(create_app(services)) as client:
        rid = client.post("/v1/sentiment", json={"text": "I love this"}).json()["request_id"]
    services.close()
    r = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "trace", rid])
    assert r.exit_code == 0, r.output
    assert f"request {rid}" in r.output
    assert "POST /v1/sentiment" in r.output and "  inference" in r.output
    assert '"request_id":"' + rid in r.output
    assert "infertrail.inference.duration = " in r.output


def test_trace_of_an_unknown_request_fails_clearly(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "trace", "nope"])
    assert r.exit_code == 1
    assert "no span with request id 'nope'" in r.output


def test_bad_settings_are_a_usage_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("INFERTRAIL_PORT", "99999")
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "trace", "x"])
    assert r.exit_code == 2
    assert "port" in r.output
