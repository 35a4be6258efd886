"""Business-impact signals: is the model still confident, compared with its training data?

Drift reports already give the per-window signals of :mod:`infertrail.runtime.alert_sources`
(``ood.rate``, ``prediction.low_confidence_rate``, ``prediction.confidence_mean`` and the
label-mix shift ``drift.prediction_label_distance``); register ``drift_listener(engine)`` for
them. This module adds the confidence of *every* prediction over a rolling time window, read
from the same buckets as the ``infertrail.prediction.confidence`` histogram and computed the
way PromQL computes it from ``/metrics``, and compared with the reference profile:

| signal | value |
|---|---|
| ``business.confidence_mean`` | mean confidence over the window |
| ``business.confidence_mean_delta`` | that minus the reference mean (negative: a drop) |
| ``business.confidence_p<NN>`` | the NN-th percentile (``histogram_quantile``) |
| ``business.confidence_p<NN>_delta`` | that minus the reference's, through the same buckets |
| ``business.low_confidence_rate`` | share of predictions with confidence at most ``low`` |
| ``business.low_confidence_rate_delta`` | that minus the reference's share |

The reference percentiles go through the histogram's buckets too, so a delta is zero when the
live confidences look like the training ones, not the coarseness of the buckets.
:class:`ConfidenceWindow` gets whole buckets from the ``SLICounter``, which keeps these
histograms anyway (or is a Monitor sink of its own); :meth:`ConfidenceWindow.evaluate` runs on
the SLO evaluator's timer and feeds the alert engine.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from infertrail.alerting.engine import AlertEngine
from infertrail.drift.profile import Profile
from infertrail.events import InferenceEvent
from infertrail.slo.sli import VALID_BUCKETS_S
from infertrail.telemetry import conventions as c

DEFAULT_QUANTILES = (0.1, 0.5)
DEFAULT_LOW = 0.6
DEFAULT_WINDOW_S = 3600
_BOUNDS = c.CONFIDENCE_BUCKETS


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile`` of per-bucket (not cumulative) ``counts``.

    ``counts`` has one entry per bound plus the +Inf bucket. Linear interpolation inside the
    bucket holding the rank; the lowest bucket starts at 0; a rank in the +Inf bucket gives the
    highest finite bound; NaN without observations.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"need {len(bounds) + 1} bucket counts, got {len(counts)}")
    if not 0 <= q <= 1:
        return -math.inf if q < 0 else math.inf
    cumulative = [float(x) for x in np.cumsum(counts, dtype=np.float64)]
    observations = cumulative[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = bisect.bisect_left(cumulative[:-1], rank)
    if b == len(bounds):
        return float(bounds[-1])
    start = 0.0 if b == 0 else float(bounds[b - 1])
    below = 0.0 if b == 0 else cumulative[b - 1]
    in_bucket = cumulative[b] - below
    return start + (float(bounds[b]) - start) * ((rank - below) / in_bucket)


def quantile_key(q: float) -> str:
    """The signal suffix of a quantile: 0.1 -> ``p10``, 0.05 -> ``p5``, 0.999 -> ``p99_9``."""
    return "p" + f"{q * 100:g}".replace(".", "_")


@dataclass(frozen=True)
class ConfidenceReference:
    """What the training data's confidences looked like, through the histogram's buckets."""

    mean: float
    quantiles: Mapping[float, float]
    low_confidence_rate: float

    @classmethod
    def from_confidences(
        cls,
        confidences: Sequence[float] | np.ndarray,
        *,
        quantiles: Iterable[float] = DEFAULT_QUANTILES,
        low: float = DEFAULT_LOW,
    ) -> ConfidenceReference:
        """The reference of a sample of confidences (e.g. the profile's)."""
        conf = np.asarray(confidences, dtype=np.float64)
        conf = conf[~np.isnan(conf)]
        if conf.size == 0:
            raise ValueError("the reference has no confidences")
        counts = np.bincount(
            np.searchsorted(_BOUNDS, conf, side="left"), minlength=len(_BOUNDS) + 1
        )
        return cls(
            mean=float(conf.mean()),
            quantiles={q: histogram_quantile(q, _BOUNDS, counts.tolist()) for q in quantiles},
            low_confidence_rate=float(np.mean(conf <= low)),
        )

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        *,
        quantiles: Iterable[float] = DEFAULT_QUANTILES,
        low: float = DEFAULT_LOW,
    ) -> ConfidenceReference:
        """The reference of a model's profile (its sample of training confidences)."""
        if profile.sample_confidences is None:
            raise ValueError(f"the profile of {profile.model_name!r} holds no confidences")
        return cls.from_confidences(profile.sample_confidences, quantiles=quantiles, low=low)


class _ModelRing:
    """Per time bucket: counts per confidence bucket (+Inf last) and the sum of values."""

    __slots__ = ("counts", "last", "n", "sums")

    def __init__(self, n: int) -> None:
        self.n = n
        self.counts = [[0] * (len(_BOUNDS) + 1) for _ in range(n)]
        self.sums = [0.0] * n
        self.last = -1


class ConfidenceWindow:
    """A Monitor sink keeping every model's confidence histogram over a rolling window."""

    def __init__(
        self,
        references: Mapping[str, ConfidenceReference] | None = None,
        *,
        window_s: int = DEFAULT_WINDOW_S,
        bucket_s: int = 60,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        low: float = DEFAULT_LOW,
    ) -> None:
        if bucket_s not in VALID_BUCKETS_S:
            raise ValueError(f"bucket_s must divide a minute, got {bucket_s}")
        if window_s < bucket_s or window_s % bucket_s:
            raise ValueError(f"window_s must be a multiple of bucket_s={bucket_s}, got {window_s}")
        if low not in _BOUNDS:
            allowed = ", ".join(f"{b:g}" for b in _BOUNDS)
            raise ValueError(f"low must be a confidence bucket boundary ({allowed}), got {low!r}")
        for q in quantiles:
            if not 0 < q < 1:
                raise ValueError(f"quantiles must lie in (0, 1), got {q!r}")
        self.references = dict(references or {})
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.quantiles = tuple(quantiles)
        self.low = low
        self._low_index = _BOUNDS.index(low)
        self._k = window_s // bucket_s
        self._bucket_ns = bucket_s * 1_000_000_000
        self._rings: dict[str, _ModelRing] = {}
        self._lock = threading.Lock()

    def __call__(self, ev: InferenceEvent) -> None:
        """Sink: add a successful prediction's confidence to its model's current bucket.

        Standalone use; with SLOs, pass the window to ``SLICounter(confidence=...)`` instead,
        which hands it whole buckets (:meth:`add_bucket`) from the histograms it keeps anyway.
        """
        value = ev.confidence
        if ev.status != "ok" or value is None:
            return
        idx = (ev.start_time_ns + ev.duration_ns) // self._bucket_ns
        j = bisect.bisect_left(_BOUNDS, value)
        with self._lock:
            found = self._slot(ev.model.name, idx)
            if found is not None:
                ring, slot = found
                ring.counts[slot][j] += 1
                ring.sums[slot] += value

    def add_bucket(self, model: str, idx: int, counts: Sequence[int], total: float) -> None:
        """Add one time bucket's confidence histogram (``counts`` per bucket, +Inf last) and
        the sum of its confidences for ``model``."""
        with self._lock:
            found = self._slot(model, idx)
            if found is not None:
                ring, slot = found
                row = ring.counts[slot]
                for j, n in enumerate(counts):
                    row[j] += n
                ring.sums[slot] += total

    def _slot(self, model: str, idx: int) -> tuple[_ModelRing, int] | None:
        """The ring and slot of bucket ``idx`` (lock held); None when it is older than the ring."""
        ring = self._rings.get(model)
        if ring is None:
            ring = self._rings[model] = _ModelRing(self._k + 1)
        if idx > ring.last:
            self._advance(ring, idx)
        elif idx <= ring.last - ring.n:
            return None
        return ring, idx % ring.n

    @staticmethod
    def _advance(ring: _ModelRing, idx: int) -> None:
        if ring.last >= 0:
            for i in range(max(ring.last + 1, idx - ring.n + 1), idx + 1):
                slot = i % ring.n
                ring.counts[slot] = [0] * len(ring.counts[slot])
                ring.sums[slot] = 0.0
        ring.last = idx

    def signals(self, model: str, at: float) -> dict[str, float]:
        """The business signals of ``model`` over the whole buckets before ``at``."""
        end = int(at // self.bucket_s)
        counts = [0] * (len(_BOUNDS) + 1)
        total_sum = 0.0
        with self._lock:
            ring = self._rings.get(model)
            if ring is None:
                return {}
            lo = max(end - self._k, ring.last - ring.n + 1, 0)
            for i in range(lo, min(end - 1, ring.last) + 1):
                slot = i % ring.n
                for j, n in enumerate(ring.counts[slot]):
                    counts[j] += n
                total_sum += ring.sums[slot]
        n = sum(counts)
        if n == 0:
            return {}
        out = {
            "business.confidence_mean": total_sum / n,
            "business.low_confidence_rate": sum(counts[: self._low_index + 1]) / n,
        }
        for q in self.quantiles:
            out[f"business.confidence_{quantile_key(q)}"] = histogram_quantile(q, _BOUNDS, counts)
        ref = self.references.get(model)
        if ref is not None:
            out["business.confidence_mean_delta"] = out["business.confidence_mean"] - ref.mean
            out["business.low_confidence_rate_delta"] = (
                out["business.low_confidence_rate"] - ref.low_confidence_rate
            )
            for q in self.quantiles:
                if q in ref.quantiles:
                    key = f"business.confidence_{quantile_key(q)}"
                    out[f"{key}_delta"] = out[key] - ref.quantiles[q]
        return out

    def models(self) -> list[str]:
        """Models seen so far."""
        with self._lock:
            return sorted(self._rings)

    def listener(self, engine: AlertEngine) -> Callable[[float, object], None]:
        """An SLO-evaluator listener that evaluates ``engine`` on these signals at each tick."""

        def on_tick(at: float, _statuses: object) -> None:
            self.evaluate(engine, at)

        return on_tick

    def evaluate(self, engine: AlertEngine, at: float) -> dict[str, dict[str, float]]:
        """Evaluate ``engine`` with every model's signals at ``at``; returns them by model."""
        when = datetime.fromtimestamp(at, UTC)
        out = {}
        for model in self.models():
            values = self.signals(model, at)
            if values:
                engine.evaluate(values, model, when)
                out[model] = values
        return out
