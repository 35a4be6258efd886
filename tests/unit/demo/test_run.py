"""`infertrail demo` end to end: real uvicorn on loopback, real HTTP, files read back."""

from __future__ import annotations

import re

import pytest

from infertrail.config import Settings
from infertrail.demo.run import run_demo, traffic


def test_traffic_mixes_endpoints_and_bad_requests() -> None:
    requests = traffic(100)
    paths = [p for p, _ in requests]
    assert {"/v1/sentiment", "/v1/credit/score"} <= set(paths)
    assert sum(1 for _, body in requests if body in ({"text": ""}, {"text": 42})) >= 2


def test_demo_serves_correlates_verifies_and_monitors(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings.model_copy(update={"drift_window_size": 50})
    # 32 credit decisions among them: enough for their window to be judged before the credit
    # window of held-out applicants, which then holds exactly those
    assert run_demo(settings, n_requests=100, port=0, keep_serving=False) == 0
    out = capsys.readouterr().out
    assert "requests 100  served 96  rejected 4" in out
    assert "one request, three signals, one trace id:" in out
    assert "exemplar    " in out
    # + 2 windows of digits, 1 of credit and its 50 outcomes
    assert "audit trail: 296 decisions, verification intact" in out
    assert "(subject pseudonymized)" in out
    assert "applicant-" not in out.split("audit trail:")[1]  # raw applicant ids never shown
    assert "clean           share of drifted features 0.00" in out
    noisy = out.split("gaussian_noise  share of drifted features ")[1]
    assert float(noisy.split()[0]) > 0.3

    windows = out.split("the last drift window of each model (docs/drift.md):\n")[1]
    credit, rest = windows.split("\n  digits ")
    digits, sentiment = rest.split("\n  sentiment ")
    lines = credit.splitlines()
    assert (
        lines[0] == "  credit     50 rows  no drift: 0 of 20 features drifted; predictions steady"
    )
    assert lines[1] == "    quality       clean"
    estimated = re.search(r"estimated accuracy (\S+) \[(\S+), (\S+)\], ROC AUC", lines[2])
    realized = re.search(r"realized  accuracy (\S+), ROC AUC \S+ \(50 outcomes joined\)$", lines[3])
    assert estimated is not None and realized is not None, lines
    assert float(estimated[2]) <= float(realized[1]) <= float(estimated[3])
    assert lines[4].startswith("    multivariate  reconstruction error ")
    assert lines[4].endswith(": no drift")
    assert "realized  no outcomes fed in the demo" in digits and ": DRIFT" in digits
    assert "    performance   no estimator\n" in sentiment
