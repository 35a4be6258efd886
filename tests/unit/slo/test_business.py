"""Business-impact confidence signals: histogram quantiles, the reference, the rolling window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import parse_rules
from infertrail.alerting.testing import RecordingDispatch
from infertrail.slo.business import (
    ConfidenceReference,
    ConfidenceWindow,
    histogram_quantile,
    quantile_key,
)
from infertrail.telemetry.conventions import CONFIDENCE_BUCKETS as B
from tests.unit.slo.helpers import T0, event

# Buckets: <=0.5, (0.5,0.6], (0.6,0.7], (0.7,0.8], (0.8,0.9], (0.9,0.95], (0.95,0.99], +Inf
TWO_AND_EIGHT = [0, 2, 0, 0, 0, 8, 0, 0]


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        (0.1, TWO_AND_EIGHT, 0.5 + 0.1 * (1 / 2)),  # rank 1 of the 2 in (0.5, 0.6]
        (0.5, TWO_AND_EIGHT, 0.9 + 0.05 * (3 / 8)),  # rank 5: 3rd of the 8 in (0.9, 0.95]
        (1.0, TWO_AND_EIGHT, 0.95),
        (0.5, [4, 0, 0, 0, 0, 0, 0, 0], 0.25),  # the lowest bucket starts at 0
        (0.5, [0, 0, 0, 0, 0, 0, 0, 5], 0.99),  # +Inf: the highest finite bound
        (0.5, [0] * 8, math.nan),
        (-0.1, TWO_AND_EIGHT, -math.inf),
        (1.1, TWO_AND_EIGHT, math.inf),
    ],
)
def test_histogram_quantile_by_hand(q: float, counts: list[int], expected: float) -> None:
    got = histogram_quantile(q, B, counts)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_histogram_quantile_needs_every_bucket() -> None:
    with pytest.raises(ValueError, match="need 8 bucket counts, got 7"):
        histogram_quantile(0.5, B, [1] * 7)


def test_quantile_keys() -> None:
    assert [quantile_key(q) for q in (0.1, 0.5, 0.05, 0.999)] == ["p10", "p50", "p5", "p99_9"]


def test_reference_goes_through_the_same_buckets() -> None:
    ref = ConfidenceReference.from_confidences(
        [0.55, 0.6, *[0.93] * 8], quantiles=(0.1, 0.5), low=0.6
    )
    assert ref.mean == pytest.approx((0.55 + 0.6 + 8 * 0.93) / 10)
    assert ref.quantiles[0.1] == pytest.approx(0.55)
    assert ref.quantiles[0.5] == pytest.approx(0.91875)
    assert ref.low_confidence_rate == pytest.approx(0.2)  # at most 0.6, as bucket le=0.6 counts
    with pytest.raises(ValueError, match="no confidences"):
        ConfidenceReference.from_confidences([math.nan])


def test_window_signals_and_deltas_against_the_reference() -> None:
    rng = np.random.default_rng(0)
    train = rng.uniform(0.8, 1.0, 2000)
    ref = ConfidenceReference.from_confidences(train)
    window = ConfidenceWindow({"sentiment": ref}, window_s=600)
    for i, conf in enumerate(rng.uniform(0.8, 1.0, 600)):
        window(event(T0 + i, confidence=float(conf)))
    same = window.signals("sentiment", T0 + 600)
    assert same["business.confidence_mean_delta"] == pytest.approx(0, abs=0.01)
    assert same["business.confidence_p10_delta"] == pytest.approx(0, abs=0.01)
    assert same["business.low_confidence_rate"] == 0.0
    # The model gets unsure: confidences fall to 0.5..0.7.
    for i, conf in enumerate(rng.uniform(0.5, 0.7, 600)):
        window(event(T0 + 600 + i, confidence=float(conf)))
    low = window.signals("sentiment", T0 + 1200)
    assert low["business.confidence_mean"] == pytest.approx(0.6, abs=0.01)
    assert low["business.confidence_mean_delta"] == pytest.approx(0.6 - train.mean(), abs=0.01)
    assert low["business.confidence_p10_delta"] < -0.2
    assert low["business.low_confidence_rate"] == pytest.approx(0.5, abs=0.05)
    assert low["business.low_confidence_rate_delta"] == pytest.approx(0.5, abs=0.05)
    assert set(low) == {
        "business.confidence_mean",
        "business.confidence_mean_delta",
        "business.low_confidence_rate",
        "business.low_confidence_rate_delta",
        "business.confidence_p10",
        "business.confidence_p10_delta",
        "business.confidence_p50",
        "business.confidence_p50_delta",
    }


def test_window_counts_only_successful_predictions_with_a_confidence() -> None:
    window = ConfidenceWindow(window_s=60)
    window(event(T0 + 1, confidence=0.9))
    window(event(T0 + 2, confidence=None))
    window(event(T0 + 3, status="error", error_type="E"))
    assert window.signals("sentiment", T0 + 60)["business.confidence_mean"] == pytest.approx(0.9)
    assert "business.confidence_mean_delta" not in window.signals("sentiment", T0 + 60)
    assert window.signals("sentiment", T0 + 180) == {}  # the window has moved past it
    assert window.signals("credit", T0 + 60) == {}


def test_window_feeds_the_engine() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "confidence-drop",
                    "signal": "business.confidence_mean_delta",
                    "comparison": "<",
                    "threshold": -0.1,
                }
            ]
        }
    )
    dispatch = RecordingDispatch()
    engine = AlertEngine(rules, dispatch, None)
    window = ConfidenceWindow({"sentiment": ConfidenceReference.from_confidences([0.9] * 10)})
    window(event(T0 + 1, confidence=0.6))
    listener = window.listener(engine)
    listener(T0 + 60, [])
    (trigger,) = engine.firing()
    assert trigger.rule == "confidence-drop" and trigger.model == "sentiment"
    assert trigger.value == pytest.approx(-0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 0.65}, "low must be a confidence bucket boundary"),
        ({"window_s": 90}, "window_s must be a multiple of bucket_s=60"),
        ({"bucket_s": 7}, "bucket_s must divide a minute"),
        ({"quantiles": (1.0,)}, "quantiles must lie in"),
    ],
)
def test_window_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConfidenceWindow(**kwargs)  # type: ignore[arg-type]


def test_example_business_rules_fire_in_process() -> None:
    """examples/slo-alert-rules.toml on the confidence window: a drop fires after 5 minutes."""
    from pathlib import Path

    from infertrail.alerting.rules import load_rules
    from infertrail.events import ModelInfo
    from infertrail.slo.alerts import with_slo_rules
    from infertrail.slo.definitions import load_slos

    repo = Path(__file__).resolve().parents[3]
    rules = load_rules(repo / "examples" / "slo-alert-rules.toml")
    # One engine for the business rules and the SLOs' burn alerts, whose receivers it defines.
    combined = with_slo_rules(rules, load_slos(repo / "examples" / "slos.yaml"))
    engine = AlertEngine(combined, RecordingDispatch(), None)
    reference = ConfidenceReference(0.8838, {0.1: 0.6322, 0.5: 0.9506}, 0.0861)
    window = ConfidenceWindow({"digits": reference})
    digits = ModelInfo("digits", "1", "ef" * 32)
    fired = []
    for minute in range(8):
        for i in range(30):  # confidences spread over 0.45 .. 0.74: far below training
            window(event(T0 + minute * 60 + i, confidence=0.45 + i / 100, model=digits))
        window.evaluate(engine, T0 + (minute + 1) * 60)
        fired.append(sorted(t.rule for t in engine.firing()))
    assert fired[3] == []  # 4 breaching evaluations: not yet (for_windows = 5)
    assert fired[4] == [
        "digits-confidence-drop",
        "digits-confidence-p10-drop",
        "digits-low-confidence-rise",
    ]


def test_counter_fed_window_equals_the_standalone_sink() -> None:
    """Handing whole buckets from the SLICounter gives the signals of per-event counting."""
    from infertrail.slo.sli import SLICounter
    from tests.unit.slo.helpers import slo_set

    rng = np.random.default_rng(1)
    ref = {"sentiment": ConfidenceReference.from_confidences(rng.uniform(0.7, 1, 100))}
    alone = ConfidenceWindow(ref, window_s=600)
    fed = ConfidenceWindow(ref, window_s=600)
    counter = SLICounter(slo_set().slos, confidence=fed)
    times = sorted(rng.uniform(0, 900, 500))
    times[100], times[101] = times[101] + 200, times[100]  # one late event
    for t in times:
        ev = event(T0 + float(t), confidence=float(rng.uniform(0.4, 1.0)))
        alone(ev)
        counter(ev)
    with counter.locked():  # settles the newest buckets, as each evaluation does
        pass
    for at in (T0 + 600, T0 + 960):
        a, b = alone.signals("sentiment", at), fed.signals("sentiment", at)
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-12), key


def test_counter_and_window_buckets_must_match() -> None:
    from infertrail.slo.sli import SLICounter
    from tests.unit.slo.helpers import slo_set

    with pytest.raises(ValueError, match="confidence window's buckets"):
        SLICounter(slo_set().slos, confidence=ConfidenceWindow(bucket_s=30, window_s=600))
