"""Counting good and total events per SLO: a Monitor sink that stays cheap.

What counts as good is defined per SLO kind by a classifier (:func:`classifier`, a function of
one :class:`InferenceEvent` answering good, bad or "not an event of this SLI"), written to count
exactly what the telemetry histogram or counter behind the SLI counts, so that the in-process
evaluator and Prometheus see the same events. :class:`SLICounter` is registered with
``Monitor.add_sink`` (it runs on the Monitor's background worker). It does not run every
classifier on every event: like /metrics, it adds each event to its model's histograms of the
newest time bucket (duration and confidence buckets, error types, and a generation's time to
first token and time per output token), and reads each SLO's good
and total off those histograms (:func:`reducer`) once the bucket is complete, which is exact
because thresholds are bucket boundaries. The per-event cost is then the same for one SLO or
twenty. Each SLO's counts live in a ring of time buckets (:class:`EventCounts`) that the
evaluator sums off the request path.

An event belongs to the bucket of the time its outcome was known (start + duration), as a
counter increment on ``/metrics`` does. OOD SLIs are not per event: the drift monitor judges
sampled windows, and :meth:`SLICounter.record_drift_report` adds each window's counts.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from infertrail.events import InferenceEvent
from infertrail.slo.definitions import (
    SLO,
    AvailabilitySLI,
    ConfidenceSLI,
    LatencySLI,
    TimeToFirstTokenSLI,
    TokensPerSecondSLI,
)
from infertrail.telemetry import conventions as c

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftReport

GOOD, BAD, SKIP = 1, 0, -1
Classifier = Callable[[InferenceEvent], int]
DEFAULT_BUCKET_S = 60
#: Bucket sizes divide a minute, so every window (whole minutes) is whole buckets.
VALID_BUCKETS_S = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
_MAX_MODEL_CACHE = 1024  # models with a bucket of their own


def classifier(slo: SLO) -> Classifier | None:
    """The per-event classifier of ``slo``; None for OOD (counted from drift reports)."""
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        threshold = sli.threshold_seconds

        def latency(ev: InferenceEvent) -> int:
            # Rejected requests record no duration (Monitor._record_metrics): not counted.
            if ev.status == "error" and ev.inputs is None:
                return SKIP
            # The same value and comparison as the histogram's bucket le=threshold.
            return GOOD if ev.duration_ns / 1e9 <= threshold else BAD

        return latency
    if isinstance(sli, AvailabilitySLI):
        excluded = frozenset(sli.exclude_error_types)

        def availability(ev: InferenceEvent) -> int:
            if ev.status == "ok":
                return GOOD
            return SKIP if ev.error_type in excluded else BAD

        return availability
    if isinstance(sli, ConfidenceSLI):
        tau = sli.threshold

        def confidence(ev: InferenceEvent) -> int:
            # The confidence histogram holds successful predictions that carry a confidence.
            if ev.status != "ok" or ev.confidence is None:
                return SKIP
            return GOOD if ev.confidence > tau else BAD

        return confidence
    if isinstance(sli, TimeToFirstTokenSLI):
        ttft_max = sli.threshold_seconds

        def ttft(ev: InferenceEvent) -> int:
            # The TTFT histogram holds successful generations that saw a first token.
            gen = ev.generation
            value = None if gen is None or ev.status != "ok" else gen.time_to_first_token_s
            if value is None:
                return SKIP
            return GOOD if value <= ttft_max else BAD

        return ttft
    if isinstance(sli, TokensPerSecondSLI):
        tpot_max = sli.seconds_per_token

        def speed(ev: InferenceEvent) -> int:
            # Likewise the time-per-output-token histogram (two output tokens or more).
            gen = ev.generation
            value = None if gen is None or ev.status != "ok" else gen.time_per_output_token_s
            if value is None:
                return SKIP
            return GOOD if value <= tpot_max else BAD

        return speed
    return None


class EventCounts:
    """Good and total events in a ring of fixed-width time buckets (index = time // width).

    Not thread-safe by itself: :class:`SLICounter` holds its lock around every use.
    """

    __slots__ = ("bucket_s", "dropped", "good", "last", "n", "total")

    def __init__(self, bucket_s: int, n_buckets: int) -> None:
        if n_buckets < 1:
            raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
        self.bucket_s = bucket_s
        self.n = n_buckets
        self.good = [0] * n_buckets
        self.total = [0] * n_buckets
        self.last = -1  # newest bucket index written; slots after it hold nothing yet
        self.dropped = 0  # events older than the ring when they arrived

    def add(self, idx: int, good: int, total: int = 1) -> None:
        """Add ``good`` of ``total`` events to bucket ``idx``."""
        if idx > self.last:
            self._advance(idx)
        elif idx <= self.last - self.n:
            self.dropped += total
            return
        slot = idx % self.n
        self.good[slot] += good
        self.total[slot] += total

    def _advance(self, idx: int) -> None:
        # Zero the slots the ring moves onto: they hold buckets a whole ring older.
        if self.last >= 0 and idx - self.last >= self.n:
            self.good = [0] * self.n
            self.total = [0] * self.n
        elif self.last >= 0:
            for i in range(self.last + 1, idx + 1):
                slot = i % self.n
                self.good[slot] = 0
                self.total[slot] = 0
        self.last = idx

    def window(self, end: int, k: int) -> tuple[int, int]:
        """(good, total) in the ``k`` buckets before bucket ``end`` (end excluded)."""
        lo = max(end - k, self.last - self.n + 1, 0)
        hi = min(end - 1, self.last)
        if lo > hi:
            return 0, 0
        a, b = lo % self.n, hi % self.n
        if a <= b:
            return sum(self.good[a : b + 1]), sum(self.total[a : b + 1])
        return (
            sum(self.good[a:]) + sum(self.good[: b + 1]),
            sum(self.total[a:]) + sum(self.total[: b + 1]),
        )

    def nonzero(self) -> list[tuple[int, int, int]]:
        """(bucket index, good, total) of every bucket with events, oldest first."""
        if self.last < 0:
            return []
        out = []
        for i in range(max(0, self.last - self.n + 1), self.last + 1):
            slot = i % self.n
            if self.total[slot]:
                out.append((i, self.good[slot], self.total[slot]))
        return out


Reducer = Callable[["_Bucket"], tuple[int, int]]


def reducer(slo: SLO) -> Reducer | None:
    """(good, total) of ``slo`` from one bucket's histograms; None for OOD.

    Exact because every threshold is a bucket boundary: the events at or below a boundary are
    the sum of the buckets up to it, as ``le`` counts them on /metrics.
    """
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        upto = c.DURATION_BUCKETS_S.index(sli.threshold_seconds) + 1
        return lambda b: (sum(b.duration[:upto]), sum(b.duration))
    if isinstance(sli, AvailabilitySLI):
        excluded = frozenset(sli.exclude_error_types)

        def availability(b: _Bucket) -> tuple[int, int]:
            bad = sum(n for kind, n in b.errors.items() if kind not in excluded)
            return b.ok, b.ok + bad

        return availability
    if isinstance(sli, ConfidenceSLI):
        upto = c.CONFIDENCE_BUCKETS.index(sli.threshold) + 1

        def confidence(b: _Bucket) -> tuple[int, int]:
            total = sum(b.confidence)
            return total - sum(b.confidence[:upto]), total

        return confidence
    if isinstance(sli, TimeToFirstTokenSLI):
        upto = c.GENAI_TTFT_BUCKETS_S.index(sli.threshold_seconds) + 1
        return lambda b: (sum(b.ttft[:upto]), sum(b.ttft))
    if isinstance(sli, TokensPerSecondSLI):
        upto = c.GENAI_TPOT_BUCKETS_S.index(sli.seconds_per_token) + 1
        return lambda b: (sum(b.tpot[:upto]), sum(b.tpot))
    return None


class _Bucket:
    """What one model's events of the newest bucket looked like: the /metrics histograms."""

    __slots__ = ("confidence", "confidence_sum", "duration", "errors", "idx", "ok", "tpot", "ttft")

    def __init__(self) -> None:
        self.idx = -1
        self.ok = 0
        self.duration = [0] * (len(c.DURATION_BUCKETS_S) + 1)  # recorded durations, +Inf last
        self.confidence = [0] * (len(c.CONFIDENCE_BUCKETS) + 1)  # successful predictions
        self.confidence_sum = 0.0
        self.errors: dict[str | None, int] = {}  # error type -> count
        self.ttft = [0] * (len(c.GENAI_TTFT_BUCKETS_S) + 1)  # successful generations
        self.tpot = [0] * (len(c.GENAI_TPOT_BUCKETS_S) + 1)

    def clear(self) -> None:
        self.ok = 0
        self.duration = [0] * len(self.duration)
        self.confidence = [0] * len(self.confidence)
        self.ttft = [0] * len(self.ttft)
        self.tpot = [0] * len(self.tpot)
        self.confidence_sum = 0.0
        self.errors = {}


class _ModelState:
    """One model's newest bucket and what it feeds: SLOs (its own and every model's), and the
    confidence window of the business signals when there is one."""

    __slots__ = ("bucket", "confidence", "model", "slos")

    def __init__(
        self,
        model: str,
        slos: list[tuple[SLO, Classifier, Reducer, EventCounts]],
        confidence: ConfidenceSink | None,
    ) -> None:
        self.model = model
        self.bucket = _Bucket()
        self.slos = slos
        self.confidence = confidence


class _Target:
    """One SLO: its definition and its counts."""

    __slots__ = ("counts", "slo")

    def __init__(self, slo: SLO, counts: EventCounts) -> None:
        self.slo = slo
        self.counts = counts


class SLICounter:
    """Counts good/total events of every SLO; register it with ``Monitor.add_sink``.

    Per event it only adds to the histograms of its model's newest bucket (duration, confidence,
    error types, as /metrics has them), at a cost that does not grow with the number of SLOs;
    when a bucket is complete, each SLO's good and total are read off it. It is also a
    drift-report listener (:meth:`record_drift_report`) for OOD SLIs. Read counts under
    :meth:`locked`, which first settles the newest buckets.
    """

    def __init__(
        self,
        slos: Iterable[SLO],
        *,
        bucket_s: int = DEFAULT_BUCKET_S,
        confidence: ConfidenceSink | None = None,
    ) -> None:
        """``confidence`` (a ``business.ConfidenceWindow``) gets every model's confidence
        histogram per bucket from here, so the business signals cost no second sink."""
        if bucket_s not in VALID_BUCKETS_S:
            raise ValueError(
                f"bucket_s must divide a minute ({', '.join(map(str, VALID_BUCKETS_S))}), "
                f"got {bucket_s}"
            )
        self.bucket_s = bucket_s
        self._bucket_ns = bucket_s * 1_000_000_000
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        for slo in slos:
            # One bucket more than the window: the bucket being filled is not yet counted.
            counts = EventCounts(bucket_s, slo.window_s // bucket_s + 1)
            self._targets[slo.name] = _Target(slo, counts)
        if confidence is not None and confidence.bucket_s != bucket_s:
            raise ValueError(
                f"the confidence window's buckets ({confidence.bucket_s} s) must be the "
                f"counter's ({bucket_s} s)"
            )
        self._confidence = confidence
        self._models: dict[str, _ModelState | None] = {}

    @property
    def slos(self) -> list[SLO]:
        """The SLOs counted, in definition order."""
        return [t.slo for t in self._targets.values()]

    def counts(self, name: str) -> EventCounts:
        """The counts of SLO ``name`` (read them under :meth:`locked`)."""
        try:
            return self._targets[name].counts
        except KeyError:
            raise KeyError(f"no SLO {name!r}; counted: {', '.join(self._targets)}") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock over every count, with the newest buckets added to the counts."""
        with self._lock:
            for state in self._models.values():
                if state is not None:
                    _settle(state)
            yield

    # -- the sink (Monitor's worker thread) ------------------------------------------------
    def __call__(self, ev: InferenceEvent) -> None:
        """Count ``ev`` into its model's newest bucket."""
        idx = (ev.start_time_ns + ev.duration_ns) // self._bucket_ns
        state = self._models.get(ev.model.name, _UNSEEN)
        if state is _UNSEEN:
            state = self._state_for(ev.model.name)
            if state is not None and ev.model.name not in self._models:
                # Past the model cap: no bucket of its own, counted event by event.
                with self._lock:
                    _count_late(state, ev, idx)
                return
        if state is None:
            return
        assert isinstance(state, _ModelState)
        with self._lock:
            b = state.bucket
            if idx != b.idx:
                if idx < b.idx:
                    _count_late(state, ev, idx)
                    return
                _settle(state)
                b.idx = idx
            # What Monitor._record_metrics records for this event, bucketed like /metrics.
            if ev.status == "ok":
                b.ok += 1
                b.duration[bisect_left(_DURATION, ev.duration_ns / 1e9)] += 1
                conf = ev.confidence
                if conf is not None:
                    b.confidence[bisect_left(_CONFIDENCE, conf)] += 1
                    b.confidence_sum += conf
                gen = ev.generation
                if gen is not None:  # what Monitor._record_generation records
                    ttft = gen.time_to_first_token_s
                    if ttft is not None:
                        b.ttft[bisect_left(_TTFT, ttft)] += 1
                    tpot = gen.time_per_output_token_s
                    if tpot is not None:
                        b.tpot[bisect_left(_TPOT, tpot)] += 1
            else:
                kind = ev.error_type
                b.errors[kind] = b.errors.get(kind, 0) + 1
                if ev.inputs is not None:  # a rejection records no duration
                    b.duration[bisect_left(_DURATION, ev.duration_ns / 1e9)] += 1

    def _state_for(self, model: str) -> _ModelState | None:
        found = []
        for t in self._targets.values():
            classify, reduce = classifier(t.slo), reducer(t.slo)
            if classify is not None and reduce is not None and t.slo.model in ("*", model):
                found.append((t.slo, classify, reduce, t.counts))
        state = _ModelState(model, found, self._confidence) if found or self._confidence else None
        with self._lock:  # the evaluator iterates the states under the lock
            # Bounded: model names come from callers. Beyond the cap, events are still counted.
            if len(self._models) < _MAX_MODEL_CACHE:
                self._models[model] = state
        return state

    # -- drift reports (the drift monitor's thread) ----------------------------------------
    def record_drift_report(self, report: DriftReport) -> None:
        """Listener: count a judged window for the OOD SLIs of its model (bad = OOD inputs)."""
        if report.n_samples <= 0:
            return
        bad = round(report.ood_rate * report.n_samples)
        idx = int(report.closed_at // self.bucket_s)
        with self._lock:
            for t in self._targets.values():
                if t.slo.sli.kind == "ood" and t.slo.model == report.model_name:
                    t.counts.add(idx, report.n_samples - bad, report.n_samples)

    # -- restore -----------------------------------------------------------------------------
    def restore(self, name: str, buckets: Sequence[Sequence[Any]]) -> None:
        """Add saved ``(index, good, total)`` buckets to SLO ``name`` (after a restart)."""
        with self._lock:
            counts = self.counts(name)
            for idx, good, total in buckets:
                counts.add(int(idx), int(good), int(total))


_UNSEEN = object()
_DURATION = c.DURATION_BUCKETS_S
_CONFIDENCE = c.CONFIDENCE_BUCKETS
_TTFT = c.GENAI_TTFT_BUCKETS_S
_TPOT = c.GENAI_TPOT_BUCKETS_S


def _settle(state: _ModelState) -> None:
    """Add the newest bucket's events to every SLO of the model and empty it (lock held)."""
    b = state.bucket
    if not (b.ok or b.errors):
        return
    for _slo, _classify, reduce, counts in state.slos:
        good, total = reduce(b)
        if total:
            counts.add(b.idx, good, total)
    if state.confidence is not None and any(b.confidence):
        state.confidence.add_bucket(state.model, b.idx, b.confidence, b.confidence_sum)
    b.clear()


def _count_late(state: _ModelState, ev: InferenceEvent, idx: int) -> None:
    """Count one event alone, straight into the SLOs' buckets: one older than its model's
    newest bucket (a slow request that ended late), or of a model past the cap."""
    for _slo, classify, _reduce, counts in state.slos:
        verdict = classify(ev)
        if verdict >= 0:
            counts.add(idx, verdict)
    if state.confidence is not None:
        state.confidence(ev)


class ConfidenceSink(Protocol):
    """What the counter hands the business signals: per-bucket confidence histograms."""

    bucket_s: int

    def __call__(self, ev: InferenceEvent) -> None: ...

    def add_bucket(self, model: str, idx: int, counts: Sequence[int], total: float) -> None: ...
