"""Histograms recorded as list appends and folded in batches, read through the SDK's readers.

A synchronous SDK histogram costs ~12 us per measurement with an exemplar (attribute cleaning,
then an aggregation lock and a reservoir offer per reader), on the thread that records it. A
:class:`BatchedHistogram` appends the value to its series' pending list instead (a sampled
measurement also takes its bucket's exemplar slot); :meth:`HistogramSet.aggregate` folds the
pending values in batches, and every reader of the :class:`MeterProvider` the set is attached to
finds the histograms in what it collects, as the SDK would have made them: explicit-bucket
aggregation (upper bounds inclusive), exemplars by the provider's exemplar filter with the last
one of each bucket kept (AlignedHistogramBucketExemplarReservoir), cumulative or delta as each
reader prefers, the SDK's start times, 2,000 attribute sets before ``otel.metric.overflow``.

Folding uses C builtins (``sorted``, ``bisect``, ``sum``), not numpy: this module belongs to the
instrumentation core, which never imports the heavy optional stack (pyproject's import
contract). ``sum`` adds in order on Python 3.11, as the SDK's running ``+=`` does, so sums are
bit-identical; Python 3.12+ compensates ``sum``, which may change the last bits.

Not carried over from the SDK: views (they match SDK instruments, never these), per-reader
cardinality limits (one limit for all readers, never reset for delta readers), and values that
Python holds equal but OpenTelemetry does not (``True``, ``1``, ``1.0``) under one attribute
name, which share a series here. One SDK quirk is not copied either: under ``always_on``, the
SDK's reservoir leaves the previous exemplar's span ids on a bucket when a measurement made
outside any span replaces it; here that exemplar has no span ids.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Container, Iterator, Sequence
from typing import TYPE_CHECKING, cast

from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Exemplar,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal.instrument import _Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import Aggregation, DefaultAggregation, DropAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

if TYPE_CHECKING:
    from infertrail.telemetry.setup import AttributeKey

_log = logging.getLogger("infertrail.telemetry")

DEFAULT_CARDINALITY_LIMIT = 2000  # the SDK's default per metric stream
_OVERFLOW_KEY: AttributeKey = (("otel.metric.overflow", True),)
_INF = math.inf
_time_ns = time.time_ns

# A measurement kept as an exemplar: value, time, trace id, span id, its attribute key.
_Sample = tuple[float, int, int, int, "AttributeKey"]
# Whether a measurement is offered as an exemplar, indexed by its span's sampled flag.
_OFFERS: dict[type[ExemplarFilter], tuple[bool, bool]] = {
    TraceBasedExemplarFilter: (False, True),
    AlwaysOnExemplarFilter: (True, True),
    AlwaysOffExemplarFilter: (False, False),
}


class _Series:
    """One attribute set of a histogram and what was recorded into it since the last fold."""

    __slots__ = ("attributes", "exemplars", "pending", "start_ns")

    def __init__(self, key: AttributeKey, start_ns: int) -> None:
        self.attributes = dict(key)
        self.start_ns = start_ns  # its first measurement: the SDK's start of a new series
        self.pending: list[float] = []
        self.exemplars: dict[int, _Sample] = {}  # bucket index -> last sample offered


class _Tally:
    """Bucket counts, sum, min and max of one series over an interval; exemplars when the
    interval is a reader's window (since its last collection)."""

    __slots__ = ("counts", "exemplars", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum: float = 0
        self.min = _INF
        self.max = -_INF
        self.exemplars: dict[int, _Sample] = {}

    def add(self, other: _Tally) -> None:
        """Add another interval's counts, as the SDK adds a window to its cumulative state."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum = other.sum + self.sum
        self.min = min(other.min, self.min)
        self.max = max(other.max, self.max)

    def exemplar_list(self, point_attributes: Container[str]) -> list[Exemplar]:
        """The exemplars in bucket order, each with the attributes its point does not carry
        (none, but in the overflow series), as the SDK's reservoir reports them."""
        exemplars = []
        for bucket in sorted(self.exemplars):
            value, t, trace_id, span_id, key = self.exemplars[bucket]
            filtered = {k: v for k, v in key if k not in point_attributes} if key else None
            exemplars.append(Exemplar(filtered, value, t, span_id or None, trace_id or None))
        return exemplars


def fold_batch(values: list[float], bounds: Sequence[float]) -> tuple[list[int], float, float]:
    """Bucket counts, min and max of a non-empty batch. Bucket i holds bounds[i-1] < v <=
    bounds[i], the last one what is above the last bound (the SDK's ``bisect_left``).

    Sorting, then bisecting the bounds into the sorted batch, is the quickest way to bucket
    with builtins alone (the sort is most of a fold's cost); a native fold would replace this
    function.
    """
    ordered = sorted(values)
    counts = []
    below = 0
    for bound in bounds:
        upto = bisect_right(ordered, bound, below)
        counts.append(upto - below)
        below = upto
    counts.append(len(ordered) - below)
    return counts, ordered[0], ordered[-1]


class BatchedHistogram:
    """A histogram whose ``record`` is an append; folded by its :class:`HistogramSet`."""

    def __init__(
        self,
        name: str,
        unit: str,
        description: str,
        bounds: Sequence[float],
        cardinality_limit: int,
        offers: tuple[bool, bool],
    ) -> None:
        for i, bound in enumerate(bounds):
            if not math.isfinite(bound):
                raise ValueError(f"histogram {name!r}: bound {bound!r} is not finite")
            if i and bounds[i - 1] >= bound:
                raise ValueError(f"histogram {name!r}: bounds must increase, got {list(bounds)}")
        self.name, self.unit, self.description = name, unit, description
        self.bounds: tuple[float, ...] = tuple(bounds)
        self._cardinality_limit = cardinality_limit
        self._offers = offers
        self._lock = threading.Lock()
        self._by_key: dict[AttributeKey, _Series] = {}  # as callers spell keys (hot path)
        self._by_attributes: dict[tuple[tuple[str, str, object], ...], _Series] = {}
        self._all: list[_Series] = []
        self._overflow: _Series | None = None
        self.folded = False  # whether any measurement was folded (delta start times)

    def record(
        self,
        value: float,
        key: AttributeKey,
        trace_id: int = 0,
        span_id: int = 0,
        sampled: bool = False,
        time_ns: int = 0,
    ) -> None:
        """Record one measurement in the series ``key``; ``trace_id``/``span_id`` are the span
        it was made in (0: none) and ``time_ns`` its time (0: now). Thread-safe: an append
        under the GIL, plus a lock when the measurement is offered as an exemplar."""
        if not 0.0 <= value < _INF:  # also false for NaN
            self._reject(value)
            return
        series = self._by_key.get(key)
        if series is None:
            series = self._series_of(key, time_ns)
        if self._offers[sampled]:
            sample = (value, time_ns or _time_ns(), trace_id, span_id, key)
            bucket = bisect_left(self.bounds, value)
            with self._lock:  # the value and its exemplar reach the same fold
                series.pending.append(value)
                series.exemplars[bucket] = sample
        else:
            series.pending.append(value)

    def record_many(self, values: Sequence[float], key: AttributeKey) -> None:
        """Record several measurements in the series ``key``, none of them an exemplar."""
        accepted = [v for v in values if 0.0 <= v < _INF]
        if len(accepted) != len(values):
            self._reject(next(v for v in values if not 0.0 <= v < _INF))
        if accepted:
            series = self._by_key.get(key) or self._series_of(key, 0)
            series.pending.extend(accepted)

    def _reject(self, value: float) -> None:
        _log.warning(
            "histogram %s: ignoring %r, values must be finite and non-negative", self.name, value
        )

    def _series_of(self, key: AttributeKey, time_ns: int) -> _Series:
        """The series of a key not seen yet in this spelling: the same attribute set in
        another order, a new one, or the overflow series once the limit is reached."""
        attributes = tuple(sorted((k, type(v).__name__, v) for k, v in dict(key).items()))
        with self._lock:
            series = self._by_attributes.get(attributes)
            if series is None:
                if len(self._by_attributes) >= self._cardinality_limit:
                    # Not cached under ``key``: unbounded keys must not grow memory.
                    if self._overflow is None:
                        self._overflow = _Series(_OVERFLOW_KEY, time_ns or _time_ns())
                        self._all.append(self._overflow)
                    return self._overflow
                series = _Series(key, time_ns or _time_ns())
                self._by_attributes[attributes] = series
                self._all.append(series)
            self._by_key[key] = series
            return series

    def series(self) -> list[_Series]:
        """Every series so far, in order of creation."""
        return list(self._all)

    def drain(self) -> Iterator[tuple[_Series, list[float], dict[int, _Sample]]]:
        """Take each series' pending values and exemplars. Appends made meanwhile stay for the
        next drain: the slice and the delete are each atomic under the GIL."""
        for series in list(self._all):
            pending = series.pending
            if not pending:
                continue
            with self._lock:
                n = len(pending)
                values = pending[:n]
                del pending[:n]
                exemplars, series.exemplars = series.exemplars, {}
            yield series, values, exemplars


class _ReaderView:
    """What one reader has not collected yet and, for a cumulative reader, its totals."""

    def __init__(self, temporality: AggregationTemporality) -> None:
        self.temporality = temporality
        self.windows: dict[_Series, _Tally] = {}
        self.totals: dict[_Series, _Tally] = {}
        self.last_collection_ns: dict[BatchedHistogram, int] = {}

    def fold(
        self,
        series: _Series,
        values: list[float],
        counts: list[int],
        lowest: float,
        highest: float,
        exemplars: dict[int, _Sample],
        sums: dict[float, float],
    ) -> None:
        """Add a batch of the series to this reader's window (``counts``, ``lowest`` and
        ``highest`` computed once for all readers; ``sums`` of the batch by starting sum,
        shared by the readers whose windows hold the same sum)."""
        window = self.windows.get(series)
        if window is None:
            window = self.windows[series] = _Tally(len(counts))
        window.counts = [a + b for a, b in zip(window.counts, counts, strict=True)]
        total = sums.get(window.sum)
        if total is None:
            # In order, from the window's sum: the SDK's running sum, to the last bit.
            total = sums[window.sum] = sum(values, window.sum)
        window.sum = total
        window.min = min(window.min, lowest)
        window.max = max(window.max, highest)
        window.exemplars.update(exemplars)

    def points(self, histogram: BatchedHistogram, now: int) -> list[HistogramDataPoint]:
        """The histogram's data points for a collection at ``now``; starts a new window."""
        cumulative = self.temporality is AggregationTemporality.CUMULATIVE
        previous = self.last_collection_ns.get(histogram)
        points = []
        for series in histogram.series():
            window = self.windows.pop(series, None)
            if cumulative:
                tally = self.totals.get(series)
                if window is not None:
                    if tally is None:
                        tally = self.totals[series] = _Tally(len(window.counts))
                    tally.add(window)
                if tally is None:
                    continue
                start = series.start_ns
            else:
                if window is None:
                    continue
                # A delta series starts at the reader's previous collection of the histogram,
                # or at its first measurement before that.
                tally, start = window, series.start_ns if previous is None else previous
            points.append(
                HistogramDataPoint(
                    attributes=series.attributes,
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    count=sum(tally.counts),
                    sum=tally.sum,
                    bucket_counts=tuple(tally.counts),
                    explicit_bounds=histogram.bounds,
                    min=tally.min,
                    max=tally.max,
                    exemplars=[] if window is None else window.exemplar_list(series.attributes),
                )
            )
        if histogram.folded:
            self.last_collection_ns[histogram] = now
        return points


class HistogramSet:
    """The batched histograms of one instrumentation scope, exported through the readers of
    the provider they are attached to (no resource of their own: the provider's)."""

    def __init__(
        self, scope: InstrumentationScope, *, cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT
    ) -> None:
        if cardinality_limit < 1:
            raise ValueError(f"cardinality_limit must be at least 1, got {cardinality_limit}")
        self.scope = scope
        self._cardinality_limit = cardinality_limit
        self._offers = _OFFERS[TraceBasedExemplarFilter]
        self._lock = threading.Lock()  # folding and collecting
        self._histograms: dict[str, BatchedHistogram] = {}
        self._views: dict[MetricReader, _ReaderView] = {}
        self._attached = False

    def histogram(
        self, name: str, unit: str, description: str, bounds: Sequence[float]
    ) -> BatchedHistogram:
        """A new histogram of this scope; ``bounds`` are the buckets' inclusive upper bounds."""
        with self._lock:
            if name in self._histograms:
                raise ValueError(f"histogram {name!r} already exists in scope {self.scope.name}")
            h = BatchedHistogram(
                name, unit, description, bounds, self._cardinality_limit, self._offers
            )
            self._histograms[name] = h
            return h

    def attach(self, meter_provider: MeterProvider) -> None:
        """Make every reader registered with ``meter_provider`` see these histograms in each
        collection, in this scope's ScopeMetrics (the SDK's own when the scopes are equal)."""
        readers, exemplar_filter = _sdk_readers(meter_provider)
        offers = _OFFERS.get(type(exemplar_filter))
        if offers is None:
            raise NotImplementedError(
                f"exemplar filter {type(exemplar_filter).__name__} is not supported by batched "
                f"histograms; supported: trace_based, always_on, always_off"
            )
        views = {}
        for reader, temporality, aggregation in readers:
            if isinstance(aggregation, DropAggregation):
                continue
            if type(aggregation) is not DefaultAggregation:
                raise NotImplementedError(
                    f"{type(reader).__name__} prefers {type(aggregation).__name__} for "
                    "histograms; batched histograms make explicit-bucket histograms only "
                    "(unset OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION)"
                )
            views[reader] = _ReaderView(temporality)
        with self._lock:
            if self._attached:
                raise RuntimeError(f"histogram set {self.scope.name!r} is already attached")
            self._attached = True
            self._views = views
            self._offers = offers
            for h in self._histograms.values():
                h._offers = offers
            for reader in views:
                _intercept_collect(meter_provider, reader, self._merge)

    def aggregate(self) -> None:
        """Fold every pending measurement into each reader's window. Collections call it;
        pending values take memory until folded, so call it every second or so when no
        reader collects that often. Until :meth:`attach`, values stay pending."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        if not self._attached:
            return
        for h in self._histograms.values():
            for series, values, exemplars in h.drain():
                counts, lowest, highest = fold_batch(values, h.bounds)
                sums: dict[float, float] = {}
                for view in self._views.values():
                    view.fold(series, values, counts, lowest, highest, exemplars, sums)
                h.folded = True

    def _merge(
        self, reader: MetricReader, data: MetricsData | None, resource: Resource
    ) -> MetricsData | None:
        """What ``reader`` receives: the SDK's collection ``data`` with these histograms."""
        with self._lock:
            view = self._views[reader]
            self._fold()
            now = _time_ns()
            metrics = []
            for h in self._histograms.values():
                points = view.points(h, now)
                if points:
                    histogram = Histogram(points, view.temporality)
                    metrics.append(Metric(h.name, h.description, h.unit, histogram))
        return merged(data, resource, self.scope, metrics)


def merged(
    data: MetricsData | None,
    resource: Resource,
    scope: InstrumentationScope,
    metrics: list[Metric],
) -> MetricsData | None:
    """``data`` with ``metrics`` added to ``scope``'s ScopeMetrics of its first resource (a
    new ScopeMetrics if the scope has none; a new MetricsData for ``resource`` if no data)."""
    if not metrics:
        return data
    if data is None or not data.resource_metrics:
        scopes = [ScopeMetrics(scope, metrics, scope.schema_url or "")]
        return MetricsData([ResourceMetrics(resource, scopes, resource.schema_url)])
    first, *rest = data.resource_metrics
    scopes = list(first.scope_metrics)
    for i, sm in enumerate(scopes):
        if sm.scope == scope:
            scopes[i] = ScopeMetrics(sm.scope, [*sm.metrics, *metrics], sm.schema_url)
            break
    else:
        scopes.append(ScopeMetrics(scope, metrics, scope.schema_url or ""))
    return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


# The Python SDK (1.45) has no MetricProducer, so the two functions below use its internals:
#   MeterProvider._measurement_consumer._reader_storages  the registered readers (its keys)
#   MeterProvider._sdk_config                             .resource, .exemplar_filter
#   MetricReader._instrument_class_temporality/_aggregation  keyed by instrument._Histogram
#   MetricReader._collect, _set_collect_callback          the provider's collect callback,
#                                                        called as (reader, timeout_millis=)
# test_histograms.py::test_sdk_internals_used_by_attach fails first if any of them changes.


def _sdk_readers(
    provider: MeterProvider,
) -> tuple[list[tuple[MetricReader, AggregationTemporality, Aggregation]], ExemplarFilter]:
    """The provider's readers with their histogram temporality and aggregation, and its
    exemplar filter."""
    try:
        readers = list(provider._measurement_consumer._reader_storages)
        return [
            (
                r,
                r._instrument_class_temporality[_Histogram],
                r._instrument_class_aggregation[_Histogram],
            )
            for r in readers
        ], provider._sdk_config.exemplar_filter
    except (AttributeError, KeyError) as exc:
        raise RuntimeError(f"opentelemetry-sdk internals changed: {exc!r}") from exc


def _intercept_collect(
    provider: MeterProvider,
    reader: MetricReader,
    merge: Callable[[MetricReader, MetricsData | None, Resource], MetricsData | None],
) -> None:
    """Replace ``reader``'s collect callback by one that passes the SDK's data through
    ``merge`` (with the provider's current resource, which changes after a fork)."""
    # Typed by the SDK as returning Iterable[Metric]; it returns MetricsData or None.
    sdk_collect = cast("Callable[..., MetricsData | None] | None", reader._collect)
    if sdk_collect is None:
        raise RuntimeError(f"{type(reader).__name__} is not registered with a MeterProvider")

    def collect(r: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
        data = sdk_collect(r, timeout_millis=timeout_millis)
        return merge(r, data, provider._sdk_config.resource)

    reader._set_collect_callback(collect)  # type: ignore[arg-type]
