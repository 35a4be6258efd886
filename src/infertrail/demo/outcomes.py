"""Outcomes for the credit and digits demos, from the labels in their own data.

A simulator that sends a demo request also knows the truth of the row it sent: german.data's
label (1 good / 0 bad risk) or load_digits' digit. :class:`OutcomeEmitter` remembers
(request id, truth) per answered request and, once ``delay_s`` has passed, posts the outcomes
to ``/v1/outcomes`` in batches, as ground truth arriving late would. An optional
:class:`Degradation` makes the world change: after ``after`` truthful outcomes, a share
``rate`` of the later ones carry a different label than the data's, so the model's joined
accuracy falls and the "performance dropped" alert (docs/outcomes.md) can be shown to fire.

:func:`run_credit_loop` drives the whole loop for the credit demo over HTTP; the digits
simulator calls :meth:`OutcomeEmitter.record` with each answered request's id and digit.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from infertrail.outcomes.api import OUTCOMES_PATH
from infertrail.server.credit import CREDIT_SCORE_PATH

__all__ = [
    "CREDIT_LABELS",
    "DIGITS_LABELS",
    "Degradation",
    "OutcomeEmitter",
    "credit_samples",
    "digits_samples",
    "http_sender",
    "run_credit_loop",
]

CREDIT_LABELS = ("0", "1")  # german.data as load_dataset reads it: 1 good, 0 bad risk
DIGITS_LABELS = tuple(str(d) for d in range(10))

Send = Callable[[list[dict[str, Any]]], Any]


@dataclass(frozen=True)
class Degradation:
    """After ``after`` truthful outcomes, replace a share ``rate`` of them by a wrong label."""

    after: int
    rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError(f"degradation 'after' must be >= 0, got {self.after}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"degradation rate must be within [0, 1], got {self.rate}")


@dataclass
class _Pending:
    due: float
    request_id: str
    truth: str
    sent: dict[str, Any] | None = None  # the outcome as first sent, resent unchanged
    attempts: int = 0


class OutcomeEmitter:
    """Holds each answered request's truth for ``delay_s``, then sends it as an outcome.

    If the service reports a request id as unknown (its prediction was not indexed yet: the
    outcome overtook it), the same outcome is sent again ``retry_s`` later, up to ``retries``
    times; what is still unknown then is counted in ``lost``.
    """

    def __init__(
        self,
        send: Send,
        labels: Sequence[str],
        *,
        delay_s: float = 0.0,
        degradation: Degradation | None = None,
        batch_max: int = 500,
        kind: str = "label",
        retry_s: float = 1.0,
        retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if delay_s < 0 or retry_s < 0 or retries < 0:
            raise ValueError(
                f"delay_s, retry_s and retries must be >= 0, got {delay_s}, {retry_s}, {retries}"
            )
        if batch_max < 1:
            raise ValueError(f"batch_max must be >= 1, got {batch_max}")
        if len(set(labels)) < 2:
            raise ValueError(f"labels must hold at least two distinct labels, got {list(labels)}")
        self._send = send
        self.labels = tuple(str(v) for v in labels)
        self.delay_s = delay_s
        self.degradation = degradation
        self.batch_max = batch_max
        self.kind = kind
        self.retry_s = retry_s
        self.retries = retries
        self._clock = clock
        self._waiting: deque[_Pending] = deque()
        self._rng = random.Random(degradation.seed if degradation else 0)
        self.emitted = 0
        self.degraded = 0
        self.lost = 0

    def record(self, request_id: str, truth: str | int) -> None:
        """Remember the truth of an answered request; it is due ``delay_s`` from now."""
        label = str(truth)
        if label not in self.labels:
            raise ValueError(f"truth {truth!r} is not one of the labels {list(self.labels)}")
        self._waiting.append(_Pending(self._clock() + self.delay_s, request_id, label))

    @property
    def waiting(self) -> int:
        """Outcomes recorded but not sent (or to be sent again)."""
        return len(self._waiting)

    def _outcome(self, p: _Pending) -> dict[str, Any]:
        if p.sent is not None:
            return p.sent
        label = p.truth
        d = self.degradation
        if d is not None and self.emitted >= d.after and self._rng.random() < d.rate:
            label = self._rng.choice([x for x in self.labels if x != label])
            self.degraded += 1
        self.emitted += 1
        p.sent = {"request_id": p.request_id, "outcome": label, "kind": self.kind}
        return p.sent

    def pump(self) -> int:
        """Send every outcome whose delay has passed; return how many were sent."""
        return self._emit(self._clock())

    def drain(self) -> int:
        """Send every recorded outcome now, whatever its delay (end of a simulation)."""
        return self._emit(float("inf"))

    def _emit(self, now: float) -> int:
        sent = 0
        retry: list[_Pending] = []
        while self._waiting and self._waiting[0].due <= now:
            batch: list[_Pending] = []
            while self._waiting and self._waiting[0].due <= now and len(batch) < self.batch_max:
                batch.append(self._waiting.popleft())
            answer = self._send([self._outcome(p) for p in batch])
            sent += len(batch)
            unknown = set(answer.get("unknown", ())) if isinstance(answer, dict) else set()
            for p in batch:
                if p.request_id not in unknown:
                    continue
                if p.attempts < self.retries:
                    p.attempts += 1
                    p.due = self._clock() + self.retry_s
                    retry.append(p)
                else:
                    self.lost += 1
        self._waiting.extend(retry)  # after the loop: a drain resends them once per call
        return sent


def http_sender(client: httpx.Client, base_url: str = "") -> Send:
    """Posts a batch to ``/v1/outcomes``; RuntimeError with the answer unless it is 200."""

    def send(batch: list[dict[str, Any]]) -> Any:
        r = client.post(base_url.rstrip("/") + OUTCOMES_PATH, json=batch)
        if r.status_code != 200:
            raise RuntimeError(f"{OUTCOMES_PATH} answered {r.status_code}: {r.text[:1000]}")
        return r.json()

    return send


def credit_samples(seed: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    """German credit applications with their label (1 good / 0 bad), shuffled, endlessly."""
    from infertrail.models.credit import as_application, load_dataset

    data = load_dataset()
    order = list(range(len(data.y)))
    rng = random.Random(seed)
    while True:
        rng.shuffle(order)
        for i in order:
            yield as_application(data.X[i]), int(data.y[i])


def digits_samples(seed: int = 0) -> Iterator[tuple[list[int], int]]:
    """load_digits images (64 pixels, 0..16) with their digit, shuffled, endlessly."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = list(range(len(digits.target)))
    rng = random.Random(seed)
    while True:
        rng.shuffle(order)
        for i in order:
            yield [int(v) for v in digits.data[i]], int(digits.target[i])


def run_credit_loop(
    client: httpx.Client,
    emitter: OutcomeEmitter,
    n: int,
    *,
    base_url: str = "",
    seed: int = 0,
    pace_s: float = 0.0,
) -> int:
    """Score ``n`` applications over HTTP, record each truth, send outcomes as they fall due.

    Returns the number of outcomes sent; the caller drains the rest when the run ends.
    """
    url = base_url.rstrip("/") + CREDIT_SCORE_PATH
    sent = 0
    samples = credit_samples(seed)
    for i in range(n):
        application, truth = next(samples)
        r = client.post(url, json={"applicant_id": f"demo-applicant-{seed}-{i}", **application})
        if r.status_code != 200:
            raise RuntimeError(f"{CREDIT_SCORE_PATH} answered {r.status_code}: {r.text[:500]}")
        emitter.record(r.json()["request_id"], truth)
        sent += emitter.pump()
        if pace_s:
            time.sleep(pace_s)
    return sent
