"""`infertrail simulate --outcomes`: delayed truth posted back, joined, and a degraded world
seen as a performance drop (issue 6, the demo of the loop)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from infertrail.cli import main
from infertrail.config import Settings
from infertrail.demo.outcomes import Degradation
from infertrail.demo.simulate import simulate_outcomes
from tests.integration.conftest import serving

pytestmark = pytest.mark.integration


def performance(base: str, model: str) -> dict[str, object]:
    r = httpx.get(f"{base}/v1/outcomes/performance", params={"model": model}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_credit_outcomes_are_joined_and_a_degraded_world_lowers_accuracy(
    settings: Settings, trained_models: Path
) -> None:
    with serving(settings, trained_models) as svc:
        truthful, emitter = simulate_outcomes(
            svc.base_url, model="credit", scenario="clean", severity=1, requests=60
        )
        assert truthful.ok == 60 and emitter.emitted == 60 and emitter.lost == 0
        svc.services.monitor.flush()
        (group,) = performance(svc.base_url, "credit")["groups"]  # type: ignore[misc]
        assert group["n"] == 60
        clean_accuracy = group["accuracy"]

        _, degraded = simulate_outcomes(
            svc.base_url,
            model="credit",
            scenario="clean",
            severity=1,
            requests=60,
            seed=1,
            degradation=Degradation(after=0, rate=1.0),
        )
        assert degraded.degraded == 60 and degraded.lost == 0
        (group,) = performance(svc.base_url, "credit")["groups"]  # type: ignore[misc]
        assert group["n"] == 120
        assert group["accuracy"] < clean_accuracy


def test_cli_digits_outcomes(settings: Settings, trained_models: Path) -> None:
    with serving(settings, trained_models) as svc:
        r = CliRunner().invoke(
            main,
            ["simulate", "--model", "digits", "--scenario", "clean", "--requests", "30",
             "--outcomes", "--url", svc.base_url],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "outcomes: 30 sent, 0 made wrong, 0 unknown to the service" in r.output
        (group,) = performance(svc.base_url, "digits")["groups"]  # type: ignore[misc]
        assert group["n"] == 30
        assert group["accuracy"] > 0.8


def test_cli_refuses_outcomes_for_sentiment() -> None:
    r = CliRunner().invoke(
        main, ["simulate", "--model", "sentiment", "--outcomes", "--url", "http://127.0.0.1:9"]
    )
    assert r.exit_code == 2
    assert "outcomes are simulated for credit and digits" in r.output
