"""Batched histograms against the SDK's own: the same measurements give the same points."""

from __future__ import annotations

import json
import math
import sys
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    Histogram,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal.instrument import _Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    DropAggregation,
    ExponentialBucketHistogramAggregation,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry, generate_latest

from infertrail.telemetry.files import OtlpJsonMetricExporter
from infertrail.telemetry.histograms import BatchedHistogram, HistogramSet, fold_batch
from infertrail.telemetry.setup import AttributeKey

NAME, UNIT, DESCRIPTION = "test.duration", "s", "How long a test inference took."
BOUNDS = (0.0, 0.005, 0.1, 1.0, 2.5, 10.0)
SCOPE = InstrumentationScope("infertrail.test", "1.0")
RESOURCE = Resource.create({"service.name": "histograms-test"})
DELTA, CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
# The last two are one attribute set spelled in two orders.
KEYS: list[AttributeKey] = [
    (),
    (("model", "a"),),
    (("model", "b"), ("label", "x"), ("n", 3)),
    (("n", 3), ("label", "x"), ("model", "b")),
]

VALUES = st.one_of(
    st.sampled_from(BOUNDS),  # on a bound: the bucket it closes
    st.floats(0, 20, allow_nan=False),
    st.sampled_from([-1.0, math.nan, math.inf]),  # dropped by both
)
SPANS = st.one_of(
    st.none(),
    st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans()),
)
RECORD = st.tuples(st.just("record"), VALUES, st.integers(0, len(KEYS) - 1), SPANS)
OPS = st.lists(
    st.one_of(RECORD, RECORD, RECORD, st.just(("collect",)), st.just(("aggregate",))),
    max_size=60,
)


@dataclass
class Pair:
    """An SDK histogram and a batched one, each in its own provider with one in-memory reader."""

    sdk: Any
    sdk_reader: InMemoryMetricReader
    ours: BatchedHistogram
    our_set: HistogramSet
    our_reader: InMemoryMetricReader

    @classmethod
    def make(
        cls,
        temporality: AggregationTemporality = CUMULATIVE,
        exemplar_filter: ExemplarFilter | None = None,
        cardinality_limit: int = 2000,
    ) -> Pair:
        readers = [
            InMemoryMetricReader(
                preferred_temporality={Histogram: temporality},
                cardinality_limits={Histogram: cardinality_limit},
            )
            for _ in range(2)
        ]
        sdk_provider, our_provider = (
            MeterProvider(
                [r], resource=RESOURCE, exemplar_filter=exemplar_filter, shutdown_on_exit=False
            )
            for r in readers
        )
        sdk = sdk_provider.get_meter(SCOPE.name, SCOPE.version).create_histogram(
            NAME, UNIT, DESCRIPTION, explicit_bucket_boundaries_advisory=list(BOUNDS)
        )
        our_set = HistogramSet(SCOPE, cardinality_limit=cardinality_limit)
        ours = our_set.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
        our_set.attach(our_provider)
        return cls(sdk, readers[0], ours, our_set, readers[1])

    def record(self, value: float, key: AttributeKey, span: tuple[int, int, bool] | None) -> None:
        """The same measurement into both: the SDK's made inside ``span`` (None: no span)."""
        ctx = context_api.Context()
        if span is not None:
            flags = TraceFlags(TraceFlags.SAMPLED if span[2] else TraceFlags.DEFAULT)
            span_context = SpanContext(span[0], span[1], is_remote=False, trace_flags=flags)
            ctx = trace.set_span_in_context(NonRecordingSpan(span_context), ctx)
        self.sdk.record(value, dict(key), context=ctx)
        trace_id, span_id, sampled = span or (0, 0, False)
        self.ours.record(value, key, trace_id, span_id, sampled)

    def assert_same_points(self) -> tuple[list[HistogramDataPoint], list[HistogramDataPoint]]:
        """Collect both readers once; their points must agree but for times."""
        theirs, ours = (
            points(self.sdk_reader.get_metrics_data()),
            points(self.our_reader.get_metrics_data()),
        )
        assert comparable(ours) == comparable(theirs)
        for p in ours:
            assert p.start_time_unix_nano <= p.time_unix_nano
        return theirs, ours


def points(data: MetricsData | None) -> list[HistogramDataPoint]:
    """The data points of the test histogram in a collection."""
    if data is None:
        return []
    found = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == NAME
        for p in m.data.data_points
        if isinstance(p, HistogramDataPoint)
    ]
    return found


def same_sum(sum_: float) -> float | str:
    """Sums compare exactly on 3.11 (in-order ``sum``); 3.12's compensated ``sum`` may move
    the last bits, so there they compare to 12 digits."""
    return sum_ if sys.version_info < (3, 12) else f"{sum_:.12g}"


def comparable(pts: Sequence[HistogramDataPoint]) -> dict[frozenset[Any], Any]:
    """Points by attribute set, without their times; exemplars as (bucket, value, ids, attrs)."""
    return {
        frozenset(p.attributes.items()) if p.attributes else frozenset(): (
            p.count,
            same_sum(p.sum),
            p.min,
            p.max,
            tuple(p.bucket_counts),
            tuple(p.explicit_bounds),
            [
                (
                    bisect_left(BOUNDS, e.value),
                    e.value,
                    e.trace_id,
                    e.span_id,
                    e.filtered_attributes,
                )
                for e in p.exemplars
            ],
        )
        for p in pts
    }


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA])
@pytest.mark.parametrize(
    "exemplar_filter",
    [TraceBasedExemplarFilter(), AlwaysOnExemplarFilter(), AlwaysOffExemplarFilter()],
    ids=["trace_based", "always_on", "always_off"],
)
@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_collections_equal_the_sdks(
    temporality: AggregationTemporality, exemplar_filter: ExemplarFilter, ops: list[Any]
) -> None:
    pair = Pair.make(temporality, exemplar_filter)
    always_on = isinstance(exemplar_filter, AlwaysOnExemplarFilter)
    for op in ops:
        if op[0] == "record":
            _, value, key, span = op
            if always_on and span is None:
                continue  # the SDK's stale span ids: test_exemplar_without_a_span_has_no_ids
            pair.record(value, KEYS[key], span)
        elif op[0] == "aggregate":
            pair.our_set.aggregate()
        else:
            pair.assert_same_points()
    pair.assert_same_points()


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.one_of(st.tuples(st.just("record"), VALUES), st.sampled_from(["a", "b", "fold"])),
        max_size=60,
    )
)
def test_readers_collecting_at_different_times_each_equal_the_sdks(ops: list[Any]) -> None:
    """Two readers per provider, collected apart: each window has its own in-order sum."""

    def two_readers() -> list[InMemoryMetricReader]:
        return [
            InMemoryMetricReader(preferred_temporality={Histogram: t}) for t in (CUMULATIVE, DELTA)
        ]

    sdk_readers, our_readers = two_readers(), two_readers()
    sdk = (
        MeterProvider(sdk_readers, resource=RESOURCE, shutdown_on_exit=False)
        .get_meter(SCOPE.name, SCOPE.version)
        .create_histogram(NAME, UNIT, DESCRIPTION, explicit_bucket_boundaries_advisory=BOUNDS)
    )
    histograms = HistogramSet(SCOPE)
    ours = histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    histograms.attach(MeterProvider(our_readers, resource=RESOURCE, shutdown_on_exit=False))
    for op in [*ops, "a", "b"]:
        if op == "fold":
            histograms.aggregate()
        elif op in ("a", "b"):
            i = "ab".index(op)
            theirs = points(sdk_readers[i].get_metrics_data())
            assert comparable(points(our_readers[i].get_metrics_data())) == comparable(theirs)
        else:
            sdk.record(op[1], {"model": "a"})
            ours.record(op[1], KEYS[1])


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(RECORD, max_size=40))
def test_overflow_series_equals_the_sdks(ops: list[Any]) -> None:
    pair = Pair.make(CUMULATIVE, cardinality_limit=1)
    for _, value, key, span in ops:
        pair.record(value, KEYS[key], span)
    pair.assert_same_points()


@given(values=st.lists(VALUES, max_size=30), key=st.sampled_from(KEYS))
@settings(deadline=None)
def test_record_many_equals_the_sdks_records(values: list[float], key: AttributeKey) -> None:
    pair = Pair.make(DELTA)
    for v in values:
        pair.sdk.record(v, dict(key))
    pair.ours.record_many(values, key)
    pair.assert_same_points()


@given(values=st.lists(st.floats(0, 20), min_size=1, max_size=50))
def test_fold_batch_places_values_as_bisect_left_does(values: list[float]) -> None:
    placed = Counter(bisect_left(BOUNDS, v) for v in values)
    counts, lowest, highest = fold_batch(values, BOUNDS)
    assert counts == [placed[i] for i in range(len(BOUNDS) + 1)]
    assert (lowest, highest) == (min(values), max(values))


def test_exemplar_without_a_span_has_no_ids() -> None:
    """Under always_on, the SDK's reservoir keeps the previous exemplar's span ids in a bucket
    when a measurement without a span replaces it (ExemplarBucket.offer sets ids only for a
    valid span); ours reports no ids, as the measurement had none."""
    pair = Pair.make(DELTA, AlwaysOnExemplarFilter())
    pair.record(0.5, KEYS[1], (7, 8, False))
    pair.record(0.5, KEYS[1], None)
    sdk_point, our_point = (
        points(r.get_metrics_data())[0] for r in (pair.sdk_reader, pair.our_reader)
    )
    assert [(e.trace_id, e.span_id) for e in sdk_point.exemplars] == [(7, 8)]
    assert [(e.trace_id, e.span_id) for e in our_point.exemplars] == [(None, None)]


def test_delta_points_start_at_the_previous_collection() -> None:
    pair = Pair.make(DELTA)
    pair.ours.record(0.5, KEYS[1], time_ns=1_000)
    [first] = points(pair.our_reader.get_metrics_data())
    assert first.start_time_unix_nano == 1_000  # its first measurement
    pair.ours.record(0.5, KEYS[2])
    [second] = points(pair.our_reader.get_metrics_data())
    assert second.start_time_unix_nano == first.time_unix_nano
    assert points(pair.our_reader.get_metrics_data()) == []  # nothing new: no point


def test_cumulative_points_start_at_the_first_measurement() -> None:
    pair = Pair.make(CUMULATIVE)
    pair.ours.record(0.5, KEYS[1], time_ns=1_000)
    pair.our_reader.get_metrics_data()
    [again] = points(pair.our_reader.get_metrics_data())
    assert (again.start_time_unix_nano, again.count, again.exemplars) == (1_000, 1, [])


def test_values_recorded_before_attach_are_kept() -> None:
    histograms = HistogramSet(SCOPE)
    h = histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    h.record(0.2, KEYS[1])
    histograms.aggregate()  # nothing to fold into yet
    reader = InMemoryMetricReader()
    histograms.attach(MeterProvider([reader], resource=RESOURCE, shutdown_on_exit=False))
    [p] = points(reader.get_metrics_data())
    assert (p.count, p.sum) == (1, 0.2)


def test_metrics_join_the_sdks_scope_and_resource() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider([reader], resource=RESOURCE, shutdown_on_exit=False)
    provider.get_meter(SCOPE.name, SCOPE.version).create_counter("test.count").add(1)
    histograms = HistogramSet(SCOPE)
    histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS).record(1.0, KEYS[0])
    histograms.attach(provider)
    data = reader.get_metrics_data()
    assert data is not None
    [rm] = data.resource_metrics
    [sm] = rm.scope_metrics
    assert rm.resource is RESOURCE
    assert [m.name for m in sm.metrics] == ["test.count", NAME]
    assert (sm.metrics[1].unit, sm.metrics[1].description) == (UNIT, DESCRIPTION)


def test_a_scope_of_their_own_when_the_sdk_has_none() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider([reader], resource=RESOURCE, shutdown_on_exit=False)
    provider.get_meter("other").create_counter("test.count").add(1)
    histograms = HistogramSet(SCOPE)
    histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS).record(1.0, KEYS[0])
    histograms.attach(provider)
    data = reader.get_metrics_data()
    assert data is not None
    assert [sm.scope for sm in data.resource_metrics[0].scope_metrics] == [
        InstrumentationScope("other"),
        SCOPE,
    ]


def test_prometheus_shows_what_it_shows_for_the_sdk_histogram() -> None:
    registries = [CollectorRegistry(), CollectorRegistry()]
    providers = [
        MeterProvider(
            [PrometheusMetricReader(registry=r)], resource=RESOURCE, shutdown_on_exit=False
        )
        for r in registries
    ]
    sdk = (
        providers[0]
        .get_meter(SCOPE.name, SCOPE.version)
        .create_histogram(NAME, UNIT, DESCRIPTION, explicit_bucket_boundaries_advisory=BOUNDS)
    )
    histograms = HistogramSet(SCOPE)
    ours = histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    histograms.attach(providers[1])
    for i in range(40):
        value, key = (i % 13) * 0.25, KEYS[i % len(KEYS)]
        sdk.record(value, dict(key))
        ours.record(value, key)
    texts = [generate_latest(r).decode() for r in registries]
    assert "test_duration_seconds_bucket{" in texts[1]
    assert "test_duration_seconds_sum{" in texts[1]
    assert "test_duration_seconds_count{" in texts[1]
    assert sorted(texts[1].splitlines()) == sorted(texts[0].splitlines())


def without_times(value: Any) -> Any:
    """An OTLP/JSON document without its timestamps (which differ between the two runs)."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if not k.endswith("imeUnixNano")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def test_otlp_json_file_holds_what_it_holds_for_the_sdk_histogram(tmp_path: Path) -> None:
    files = [tmp_path / "sdk.jsonl", tmp_path / "ours.jsonl"]
    readers = [
        PeriodicExportingMetricReader(OtlpJsonMetricExporter(f), export_interval_millis=3.6e6)
        for f in files
    ]
    providers = [MeterProvider([r], resource=RESOURCE, shutdown_on_exit=False) for r in readers]
    sdk = (
        providers[0]
        .get_meter(SCOPE.name, SCOPE.version)
        .create_histogram(NAME, UNIT, DESCRIPTION, explicit_bucket_boundaries_advisory=BOUNDS)
    )
    histograms = HistogramSet(SCOPE)
    ours = histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    histograms.attach(providers[1])
    context = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(5, 6, False, TraceFlags(TraceFlags.SAMPLED)))
    )
    for i in range(30):
        value, key = (i % 11) * 0.5, KEYS[i % len(KEYS)]
        sdk.record(value, dict(key), context=context)
        ours.record(value, key, 5, 6, True)
    for r in readers:
        r.force_flush()
    sdk_doc, our_doc = ([json.loads(line) for line in f.read_text().splitlines()] for f in files)
    assert our_doc and without_times(our_doc) == without_times(sdk_doc)
    for p in providers:
        p.shutdown()


def test_concurrent_records_during_collections_lose_nothing() -> None:
    cumulative, delta = (
        InMemoryMetricReader(preferred_temporality={Histogram: t}) for t in (CUMULATIVE, DELTA)
    )
    provider = MeterProvider([cumulative, delta], resource=RESOURCE, shutdown_on_exit=False)
    histograms = HistogramSet(SCOPE)
    h = histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    histograms.attach(provider)
    threads, per_thread = 4, 5_000
    values = [float(i % 13) for i in range(per_thread)]  # integral: sums are exact

    def work(n: int) -> None:
        for i, v in enumerate(values):
            h.record(v, KEYS[1 + n % 2], trace_id=n + 1, span_id=i + 1, sampled=i % 2 == 0)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    delta_points: list[HistogramDataPoint] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often: records land mid-collection
    try:
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            delta_points += points(delta.get_metrics_data())
            histograms.aggregate()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(interval)
    delta_points += points(delta.get_metrics_data())
    total = threads * per_thread
    expected = fold_batch(values * threads, BOUNDS)[0]
    assert len(delta_points) > 2  # collections did overlap the recording
    assert sum(p.count for p in delta_points) == total
    assert sum(p.sum for p in delta_points) == sum(values) * threads
    assert [sum(c) for c in zip(*(p.bucket_counts for p in delta_points), strict=True)] == expected
    final = points(cumulative.get_metrics_data())
    assert sum(p.count for p in final) == total
    assert [sum(c) for c in zip(*(p.bucket_counts for p in final), strict=True)] == expected


def test_sdk_internals_used_by_attach() -> None:
    """What HistogramSet.attach relies on (histograms.py, "SDK internals"): if this fails, the
    SDK changed and the hook has to follow."""
    reader = InMemoryMetricReader(preferred_temporality={Histogram: DELTA})
    provider = MeterProvider([reader], resource=RESOURCE, shutdown_on_exit=False)
    assert reader in provider._measurement_consumer._reader_storages
    assert provider._sdk_config.resource is RESOURCE
    assert isinstance(provider._sdk_config.exemplar_filter, TraceBasedExemplarFilter)
    assert reader._instrument_class_temporality[_Histogram] is DELTA
    assert isinstance(reader._instrument_class_aggregation[_Histogram], Aggregation)
    assert reader._collect is not None
    # Annotated (reader, temporality) -> Iterable[Metric]; called so, returns MetricsData | None.
    assert reader._collect(reader, timeout_millis=1_000) is None  # type: ignore[call-arg]
    before = reader._collect
    HistogramSet(SCOPE).attach(provider)
    assert reader._collect is not before  # replaced through _set_collect_callback


def test_readers_that_drop_histograms_get_none() -> None:
    reader = InMemoryMetricReader(preferred_aggregation={Histogram: DropAggregation()})
    histograms = HistogramSet(SCOPE)
    h = histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    h.record(1.0, KEYS[0])
    histograms.attach(MeterProvider([reader], resource=RESOURCE, shutdown_on_exit=False))
    assert points(reader.get_metrics_data()) == []
    histograms.aggregate()
    assert [s.pending for s in h.series()] == [[]]  # folded into no reader, not kept


def test_exponential_histogram_readers_are_refused() -> None:
    aggregation = ExponentialBucketHistogramAggregation()
    reader = InMemoryMetricReader(preferred_aggregation={Histogram: aggregation})
    provider = MeterProvider([reader], resource=RESOURCE, shutdown_on_exit=False)
    with pytest.raises(NotImplementedError, match="ExponentialBucketHistogramAggregation"):
        HistogramSet(SCOPE).attach(provider)


def test_attached_once() -> None:
    histograms = HistogramSet(SCOPE)
    histograms.attach(MeterProvider([InMemoryMetricReader()], shutdown_on_exit=False))
    with pytest.raises(RuntimeError, match="already attached"):
        histograms.attach(MeterProvider([InMemoryMetricReader()], shutdown_on_exit=False))


@pytest.mark.parametrize(
    ("bounds", "message"),
    [((1.0, 1.0), "must increase"), ((2.0, 1.0), "must increase"), ((1.0, math.inf), "finite")],
)
def test_bad_bounds_are_named(bounds: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HistogramSet(SCOPE).histogram(NAME, UNIT, DESCRIPTION, bounds)


def test_a_name_is_used_once_per_set() -> None:
    histograms = HistogramSet(SCOPE)
    histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
    with pytest.raises(ValueError, match="already exists"):
        histograms.histogram(NAME, UNIT, DESCRIPTION, BOUNDS)
