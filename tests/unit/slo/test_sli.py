"""Counting good/total events: classifiers, the bucket ring, the Monitor sink."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.drift.detector import DriftReport
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.slo.sli import BAD, GOOD, SKIP, EventCounts, SLICounter, classifier
from tests.unit.slo.helpers import T0, event, make_slo, slo_body, slo_set


def classify(sli: Mapping[str, Any], ev: InferenceEvent) -> int:
    fn = classifier(make_slo(sli=dict(sli)))
    assert fn is not None
    return fn(ev)


LATENCY = {"kind": "latency", "threshold_seconds": 0.25}


def test_latency_counts_what_the_duration_histogram_counts() -> None:
    assert classify(LATENCY, event(T0, duration_s=0.1)) == GOOD
    assert classify(LATENCY, event(T0, duration_s=0.25)) == GOOD  # le is inclusive
    assert classify(LATENCY, event(T0, duration_s=0.250001)) == BAD
    # A failed inference has a duration (and a histogram point); a rejection has neither.
    assert classify(LATENCY, event(T0, duration_s=0.1, status="error", error_type="E")) == GOOD
    rejected = event(T0, status="error", error_type="invalid_input", inputs=None)
    assert classify(LATENCY, rejected) == SKIP


def test_availability_counts_errors_except_excluded_types() -> None:
    sli = {"kind": "availability", "exclude_error_types": ["invalid_input"]}
    assert classify(sli, event(T0)) == GOOD
    assert classify(sli, event(T0, status="error", error_type="RuntimeError")) == BAD
    assert classify(sli, event(T0, status="error", error_type="invalid_input")) == SKIP
    assert classify(sli, event(T0, status="error", error_type=None)) == BAD


def test_confidence_counts_successful_predictions_above_tau() -> None:
    sli = {"kind": "confidence", "threshold": 0.6}
    assert classify(sli, event(T0, confidence=0.61)) == GOOD
    assert classify(sli, event(T0, confidence=0.6)) == BAD  # bucket le=0.6 holds it
    assert classify(sli, event(T0, confidence=None)) == SKIP
    assert classify(sli, event(T0, status="error", error_type="E")) == SKIP


def test_ood_has_no_per_event_classifier() -> None:
    assert classifier(make_slo(sli={"kind": "ood"})) is None


def test_ring_window_sums_whole_buckets_before_the_end() -> None:
    c = EventCounts(60, 10)
    for idx, good in [(100, 1), (100, 0), (101, 1), (105, 0), (109, 1)]:
        c.add(idx, good)
    assert c.window(110, 10) == (3, 5)
    assert c.window(110, 5) == (1, 2)  # buckets 105..109
    assert c.window(109, 5) == (0, 1)  # the end bucket is excluded
    assert c.window(100, 3) == (0, 0)
    c.add(115, 1)  # the ring moves on: buckets <= 105 are gone
    assert c.window(116, 100) == (2, 2)
    c.add(90, 1)  # older than the ring
    assert c.dropped == 1
    c.add(112, 0, 3)  # late but within the ring
    assert c.window(116, 5) == (1, 4)
    assert c.nonzero() == [(109, 1, 1), (112, 0, 3), (115, 1, 1)]


def test_ring_skips_a_long_idle_gap() -> None:
    c = EventCounts(60, 4)
    c.add(10, 1)
    c.add(1000, 0)
    assert c.window(1001, 4) == (0, 1)
    assert c.nonzero() == [(1000, 0, 1)]


@settings(max_examples=200, deadline=None)
@given(
    adds=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 1), st.integers(1, 3)), max_size=60),
    end=st.integers(0, 70),
    k=st.integers(1, 30),
    n=st.integers(1, 20),
)
def test_ring_agrees_with_a_plain_dict(
    adds: list[tuple[int, int, int]], end: int, k: int, n: int
) -> None:
    """Whatever the order of adds, a window sums exactly the buckets still in the ring."""
    c = EventCounts(60, n)
    kept: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    newest = -1
    for idx, good, total in adds:
        good = min(good, total)
        c.add(idx, good, total)
        newest = max(newest, idx)
        if idx > newest - n:
            kept[idx][0] += good
            kept[idx][1] += total
    live = {i: v for i, v in kept.items() if i > newest - n}
    expect = [v for i, v in live.items() if end - k <= i < end]
    assert c.window(end, k) == (sum(v[0] for v in expect), sum(v[1] for v in expect))


def test_counter_routes_events_to_the_slos_of_their_model() -> None:
    slos = slo_set(
        slo_body(),
        slo_body(name="all-avail", model="*", sli={"kind": "availability"}),
        slo_body(name="digits-ood", model="digits", sli={"kind": "ood"}),
    )
    counter = SLICounter(slos.slos)
    other = ModelInfo("credit", "1", "cd" * 32)
    counter(event(T0 + 1, duration_s=0.1))
    counter(event(T0 + 2, duration_s=1.0))
    counter(event(T0 + 3, model=other, status="error", error_type="E"))
    end = T0 // 60 + 1
    with counter.locked():
        assert counter.counts("sentiment-latency").window(end, 1) == (1, 2)
        assert counter.counts("all-avail").window(end, 1) == (2, 3)
        assert counter.counts("digits-ood").window(end, 1) == (0, 0)
    with pytest.raises(KeyError, match="no SLO 'nope'"):
        counter.counts("nope")


def test_events_are_bucketed_by_the_time_their_outcome_was_known() -> None:
    counter = SLICounter(slo_set().slos)
    # Started in one bucket, ended in the next: counted in the next (as the counter is).
    counter(event(T0 + 60.5, duration_s=1.0))
    with counter.locked():
        counts = counter.counts("sentiment-latency")
        assert counts.window(T0 // 60 + 1, 1) == (0, 0)
        assert counts.window(T0 // 60 + 2, 1) == (0, 1)


def drift_report(model: str, n_samples: int, ood_rate: float) -> DriftReport:
    """The fields of a drift report the OOD SLI reads."""
    fields = SimpleNamespace(
        model_name=model, n_samples=n_samples, ood_rate=ood_rate, closed_at=T0 + 5
    )
    return cast(DriftReport, fields)


def test_drift_reports_feed_ood_slis() -> None:
    slos = slo_set(slo_body(name="digits-ood", model="digits", sli={"kind": "ood"}))
    counter = SLICounter(slos.slos)
    counter.record_drift_report(drift_report("digits", 200, 0.015))
    counter.record_drift_report(drift_report("other", 9, 1.0))
    counter.record_drift_report(drift_report("digits", 0, 0.0))
    with counter.locked():
        assert counter.counts("digits-ood").window(T0 // 60 + 1, 1) == (197, 200)


def test_bucket_width_must_divide_a_minute() -> None:
    with pytest.raises(ValueError, match="bucket_s must divide a minute"):
        SLICounter(slo_set().slos, bucket_s=7)


def test_restore_adds_saved_buckets() -> None:
    counter = SLICounter(slo_set().slos)
    counter.restore("sentiment-latency", [(100, 3, 4), (101, 0, 1)])
    with counter.locked():
        assert counter.counts("sentiment-latency").window(102, 2) == (3, 5)


_EVENTS = st.tuples(
    st.integers(0, 400),  # end time, seconds after T0 (crosses buckets, late ones included)
    st.sampled_from([0.0001, 0.01, 0.25, 0.3, 1.0, 12.0]),  # durations, boundaries included
    st.sampled_from(["ok", "ok", "RuntimeError", "invalid_input", None]),
    st.sampled_from([None, 0.5, 0.6, 0.61, 0.99, 1.0]),
    st.booleans(),  # rejected before inference (no input, no duration)
)


@settings(max_examples=150, deadline=None)
@given(stream=st.lists(_EVENTS, max_size=80))
def test_histogram_counting_equals_classifying_each_event(
    stream: list[tuple[int, float, str | None, float | None, bool]],
) -> None:
    """The sink's bucket histograms give every SLO exactly what its classifier would."""
    slos = slo_set(
        slo_body(),
        slo_body(
            name="avail",
            model="*",
            sli={"kind": "availability", "exclude_error_types": ["invalid_input"]},
        ),
        slo_body(name="conf", sli={"kind": "confidence", "threshold": 0.6}),
        slo_body(name="slow", sli={"kind": "latency", "threshold_seconds": 10.0}),
    )
    counter = SLICounter(slos.slos)
    expected = {s.name: EventCounts(60, 1000) for s in slos.slos}
    for t, duration, outcome, confidence, rejected in stream:
        status = "ok" if outcome == "ok" else "error"
        ev = event(
            T0 + t,
            duration_s=duration,
            status=status,  # type: ignore[arg-type]
            confidence=confidence,
            error_type=outcome if status == "error" else None,
            inputs=None if rejected and status == "error" else "x",
        )
        counter(ev)
        for s in slos.slos:
            fn = classifier(s)
            assert fn is not None
            verdict = fn(ev)
            if verdict >= 0:
                idx = (ev.start_time_ns + ev.duration_ns) // 60_000_000_000
                expected[s.name].add(idx, verdict)
    end = T0 // 60 + 10
    with counter.locked():
        for s in slos.slos:
            assert counter.counts(s.name).window(end, 10) == expected[s.name].window(end, 10)


def test_models_past_the_cap_are_still_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from infertrail.slo import sli

    monkeypatch.setattr(sli, "_MAX_MODEL_CACHE", 1)
    slos = slo_set(slo_body(name="all", model="*", sli={"kind": "availability"}))
    counter = SLICounter(slos.slos)
    for name in ("a", "b", "c"):
        model = ModelInfo(name, "1", "00")
        counter(event(T0 + 1, model=model))
        counter(event(T0 + 2, model=model, status="error", error_type="E"))
    with counter.locked():
        assert counter.counts("all").window(T0 // 60 + 1, 1) == (3, 6)
