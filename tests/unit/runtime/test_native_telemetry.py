"""instrument() turns FastAPI's own telemetry off: one server span and one HTTP histogram.

FastAPI 0.16x traces, measures and logs requests itself through the global providers, which
infertrail installs. Run in a fresh interpreter, where infertrail's providers are the globals
(in the test process an earlier test's may be), so FastAPI would really find them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from infertrail import ModelInfo
    from infertrail.config import Settings
    from infertrail.runtime import instrument

    settings = Settings(data_dir=Path(sys.argv[1]), audit_enabled=False, drift_enabled=False,
                        cost_enabled=False, outcomes_enabled=False)
    app = FastAPI()
    model = ModelInfo("m", "1", "ab" * 32)

    @app.get("/items/{item}")
    def item(item: str) -> dict:
        raise ValueError("secret-" + item)

    @app.get("/ok")
    def ok() -> dict:
        with runtime.observe(model, "x") as ev:
            ev.label = "a"
        return {}

    runtime = instrument(app, settings, models=[model])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/ok").status_code == 200
        assert client.get("/items/abc").status_code == 500
        runtime.monitor.flush()
        metrics = client.get("/metrics").text
    print(json.dumps({"metrics": metrics}))
    """
)


def test_fastapi_native_telemetry_adds_nothing(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    spans = []
    for line in (tmp_path / "telemetry" / "traces.jsonl").read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                spans.extend((ss["scope"]["name"], s["name"]) for s in ss["spans"])
    assert sorted(spans) == [
        ("infertrail", "GET /items/{item}"),
        ("infertrail", "GET /ok"),
        ("infertrail", "inference"),
    ]
    metrics = json.loads(out.stdout)["metrics"]
    counts = [
        line
        for line in metrics.splitlines()
        if line.startswith("http_server_request_duration_seconds_count")
    ]
    assert len(counts) == 2, counts  # one series per route, from infertrail's layer only
    logs = (tmp_path / "telemetry" / "logs.jsonl").read_text()
    assert "secret-abc" not in logs + out.stderr
