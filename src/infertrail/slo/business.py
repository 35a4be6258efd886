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

LLM generations add three rates over a rolling window (10 minutes by default), from how each
generation ended (``Generation.outcome``, the ``infertrail.gen_ai.outcomes`` counter):

| signal | value |
|---|---|
| ``business.gen_ai_empty_rate`` | share of generations that answered nothing |
| ``business.gen_ai_refused_rate`` | share refused by a content filter (``content_filter``) |
| ``business.gen_ai_truncated_rate`` | share cut at the token limit (``finish_reason=length``) |

:class:`GenerationOutcomes` counts them in process; :func:`generation_outcome_rules` gives the
default alert rules with the PromQL over ``infertrail_gen_ai_outcomes_total`` that computes the
same ratio from ``/metrics``.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import AlertRule, Severity
from infertrail.alerting.signals import MODEL_LABEL, model_matcher
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
    """Per time bucket: ``width`` counts (confidence buckets with +Inf last, or generation
    outcomes) and the sum of the values counted."""

    __slots__ = ("counts", "last", "n", "sums")

    def __init__(self, n: int, width: int) -> None:
        self.n = n
        self.counts = [[0] * width for _ in range(n)]
        self.sums = [0.0] * n
        self.last = -1

    def slot(self, idx: int) -> int | None:
        """The slot of time bucket ``idx``, emptied when the ring moves onto it; None when
        ``idx`` is older than the ring."""
        if idx > self.last:
            if self.last >= 0:
                for i in range(max(self.last + 1, idx - self.n + 1), idx + 1):
                    slot = i % self.n
                    self.counts[slot] = [0] * len(self.counts[slot])
                    self.sums[slot] = 0.0
            self.last = idx
        elif idx <= self.last - self.n:
            return None
        return idx % self.n

    def totals(self, end: int, k: int) -> tuple[list[int], float]:
        """Counts and sum over the ``k`` time buckets before bucket ``end`` (end excluded)."""
        counts = [0] * len(self.counts[0])
        total = 0.0
        for i in range(max(end - k, self.last - self.n + 1, 0), min(end - 1, self.last) + 1):
            slot = i % self.n
            for j, n in enumerate(self.counts[slot]):
                counts[j] += n
            total += self.sums[slot]
        return counts, total


class _PerModelSignals(ABC):
    """What the business-signal windows share: their models, and the alert engine judging
    each model's signals at every tick of the SLO evaluator. Subclasses keep ``_rings`` (one
    per model) under ``_lock`` and compute ``signals(model, at)``."""

    _rings: dict[str, _ModelRing]
    _lock: threading.Lock

    @abstractmethod
    def signals(self, model: str, at: float) -> dict[str, float]:
        """The signal values of ``model`` at ``at`` (empty without data)."""

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


class ConfidenceWindow(_PerModelSignals):
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
            ring = self._rings[model] = _ModelRing(self._k + 1, len(_BOUNDS) + 1)
        slot = ring.slot(idx)
        return None if slot is None else (ring, slot)

    def signals(self, model: str, at: float) -> dict[str, float]:
        """The business signals of ``model`` over the whole buckets before ``at``."""
        end = int(at // self.bucket_s)
        with self._lock:
            ring = self._rings.get(model)
            if ring is None:
                return {}
            counts, total_sum = ring.totals(end, self._k)
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


# -- LLM generations: empty, refused and truncated answers ------------------------------------

#: How a generation ended, in the order its window counts them (``Generation.outcome``, and
#: ``error`` for a failed call: the ``infertrail.gen_ai.outcome`` values of the outcomes counter).
GENERATION_OUTCOMES = ("ok", "empty", "refused", "truncated", "cancelled", "error")
#: The outcome rates that are business signals: signal key -> the outcome it counts.
OUTCOME_SIGNALS: Mapping[str, str] = {
    "business.gen_ai_empty_rate": "empty",
    "business.gen_ai_refused_rate": "refused",
    "business.gen_ai_truncated_rate": "truncated",
}
DEFAULT_OUTCOME_WINDOW_S = 600
#: Default alert thresholds, as shares of the window's generations: a tenth of answers cut at
#: max_tokens is a prompt or limit problem; a fifth is users getting half answers. Empty and
#: refused answers are rarer in healthy traffic, so they alert sooner.
DEFAULT_OUTCOME_THRESHOLDS: Mapping[str, float] = {"empty": 0.05, "refused": 0.1, "truncated": 0.2}
OUTCOMES_METRIC = "infertrail_gen_ai_outcomes_total"
OUTCOME_LABEL = "infertrail_gen_ai_outcome"
_OUTCOME_INDEX = {o: i for i, o in enumerate(GENERATION_OUTCOMES)}


def outcome_rate_promql(
    outcome: str, model: str = "*", window_s: int = DEFAULT_OUTCOME_WINDOW_S
) -> str:
    """PromQL for the share of ``model``'s generations that ended ``outcome`` over the window.

    The ratio of the outcome counter's increases, as :class:`GenerationOutcomes` counts it in
    process; per model (``infertrail_model_name``), so ``*`` gives one series per model.
    """
    if outcome not in _OUTCOME_INDEX:
        raise ValueError(f"unknown outcome {outcome!r}; valid: {', '.join(GENERATION_OUTCOMES)}")
    if window_s < 60 or window_s % 60:
        raise ValueError(f"window_s must be whole minutes, got {window_s}")
    m = model_matcher(model)
    window = f"{window_s // 60}m"
    picked = f'{OUTCOME_LABEL}="{outcome}"' + (f",{m}" if m else "")
    every = f"{{{m}}}" if m else ""
    by = f"sum by ({MODEL_LABEL})"
    return (
        f"{by} (rate({OUTCOMES_METRIC}{{{picked}}}[{window}]))\n"
        f"/\n{by} (rate({OUTCOMES_METRIC}{every}[{window}]))"
    )


def generation_outcome_rules(
    model: str = "*",
    *,
    thresholds: Mapping[str, float] = DEFAULT_OUTCOME_THRESHOLDS,
    window_s: int = DEFAULT_OUTCOME_WINDOW_S,
    for_windows: int = 2,
    resolve_after: int = 5,
    severity: Severity = "warning",
    receivers: Sequence[str] = (),
) -> list[AlertRule]:
    """Alert rules on the outcome rates of ``model`` (``*``: each model on its own), one per
    outcome in ``thresholds`` (fires above it), with the PromQL for export.

    The defaults are the documented ones (docs/slo.md); a rules file may carry the same rules
    with other numbers. ``for_windows`` counts SLO evaluator ticks (one a minute).
    """
    by_outcome = {o: k for k, o in OUTCOME_SIGNALS.items()}
    # Rule names take no '/' (a model such as "meta-llama/Llama-3.1-8B").
    prefix = "gen-ai" if model == "*" else re.sub(r"[^A-Za-z0-9_.:-]", "-", model)[:100]
    rules = []
    for outcome, threshold in thresholds.items():
        if outcome not in by_outcome:
            raise ValueError(
                f"no outcome-rate signal for {outcome!r}; valid: {', '.join(by_outcome)}"
            )
        rules.append(
            AlertRule(
                name=f"{prefix}-{outcome}-rate",
                signal=by_outcome[outcome],
                model=model,
                comparison=">",
                threshold=float(threshold),
                for_windows=for_windows,
                resolve_after=resolve_after,
                severity=severity,
                annotations={
                    "summary": f"{{model}}: {{value:.1%}} of generations {outcome} over the last "
                    f"{window_s // 60} minutes (fires above {{threshold:.0%}})"
                },
                receivers=tuple(receivers),
                promql=outcome_rate_promql(outcome, model, window_s),
            )
        )
    return rules


class GenerationOutcomes(_PerModelSignals):
    """How each model's LLM generations ended, over a rolling window: a Monitor sink.

    Counts every event that carries a ``generation`` by its outcome (the outcome counter's
    value: ``error`` for a failed call, else ``Generation.outcome``) in per-minute buckets;
    :meth:`signals` gives the empty, refused and truncated rates over the whole buckets of the
    window, as :func:`outcome_rate_promql` computes them from ``/metrics``.
    """

    def __init__(self, *, window_s: int = DEFAULT_OUTCOME_WINDOW_S, bucket_s: int = 60) -> None:
        if bucket_s not in VALID_BUCKETS_S:
            raise ValueError(f"bucket_s must divide a minute, got {bucket_s}")
        if window_s < 60 or window_s % 60:
            # Whole minutes, so that the exported PromQL can name the same window.
            raise ValueError(f"window_s must be whole minutes, got {window_s}")
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._k = window_s // bucket_s
        self._bucket_ns = bucket_s * 1_000_000_000
        self._rings: dict[str, _ModelRing] = {}
        self._lock = threading.Lock()

    def __call__(self, ev: InferenceEvent) -> None:
        """Sink: count a generation's outcome in its model's current bucket."""
        gen = ev.generation
        if gen is None:
            return
        j = _OUTCOME_INDEX["error" if ev.status == "error" else gen.outcome]
        idx = (ev.start_time_ns + ev.duration_ns) // self._bucket_ns
        with self._lock:
            ring = self._rings.get(ev.model.name)
            if ring is None:
                ring = self._rings[ev.model.name] = _ModelRing(self._k + 1, len(_OUTCOME_INDEX))
            slot = ring.slot(idx)
            if slot is not None:
                ring.counts[slot][j] += 1

    def counts(self, model: str, at: float) -> dict[str, int]:
        """Generations of ``model`` by outcome over the whole buckets before ``at``."""
        with self._lock:
            ring = self._rings.get(model)
            if ring is None:
                return {}
            counts, _ = ring.totals(int(at // self.bucket_s), self._k)
        return dict(zip(GENERATION_OUTCOMES, counts, strict=True))

    def signals(self, model: str, at: float) -> dict[str, float]:
        """The outcome-rate signals of ``model`` at ``at`` (none without generations)."""
        counts = self.counts(model, at)
        total = sum(counts.values())
        if total == 0:
            return {}
        return {key: counts[outcome] / total for key, outcome in OUTCOME_SIGNALS.items()}
