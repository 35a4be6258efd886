"""``infertrail serve`` as an operator runs it: it says where it is, logs every request, and a
``kill -TERM`` (``docker stop``, ``systemctl stop``) is a clean stop, not a crash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from infertrail.audit.checkpoint import NoteVerifier, open_checkpoint
from tests.integration.conftest import LOOPBACK, free_port, poll


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_announces_itself_logs_requests_and_stops_cleanly(
    tmp_path: Path, trained_models: Path, clean_env: None, stop: signal.Signals
) -> None:
    data = tmp_path / "data"
    shutil.copytree(trained_models, data / "models")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "infertrail", "--data-dir", str(data), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://{LOOPBACK}:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10.0) as http:
            poll(lambda: http.get("/readyz").status_code == 200 or None, timeout_s=60, what="serve")
            answers = [
                http.post("/v1/sentiment", json={"text": f"great phone number {i}"}).json()
                for i in range(12)
            ]
            assert http.post("/v1/sentiment", json={"text": ""}).status_code == 422
    finally:
        server.send_signal(stop)
        stdout, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr

    # the banner: where, which data, which log, which key
    vkey = (data / "keys" / "audit.key.pub").read_text().strip()
    assert f"listening on http://{LOOPBACK}:{port}" in stdout
    assert str(data.resolve()) in stdout
    assert "audit origin  infertrail.local/infertrail-demo" in stdout
    assert vkey in stdout

    # one JSON access-log line per request, carrying the request and trace ids
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    posts = [line for line in lines if line["method"] == "POST"]
    assert len(posts) == 13
    by_id = {line["request_id"]: line for line in posts}
    for answer in answers:
        line = by_id[answer["request_id"]]
        assert line["trace_id"] == answer["trace_id"]
        assert (line["route"], line["status"]) == ("/v1/sentiment", 200)
    assert sorted(line["status"] for line in posts)[-1] == 422

    # the final checkpoint covers every acknowledged decision
    note = (data / "audit" / "log" / "checkpoints" / "latest").read_bytes()
    checkpoint = open_checkpoint(note, NoteVerifier.from_key(vkey))
    assert checkpoint.size >= max(a["audit_seq"] for a in answers) + 1
