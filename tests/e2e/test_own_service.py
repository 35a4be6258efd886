"""A user's own FastAPI app, wired with the README's one call, run as a user runs it.

The app is the README's library example, taken from README.md itself (and checked equal to
``examples/churn_app.py``): its own scikit-learn model and drift profile, no demo model. It runs
under ``uvicorn`` in its own process; the test drives traffic over HTTP, then reads back what a
user would look at: the trace (HTTP span and inference span), ``/metrics``, the audit log
(``infertrail audit verify`` and ``prove``), a drift window judged against the app's profile,
the SLO status and the cost report. Then ``kill -TERM``: the documented shutdown path must leave
a signed checkpoint covering every acknowledged record.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from infertrail.audit.checkpoint import NoteVerifier, open_checkpoint
from infertrail.cli import main
from tests.integration.conftest import LOOPBACK, free_port, poll

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 40
REQUESTS = 2 * WINDOW + 7

SLOS = """\
version: infertrail/v1
service: churn-api
slos:
  - name: churn-availability
    description: Churn predictions that do not fail.
    model: churn
    objective: 99
    sli:
      kind: availability
"""


def readme_example() -> str:
    """The python block of the README's "Instrumenting your own service" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Instrumenting your own service", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "the README's library section has no python block"
    return str(blocks[0])


def test_the_readme_example_is_the_example_file() -> None:
    assert readme_example() == (ROOT / "examples" / "churn_app.py").read_text(encoding="utf-8")


def cli(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args])


@pytest.mark.slow
def test_own_fastapi_app_gets_every_signal_and_survives_sigterm(
    tmp_path: Path, clean_env: None
) -> None:
    (tmp_path / "churn_app.py").write_text(readme_example(), encoding="utf-8")
    (tmp_path / "slos.yaml").write_text(SLOS, encoding="utf-8")
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))},
        "INFERTRAIL_DATA_DIR": str(data),
        "INFERTRAIL_SLO_FILE": str(tmp_path / "slos.yaml"),
        "INFERTRAIL_DRIFT_WINDOW_SIZE": str(WINDOW),
        "PYTHONPATH": str(tmp_path),
    }
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "churn_app:app", "--host", LOOPBACK, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://{LOOPBACK}:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10.0) as http:
            poll(lambda: _up(http), timeout_s=60, what="the churn app to start")
            answers = []
            for i in range(REQUESTS):
                body = {
                    "customer_id": f"customer-{i % 9}",
                    "tenure_months": 24 + i % 13,
                    "monthly_spend": 40 + 3 * (i % 11),
                    "support_tickets": i % 3,
                }
                r = http.post("/churn", json=body)
                assert r.status_code == 200, r.text
                answers.append(r.json())
            bad = http.post("/churn", json={"customer_id": "c"})
            assert bad.status_code == 422
            metrics = http.get("/metrics").text
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert "Traceback" not in output, output

    # /metrics: the inference duration histogram of the app's model, the HTTP one, drift
    assert re.search(
        r'infertrail_inference_duration_seconds_bucket\{[^}]*model_name="churn"', metrics
    )
    assert "http_server_request_duration_seconds_bucket" in metrics
    assert re.search(r'infertrail_drift_window_samples\{[^}]*model_name="churn"[^}]*\} 40', metrics)

    # the audit log: every acknowledged decision under the final signed checkpoint
    seqs = [a["audit_seq"] for a in answers]
    assert sorted(seqs) == list(range(len(seqs)))
    vkey = (data / "keys" / "audit.key.pub").read_text().strip()
    note = (data / "audit" / "log" / "checkpoints" / "latest").read_bytes()
    checkpoint = open_checkpoint(note, NoteVerifier.from_key(vkey))
    assert checkpoint.origin == "infertrail.local/churn-api"
    assert checkpoint.size >= max(seqs) + 1
    verified = cli(data, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    evidence = tmp_path / "ev.json"
    proved = cli(data, "audit", "prove", "--seq", str(seqs[-1]), "--out", str(evidence))
    assert proved.exit_code == 0, proved.output
    checked = cli(data, "audit", "check-proof", str(evidence), "--key", vkey)
    assert checked.exit_code == 0, checked.output
    record = json.loads(json.loads(evidence.read_text())["record"])
    assert record["model_name"] == "churn" and record["subject"].startswith("p-")
    assert record["request_id"] == answers[-1]["request_id"]

    # the trace: the HTTP server span and the inference span under it, one trace id
    traced = cli(data, "trace", answers[0]["request_id"], "--json")
    assert traced.exit_code == 0, traced.output
    view = json.loads(traced.output)
    names = {s["name"] for s in view["spans"]}
    assert {"POST /churn", "inference"} <= names
    assert view["trace_id"] == answers[0]["trace_id"]

    # the SLO status and the cost report
    # Whole minutes only (the one in progress is left out): evaluate a minute from now.
    at = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    slo = cli(data, "slo", "status", "--slos", str(tmp_path / "slos.yaml"), "--at", at, "--json")
    assert slo.exit_code == 0, slo.output
    [status] = json.loads(slo.output)
    assert status["slo"] == "churn-availability"
    assert status["period"]["total"] == REQUESTS  # inferences; the 422 never reached the model
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = [
        "--from",
        (hour - timedelta(hours=1)).isoformat(),
        "--to",
        (hour + timedelta(hours=1)).isoformat(),
    ]
    cost = cli(data, "cost", "report", "--format", "json", *window)
    assert cost.exit_code == 0, cost.output
    [row] = [r for r in json.loads(cost.output)["rows"] if r["group"].get("model") == "churn"]
    assert row["group"]["team"] == "growth" and row["requests"] == REQUESTS


def _up(http: httpx.Client) -> bool | None:
    return True if http.get("/metrics").status_code == 200 else None
