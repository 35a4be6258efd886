"""Cost of a batched histogram (telemetry/histograms.py) against the SDK's synchronous histogram.

Three readers on each MeterProvider, as in a service exporting to files and OTLP with a
Prometheus /metrics: a PrometheusMetricReader (cumulative) and two InMemoryMetricReaders, one
cumulative and one delta (the periodic readers' storage path is the same; only their export
differs). The duration buckets of the conventions, attributes of a real inference series.

Rows (thread CPU time, medians over blocks; each block's mean is one sample):
- SDK ``Histogram.record`` inside a sampled span (an exemplar), and with no span;
- ``BatchedHistogram.record``, unsampled and sampled (the request-side cost);
- ``HistogramSet.aggregate`` of 1,000 pending measurements (all sampled, the service's
  always-on sampling), in one series and spread over four, and 1,000 unsampled ones: the batch
  worker's cost, folded into all three readers;
- a collection by the delta reader with the histogram's points merged in;
- for reference, the same fold written with numpy (not used: the instrumentation core must not
  import numpy), to show what it would save.

    .venv/bin/python bench/histograms.py            # 300 blocks
    .venv/bin/python bench/histograms.py --quick    # 40 blocks
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version

import numpy as np
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

from infertrail.telemetry import conventions as c
from infertrail.telemetry.histograms import BatchedHistogram, HistogramSet
from infertrail.telemetry.setup import AttributeKey
from machine import cpu_model

BATCH = 1_000
BOUNDS = c.DURATION_BUCKETS_S
ATTRS = {
    c.MODEL_NAME: "sentiment",
    c.MODEL_VERSION: "1",
    c.TEAM: "ml-platform",
    c.STATUS: "ok",
}
KEYS: list[AttributeKey] = [tuple({**ATTRS, c.TEAM: f"team-{i}"}.items()) for i in range(4)]
SCOPE = InstrumentationScope(c.SCOPE, "bench")


def readers() -> list[InMemoryMetricReader | PrometheusMetricReader]:
    """One Prometheus reader and two in-memory ones (cumulative, delta)."""
    return [
        PrometheusMetricReader(registry=CollectorRegistry()),
        InMemoryMetricReader(),
        InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA}),
    ]


def latencies(n: int) -> list[float]:
    """Inference durations in seconds, around 2 ms with a long tail."""
    return [random.lognormvariate(-6.2, 0.8) for _ in range(n)]


def sampled_context() -> context_api.Context:
    """A context holding a sampled span, as an inference span is under always-on sampling."""
    ctx = SpanContext(
        random.getrandbits(128), random.getrandbits(64), False, TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx), context_api.Context())


def per_call_us(
    blocks: int, calls: int, run: Callable[[], None], after: Callable[[], object] = lambda: None
) -> list[float]:
    """Thread CPU microseconds per call of ``run`` (which makes ``calls`` calls), per block;
    ``after`` runs untimed after each block."""
    out = []
    for _ in range(blocks):
        t0 = time.thread_time_ns()
        run()
        out.append((time.thread_time_ns() - t0) / 1e3 / calls)
        after()
    return out


def timed_us(blocks: int, prepare: Callable[[], None], run: Callable[[], object]) -> list[float]:
    """Thread CPU microseconds of ``run`` after an untimed ``prepare``, per block."""
    out = []
    for _ in range(blocks):
        prepare()
        t0 = time.thread_time_ns()
        run()
        out.append((time.thread_time_ns() - t0) / 1e3)
    return out


def numpy_fold(values: list[float], trace_ids: list[int], n_readers: int) -> object:
    """The fold with numpy: buckets, min/max, an in-order sum per reader, exemplar slots."""
    a = np.array(values)
    idx = np.searchsorted(np.asarray(BOUNDS), a, side="left")
    counts = np.bincount(idx, minlength=len(BOUNDS) + 1)
    last = np.full(len(BOUNDS) + 1, -1)
    np.maximum.at(last, idx, np.arange(len(a)))
    sums = [float(np.cumsum(a)[-1]) for _ in range(n_readers)]
    exemplars = {b: trace_ids[i] for b, i in enumerate(last.tolist()) if i >= 0}
    return counts, float(a.min()), float(a.max()), sums, exemplars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 blocks instead of 300")
    args = parser.parse_args()
    blocks = 40 if args.quick else 300
    random.seed(7)
    load0 = os.getloadavg()[0]

    sdk_provider = MeterProvider(readers(), resource=Resource.create({}), shutdown_on_exit=False)
    sdk = sdk_provider.get_meter(c.SCOPE).create_histogram(
        c.METRIC_DURATION, c.UNIT_SECONDS, explicit_bucket_boundaries_advisory=list(BOUNDS)
    )
    our_readers = readers()
    provider = MeterProvider(our_readers, resource=Resource.create({}), shutdown_on_exit=False)
    histograms = HistogramSet(SCOPE)
    ours: BatchedHistogram = histograms.histogram(c.METRIC_DURATION, c.UNIT_SECONDS, "", BOUNDS)
    histograms.attach(provider)
    delta_reader = our_readers[2]
    assert isinstance(delta_reader, InMemoryMetricReader)

    values = latencies(BATCH)
    contexts = [sampled_context() for _ in range(BATCH)]
    no_span = [context_api.Context()] * BATCH
    ids = [(random.getrandbits(128), random.getrandbits(64)) for _ in range(BATCH)]
    key = KEYS[0]

    def sdk_records(contexts: list[context_api.Context]) -> Callable[[], None]:
        def run() -> None:
            for v, ctx in zip(values, contexts, strict=True):
                sdk.record(v, ATTRS, context=ctx)

        return run

    def our_records(keys: list[AttributeKey], sampled: bool) -> Callable[[], None]:
        def run() -> None:
            for i, (v, (t, s)) in enumerate(zip(values, ids, strict=True)):
                ours.record(v, keys[i % len(keys)], t, s, sampled)

        return run

    aggregate = histograms.aggregate
    trace_ids = [t for t, _ in ids]
    rows: list[tuple[str, int, list[float]]] = [
        (
            "SDK Histogram.record, sampled span (exemplar)",
            1,
            per_call_us(blocks, BATCH, sdk_records(contexts)),
        ),
        ("SDK Histogram.record, no span", 1, per_call_us(blocks, BATCH, sdk_records(no_span))),
        (
            "BatchedHistogram.record, unsampled",
            1,
            per_call_us(blocks, BATCH, our_records([key], False), aggregate),
        ),
        (
            "BatchedHistogram.record, sampled (exemplar)",
            1,
            per_call_us(blocks, BATCH, our_records([key], True), aggregate),
        ),
        (
            "aggregate 1,000 sampled, 1 series, 3 readers",
            BATCH,
            timed_us(blocks, our_records([key], True), aggregate),
        ),
        (
            "aggregate 1,000 sampled, 4 series, 3 readers",
            BATCH,
            timed_us(blocks, our_records(KEYS, True), aggregate),
        ),
        (
            "aggregate 1,000 unsampled, 1 series, 3 readers",
            BATCH,
            timed_us(blocks, our_records([key], False), aggregate),
        ),
        (
            "delta reader's collect, 4 series (nothing pending)",
            1,
            timed_us(blocks, aggregate, delta_reader.get_metrics_data),
        ),
        (
            "numpy fold of the same 1,000 (reference)",
            BATCH,
            timed_us(blocks, lambda: None, lambda: numpy_fold(values, trace_ids, 3)),
        ),
    ]

    sdk_us = statistics.median(rows[0][2])
    print(f"# batched histograms vs SDK histogram, {dt.date.today()}, {cpu_model()}")
    print(
        f"# opentelemetry-sdk {version('opentelemetry-sdk')}, numpy {np.__version__}, "
        f"{blocks} blocks, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"| {'what':<52} | {'events':>6} | {'median us':>9} | {'p90 us':>8} | {'/ SDK call':>10} |"
    )
    print(f"|{'-' * 54}|{'-' * 8}:|{'-' * 10}:|{'-' * 9}:|{'-' * 11}:|")
    for name, events, samples in rows:
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"| {name:<52} | {events:>6} | {med:>9.2f} | {p90:>8.2f} | {med / sdk_us:>10.2f} |")


if __name__ == "__main__":
    main()
