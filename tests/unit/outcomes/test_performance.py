"""Performance windows: signals, gauges, and the "performance dropped" rule of docs/outcomes.md."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import generate_latest

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.export import prometheus_rules
from infertrail.alerting.rules import parse_rules
from infertrail.alerting.testing import RecordingDispatch
from infertrail.config import Settings
from infertrail.outcomes.join import OutcomeSpec, Performance, performance
from infertrail.outcomes.performance import (
    PerformanceMetrics,
    PerformanceWindows,
    WindowReport,
    engine_listener,
    performance_signals,
    window_performance,
)
from infertrail.outcomes.schema import Outcome
from infertrail.outcomes.store import JoinedRow, Prediction
from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

from .helpers import outcome, prediction

DOC = (Path(__file__).resolve().parents[3] / "docs" / "outcomes.md").read_text()


def doc_rules() -> dict[str, Any]:
    [toml] = re.findall(r"^```toml\n(.*?)^```$", DOC, flags=re.M | re.S)
    return tomllib.loads(toml)


def pairs(model: str, n: int, right: float, start: int = 0) -> list[tuple[Outcome, Prediction]]:
    """n joined outcomes; in every run of 100 (or n), a share ``right`` match the prediction."""
    period = min(n, 100)
    out = []
    for i in range(start, start + n):
        score = 0.8 if i % 2 else 0.2
        predicted = "1" if score >= 0.5 else "0"
        wrong = (i - start) % period >= round(period * right)
        truth = ("0" if predicted == "1" else "1") if wrong else predicted
        out.append(
            (outcome(f"{model}-{i}", truth), prediction(f"{model}-{i}", model=model, score=score))
        )
    return out


def windows(size: int = 10) -> tuple[PerformanceWindows, list[WindowReport]]:
    seen: list[WindowReport] = []
    w = PerformanceWindows(lambda m: OutcomeSpec("1"), size=size, clock=lambda: 1_772_359_200.0)
    w.add_listener(seen.append)
    return w, seen


def test_windows_close_per_model_every_n() -> None:
    w, seen = windows(10)
    w(pairs("credit", 7, 1.0))
    w(pairs("other", 10, 0.5))
    assert [r.model for r in seen] == ["other"] and w.pending("credit") == 7
    w(pairs("credit", 25, 0.8, start=7))  # 32 in all: three credit windows, 2 left over
    assert [r.model for r in seen] == ["other", "credit", "credit", "credit"]
    assert w.pending("credit") == 2
    credit = [r for r in seen if r.model == "credit"]
    assert credit[0].closed_at < credit[1].closed_at  # one batch, still distinct times
    assert seen[0].performance.accuracy == 0.5 and seen[0].versions == ("1.0.0",)
    w([(outcome("x", "1", kind="revenue"), prediction("x"))])  # other kinds are not windowed
    assert w.pending("credit") == 2
    with pytest.raises(ValueError, match="window size must be >= 1"):
        PerformanceWindows(lambda m: OutcomeSpec(), size=0)


def test_signals_leave_undefined_metrics_out() -> None:
    w, seen = windows(4)
    w(pairs("credit", 4, 1.0))
    signals = performance_signals(seen[0].performance)
    assert signals["outcome.accuracy"] == 1.0 and signals["outcome.samples"] == 4.0
    assert "outcome.mean_value" not in signals
    one_class = [(outcome(f"k{i}", "1"), prediction(f"k{i}", score=0.9)) for i in range(4)]
    w(one_class)
    assert "outcome.roc_auc" not in performance_signals(seen[1].performance)


def test_gauges() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    metrics = PerformanceMetrics(meter)
    w, _ = windows(10)
    w.add_listener(metrics)
    w(pairs("credit", 10, 0.7))
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: [(dict(p.attributes or {}), p.value) for p in m.data.data_points]  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert points["infertrail.outcome.accuracy"] == [({c.MODEL_NAME: "credit"}, 0.7)]
    assert points["infertrail.outcome.samples"] == [({c.MODEL_NAME: "credit"}, 10.0)]
    assert (
        "infertrail.outcome.mean_value" not in points or not points["infertrail.outcome.mean_value"]
    )


def test_the_documented_rule_fires_and_resolves(tmp_path: Path) -> None:
    rules = parse_rules(doc_rules(), source="docs/outcomes.md")
    engine = AlertEngine(rules, RecordingDispatch(), tmp_path / "state.json")
    w, _ = windows(200)
    w.add_listener(engine_listener(engine))
    w(pairs("credit", 400, 0.78))  # two healthy windows
    w(pairs("credit", 200, 0.50, start=400))  # one bad window: not yet (for_windows = 2)
    assert engine.firing() == []
    w(pairs("credit", 200, 0.55, start=600))  # the second bad window in a row fires
    [trigger] = engine.firing()
    assert trigger.labels["alertname"] == "credit-performance-dropped"
    assert "credit accuracy on joined outcomes is 0.550" in trigger.annotations["summary"]
    w(pairs("credit", 200, 0.60, start=800))  # still bad: the same alert, not a new one
    assert engine.firing() == [trigger]
    w(pairs("credit", 200, 0.80, start=1000))  # one good window: still firing
    assert engine.firing() == [trigger]
    w(pairs("credit", 200, 0.80, start=1200))  # two good windows resolve it
    assert engine.firing() == []
    w(pairs("digits", 400, 0.1))  # the rule is for credit only
    assert engine.firing() == []


def test_the_documented_rule_exports() -> None:
    rules = parse_rules(doc_rules(), source="docs/outcomes.md")
    [rule] = yaml.safe_load(prometheus_rules(rules, 300))["groups"][0]["rules"]
    assert rule["alert"] == "credit-performance-dropped"
    assert 'infertrail_outcome_accuracy{infertrail_model_name="credit"}' in rule["expr"]
    assert rule["expr"].endswith("< 0.65") and rule["for"] in ("10m", "600s")


def test_engine_listener_survives_a_bad_evaluation(tmp_path: Path) -> None:
    engine = AlertEngine(parse_rules(doc_rules()), RecordingDispatch(), tmp_path / "s.json")
    listener = engine_listener(engine)
    w, seen = windows(10)
    w(pairs("credit", 10, 1.0))
    report = seen[0]
    bad = WindowReport("", report.versions, datetime.now(UTC), report.performance)
    listener(bad)  # an empty model name is refused by the engine: logged, not raised


SCALARS = (
    "mode",
    "n",
    "n_used",
    "accuracy",
    "precision",
    "recall",
    "roc_auc",
    "brier",
    "positive_rate",
    "mean_value",
)


def same_scalars(fast: Performance, reference: Performance) -> None:
    for name in SCALARS:
        a, b = getattr(fast, name), getattr(reference, name)
        assert (a is None) == (b is None), name
        if isinstance(a, float):
            assert a == pytest.approx(b, abs=1e-12), name
        else:
            assert a == b, name


@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]) | st.floats(0, 1), st.booleans()),
        min_size=1,
        max_size=80,
    ),
    st.floats(0, 1),
)
@settings(max_examples=150, deadline=None)
def test_window_metrics_equal_the_sklearn_ones_binary(
    data: list[tuple[float, bool]], threshold: float
) -> None:
    rows = [
        JoinedRow(prediction(f"r{i}", score=s), outcome(f"r{i}", "1" if t else "0"), 0)
        for i, (s, t) in enumerate(data)
    ]
    spec = OutcomeSpec("1", threshold)
    same_scalars(window_performance(rows, spec), performance(rows, spec))


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from("abcde"), st.none() | st.floats(0, 1)),
        min_size=1,
        max_size=60,
    )
)
@settings(max_examples=150, deadline=None)
def test_window_metrics_equal_the_sklearn_ones_multiclass(
    data: list[tuple[str, str, float | None]],
) -> None:
    rows = [
        JoinedRow(prediction(f"r{i}", label=q, score=None, confidence=c), outcome(f"r{i}", t), 0)
        for i, (t, q, c) in enumerate(data)
    ]
    same_scalars(window_performance(rows, OutcomeSpec()), performance(rows, OutcomeSpec()))


def test_window_metrics_other_modes() -> None:
    values = [
        JoinedRow(prediction(f"r{i}"), outcome(f"r{i}", None, v, kind="revenue"), 0)
        for i, v in enumerate([1.0, 2.0, 4.5])
    ]
    same_scalars(
        window_performance(values, OutcomeSpec("1")), performance(values, OutcomeSpec("1"))
    )
    unscored = [JoinedRow(prediction("r", score=None), outcome("r", "1"), 0)]
    assert window_performance(unscored, OutcomeSpec("1")).n_used == 0
    unlabelled = [JoinedRow(prediction("r", label=None), outcome("r", "1"), 0)]
    assert window_performance(unlabelled, OutcomeSpec()).n_used == 0


def test_gauge_names_on_metrics_are_the_documented_ones(tmp_path: Path, clean_env: None) -> None:
    telemetry = Telemetry(Settings(data_dir=tmp_path, telemetry_files=False))
    try:
        w, _ = windows(10)
        w.add_listener(PerformanceMetrics(telemetry.meter))
        w(pairs("credit", 10, 0.7))
        text = generate_latest(telemetry.prometheus_registry).decode()
    finally:
        telemetry.shutdown()
    documented = set(re.findall(r"\| `outcome\.\w+` \| `(infertrail_outcome_\w+)` \|", DOC))
    exposed = {ln.split("{")[0] for ln in text.splitlines() if ln.startswith("infertrail_outcome_")}
    assert documented - {"infertrail_outcome_mean_value"} == exposed  # no value outcomes here
    assert 'infertrail_outcome_accuracy{infertrail_model_name="credit"' in text
