"""In-process cost of infertrail telemetry on one sentiment inference (issues 2 and 19).

Runs ``model.predict(text)`` bare and through ``Monitor.observe`` (every signal on: compact
spans pumped to the SDK's batch processor, batched histograms with exemplars, log records in
batches, all exported to OTLP/JSON files under a temporary data dir, always sampled) in
alternating blocks (ABBA), so machine noise hits both alike. It reports:

1. the latency added on the request thread, back to back and paced, median and p99, against
   the targets (median <= 40 us, p99 <= 150 us in both modes), and the CPU per inference of the
   request thread and of the whole process (the work moved to other threads counts);
2. garbage collection during the back-to-back run (``gc.callbacks``: collections and their time
   per generation, on which thread), and the same comparison with the collector off, to see
   whether collecting the objects telemetry keeps queued costs the request thread;
3. that no telemetry was lost: inference spans, log records (OTLP/JSON and flat) and the
   duration histogram's count (file and Prometheus) against the inferences made;
4. the per-event cost table: every piece of the pipeline timed alone with the real objects,
   grouped by the thread it runs on (request thread, batch worker, span pump, span exporter),
   with the old per-event SDK calls (span, 3 histograms with exemplars, ``logger.emit``) timed
   in the same run for comparison.

    .venv/bin/python bench/overhead.py            # 20,000 inferences per variant
    .venv/bin/python bench/overhead.py --quick    # 4,000, for a smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import logging
import math
import os
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from infertrail.config import Settings
from infertrail.events import InferenceEvent, log_record, metric_attributes, new_request_id
from infertrail.events import span_attributes as event_span_attributes
from infertrail.models import sentiment
from infertrail.monitor import ActiveInference, Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry.files import (
    LOGS_FILE,
    METRICS_FILE,
    TRACES_FILE,
    OtlpJsonSpanExporter,
    _JsonLinesFile,
    _line,
    telemetry_files,
)
from infertrail.telemetry.otlp_json import log_entries_request, traces_request
from infertrail.telemetry.setup import INFERENCE_LOG_FILE, Telemetry
from infertrail.telemetry.spans import CompactSpan
from machine import cpu_model

ENDPOINT = "/v1/sentiment"
TARGET_MEDIAN_US = 40.0
TARGET_P99_US = 150.0
SPAN_BATCH_MAX = 512  # the SDK BatchSpanProcessor's max_export_batch_size
FOLD_EVENTS = 1_000  # events per timed histogram fold (the worker folds about once a second)
SETTLE_EVERY = 500  # per-call pieces: drain the queues this often, untimed
SDK_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"  # the batch processors' logger


def load_average() -> str:
    """The 1/5/15-minute load averages, to judge how noisy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


def us(ns: float) -> str:
    """``ns`` as microseconds in a 9-character column."""
    return f"{ns / 1000:9.1f}"


# -- garbage collection ----------------------------------------------------------------------


@dataclass
class Collection:
    """One garbage collection: what was running, its generation, duration and thread.

    ``cpu_ns`` is the collecting thread's CPU time, what it held the GIL for. ``ns`` (wall) can
    be more: the thread was preempted, a finalizer blocked, or this log's Python callback
    waited for the GIL before reading the clock.
    """

    label: str
    generation: int
    ns: int
    cpu_ns: int
    on_request_thread: bool


class GcLog:
    """Every collection while installed in ``gc.callbacks``, labelled with what was running.

    Collections never overlap (the interpreter runs one at a time), so one start time suffices.
    """

    def __init__(self) -> None:
        self.label = "other"
        self.collections: list[Collection] = []
        self._request_thread = threading.get_ident()
        self._t0 = self._c0 = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0, self._c0 = time.perf_counter_ns(), time.thread_time_ns()
            return
        elapsed, cpu = time.perf_counter_ns() - self._t0, time.thread_time_ns() - self._c0
        on_request = threading.get_ident() == self._request_thread
        self.collections.append(
            Collection(self.label, info["generation"], elapsed, cpu, on_request)
        )

    @contextmanager
    def installed(self) -> Iterator[GcLog]:
        """Record collections for the duration of the block."""
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)

    @contextmanager
    def labelled(self, label: str) -> Iterator[None]:
        """Attribute collections in the block to ``label``."""
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous


# -- timed blocks of inferences --------------------------------------------------------------


@dataclass
class Block:
    """One timed block: per-call latencies and the CPU the block cost."""

    latencies_ns: list[int]
    thread_cpu_ns: int  # the request (main) thread only
    process_cpu_ns: int  # every thread, including the work the block left to background threads

    @property
    def median_ns(self) -> float:
        return statistics.median(self.latencies_ns)

    @property
    def p99_ns(self) -> float:
        return percentile(self.latencies_ns, 99)

    @property
    def mean_ns(self) -> float:
        return statistics.fmean(self.latencies_ns)


def run_block(
    call: Callable[[str], object],
    texts: list[str],
    start: int,
    n: int,
    settle: Callable[[], object],
    gc_log: GcLog,
    label: str,
    gap_s: float = 0.0,
) -> Block:
    """Time ``n`` calls one by one, ``gap_s`` apart; ``settle`` finishes their background work.

    The settle step is CPU-counted (not timed): it is the work the calls left to other threads.
    """
    lat = [0] * n
    clock = time.perf_counter_ns
    c0, p0 = time.thread_time_ns(), time.process_time_ns()
    with gc_log.labelled(label):
        for i in range(n):
            text = texts[(start + i) % len(texts)]
            t0 = clock()
            call(text)
            lat[i] = clock() - t0
            if gap_s:
                time.sleep(gap_s)
    thread_cpu = time.thread_time_ns() - c0
    with gc_log.labelled(f"{label}, settle"):
        settle()
    return Block(lat, thread_cpu, time.process_time_ns() - p0)


def _nothing() -> None:
    return None


@dataclass
class Run:
    """The blocks of one ABBA comparison."""

    bare: list[Block]
    instrumented: list[Block]

    @property
    def inferences(self) -> int:
        """Instrumented inferences made (each one must appear in the telemetry)."""
        return sum(len(b.latencies_ns) for b in self.instrumented)


def interleaved(
    bare: Callable[[str], object],
    instrumented: Callable[[str], object],
    monitor: Monitor,
    texts: list[str],
    n: int,
    block: int,
    gc_log: GcLog,
    gap_s: float = 0.0,
) -> Run:
    """Alternate bare and instrumented blocks over the same texts (ABBA order against drift).

    After each instrumented block the monitor is flushed (drains the event queue, pumps the
    spans, exports), so that work is charged to the instrumented block's process CPU and does
    not slow the next bare block.
    """
    run = Run([], [])
    for k, start in enumerate(range(0, n, block)):
        size = min(block, n - start)
        order = (
            (bare, run.bare, _nothing, "bare"),
            (instrumented, run.instrumented, monitor.flush, "instrumented"),
        )
        for call, out, settle, label in order if k % 2 == 0 else reversed(order):
            out.append(run_block(call, texts, start, size, settle, gc_log, label, gap_s))
    return run


@dataclass
class Added:
    """Latency added on the request thread: the paired block statistics' medians, in ns."""

    median: float
    p99: float
    mean: float


def report_latency(title: str, run: Run) -> Added:
    """Print one latency table; returns the latency added on the request thread."""
    med = statistics.median
    rows = {}
    for name, blocks in (("bare predict", run.bare), ("instrumented", run.instrumented)):
        rows[name] = (
            med(b.median_ns for b in blocks),
            med(b.p99_ns for b in blocks),
            med(b.mean_ns for b in blocks),
        )
    pairs = list(zip(run.bare, run.instrumented, strict=True))
    added = Added(
        med(i.median_ns - b.median_ns for b, i in pairs),
        med(i.p99_ns - b.p99_ns for b, i in pairs),
        med(i.mean_ns - b.mean_ns for b, i in pairs),
    )
    (bm, bp, ba), (im, ip, ia) = rows["bare predict"], rows["instrumented"]
    print(f"\n{title}")
    print(f"latency per inference, us: median over {len(pairs)} block pairs of each statistic")
    print(f"{'variant':<40}{'median':>9}{'p99':>9}{'mean':>9}")
    for name, (m, p, a) in rows.items():
        print(f"{name:<40}{us(m)}{us(p)}{us(a)}")
    row = f"{us(added.median)}{us(added.p99)}{us(added.mean)}"
    print(f"{'added on request thread (paired)':<40}{row}")
    print(f"{'ratio instrumented / bare':<40}{im / bm:9.3f}{ip / bp:9.3f}{ia / ba:9.3f}")
    return added


def cpu_per_inference(blocks: list[Block]) -> tuple[float, float]:
    """(request-thread, whole-process) CPU ns per inference over ``blocks``."""
    count = sum(len(b.latencies_ns) for b in blocks)
    return (
        sum(b.thread_cpu_ns for b in blocks) / count,
        sum(b.process_cpu_ns for b in blocks) / count,
    )


def report_cpu(run: Run) -> float:
    """Print the CPU table; returns the added process CPU per inference (ns)."""
    (thr_b, proc_b), (thr_i, proc_i) = (
        cpu_per_inference(run.bare),
        cpu_per_inference(run.instrumented),
    )
    print("\nCPU per inference, us, whole back-to-back run (instrumented includes draining the")
    print("event queue, pumping the spans and exporting after each block: CPU moved off the")
    print("request thread counts)")
    print(f"{'':<40}{'request':>9}{'process':>9}{'other threads':>15}")
    for name, thr, proc in (("bare predict", thr_b, proc_b), ("instrumented", thr_i, proc_i)):
        print(f"{name:<40}{us(thr)}{us(proc)}{us(proc - thr):>15}")
    off = (proc_i - thr_i) - (proc_b - thr_b)
    print(f"{'added':<40}{us(thr_i - thr_b)}{us(proc_i - proc_b)}{us(off):>15}")
    return proc_i - proc_b


@dataclass
class GcCost:
    """Collections' CPU time while one variant's calls were timed, in ns per inference."""

    all_threads: float  # every thread: it holds the GIL the request thread needs
    request_thread: float
    long_per_1k: float = 0.0  # collections of >= 1 ms CPU (each delays at least one call)
    longest_ns: int = 0  # CPU
    longest_wall_ns: int = 0


def report_gc(gc_log: GcLog, run: Run, frozen: bool) -> dict[str, GcCost]:
    """Print collections per generation during the back-to-back run; returns each variant's
    collection CPU time while its calls were timed."""
    inferences = {
        "bare": sum(len(b.latencies_ns) for b in run.bare),
        "instrumented": run.inferences,
    }
    print("\nGarbage collection during the back-to-back run (gc.callbacks; start-up objects")
    print(f"frozen: {'yes' if frozen else 'no'}); per 1,000 inferences of the variant.")
    print("'calls': while its calls were timed; 'settle': the flush after an instrumented")
    print("block. wall: start to stop; cpu: the collecting thread's CPU (GIL held)")
    print(
        f"{'variant, phase':<24}{'gen':>4}{'count':>7}{'/1k':>7}{'wall ms':>9}{'cpu ms':>9}"
        f"{'cpu ms/1k':>10}{'req. thread':>12}{'ms/1k':>7}"
    )
    costs: dict[str, GcCost] = {}
    for variant, n in inferences.items():
        costs[variant] = cost = GcCost(0.0, 0.0)
        for phase in (variant, f"{variant}, settle"):
            for gen in (0, 1, 2):
                found = [x for x in gc_log.collections if x.label == phase and x.generation == gen]
                if not found and phase != variant:
                    continue
                wall, cpu = sum(x.ns for x in found), sum(x.cpu_ns for x in found)
                mine = [x for x in found if x.on_request_thread]
                mine_cpu = sum(x.cpu_ns for x in mine)
                if phase == variant:
                    cost.all_threads += cpu / n
                    cost.request_thread += mine_cpu / n
                    cost.long_per_1k += sum(x.cpu_ns >= 1_000_000 for x in found) * 1000 / n
                    cost.longest_ns = max([cost.longest_ns, *(x.cpu_ns for x in found)])
                    cost.longest_wall_ns = max([cost.longest_wall_ns, *(x.ns for x in found)])
                name = phase if phase != variant else f"{variant}, calls"
                print(
                    f"{name:<24}{gen:>4}{len(found):>7}{len(found) * 1000 / n:>7.2f}"
                    f"{wall / 1e6:>9.2f}{cpu / 1e6:>9.2f}{cpu / 1e3 / n:>10.3f}"
                    f"{len(mine):>12}{mine_cpu / 1e3 / n:>7.3f}"
                )
    return costs


def added_request_cpu(run: Run) -> float:
    """Request-thread CPU per inference, instrumented minus bare (ns)."""
    return cpu_per_inference(run.instrumented)[0] - cpu_per_inference(run.bare)[0]


def report_gc_verdict(gc_costs: dict[str, GcCost], added: Added, on: Run, off: Run) -> None:
    """Whether collecting the objects telemetry queues costs the request thread.

    The verdict rests on the direct measure: the CPU of the collections made while instrumented
    calls ran (back-to-back run, on any thread: each holds the GIL), less the bare variant's,
    against the
    added mean latency (material: >= 20% of it); for the tail, the collections long enough to
    delay a call (>= 1 ms CPU) per 1,000 inferences, against the 10 per 1,000 that make the p99.
    The A/B check (collector off, runs interleaved with it on) is printed beside it: on a
    shared machine its differences are within the noise of single runs.
    """
    inst, bare = gc_costs["instrumented"], gc_costs["bare"]
    gc_on = report_latency("BACK TO BACK, GC ON, interleaved with GC OFF", on)
    gc_off = report_latency("BACK TO BACK, GC OFF", off)
    extra_all = inst.all_threads - bare.all_threads
    extra_request = inst.request_thread - bare.request_thread
    share = extra_all / added.mean if added.mean > 0 else 0.0
    extra = f"{extra_all / 1000:.2f} us"
    print(f"\nGC       collection CPU, instrumented minus bare, back to back: {extra}")
    print(f"         per inference on all threads ({share:.0%} of the added mean,")
    print(
        f"         {added.mean / 1000:.1f} us), {extra_request / 1000:.2f} us of it on the"
        f" request thread; collections >= 1 ms CPU: {inst.long_per_1k:.2f} per 1k"
    )
    print(
        f"         inferences (bare {bare.long_per_1k:.2f}), the longest"
        f" {inst.longest_ns / 1e6:.2f} ms CPU ({inst.longest_wall_ns / 1e6:.2f} ms wall)"
    )
    pairs = [
        (gc_off.median, gc_on.median),
        (gc_off.p99, gc_on.p99),
        (gc_off.mean, gc_on.mean),
        (added_request_cpu(off), added_request_cpu(on)),
    ]
    names = ("median", "p99", "mean", "request CPU")
    stats = [
        f"{name} {x / 1000:.1f} us (on {y / 1000:.1f})"
        for name, (x, y) in zip(names, pairs, strict=True)
    ]
    print(f"A/B      added with GC off: {', '.join(stats[:2])},\n         {', '.join(stats[2:])}")
    average = "IS" if share >= 0.2 else "is NOT"
    tail = "can" if inst.long_per_1k >= 5 else "cannot"
    print(
        f"verdict  GC of queued objects {average} a material share of the added mean (>= 20%);"
        f"\n         its long pauses {tail} move the p99 (>= 5 per 1k: half of the slowest 10)"
    )
    cut = (gc_on.mean - gc_off.mean) / gc_on.mean if gc_on.mean > 0 else 0.0
    if (cut >= 0.2) != (share >= 0.2):
        print(
            f"         the A/B disagrees (GC off changed the added mean by {-cut:+.0%}): within"
            " this machine's\n         run-to-run noise unless it holds on a quiet machine"
        )


# -- telemetry accounting --------------------------------------------------------------------


class QueueFullDrops(logging.Handler):
    """Counts the SDK batch processors' "Queue full, dropping" warnings (one per item)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Queue full, dropping"):
            self.count += 1

    @contextmanager
    def installed(self) -> Iterator[QueueFullDrops]:
        """Count while the block runs."""
        logger = logging.getLogger(SDK_BATCH_LOGGER)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


@dataclass
class Accounting:
    """What reached the telemetry files and the Prometheus registry, against what was made."""

    inferences: int
    spans: int  # inference spans in traces.jsonl
    span_batches: int  # traces.jsonl lines (one per export)
    otlp_logs: int  # log records in logs.jsonl
    log_batches: int  # logs.jsonl lines (one per Telemetry.emit_logs batch)
    flat_logs: int  # lines of inference.log.jsonl
    histogram_file: int  # the last cumulative infertrail.inference.duration count, file
    histogram_prometheus: int  # the same from the Prometheus registry
    dropped_events: int
    dropped_spans: int
    sdk_queue_full: int  # spans or log records the SDK's batch processors dropped

    def counts(self) -> dict[str, int]:
        """Each count that must equal the inferences made."""
        return {
            "inference spans (traces.jsonl)": self.spans,
            "log records (logs.jsonl)": self.otlp_logs,
            "log lines (inference.log.jsonl)": self.flat_logs,
            f"{c.METRIC_DURATION} count (metrics.jsonl)": self.histogram_file,
            f"{c.METRIC_DURATION} count (Prometheus)": self.histogram_prometheus,
        }

    @property
    def span_batch(self) -> int:
        """Mean spans per export, as the batch span processor made them."""
        return max(1, min(SPAN_BATCH_MAX, round(self.spans / max(1, self.span_batches))))

    @property
    def log_batch(self) -> int:
        """Mean log records per batch, as the Monitor's worker made them."""
        return max(1, round(self.otlp_logs / max(1, self.log_batches)))


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every line of a telemetry stream, rotated files first."""
    for file in telemetry_files(path):
        if file.exists():
            with file.open("rb") as f:
                for line in f:
                    yield orjson.loads(line)


def account(
    telemetry: Telemetry, monitor: Monitor, inferences: int, drops: QueueFullDrops
) -> Accounting:
    """Flush everything, then count what the files and the Prometheus registry hold."""
    monitor.flush()
    tdir = telemetry.settings.telemetry_dir
    spans = span_batches = 0
    for request in _json_lines(tdir / TRACES_FILE):
        span_batches += 1
        for rs in request.get("resourceSpans", ()):
            for ss in rs.get("scopeSpans", ()):
                spans += sum(s["name"] == c.SPAN_NAME_INFERENCE for s in ss.get("spans", ()))
    otlp_logs = log_batches = 0
    for request in _json_lines(tdir / LOGS_FILE):
        log_batches += 1
        for rl in request.get("resourceLogs", ()):
            otlp_logs += sum(len(sl.get("logRecords", ())) for sl in rl.get("scopeLogs", ()))
    flat_logs = 0
    for file in telemetry_files(tdir / INFERENCE_LOG_FILE):
        if file.exists():
            with file.open("rb") as f:
                flat_logs += sum(1 for _ in f)
    histogram_file = 0
    for request in _json_lines(tdir / METRICS_FILE):
        for rm in request.get("resourceMetrics", ()):
            for sm in rm.get("scopeMetrics", ()):
                for metric in sm.get("metrics", ()):
                    if metric["name"] == c.METRIC_DURATION:
                        points = metric["histogram"].get("dataPoints", ())
                        count = sum(int(p.get("count", 0)) for p in points)
                        histogram_file = max(histogram_file, count)  # cumulative: the last
    histogram_prometheus = 0
    family = c.METRIC_DURATION.replace(".", "_") + "_seconds"
    for metric in telemetry.prometheus_registry.collect():
        for sample in metric.samples:
            if sample.name == f"{family}_count":
                histogram_prometheus += int(sample.value)
    return Accounting(
        inferences,
        spans,
        span_batches,
        otlp_logs,
        log_batches,
        flat_logs,
        histogram_file,
        histogram_prometheus,
        monitor.dropped_events,
        telemetry.span_pump.dropped,
        drops.count,
    )


def report_accounting(acc: Accounting) -> bool:
    """Print the accounting table and its verdict; returns whether nothing was lost."""
    print(f"\nNo telemetry lost? {acc.inferences} instrumented inferences made in the runs above")
    print("(warm-up included), everything flushed, then counted in the files and the registry")
    complete = True
    for name, n in acc.counts().items():
        diff = n - acc.inferences
        verdict = "ok" if diff == 0 else ("LOST" if diff < 0 else "EXTRA")
        complete = complete and diff == 0
        print(f"  {name:<52}{n:>9}  {diff:+d}  {verdict}")
    dropped = {
        "events dropped, Monitor queue full": acc.dropped_events,
        "spans dropped, SpanPump queue full": acc.dropped_spans,
        "items dropped, SDK batch processor queue full": acc.sdk_queue_full,
    }
    for name, n in dropped.items():
        print(f"  {name:<52}{n:>9}  {'ok' if n == 0 else 'LOST'}")
    complete = complete and not any(dropped.values())
    print(
        f"  batches: {acc.span_batches} span exports (mean {acc.span_batch} spans), "
        f"{acc.log_batches} log batches (mean {acc.log_batch} records)"
    )
    print(f"verdict  {'no telemetry lost' if complete else 'TELEMETRY LOST OR DUPLICATED'}")
    return complete


# -- the per-event cost table ----------------------------------------------------------------


@dataclass
class Cost:
    """One row of the per-event cost table, in ns per event.

    ``kind``: "piece" rows add up to their thread's sum; a "part" row is a share of the piece
    above it; a "whole" row times the thread's work in one go, as a check of the sum.
    """

    thread: str
    stage: str
    name: str
    median_ns: float
    p99_ns: float
    kind: str = "piece"


def timer_overhead_ns(n: int) -> float:
    """Median cost of an empty ``perf_counter_ns`` pair around a no-op call."""
    clock = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t0 = clock()
        _nothing()
        lat[i] = clock() - t0
    return statistics.median(lat)


class CostTable:
    """Rows timed per call (``k`` calls, timer cost subtracted) or per batch (``reps``
    batches, thread CPU / items)."""

    def __init__(self, k: int, reps: int) -> None:
        self.k, self.reps = k, reps
        self.overhead_ns = timer_overhead_ns(k)
        self.rows: list[Cost] = []

    def call(
        self,
        where: tuple[str, str],
        name: str,
        op: Callable[[], object],
        settle: Callable[[], object] = _nothing,
        kind: str = "piece",
    ) -> None:
        """Time ``op`` one call at a time; ``settle`` runs untimed every :data:`SETTLE_EVERY`
        calls, so queues and pending lists stay as short as a running service keeps them."""
        clock = time.perf_counter_ns
        lat = [0] * self.k
        for i in range(self.k):
            if i % SETTLE_EVERY == SETTLE_EVERY - 1:
                settle()
            t0 = clock()
            op()
            lat[i] = clock() - t0
        self.slices(where, name, lat, kind)

    def slices(
        self, where: tuple[str, str], name: str, lat: list[int], kind: str = "piece"
    ) -> None:
        """Add a row from per-call latencies timed elsewhere (timer cost subtracted)."""
        over = self.overhead_ns
        median, p99 = statistics.median(lat) - over, percentile(lat, 99) - over
        self.rows.append(Cost(*where, name, median, p99, kind))

    def batch(
        self,
        where: tuple[str, str],
        name: str,
        op: Callable[[], int],
        prepare: Callable[[], object] = _nothing,
        kind: str = "piece",
    ) -> None:
        """Time ``op``'s thread CPU divided by the items it handled (its return value);
        ``prepare`` runs untimed before each batch. CPU time, not wall time: a batch is long
        enough to be preempted on a busy machine."""
        samples = []
        for _ in range(self.reps):
            prepare()
            t0 = time.thread_time_ns()
            items = op()
            elapsed = time.thread_time_ns() - t0
            if items:
                samples.append(elapsed / items)
        if not samples:
            raise RuntimeError(f"{name}: no batch handled any item")
        self.rows.append(
            Cost(*where, name, statistics.median(samples), percentile(samples, 99), kind)
        )


REQUEST = ("request", "request thread")
WORKER = "infertrail-events"
PUMP = ("infertrail-spans", "span pump")
SPAN_EXPORTER = "span exporter"


def request_costs(table: CostTable, monitor: Monitor, model: sentiment.SentimentModel) -> None:
    """What ``Monitor.begin``/``end`` do on the request thread, sliced within one loop in the
    order they run, then ``begin() + end()`` and ``observe()`` whole."""
    settings, tracer, k = monitor.settings, monitor.telemetry.tracer, table.k
    text = "a fine phone"
    names = (
        "InferenceEvent + new_request_id",
        "CompactTracer.start_span",
        "context attach (span made current)",
        "ActiveInference (3 clocks)",
        "CompactSpan.end (source set, pump append)",
        "context detach",
        "event queue append (Monitor._enqueue)",
    )
    lat = [[0] * k for _ in names]
    clock = time.perf_counter_ns
    for i in range(k):
        if i % SETTLE_EVERY == SETTLE_EVERY - 1:
            monitor.flush()
        t0 = clock()
        ev = InferenceEvent(
            model=model.info,
            request_id=new_request_id(),
            service=settings.service_name,
            team=settings.team,
            endpoint=ENDPOINT,
            inputs=text,
            input_size=len(text),
        )
        t1 = clock()
        span = tracer.start_span(c.SPAN_NAME_INFERENCE, kind=SpanKind.INTERNAL)
        t2 = clock()
        token = otel_context.attach(trace.set_span_in_context(span))
        t3 = clock()
        ActiveInference(monitor, ev, span, token)
        t4 = clock()
        if type(span) is CompactSpan:
            span.source = ev
        span.end()
        t5 = clock()
        otel_context.detach(token)
        t6 = clock()
        monitor._enqueue(ev)
        t7 = clock()
        stamps = (t0, t1, t2, t3, t4, t5, t6, t7)
        for j in range(len(names)):
            lat[j][i] = stamps[j + 1] - stamps[j]
    monitor.flush()
    table.slices(REQUEST, names[0], lat[0])
    table.call(REQUEST, "of which new_request_id", new_request_id, kind="part")
    for name, slices in zip(names[1:], lat[1:], strict=True):
        table.slices(REQUEST, name, slices)
    pred = model.predict(text)

    def begin_end() -> None:
        active = monitor.begin(model.info, text, input_size=len(text), endpoint=ENDPOINT)
        ev = active.event
        ev.label, ev.score, ev.confidence = pred.label, pred.score, pred.confidence
        active.end()

    def observe() -> None:
        with monitor.observe(model.info, text, input_size=len(text), endpoint=ENDPOINT) as ev:
            ev.label, ev.score, ev.confidence = pred.label, pred.score, pred.confidence

    table.call(REQUEST, "Monitor.begin() + end(), no model", begin_end, monitor.flush, "whole")
    table.call(REQUEST, "Monitor.observe(), no model", observe, monitor.flush, "whole")
    monitor.flush()


def worker_costs(
    table: CostTable, monitor: Monitor, ev: InferenceEvent, batch: int, out: Path
) -> None:
    """What the Monitor's worker does per event: metrics, the log entry, the histograms' fold,
    and the log batch's encoding and writes (in batches of ``batch`` entries, as it made them)."""
    tel = monitor.telemetry
    work = (WORKER, "batch worker")
    table.call(
        work,
        "Monitor._record_metrics (3 appends, 1 count)",
        lambda: monitor._record_metrics(ev),
        tel.aggregate,
    )
    table.call(work, "Monitor._log_entry (log_record + LogEntry)", lambda: monitor._log_entry(ev))
    tel.aggregate()

    def pend() -> None:
        for _ in range(FOLD_EVENTS):
            monitor._record_metrics(ev)

    def fold() -> int:
        tel.aggregate()
        return FOLD_EVENTS

    table.batch(work, f"HistogramSet.aggregate ({FOLD_EVENTS:,} events per fold)", fold, pend)

    entries = [monitor._log_entry(ev) for _ in range(batch)]
    scope = InstrumentationScope(c.SCOPE, monitor.settings.service_version)
    files = (_JsonLinesFile(out / LOGS_FILE), _JsonLinesFile(out / INFERENCE_LOG_FILE))
    option = orjson.OPT_APPEND_NEWLINE
    built: dict[str, Any] = {}

    def encode() -> int:
        built["request"] = log_entries_request(tel.resource, scope, entries, time.time_ns())
        return batch

    def serialize() -> int:
        built["line"] = orjson.dumps(built["request"], option=option)
        return batch

    def flat() -> int:
        built["flat"] = b"".join(orjson.dumps(e[6], default=str, option=option) for e in entries)
        return batch

    def write(i: int, key: str) -> Callable[[], int]:
        def op() -> int:
            files[i].write(built[key])
            return batch

        return op

    def emit() -> int:
        tel.emit_logs(entries)
        return batch

    encoder, exporter = (WORKER, "encoder"), (WORKER, "exporter")
    table.batch(encoder, "log_entries_request (OTLP/JSON dict)", encode)
    table.batch(encoder, "orjson, OTLP line", serialize)
    table.batch(encoder, "orjson, flat lines", flat)
    table.batch(exporter, "write logs.jsonl (1 write per batch)", write(0, "line"))
    table.batch(exporter, "write inference.log.jsonl (1 write per batch)", write(1, "flat"))
    table.batch((WORKER, "enc.+exporter"), "Telemetry.emit_logs", emit, kind="whole")
    for file in files:
        file.close()

    # The worker's whole loop over a batch, in process CPU (it runs on the worker thread):
    # the request thread only appends and waits.
    samples = []
    for _ in range(table.reps):
        p0 = time.process_time_ns()
        for _ in range(batch):
            monitor._enqueue(ev)
        monitor.flush_events()
        samples.append((time.process_time_ns() - p0) / batch)
    table.rows.append(
        Cost(
            WORKER,
            "all",
            "worker drain (process CPU)",
            statistics.median(samples),
            percentile(samples, 99),
            "whole",
        )
    )


def span_costs(
    table: CostTable, monitor: Monitor, ev: InferenceEvent, batch: int, out: Path
) -> None:
    """The span's way off the request thread: the pump builds the SDK span and hands it to the
    batch span processor, whose thread encodes and writes batches of ``batch`` spans."""
    tel = monitor.telemetry
    tracer, pump = tel.tracer, tel.span_pump
    resource = tel.tracer_provider.resource
    scope = InstrumentationScope(c.SCOPE, monitor.settings.service_version)

    def compact() -> CompactSpan:
        span = tracer.start_span(c.SPAN_NAME_INFERENCE, kind=SpanKind.INTERNAL)
        if type(span) is not CompactSpan:
            raise RuntimeError(f"the tracer made a {type(span).__name__}, not a CompactSpan")
        span.source = ev
        return span

    def queue_spans() -> None:
        tel.tracer_provider.force_flush()  # the span processor's queue empty, its thread idle
        for _ in range(batch):
            compact().end()

    one = compact()
    table.batch(PUMP, "SpanPump.pump (readable + processors' on_end)", pump.pump, queue_spans)
    table.call(
        PUMP,
        "of which CompactSpan.readable (derived attrs)",
        lambda: one.readable(resource, scope, pump.derive),
        kind="part",
    )
    tel.tracer_provider.force_flush()

    spans = [compact().readable(resource, scope, pump.derive) for _ in range(batch)]
    file = _JsonLinesFile(out / TRACES_FILE)
    exporter = OtlpJsonSpanExporter(out / f"whole-{TRACES_FILE}")
    built: dict[str, Any] = {}

    def encode() -> int:
        built["request"] = traces_request(spans)
        return batch

    def serialize() -> int:
        built["line"] = _line(built["request"])
        return batch

    def write() -> int:
        file.write(built["line"])
        return batch

    def export() -> int:
        exporter.export(spans)
        return batch

    table.batch((SPAN_EXPORTER, "encoder"), "traces_request (OTLP/JSON dict)", encode)
    table.batch((SPAN_EXPORTER, "encoder"), "orjson, OTLP line", serialize)
    table.batch((SPAN_EXPORTER, "exporter"), "write traces.jsonl (1 write per batch)", write)
    table.batch(
        (SPAN_EXPORTER, "enc.+exporter"), "OtlpJsonSpanExporter.export", export, kind="whole"
    )
    file.close()
    exporter.shutdown()


def context_of(ev: InferenceEvent) -> otel_context.Context:
    """A context holding the event's span, as the old worker built for exemplars and logs."""
    flags = TraceFlags(TraceFlags.SAMPLED if ev.sampled else TraceFlags.DEFAULT)
    sc = SpanContext(ev.trace_id, ev.span_id, is_remote=False, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(sc))


def old_costs(table: CostTable, monitor: Monitor, ev: InferenceEvent) -> None:
    """The per-event SDK calls the pipeline replaced, on this Telemetry's own providers (the
    span processors, metric readers and log processor the service runs)."""
    tel, version = monitor.telemetry, monitor.settings.service_version
    sdk_tracer = tel.tracer_provider.get_tracer("bench.old", version)

    def sdk_span() -> None:
        span = sdk_tracer.start_span("bench.sdk_span", kind=SpanKind.INTERNAL)
        token = otel_context.attach(trace.set_span_in_context(span))
        span.set_attributes(event_span_attributes(ev))
        span.end()
        otel_context.detach(token)

    meter = tel.meter_provider.get_meter("bench.old", version)
    histograms = [
        meter.create_histogram(f"bench.old.{name}", explicit_bucket_boundaries_advisory=list(b))
        for name, b in (
            ("duration", c.DURATION_BUCKETS_S),
            ("input_size", c.INPUT_SIZE_BUCKETS),
            ("confidence", c.CONFIDENCE_BUCKETS),
        )
    ]
    mattrs, ctx = metric_attributes(ev), context_of(ev)
    values = (ev.duration_ns / 1e9, float(ev.input_size), ev.confidence or 0.0)

    def sdk_histograms() -> None:
        for h, v in zip(histograms, values, strict=True):
            h.record(v, mattrs, context=ctx)

    def sdk_log() -> None:
        tel.logger.emit(
            timestamp=ev.start_time_ns,
            context=ctx,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=log_record(ev),
            event_name=c.EVENT_NAME_INFERENCE,
        )

    table.call(
        ("request", "old"),
        "SDK span: start, attach, 11 attrs, end, detach",
        sdk_span,
        tel.tracer_provider.force_flush,
    )
    table.call(("worker", "old"), "3 SDK histogram records, exemplars", sdk_histograms)
    table.call(
        ("worker", "old"),
        "log_record + SDK logger.emit (batch proc.)",
        sdk_log,
        tel.logger_provider.force_flush,
    )


def metric_export_ns(telemetry: Telemetry, reps: int) -> float:
    """Median thread CPU of one metric collection written to metrics.jsonl."""
    times = []
    for _ in range(reps):
        t0 = time.thread_time_ns()
        telemetry.meter_provider.force_flush()
        times.append(time.thread_time_ns() - t0)
    return statistics.median(times)


def _row(thread: str, stage: str, name: str, *values: float) -> str:
    return f"{thread:<19}{stage:<15}{name:<47}" + "".join(us(v) for v in values)


def report_costs(new: list[Cost], old: list[Cost], table: CostTable, added_cpu_ns: float) -> None:
    """Print the per-event cost table, then the old way's rows and the before/after sums."""
    print("\nPer-event cost, us per inference event: each piece alone, with the real objects.")
    print(f"Per call: {table.k:,} calls, the timer's cost subtracted. Per batch: thread CPU of a")
    print(f"batch / its size, {table.reps} batches (their p99 is about their maximum).")
    print(_row("thread", "stage", "piece", 0, 0)[:81] + f"{'median':>9}{'p99':>9}")
    total = 0.0
    for thread in dict.fromkeys(x.thread for x in new):
        rows = [x for x in new if x.thread == thread]
        for x in rows:
            if x.kind != "whole":
                name = ("  " if x.kind == "part" else "") + x.name
                print(_row(thread, x.stage, name, x.median_ns, x.p99_ns))
        subtotal = sum(x.median_ns for x in rows if x.kind == "piece")
        total += subtotal
        print(_row("", "", f"sum of medians, {thread}", subtotal))
        for x in rows:
            if x.kind == "whole":
                print(_row("", "", f"check, whole: {x.name}", x.median_ns, x.p99_ns))
    print(_row("", "", "sum, all threads", total))
    print(_row("", "", "measured: added process CPU, back to back", added_cpu_ns))

    print("\nThe old way, same run: the per-event SDK calls the pipeline replaced")
    for x in old:
        print(_row(x.thread, x.stage, x.name, x.median_ns, x.p99_ns))
    same = ("InferenceEvent", "ActiveInference", "event queue")  # in the old way too
    request = [x for x in new if x.thread == "request" and x.kind == "piece"]
    shared = sum(x.median_ns for x in request if x.name.startswith(same))
    before = {
        "request thread: span, event, queue": (
            sum(x.median_ns for x in old if x.thread == "request") + shared,
            sum(x.median_ns for x in request),
        ),
        "worker: metrics + log record, unencoded": (
            sum(x.median_ns for x in old if x.thread == "worker"),
            sum(x.median_ns for x in new if x.stage == "batch worker" and x.kind == "piece"),
        ),
    }
    print(f"{'before/after, sums of medians':<81}{'old':>9}{'new':>9}")
    for name, (was, now) in before.items():
        print(_row("", "", name, was, now))


# -- profile -------------------------------------------------------------------------------


def profile_observe(monitor: Monitor, model: sentiment.SentimentModel, n: int) -> None:
    """cProfile of ``observe`` around a constant prediction: only the instrumentation shows."""
    text = "a fine phone"
    pred = model.predict(text)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        with monitor.observe(model.info, text, input_size=len(text), endpoint=ENDPOINT) as ev:
            ev.label, ev.score, ev.confidence = pred.label, pred.score, pred.confidence
    prof.disable()
    monitor.flush()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    print(f"\ncProfile of {n} observe() calls around a constant prediction (request thread).")
    print("Time inside calls that release the GIL (os.urandom, writes) includes waiting to take")
    print("it back from the worker, pump and exporter threads.")
    print(out.getvalue())


# -- main ----------------------------------------------------------------------------------


def target_line(mode: str, added: Added) -> bool:
    """Print whether ``added`` meets both targets; returns it."""
    med, p99 = added.median / 1000, added.p99 / 1000
    met = med <= TARGET_MEDIAN_US and p99 <= TARGET_P99_US
    print(
        f"target   {mode:<13} median {med:6.1f} us (<= {TARGET_MEDIAN_US:.0f}), p99 {p99:6.1f} us"
        f" (<= {TARGET_P99_US:.0f}): {'MET' if met else 'MISSED'}"
    )
    return met


class Harness:
    """The model and the monitor under test, and the calls the runs time; counts the
    instrumented inferences made (each must reach the telemetry)."""

    def __init__(self, monitor: Monitor, model: sentiment.SentimentModel, texts: list[str]):
        self.monitor, self.model, self.texts = monitor, model, texts
        self.gc_log = GcLog()
        self.made = 0
        self.events: list[InferenceEvent] = []  # the first instrumented inference's event
        p = model.predict("a fine phone")
        self._constant = (p.label, p.score, p.confidence)

    def instrumented(self, text: str) -> None:
        """One prediction inside ``Monitor.observe``."""
        with self.monitor.observe(
            self.model.info, text, input_size=len(text), endpoint=ENDPOINT
        ) as ev:
            p = self.model.predict(text)
            ev.label, ev.score, ev.confidence = p.label, p.score, p.confidence
        if not self.events:
            self.events.append(ev)

    def no_model(self, text: str) -> None:
        """``Monitor.observe`` around a constant prediction: the instrumentation alone."""
        with self.monitor.observe(
            self.model.info, text, input_size=len(text), endpoint=ENDPOINT
        ) as ev:
            ev.label, ev.score, ev.confidence = self._constant

    def compare(self, n: int, block: int, gap_s: float = 0.0) -> Run:
        """An ABBA run of bare and instrumented predictions."""
        run = interleaved(
            self.model.predict,
            self.instrumented,
            self.monitor,
            self.texts,
            n,
            block,
            self.gc_log,
            gap_s,
        )
        self.made += run.inferences
        return run

    def compare_gc(self, n: int, block: int) -> tuple[Run, Run]:
        """ABBA runs with the collector on and off, their pairs of blocks alternated (on, off,
        off, on, ...) so that both meet the same machine noise; returns (on, off). A full
        collection, untimed, precedes every pair: without it the first pair after an "off"
        one would pay for collecting everything the "off" pair allocated."""
        on, off = Run([], []), Run([], [])
        for k in range(max(2, n // block)):
            modes = ((on, True), (off, False))
            for target, enabled in modes if k % 2 == 0 else reversed(modes):
                gc.collect()
                if not enabled:
                    gc.disable()
                try:
                    pair = self.compare(block, block)
                finally:
                    gc.enable()
                target.bare += pair.bare
                target.instrumented += pair.instrumented
        return on, off


@dataclass
class Latency:
    """What the latency runs found."""

    back_to_back: Added
    paced: Added
    added_cpu_ns: float  # process CPU per inference, back to back


def measure_latency(h: Harness, n: int, block: int, frozen: bool) -> Latency:
    """Back to back (with the collector's work logged), paced, then back to back with the
    collector off; prints each table and the GC verdict."""
    with h.gc_log.installed():
        b2b = h.compare(n, block)
    b2b_added = report_latency("BACK TO BACK (request thread never idle)", b2b)
    added_cpu_ns = report_cpu(b2b)
    gc_costs = report_gc(h.gc_log, b2b, frozen)

    # Paced: idle time after each call equal to an instrumented inference's whole CPU cost,
    # so the background threads can run in the gaps, as in a service under moderate load.
    gap_s = cpu_per_inference(b2b.instrumented)[1] / 1e9
    paced = h.compare(n // 4, block // 2, gap_s)
    paced_added = report_latency(
        f"PACED ({gap_s * 1e6:.0f} us idle after each call; {n // 4} per variant)", paced
    )
    alone = run_block(h.no_model, h.texts, 0, block, h.monitor.flush, h.gc_log, "alone", gap_s)
    h.made += len(alone.latencies_ns)
    row = f"{us(alone.median_ns)}{us(alone.p99_ns)}{us(alone.mean_ns)}"
    print(f"{'observe() around no model, paced':<40}{row}")

    # Back to back with the collector on and off (both variants), interleaved: what
    # collections cost the request thread, directly.
    on, off = h.compare_gc(n // 4, block // 2)
    report_gc_verdict(gc_costs, b2b_added, on, off)
    return Latency(b2b_added, paced_added, added_cpu_ns)


def measure_costs(
    h: Harness, acc: Accounting, k: int, reps: int, added_cpu_ns: float, out: Path
) -> None:
    """The per-event cost table (batch sizes as the runs made them), the old way's rows, and
    one metric collection."""
    monitor, ev = h.monitor, h.events[0]
    table = CostTable(k, reps)
    request_costs(table, monitor, h.model)
    worker_costs(table, monitor, ev, acc.log_batch, out)
    span_costs(table, monitor, ev, acc.span_batch, out)
    new = list(table.rows)
    old_costs(table, monitor, ev)
    report_costs(new, table.rows[len(new) :], table, added_cpu_ns)
    interval_s = monitor.settings.metric_export_interval_ms / 1000
    collect = metric_export_ns(monitor.telemetry, 5)
    name = "collect + metrics.jsonl, per collection"
    print(_row("metric reader", "enc.+exporter", name, collect) + f"  (every {interval_s:g} s)")

    # Pure-Python batch work keeps the GIL until the interpreter makes it let go (a thread
    # that waited a switch interval asks for it): a request arriving meanwhile waits.
    whole = {x.name: x.median_ns for x in table.rows if x.kind == "whole"}
    switch_ms = sys.getswitchinterval() * 1000
    print("\nBatch work in one stretch under the GIL (a request needing it waits for the rest")
    print(f"of the stretch, up to the switch interval, {switch_ms:g} ms), us per batch:")
    stretches = (
        (
            "span exporter",
            f"export of {acc.span_batch} spans (mean batch)",
            whole["OtlpJsonSpanExporter.export"] * acc.span_batch,
        ),
        (
            "infertrail-events",
            f"drain of {acc.log_batch} events (mean batch)",
            whole["worker drain (process CPU)"] * acc.log_batch,
        ),
        ("metric reader", "one collection", collect),
    )
    for thread, name, ns in stretches:
        print(_row(thread, "per batch", name, ns))


def run_all(h: Harness, args: argparse.Namespace, n: int, block: int, out: Path) -> None:
    """Every section in turn: header, latency and GC, accounting, cost table, targets."""
    drops = QueueFullDrops()
    print("infertrail telemetry overhead, in process")
    print(f"cpu      {cpu_model()} ({os.cpu_count()} logical CPUs, shared)")
    print(f"date     {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"load     {load_average()} (1/5/15 min) at start: other work adds noise")
    versions = ", ".join(
        f"{pkg} {metadata.version(pkg)}" for pkg in ("opentelemetry-sdk", "scikit-learn", "orjson")
    )
    print(f"python   {platform.python_version()}, {versions}")
    print(f"run      {n} inferences per variant, blocks of {block}, alternated (ABBA)")
    print("telemetry compact spans, batched histograms (exemplars on), batched logs, to")
    print("         OTLP/JSON files; always sampled")
    with drops.installed():
        warm = min(1_000, n // 4)
        h.compare(warm, warm // 2)
        if not args.no_gc_freeze:
            # As the server does at start-up (create_app(freeze_gc=True)): full collections
            # then skip the start-up objects.
            gc.collect()
            gc.freeze()
        print(f"gc       start-up objects frozen: {'no' if args.no_gc_freeze else 'yes'}")

        latency = measure_latency(h, n, block, frozen=not args.no_gc_freeze)
        acc = account(h.monitor.telemetry, h.monitor, h.made, drops)
        complete = report_accounting(acc)
        reps = 20 if args.quick else 60
        measure_costs(h, acc, min(n, 20_000), reps, latency.added_cpu_ns, out)

        print()
        met = target_line("back to back", latency.back_to_back)
        met = target_line("paced", latency.paced) and met
        print(f"lost     {'none' if complete else 'SOME (see the accounting above)'}")
        print(f"load     {load_average()} (1/5/15 min) at the end")
        print("note     all threads share one GIL: CPU moved to the worker, pump and exporter")
        print("         threads still delays a request thread that has no idle time.")
        if args.profile or not met:
            before = drops.count
            profile_observe(h.monitor, h.model, min(n, 5_000))
            if drops.count > before:
                print(
                    f"SDK batch processor queue full during the profile: {drops.count - before}"
                    " items dropped (observe() with no model, never flushed)"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4,000 inferences, smaller blocks")
    parser.add_argument("-n", type=int, default=20_000, help="inferences per variant")
    parser.add_argument("--block", type=int, default=1_000, help="inferences per timed block")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of observe")
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="do not gc.freeze() after set-up (a library user's process that does not)",
    )
    args = parser.parse_args(argv)
    n, block = (4_000, 500) if args.quick else (args.n, args.block)
    if n < 2 * block or block < 100:
        parser.error(f"need -n >= 2 * --block and --block >= 100; got -n {n}, --block {block}")

    with tempfile.TemporaryDirectory(prefix="infertrail-overhead-") as tmp:
        # Explicit telemetry settings so INFERTRAIL_*/OTEL_* in the environment cannot change
        # them; a total large enough that rotation never deletes a file before it is counted.
        settings = Settings(
            data_dir=Path(tmp),
            telemetry_files=True,
            otlp_endpoint=None,
            traces_sampler="parentbased_always_on",
            log_raw_input=False,
            telemetry_files_max_total_mb=4096.0,
        )
        settings.ensure_dirs()
        sentiment.train(settings.models_dir)
        model = sentiment.SentimentModel.load(settings.models_dir)
        monitor = Monitor(settings)
        try:
            run_all(
                Harness(monitor, model, sentiment.split().test_texts),
                args,
                n,
                block,
                Path(tmp) / "cost-table",
            )
        finally:
            monitor.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
