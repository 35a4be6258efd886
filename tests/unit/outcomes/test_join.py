"""Joined metrics agree with scikit-learn's on the same data; the KPI view, worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from infertrail.outcomes.join import (
    LATENCY_EDGES_MS,
    OutcomeSpec,
    kpi_bands,
    performance,
    performance_report,
)
from infertrail.outcomes.store import JoinedRow, OutcomeStore

from .helpers import NS, T0, outcome, prediction

BINARY = OutcomeSpec(positive="1", threshold=0.5)


def binary_rows(n: int, seed: int) -> tuple[list[JoinedRow], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 1, n)
    truth = (rng.uniform(0, 1, n) < score).astype(int)  # calibrated by construction
    rows = [
        JoinedRow(prediction(f"r{i}", score=float(score[i])), outcome(f"r{i}", str(truth[i])), 0)
        for i in range(n)
    ]
    return rows, truth, score


def test_binary_metrics_match_sklearn() -> None:
    rows, y, p = binary_rows(500, seed=1)
    perf = performance(rows, BINARY, bins=10)
    pred = (p >= 0.5).astype(int)
    assert perf.mode == "binary" and perf.n == perf.n_used == 500
    assert perf.accuracy == pytest.approx(accuracy_score(y, pred))
    assert perf.precision == pytest.approx(precision_score(y, pred))
    assert perf.recall == pytest.approx(recall_score(y, pred))
    assert perf.roc_auc == pytest.approx(roc_auc_score(y, p))
    assert perf.brier == pytest.approx(brier_score_loss(y, p))
    assert perf.positive_rate == pytest.approx(y.mean())
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert [b.observed for b in perf.reliability] == pytest.approx(list(observed))
    assert [b.mean_predicted for b in perf.reliability] == pytest.approx(list(predicted))
    assert sum(b.count for b in perf.reliability) == 500


@given(
    st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60),
    st.floats(0, 1),
    st.integers(1, 12),
)
@settings(max_examples=60, deadline=None)
def test_binary_metrics_match_sklearn_on_any_data(
    data: list[tuple[float, bool]], threshold: float, bins: int
) -> None:
    rows = [
        JoinedRow(prediction(f"r{i}", score=s), outcome(f"r{i}", "yes" if t else "no"), 0)
        for i, (s, t) in enumerate(data)
    ]
    perf = performance(rows, OutcomeSpec("yes", threshold), bins=bins)
    y = np.array([int(t) for _, t in data])
    p = np.array([s for s, _ in data])
    pred = (p >= threshold).astype(int)
    assert perf.accuracy == pytest.approx(accuracy_score(y, pred))
    assert perf.brier == pytest.approx(brier_score_loss(y, p, pos_label=1))
    if len(set(y)) == 2:
        assert perf.roc_auc == pytest.approx(roc_auc_score(y, p))
    else:
        assert perf.roc_auc is None  # undefined with one class: not a made-up number
    if pred.sum() == 0:
        assert perf.precision is None
    else:
        assert perf.precision == pytest.approx(precision_score(y, pred))
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    assert [b.observed for b in perf.reliability] == pytest.approx(list(observed))
    assert [b.mean_predicted for b in perf.reliability] == pytest.approx(list(predicted))


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 10, 400)
    right = rng.uniform(0, 1, 400) < 0.8
    predicted = np.where(right, truth, (truth + rng.integers(1, 10, 400)) % 10)
    conf = np.clip(rng.normal(0.8, 0.1, 400), 0, 1)
    rows = [
        JoinedRow(
            prediction(
                f"r{i}",
                model="digits",
                label=str(predicted[i]),
                score=None,
                confidence=float(conf[i]),
            ),
            outcome(f"r{i}", str(truth[i])),
            0,
        )
        for i in range(400)
    ]
    perf = performance(rows, OutcomeSpec(), bins=10)
    t, q = truth.astype(str), predicted.astype(str)
    assert perf.mode == "multiclass"
    assert perf.accuracy == pytest.approx(accuracy_score(t, q))
    assert perf.precision == pytest.approx(precision_score(t, q, average="macro"))
    assert perf.recall == pytest.approx(recall_score(t, q, average="macro"))
    assert perf.roc_auc is None  # needs every class's probability, which is not kept
    hit = (t == q).astype(int)
    assert perf.brier == pytest.approx(brier_score_loss(hit, conf))  # top-label Brier
    observed, _ = calibration_curve(hit, conf, n_bins=10)
    assert [b.observed for b in perf.reliability] == pytest.approx(list(observed))


def test_value_outcomes_and_missing_pieces() -> None:
    rows = [
        JoinedRow(prediction(f"r{i}"), outcome(f"r{i}", None, v, kind="revenue"), 0)
        for i, v in enumerate([10.0, 20.0, 60.0])
    ]
    perf = performance(rows, BINARY)
    assert (perf.mode, perf.mean_value, perf.accuracy) == ("value", 30.0, None)
    unscored = [JoinedRow(prediction("r", score=None), outcome("r", "1"), 0)]
    assert performance(unscored, BINARY).n_used == 0
    unlabelled = [JoinedRow(prediction("r", label=None), outcome("r", "1"), 0)]
    assert performance(unlabelled, OutcomeSpec()).n_used == 0
    with pytest.raises(ValueError, match="bins must be >= 1"):
        performance(rows, BINARY, bins=0)
    with pytest.raises(ValueError, match="threshold must be within"):
        OutcomeSpec("1", 1.5)
    with pytest.raises(ValueError, match="non-empty"):
        OutcomeSpec("")


def test_kpi_bands_by_hand() -> None:
    # scores 0.05, 0.15, 0.18, 0.95; outcomes bad, good, bad, good; latencies 1, 3, 30, 20000 ms
    cases = [(0.05, "0", 1.0), (0.15, "1", 3.0), (0.18, "0", 30.0), (0.95, "1", 20_000.0)]
    rows = [
        JoinedRow(prediction(f"r{i}", score=s, latency_ms=ms), outcome(f"r{i}", y), 0)
        for i, (s, y, ms) in enumerate(cases)
    ]
    by_score = kpi_bands(rows, BINARY, "binary", by="score", edges=[0.1, 0.2, 0.5, 1.0])
    assert [(b.lower, b.upper, b.count, b.outcome_rate) for b in by_score] == [
        (0.0, 0.1, 1, 0.0),
        (0.1, 0.2, 2, 0.5),
        (0.2, 0.5, 0, None),
        (0.5, 1.0, 1, 1.0),
    ]
    assert by_score[1].mean_score == pytest.approx(0.165)
    by_latency = kpi_bands(rows, BINARY, "binary", by="latency", edges=[2.5, 25.0, 100.0])
    assert [(b.upper, b.count, b.outcome_rate) for b in by_latency] == [
        (2.5, 1, 0.0),
        (25.0, 1, 1.0),
        (100.0, 1, 0.0),
        (float("inf"), 1, 1.0),
    ]
    with pytest.raises(ValueError, match="increasing"):
        kpi_bands(rows, BINARY, "binary", by="score", edges=[0.5, 0.2])
    assert LATENCY_EDGES_MS[0] == 0.1 and LATENCY_EDGES_MS[-1] == 10_000.0


def test_report_joins_groups_and_windows(tmp_path: Path) -> None:
    store = OutcomeStore(tmp_path / "o.db")
    rows, y, p = binary_rows(300, seed=3)
    # two versions, predictions spread over two hours; 50 predictions never get an outcome
    preds = [
        prediction(
            r.prediction.request_id,
            score=r.prediction.score,
            version="1" if i % 2 else "2",
            ts_ns=T0 + i * 20 * NS,
        )
        for i, r in enumerate(rows)
    ]
    store.add_predictions([*preds, *(prediction(f"x{i}") for i in range(50))])
    store.write_outcomes([r.outcome for r in rows], received_ns=T0)
    report = performance_report(store, lambda m: BINARY, every_s=3600)
    keys = [(g.model, g.version, g.window_start_ns) for g in report.groups]
    assert keys == [
        ("credit", "1", T0),
        ("credit", "1", T0 + 3600 * NS),
        ("credit", "2", T0),
        ("credit", "2", T0 + 3600 * NS),
    ]
    assert sum(g.performance.n for g in report.groups) == 300
    v1 = [i for i in range(300) if i % 2]
    whole = performance_report(store, lambda m: BINARY, version="1")
    [g] = whole.groups
    assert g.performance.accuracy == pytest.approx(
        accuracy_score(y[v1], (p[v1] >= 0.5).astype(int))
    )
    assert g.performance.roc_auc == pytest.approx(roc_auc_score(y[v1], p[v1]))
    assert sum(b.count for b in g.by_score) == sum(b.count for b in g.by_latency) == 150
    with pytest.raises(ValueError, match="every_s must be >= 1"):
        performance_report(store, lambda m: BINARY, every_s=0)
    store.close()
