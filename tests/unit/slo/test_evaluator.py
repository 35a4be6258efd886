"""The evaluator: one alert engine for SLO burns, gauges, saved counts, the timer thread."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import parse_rules
from infertrail.alerting.testing import RecordingDispatch
from infertrail.slo.alerts import slo_alert_rules, with_slo_rules
from infertrail.slo.definitions import SLOError
from infertrail.slo.evaluator import METRIC_BUDGET_REMAINING, METRIC_BURN_RATE, SLOEvaluator
from infertrail.slo.sli import SLICounter
from infertrail.slo.store import CountsFileError, load_counts, save_counts
from tests.unit.slo.helpers import T0, event, slo_body, slo_set

RECEIVERS = {"receivers": {"pd": {"type": "webhook", "url": "http://127.0.0.1:9/"}}}


def routed_slos() -> Any:
    return slo_set(
        slo_body(
            alerting={
                "labels": {"team": "nlp"},
                "annotations": {"runbook": "see {docs}"},
                "page_alert": {"receivers": ["pd"]},
                "ticket_alert": {"receivers": ["pd"], "severity": "info"},
            }
        )
    )


def feed(counter: SLICounter, minute: int, bad: int, total: int = 100) -> None:
    t = T0 + minute * 60
    for i in range(total):
        counter(event(t + 0.1 + i * 0.5, duration_s=1.0 if i < bad else 0.01))


def test_burns_page_and_resolve_through_the_one_engine() -> None:
    slos = routed_slos()
    drift_rules = parse_rules(
        {
            **RECEIVERS,
            "rules": [
                {"name": "drift", "signal": "drift.score", "comparison": ">", "threshold": 0.2}
            ],
        }
    )
    rules = with_slo_rules(drift_rules, slos)
    assert [r.name for r in rules.rules] == [
        "drift",
        "SentimentLatencySLO-page",
        "SentimentLatencySLO-ticket",
    ]
    dispatch = RecordingDispatch()
    engine = AlertEngine(rules, dispatch, None)
    counter = SLICounter(slos.slos)
    # A clean day of history, then 100 events a minute through the sink.
    counter.restore("sentiment-latency", [(T0 // 60 + m, 100, 100) for m in range(1440)])
    evaluator = SLOEvaluator(counter, engine)
    for m in range(1440, 1450):
        feed(counter, m, 0)
        evaluator.evaluate(T0 + (m + 1) * 60 + 2)
    assert dispatch.transitions() == []
    # 50 % slow = 50x. Only the 1h/5m pair can fire within 20 minutes: 1h exceeds 14.4 % when
    # 0.5m/60 > 0.144, at the 18th bad minute; 6h needs m > 43, 1d m > 86, 3d m > 29.
    for m in range(1450, 1470):
        feed(counter, m, 50)
        evaluator.evaluate(T0 + (m + 1) * 60 + 2)
    (page,) = dispatch.transitions("trigger")
    assert page.rule == "SentimentLatencySLO-page"
    assert page.at.timestamp() == T0 + (1450 + 18) * 60
    assert page.severity == "critical" and page.model == "sentiment"
    assert page.labels["sloth_slo"] == "sentiment-latency"
    assert page.labels["sloth_severity"] == "page" and page.labels["team"] == "nlp"
    assert page.annotations["runbook"] == "see {docs}"  # plain text, not a template
    assert "burns its error budget at" in page.annotations["summary"]
    for m in range(1470, 1480):
        feed(counter, m, 0)
        evaluator.evaluate(T0 + (m + 1) * 60 + 2)
    # The 5m window holds 5-j bad minutes after j clean ones: 0.5(5-j)/5 > 14.4 % until j = 3,
    # so the page resolves at the 4th clean minute, while the 1h window still burns.
    (resolve,) = dispatch.transitions("resolve")
    assert resolve.rule == "SentimentLatencySLO-page"
    assert resolve.at.timestamp() == T0 + (1470 + 4) * 60
    assert evaluator.latest[0].burn_rate(3600) > 14.4
    assert dispatch.transitions("trigger") == [page]  # no ticket
    # The drift rule kept its own state: the SLO evaluations never carried its signal.
    assert ("drift", "sentiment") not in engine.states()


def test_with_slo_rules_checks_receivers_and_names() -> None:
    with pytest.raises(SLOError) as info:
        with_slo_rules(None, routed_slos())
    assert info.value.problems == [
        "slo 'sentiment-latency': alerting.page_alert.receivers: unknown receiver 'pd' "
        "(receivers of the alert rules file: none defined)",
        "slo 'sentiment-latency': alerting.ticket_alert.receivers: unknown receiver 'pd' "
        "(receivers of the alert rules file: none defined)",
    ]
    twice = slo_set(slo_body(), slo_body(name="sentiment_latency"))
    with pytest.raises(SLOError, match="alert rule 'SentimentLatencySLO-page' is taken"):
        with_slo_rules(None, twice)


def test_disabled_alerts_make_no_rule() -> None:
    slos = slo_set(slo_body(alerting={"page_alert": {"disable": True}}))
    assert [r.name for r in slo_alert_rules(slos)] == ["SentimentLatencySLO-ticket"]


def test_gauges_publish_budget_and_burn_rates() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    counter = SLICounter(slo_set().slos)
    evaluator = SLOEvaluator(counter, meter=meter)
    feed(counter, 0, 10)
    evaluator.evaluate(T0 + 61)
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name] = list(metric.data.data_points)
    (budget,) = points[METRIC_BUDGET_REMAINING]
    assert budget.value == pytest.approx(1 - 0.1 / 0.01)
    assert dict(budget.attributes) == {
        "infertrail.slo.name": "sentiment-latency",
        "infertrail.model.name": "sentiment",
    }
    windows = {p.attributes["infertrail.slo.window"]: p.value for p in points[METRIC_BURN_RATE]}
    assert windows["5m"] == pytest.approx(10.0) and set(windows) == {
        "5m",
        "30m",
        "1h",
        "2h",
        "6h",
        "1d",
        "3d",
    }


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "slo" / "counts.json"
    slos = slo_set()
    counter = SLICounter(slos.slos)
    evaluator = SLOEvaluator(counter, counts_path=path)
    feed(counter, 0, 3)
    before = evaluator.evaluate(T0 + 61)[0]
    saved = json.loads(path.read_text())["slos"]["sentiment-latency"]
    assert saved["last"] == T0 // 60 and saved["good"] == [97] and saved["total"] == [100]
    again = SLICounter(slos.slos)
    after = SLOEvaluator(again, counts_path=path).evaluate(T0 + 61)[0]
    assert after.period == before.period and after.budget_remaining == before.budget_remaining


def test_counts_of_a_changed_sli_are_not_restored(tmp_path: Path) -> None:
    path = tmp_path / "counts.json"
    counter = SLICounter(slo_set().slos)
    feed(counter, 0, 3)
    save_counts(counter, path)
    changed = SLICounter(slo_set(slo_body(sli={"kind": "latency", "threshold_seconds": 0.5})).slos)
    assert load_counts(changed, path) == []
    other_width = SLICounter(slo_set().slos, bucket_s=30)
    assert load_counts(other_width, path) == []
    assert load_counts(SLICounter(slo_set().slos), path) == ["sentiment-latency"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON"),
        ('{"version": 9}', "not a version 1 counts file"),
        (
            '{"version": 1, "bucket_s": 60, "slos": {"sentiment-latency": {"fingerprint": "'
            + slo_set().slos[0].fingerprint()
            + '", "last": 5, "good": [1, 2], "total": [3]}}}',
            "bad buckets for 'sentiment-latency'",
        ),
    ],
)
def test_a_damaged_counts_file_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "counts.json"
    path.write_text(text)
    with pytest.raises(CountsFileError, match=message):
        SLOEvaluator(SLICounter(slo_set().slos), counts_path=path)


def test_a_failing_save_does_not_stop_evaluation(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    evaluator = SLOEvaluator(SLICounter(slo_set().slos), counts_path=tmp_path / "counts.json")
    evaluator.counts_path = blocker / "counts.json"  # a file where the directory should be
    assert evaluator.evaluate(T0) and evaluator.save_failures == 1


def test_listeners_get_each_evaluation_and_a_failing_one_is_counted() -> None:
    seen: list[float] = []
    evaluator = SLOEvaluator(SLICounter(slo_set().slos))
    evaluator.add_listener(lambda at, statuses: seen.append(at))

    def failing(at: float, statuses: object) -> None:
        raise RuntimeError("listener bug")

    evaluator.add_listener(failing)
    evaluator.evaluate(T0 + 90.5)
    assert seen == [T0 + 60] and evaluator.errors == 1
    assert evaluator.latest[0].at == T0 + 60


def test_timer_evaluates_at_bucket_boundaries_and_stops() -> None:
    done = threading.Event()
    ats: list[float] = []

    def listener(at: float, _statuses: object) -> None:
        ats.append(at)
        if len(ats) >= 2:
            done.set()

    counter = SLICounter(slo_set().slos, bucket_s=1)
    evaluator = SLOEvaluator(counter, settle_s=0.05, listeners=[listener])
    evaluator.start()
    try:
        assert done.wait(10), "the timer did not evaluate twice in 10 s"
    finally:
        evaluator.stop()
    assert all(a == int(a) for a in ats) and ats[1] > ats[0]
    n = len(ats)
    time.sleep(1.2)
    assert len(ats) == n  # stopped
    with pytest.raises(ValueError, match="settle_s must be in"):
        SLOEvaluator(counter, settle_s=1.0)


def test_a_full_ring_round_trips(tmp_path: Path) -> None:
    """Every bucket of a wrapped 28-day ring comes back where it was."""
    path = tmp_path / "counts.json"
    slos = slo_set()
    counter = SLICounter(slos.slos)
    minutes = 28 * 1440 + 500  # more than the ring: it has wrapped
    counter.restore("sentiment-latency", [(T0 // 60 + m, m % 7, 7 + m % 3) for m in range(minutes)])
    save_counts(counter, path)
    again = SLICounter(slos.slos)
    assert load_counts(again, path) == ["sentiment-latency"]
    with counter.locked(), again.locked():
        a, b = counter.counts("sentiment-latency"), again.counts("sentiment-latency")
        assert a.nonzero() == b.nonzero()
        assert len(a.nonzero()) == 28 * 1440 + 1
