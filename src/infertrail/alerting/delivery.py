"""Delivery: one background thread and bounded queue per receiver, HTTP with retries.

A receiver that is down or slow delays only its own notifications. Each delivery is retried on
429, 5xx and connection errors with capped exponential backoff and jitter, waiting at least
what ``Retry-After`` asks, and is given up once the next attempt would start after
``give_up_after_s``. Nothing here raises into the caller: every failure is logged and counted
(``stats()``, and the OpenTelemetry counter ``infertrail.alert.notify.failures`` when a meter is
given), because a notifier outage must never affect inference.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
from opentelemetry.metrics import Meter

from infertrail.alerting.notifiers import HttpRequest, Notifier, notifier_for
from infertrail.alerting.rules import RuleSet
from infertrail.alerting.transitions import Delivery, SettledCallback
from infertrail.telemetry import conventions as c

log = logging.getLogger("infertrail.alerting")

# Importable from here as before; conventions.py spells it.
METRIC_NOTIFY_FAILURES = c.METRIC_ALERT_NOTIFY_FAILURES

try:
    _USER_AGENT = f"infertrail/{version('infertrail')}"
except PackageNotFoundError:  # running from a source tree that was never installed
    _USER_AGENT = "infertrail"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff and limits for one delivery."""

    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    give_up_after_s: float = 600.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("base_delay_s", "max_delay_s", "give_up_after_s", "timeout_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {value!r}")

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        # "Equal jitter": at least half the backoff, so the delay still grows, never in lockstep.
        jittered = backoff * (0.5 + rng.random() / 2)
        return jittered if retry_after_s is None else max(jittered, retry_after_s)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass
class ReceiverStats:
    """Counts for one receiver. ``failures`` counts every failure by reason."""

    submitted: int = 0
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)


# Failure reasons: rate_limited (429), server_error (5xx), connection (no answer), rejected
# (another 4xx, not retried), gave_up (retries exhausted), queue_full, unknown_receiver,
# payload_error (the notifier could not build the request), internal_error (a bug: logged).
# Transitions a receiver does not take (a refresh for PagerDuty) are settled at once, unsent.
_Attempt = tuple[bool, str | None, float | None]  # delivered, failure reason, retry-after


class NotifierDispatch:
    """Delivers transitions to receivers in the background; implements the engine's Dispatch."""

    def __init__(
        self,
        notifiers: Iterable[Notifier],
        *,
        policy: RetryPolicy | None = None,
        queue_size: int = 1000,
        meter: Meter | None = None,
        sleep: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """Start one worker per notifier. ``sleep`` (returns True to abort) is for tests."""
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.policy = policy or RetryPolicy()
        self.queue_size = queue_size
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._clock = clock
        self._rng = rng or random.Random()
        self._closing = False
        self._lock = threading.Lock()
        self._stats: dict[str, ReceiverStats] = {}
        self._counter = (
            meter.create_counter(
                METRIC_NOTIFY_FAILURES,
                unit=c.UNIT_FAILURE,
                description="Alert notifications that failed, by receiver and reason.",
            )
            if meter is not None
            else None
        )
        self._workers: dict[str, _Worker] = {}
        for n in notifiers:
            if n.name in self._workers:
                raise ValueError(f"two notifiers are named {n.name!r}")
            self._stats[n.name] = ReceiverStats()
            self._workers[n.name] = _Worker(self, n)

    @classmethod
    def from_rules(
        cls, rules: RuleSet, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> NotifierDispatch:
        """A dispatch for every receiver of ``rules`` (ReceiverSecretError if a secret is unset)."""
        return cls([notifier_for(r, environ) for r in rules.receivers.values()], **kwargs)

    def submit(self, delivery: Delivery, on_settled: SettledCallback) -> None:
        """Queue ``delivery`` for its receiver; never blocks, never raises."""
        worker = self._workers.get(delivery.receiver)
        if worker is None:
            self._fail(delivery.receiver, "unknown_receiver", final=True)
            log.error("no notifier named %r; delivery %s dropped", delivery.receiver, delivery.id)
            _settle(on_settled, delivery, False)
            return
        if self._closing:
            # Not settled: a durable delivery stays in the engine's outbox for the next start.
            log.warning(
                "dispatch closed; %s to %r left for the next start", delivery.id, worker.name
            )
            return
        try:
            request = worker.notifier.request(delivery.transition, datetime.now(UTC))
        except Exception:
            log.exception("notifier %r cannot build delivery %s", worker.name, delivery.id)
            self._fail(worker.name, "payload_error", final=True)
            _settle(on_settled, delivery, False)
            return
        if request is None:  # this receiver does not take this kind of transition
            _settle(on_settled, delivery, True)
            return
        with self._lock:
            self._stats[worker.name].submitted += 1
            full = worker.queue.qsize() >= self.queue_size
        if full:
            self._fail(worker.name, "queue_full", final=True)
            log.error(
                "queue for %r is full (%d); delivery %s dropped",
                worker.name,
                self.queue_size,
                delivery.id,
            )
            _settle(on_settled, delivery, False)
            return
        worker.queue.put((delivery, request, on_settled))

    def stats(self) -> dict[str, ReceiverStats]:
        """A snapshot of the counts per receiver."""
        with self._lock:
            return {k: replace(v, failures=dict(v.failures)) for k, v in self._stats.items()}

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued within ``timeout_s``, then stop; the rest stays in the outbox."""
        self._closing = True
        deadline = self._clock() + timeout_s
        for w in self._workers.values():
            w.queue.put(None)
        for w in self._workers.values():
            w.thread.join(max(0.0, deadline - self._clock()))
        self._stop.set()  # interrupts backoff waits; those deliveries are not settled
        for w in self._workers.values():
            w.thread.join(timeout=2.0)

    def __enter__(self) -> NotifierDispatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the workers --------------------------------------------------------------------
    def _count(self, receiver: str, **inc: int) -> None:
        with self._lock:
            s = self._stats[receiver]
            for name, n in inc.items():
                setattr(s, name, getattr(s, name) + n)

    def _fail(self, receiver: str, reason: str, *, final: bool) -> None:
        with self._lock:
            s = self._stats.setdefault(receiver, ReceiverStats())
            s.failures[reason] = s.failures.get(reason, 0) + 1
            if final:
                s.failed += 1
        if self._counter is not None:
            worker = self._workers.get(receiver)
            self._counter.add(
                1,
                {
                    c.ALERT_RECEIVER: receiver,
                    c.ALERT_RECEIVER_TYPE: worker.notifier.type if worker else "",
                    c.ALERT_REASON: reason,
                },
            )


class _Worker:
    """The thread that delivers one receiver's notifications, in order."""

    def __init__(self, dispatch: NotifierDispatch, notifier: Notifier) -> None:
        self.dispatch = dispatch
        self.notifier = notifier
        self.name = notifier.name
        self.queue: queue.Queue[tuple[Delivery, HttpRequest, SettledCallback] | None] = (
            queue.Queue()
        )
        self.thread = threading.Thread(
            target=self._run, name=f"infertrail-notify-{notifier.name}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        d = self.dispatch
        with httpx.Client(
            timeout=d.policy.timeout_s,
            follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
        ) as client:
            while not d._stop.is_set():
                item = self.queue.get()
                if item is None:
                    return
                delivery, request, on_settled = item
                try:
                    outcome = self._deliver(client, delivery, request)
                except Exception:
                    # Whatever went wrong with this one, the thread must live for the next.
                    log.exception("delivery %s to %r failed unexpectedly", delivery.id, self.name)
                    d._fail(self.name, "internal_error", final=True)
                    outcome = False
                if outcome is not None:
                    _settle(on_settled, delivery, outcome)

    def _deliver(
        self, client: httpx.Client, delivery: Delivery, request: HttpRequest
    ) -> bool | None:
        """True delivered, False given up, None abandoned because the dispatch is stopping."""
        d, t = self.dispatch, delivery.transition
        deadline = d._clock() + d.policy.give_up_after_s
        attempt = 0
        while True:
            attempt += 1
            d._count(self.name, attempts=1)
            ok, reason, retry_after = self._attempt(client, request)
            if ok:
                d._count(self.name, delivered=1)
                return True
            assert reason is not None
            d._fail(self.name, reason, final=reason == "rejected")
            what = f"{t.kind} {t.dedup_key!r} to {self.name!r} ({self.notifier.type})"
            if reason == "rejected":
                log.error("%s refused (attempt %d); not retried", what, attempt)
                return False
            delay = d.policy.delay(attempt, retry_after, d._rng)
            if d._clock() + delay > deadline:
                d._fail(self.name, "gave_up", final=True)
                log.error("%s: gave up after %d attempts (last: %s)", what, attempt, reason)
                return False
            log.warning("%s failed (%s), retry %d in %.1f s", what, reason, attempt, delay)
            d._count(self.name, retries=1)
            if d._sleep(delay):
                return None

    def _attempt(self, client: httpx.Client, request: HttpRequest) -> _Attempt:
        try:
            response = client.post(request.url, json=request.body)
        except httpx.TransportError as exc:
            log.debug("%r: %s", self.name, type(exc).__name__)
            return False, "connection", None
        status = response.status_code
        if 200 <= status < 300:
            return True, None, None
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        if status == 429:
            return False, "rate_limited", retry_after
        if status >= 500:
            return False, "server_error", retry_after
        # The body says why (PagerDuty lists the invalid fields); it never echoes our secrets.
        log.error("%r answered %d: %s", self.name, status, response.text[:300])
        return False, "rejected", None


def _settle(on_settled: SettledCallback, delivery: Delivery, delivered: bool) -> None:
    try:
        on_settled(delivery, delivered)
    except Exception:
        log.exception("settling delivery %s failed", delivery.id)
