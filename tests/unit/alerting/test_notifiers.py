"""Notifier delivery against local HTTP receivers that check the documented schemas.

Local fakes stand in only for the paid services (PagerDuty, Slack) and a plain webhook;
Alertmanager is tested against the real one in tests/integration/test_alertmanager.py.
Sleeps go through a fake clock, so retries never wait in real time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from infertrail.alerting.delivery import (
    METRIC_NOTIFY_FAILURES,
    NotifierDispatch,
    RetryPolicy,
    parse_retry_after,
)
from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.notifiers import (
    HttpRequest,
    Notifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    notifier_for,
)
from infertrail.alerting.rules import ReceiverSecretError, parse_rules
from infertrail.alerting.transitions import Delivery, Transition
from tests.unit.alerting.fakes import (
    FakeReceiver,
    Scripted,
    pagerduty_receiver,
    slack_receiver,
    webhook_receiver,
)
from tests.unit.alerting.helpers import FakeTime, rule, window

KEY = "0123456789abcdef0123456789abcdef"
HIGH = {"drift.share_drifted": 0.9}
LOW = {"drift.share_drifted": 0.1}


class Settled:
    """Collects on_settled calls; ``wait`` blocks until ``n`` have arrived."""

    def __init__(self) -> None:
        self.calls: list[tuple[Delivery, bool]] = []
        self._cond = threading.Condition()

    def __call__(self, delivery: Delivery, delivered: bool) -> None:
        with self._cond:
            self.calls.append((delivery, delivered))
            self._cond.notify_all()

    def wait(self, n: int, timeout_s: float = 10.0) -> list[tuple[Delivery, bool]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.calls) >= n, timeout_s), self.calls
            return list(self.calls)


def dispatch_for(
    *notifiers: Notifier, fake_time: FakeTime, meter: Meter | None = None
) -> NotifierDispatch:
    return NotifierDispatch(
        notifiers,
        policy=RetryPolicy(base_delay_s=1, max_delay_s=30, give_up_after_s=120, timeout_s=5),
        meter=meter,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        rng=random.Random(7),
    )


def trigger_delivery(receiver: str) -> Delivery:
    t = AlertEngine([rule(for_windows=1, receivers=[receiver])], None, None).evaluate(
        HIGH, "digits", window(0)
    )[0]
    return Delivery("d1", receiver, t)


def test_engine_to_pagerduty_trigger_then_resolve(fake_time: FakeTime) -> None:
    with pagerduty_receiver() as pd:
        dispatch = dispatch_for(
            PagerDutyNotifier("pd", f"{pd.url}/v2/enqueue", KEY, "host-1"), fake_time=fake_time
        )
        engine = AlertEngine([rule(for_windows=2, resolve_after=2)], dispatch, None)
        for i, signals in enumerate([HIGH, HIGH, HIGH, HIGH, LOW, LOW, LOW]):
            engine.evaluate(signals, "digits", window(i))
        dispatch.close()
    assert [r.problems for r in pd.received] == [[], []]
    assert [r.path for r in pd.received] == ["/v2/enqueue"] * 2
    assert [r.body["event_action"] for r in pd.accepted()] == ["trigger", "resolve"]
    assert pd.received[0].body["dedup_key"] == pd.received[1].body["dedup_key"]
    assert pd.received[0].headers["user-agent"].startswith("infertrail")
    assert engine.pending_deliveries() == []
    stats = dispatch.stats()["pd"]
    assert (stats.submitted, stats.attempts, stats.delivered, stats.failed) == (2, 2, 2, 0)


def test_retries_429_then_500_then_delivers_once(fake_time: FakeTime) -> None:
    script = [Scripted(429, {"Retry-After": "7"}), Scripted(500)]
    settled = Settled()
    with pagerduty_receiver(script=script) as pd:
        dispatch = dispatch_for(PagerDutyNotifier("pd", pd.url, KEY, "h"), fake_time=fake_time)
        dispatch.submit(trigger_delivery("pd"), settled)
        assert settled.wait(1)[0][1] is True
        dispatch.close()
    assert [r.status for r in pd.received] == [429, 500, 202]
    assert len(pd.accepted()) == 1
    assert pd.received[2].problems == []
    stats = dispatch.stats()["pd"]
    assert (stats.attempts, stats.retries, stats.delivered, stats.failed) == (3, 2, 1, 0)
    assert stats.failures == {"rate_limited": 1, "server_error": 1}
    # Retry-After asked for 7 s: the first wait honours it; the second is plain backoff (<= 2 s).
    assert len(fake_time.sleeps) == 2
    assert fake_time.sleeps[0] >= 7
    assert 1 <= fake_time.sleeps[1] <= 2


def test_receiver_down_is_counted_never_raised(fake_time: FakeTime, unused_port: int) -> None:
    meter_reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[meter_reader]).get_meter("test")
    dispatch = dispatch_for(
        PagerDutyNotifier("pd", f"http://127.0.0.1:{unused_port}/v2/enqueue", KEY, "h"),
        fake_time=fake_time,
        meter=meter,
    )
    engine = AlertEngine([rule(for_windows=1)], dispatch, None)
    fired = engine.evaluate(HIGH, "digits", window(0))  # must not raise
    assert [t.kind for t in fired] == ["trigger"]
    _wait_until(lambda: engine.pending_deliveries() == [])
    dispatch.close()
    stats = dispatch.stats()["pd"]
    assert stats.delivered == 0 and stats.failed == 1
    assert stats.failures["connection"] == stats.attempts >= 3
    assert stats.failures["gave_up"] == 1
    # Bounded: the waits add up to no more than the give-up budget.
    assert sum(fake_time.sleeps) <= 120
    points = _counter_points(meter_reader)
    assert points[("pd", "pagerduty", "connection")] == stats.attempts
    assert points[("pd", "pagerduty", "gave_up")] == 1


def test_a_400_is_not_retried(fake_time: FakeTime) -> None:
    settled = Settled()
    with pagerduty_receiver(script=[Scripted(400, body='{"status":"invalid event"}')]) as pd:
        dispatch = dispatch_for(PagerDutyNotifier("pd", pd.url, KEY, "h"), fake_time=fake_time)
        dispatch.submit(trigger_delivery("pd"), settled)
        assert settled.wait(1)[0][1] is False
        dispatch.close()
    assert len(pd.received) == 1
    assert dispatch.stats()["pd"].failures == {"rejected": 1}
    assert fake_time.sleeps == []


def test_a_retry_after_beyond_the_budget_gives_up_at_once(fake_time: FakeTime) -> None:
    settled = Settled()
    with pagerduty_receiver(script=[Scripted(429, {"Retry-After": "3600"})]) as pd:
        dispatch = dispatch_for(PagerDutyNotifier("pd", pd.url, KEY, "h"), fake_time=fake_time)
        dispatch.submit(trigger_delivery("pd"), settled)
        assert settled.wait(1)[0][1] is False
        dispatch.close()
    assert len(pd.received) == 1
    assert dispatch.stats()["pd"].failures == {"rate_limited": 1, "gave_up": 1}


def test_slack_and_webhook_get_valid_bodies(fake_time: FakeTime) -> None:
    with slack_receiver() as slack, webhook_receiver() as hook:
        dispatch = dispatch_for(
            SlackNotifier("chat", slack.url), WebhookNotifier("hook", hook.url), fake_time=fake_time
        )
        engine = AlertEngine(
            [rule(for_windows=1, resolve_after=1, receivers=["chat", "hook"])], dispatch, None
        )
        for i, signals in enumerate([HIGH, HIGH, LOW]):
            engine.evaluate(signals, "digits", window(i))
        dispatch.close()
    assert [r.problems for r in slack.received] == [[], []]  # no refresh sent to Slack
    assert slack.received[1].body["text"].startswith(":white_check_mark: [RESOLVED]")
    assert [r.body["kind"] for r in hook.accepted()] == ["trigger", "resolve"]


def test_full_queue_drops_and_counts(fake_time: FakeTime) -> None:
    gate = threading.Event()
    settled = Settled()

    def blocking_sleep(seconds: float) -> bool:
        gate.wait(10)
        return True  # then abort: the delivery in flight stays unsettled

    with pagerduty_receiver(script=[Scripted(500)] * 10) as pd:
        dispatch = NotifierDispatch(
            [PagerDutyNotifier("pd", pd.url, KEY, "h")], queue_size=2, sleep=blocking_sleep
        )
        first = trigger_delivery("pd")
        dispatch.submit(first, settled)
        _wait_until(lambda: dispatch.stats()["pd"].attempts == 1)
        for i in range(3):
            dispatch.submit(Delivery(f"q{i}", "pd", first.transition), settled)
        dropped = settled.wait(1)
        gate.set()
        dispatch.close(timeout_s=2)
    assert [(d.id, ok) for d, ok in dropped] == [("q2", False)]
    assert dispatch.stats()["pd"].failures["queue_full"] == 1


@dataclass(frozen=True)
class FlakyNotifier:
    """Builds an unserialisable body for triggers: a bug that must not kill the worker."""

    name: str
    url: str
    type: str = "webhook"

    def request(self, t: Transition, now: datetime) -> HttpRequest:
        return HttpRequest(self.url, object() if t.kind == "trigger" else {"kind": t.kind})


def test_a_bug_in_one_delivery_does_not_stop_the_worker(fake_time: FakeTime) -> None:
    settled = Settled()
    with FakeReceiver(lambda body: []) as hook:
        dispatch = dispatch_for(FlakyNotifier("hook", hook.url), fake_time=fake_time)
        first = trigger_delivery("hook")
        dispatch.submit(first, settled)
        dispatch.submit(Delivery("d2", "hook", replace(first.transition, kind="resolve")), settled)
        calls = settled.wait(2)
        dispatch.close()
    assert [(d.id, ok) for d, ok in calls] == [("d1", False), ("d2", True)]
    assert dispatch.stats()["hook"].failures == {"internal_error": 1}


def test_unknown_receiver_and_submit_after_close(fake_time: FakeTime) -> None:
    settled = Settled()
    dispatch = dispatch_for(fake_time=fake_time)
    dispatch.submit(trigger_delivery("ghost"), settled)
    assert settled.calls[0][1] is False
    assert dispatch.stats()["ghost"].failures == {"unknown_receiver": 1}
    with pagerduty_receiver() as pd:
        dispatch = dispatch_for(PagerDutyNotifier("pd", pd.url, KEY, "h"), fake_time=fake_time)
        dispatch.close()
        dispatch.submit(trigger_delivery("pd"), settled)
    # Left unsettled, so a durable delivery stays in the engine's outbox for the next start.
    assert len(settled.calls) == 1 and pd.received == []


def test_close_abandons_a_delivery_in_backoff_without_settling(unused_port: int) -> None:
    settled = Settled()
    dispatch = NotifierDispatch(
        [PagerDutyNotifier("pd", f"http://127.0.0.1:{unused_port}/", KEY, "h")],
        policy=RetryPolicy(base_delay_s=30, give_up_after_s=600, timeout_s=1),
    )
    dispatch.submit(trigger_delivery("pd"), settled)
    _wait_until(lambda: dispatch.stats()["pd"].retries == 1)
    dispatch.close(timeout_s=0.1)
    assert settled.calls == []
    assert not any(w.thread.is_alive() for w in dispatch._workers.values())


def test_notifiers_from_rules_resolve_secrets() -> None:
    rs = parse_rules(
        {
            "rules": [],
            "receivers": {
                "pd": {"type": "pagerduty", "routing_key_env": "PD_KEY", "source": "svc-1"},
                "am": {"type": "alertmanager", "url": "http://am:9093/"},
                "chat": {"type": "slack", "url_env": "SLACK"},
                "hook": {"type": "webhook", "url": "https://example.test/hook"},
            },
        }
    )
    env = {"PD_KEY": KEY, "SLACK": "https://hooks.example/T/B/x"}
    built = {name: notifier_for(r, env) for name, r in rs.receivers.items()}
    assert isinstance(built["pd"], PagerDutyNotifier) and built["pd"].routing_key == KEY
    assert KEY not in repr(built["pd"]) and "hooks.example" not in repr(built["chat"])
    t = trigger_delivery("am").transition
    request = built["am"].request(t, datetime.now(UTC))
    assert request is not None and request.url == "http://am:9093/api/v2/alerts"
    with pytest.raises(ReceiverSecretError, match="PD_KEY"):
        NotifierDispatch.from_rules(rs, {})
    NotifierDispatch.from_rules(rs, env).close()


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Thu, 26 Nov 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None


def test_retry_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match=r"RetryPolicy\.max_delay_s must be >= 0, got -1"):
        RetryPolicy(max_delay_s=-1)


@given(
    attempt=st.integers(1, 40),
    retry_after=st.one_of(st.none(), st.floats(0, 1e4)),
    seed=st.integers(0, 99),
)
def test_backoff_grows_is_capped_and_honours_retry_after(
    attempt: int, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=20)
    delay = policy.delay(attempt, retry_after, random.Random(seed))
    nominal = min(20.0, 0.5 * 2 ** (attempt - 1))
    assert delay >= nominal / 2
    if retry_after is None:
        assert delay <= nominal
    else:
        assert delay >= retry_after
        assert delay <= max(nominal, retry_after)


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _counter_points(reader: InMemoryMetricReader) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != METRIC_NOTIFY_FAILURES:
                    continue
                for p in metric.data.data_points:
                    a = p.attributes or {}
                    key = (
                        str(a["infertrail.alert.receiver"]),
                        str(a["infertrail.alert.receiver.type"]),
                        str(a["reason"]),
                    )
                    out[key] = int(p.value)  # type: ignore[union-attr]
    return out
