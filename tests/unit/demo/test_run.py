"""`infertrail demo` end to end: real uvicorn on loopback, real HTTP, files read back."""

from __future__ import annotations

import pytest

from infertrail.config import Settings
from infertrail.demo.run import run_demo, traffic


def test_traffic_mixes_endpoints_and_bad_requests() -> None:
    requests = traffic(100)
    paths = [p for p, _ in requests]
    assert {"/v1/sentiment", "/v1/credit/score"} <= set(paths)
    assert sum(1 for _, body in requests if body in ({"text": ""}, {"text": 42})) >= 2


def test_demo_serves_correlates_and_verifies(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings.model_copy(update={"drift_window_size": 50})
    assert run_demo(settings, n_requests=60, port=0, keep_serving=False) == 0
    out = capsys.readouterr().out
    assert "requests 60  served 58  rejected 2" in out
    assert "one request, three signals, one trace id:" in out
    assert "exemplar    " in out
    assert "audit trail: 158 decisions, verification intact" in out  # + 2 windows of digits
    assert "(subject pseudonymized)" in out
    assert "applicant-" not in out.split("audit trail:")[1]  # raw applicant ids never shown
    assert "clean           share of drifted features 0.00" in out
    noisy = out.split("gaussian_noise  share of drifted features ")[1]
    assert float(noisy.split()[0]) > 0.3
