"""In-process cost of infertrail telemetry on one sentiment inference.

Runs ``model.predict(text)`` bare and through ``Monitor.observe`` (every telemetry signal on, file
exporters under a temporary data dir) in alternating blocks, so machine noise hits both alike, and
reports per-inference latency, the latency added on the request thread, the CPU each costs in
total (the monitor moves metrics and logs to a worker thread, whose CPU is counted here, not
hidden), and a breakdown of where the added time goes.

    .venv/bin/python bench/overhead.py            # 20,000 inferences per variant
    .venv/bin/python bench/overhead.py --quick    # 4,000, for a smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import math
import os
import platform
import pstats
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from infertrail.config import Settings
from infertrail.events import (
    InferenceEvent,
    log_record,
    metric_attributes,
    new_request_id,
    span_attributes,
)
from infertrail.models import sentiment
from infertrail.monitor import Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry.files import OtlpJsonLogExporter, OtlpJsonSpanExporter
from infertrail.telemetry.setup import InferenceLogExporter

ENDPOINT = "/v1/sentiment"
TARGET_ADDED_MEDIAN_US = 40.0
BATCH = 512  # the SDK batch processors' max_export_batch_size


def cpu_model() -> str:
    """The CPU model name as ``lscpu`` prints it (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages, to judge how noisy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


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
    settle: Callable[[], None],
    gap_s: float = 0.0,
) -> Block:
    """Time ``n`` calls one by one, ``gap_s`` apart; ``settle`` finishes their background work.

    The settle step is CPU-counted (not timed): it is the work the calls left to other threads.
    """
    lat = [0] * n
    clock = time.perf_counter_ns
    c0, p0 = time.thread_time_ns(), time.process_time_ns()
    for i in range(n):
        text = texts[(start + i) % len(texts)]
        t0 = clock()
        call(text)
        lat[i] = clock() - t0
        if gap_s:
            time.sleep(gap_s)
    thread_cpu = time.thread_time_ns() - c0
    settle()
    return Block(lat, thread_cpu, time.process_time_ns() - p0)


def interleaved(
    bare: Callable[[str], object],
    instrumented: Callable[[str], object],
    monitor: Monitor,
    texts: list[str],
    n: int,
    block: int,
    gap_s: float = 0.0,
) -> tuple[list[Block], list[Block]]:
    """Alternate bare and instrumented blocks over the same texts (ABBA order against drift).

    After each instrumented block the monitor is flushed (drains the worker queue, exports), so
    that work is charged to the instrumented block's CPU and does not slow the next bare block.
    """
    bare_blocks: list[Block] = []
    inst_blocks: list[Block] = []
    for k, start in enumerate(range(0, n, block)):
        size = min(block, n - start)
        order = ((bare, bare_blocks), (instrumented, inst_blocks))
        for call, out in order if k % 2 == 0 else reversed(order):
            settle = monitor.flush if call is instrumented else _nothing
            out.append(run_block(call, texts, start, size, settle, gap_s))
    return bare_blocks, inst_blocks


def _nothing() -> None:
    return None


def timer_overhead_ns(n: int) -> float:
    """Median cost of an empty ``perf_counter_ns`` pair around a no-op call."""
    clock = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t0 = clock()
        _nothing()
        lat[i] = clock() - t0
    return statistics.median(lat)


# -- breakdown: each piece of the instrumentation, timed on its own ---------------------------


@dataclass
class Piece:
    """One row of the breakdown: on which thread it runs, and its cost per inference."""

    # "request", "worker" (the monitor's event thread), "exporter" (the SDK's batch threads),
    # or "compare" (an alternative, not part of the current cost)
    thread: str
    name: str
    median_ns: float
    p99_ns: float | None = None  # None for pieces timed per batch, not per call


def timed(
    op: Callable[[], object], n: int, overhead_ns: float, settle: Callable[[], None] = _nothing
) -> tuple[float, float]:
    """(median, p99) ns of ``op`` timed one call at a time, minus the timer's own median cost.

    ``settle`` runs untimed every 500 calls so the SDK's bounded queues (2,048 spans or log
    records) are exported rather than overflowing, as they would in no real service.
    """
    clock = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        if i % 500 == 499:
            settle()
        t0 = clock()
        op()
        lat[i] = clock() - t0
    return statistics.median(lat) - overhead_ns, percentile(lat, 99) - overhead_ns


def context_of(ev: InferenceEvent) -> otel_context.Context:
    """The exemplar/log context the monitor's worker builds for each event (same API calls)."""
    flags = TraceFlags(TraceFlags.SAMPLED if ev.sampled else TraceFlags.DEFAULT)
    sc = SpanContext(ev.trace_id, ev.span_id, is_remote=False, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(sc))


@contextmanager
def _empty_observe() -> Iterator[list[int]]:
    """The shape of ``observe`` with nothing inside: generator context manager and two clocks."""
    times = [time.perf_counter_ns()]
    try:
        yield times
    finally:
        times.append(time.perf_counter_ns())


def _enter_exit() -> None:
    with _empty_observe():
        pass


def request_pieces(monitor: Monitor, ev: InferenceEvent, n: int, overhead: float) -> list[Piece]:
    """What ``observe`` does on the request thread, piece by piece."""
    tracer, settings = monitor.telemetry.tracer, monitor.settings
    attrs = span_attributes(ev)
    # Start, attributes and end are sliced within one loop, in the order observe runs them.
    starts, sets, ends = [0] * n, [0] * n, [0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        if i % 500 == 499:
            monitor.flush()
        t0 = clock()
        span = tracer.start_span(c.SPAN_NAME_INFERENCE, kind=SpanKind.INTERNAL)
        token = otel_context.attach(trace.set_span_in_context(span))
        span.get_span_context()
        t1 = clock()
        span.set_attributes(attrs)
        t2 = clock()
        span.end()
        otel_context.detach(token)
        t3 = clock()
        starts[i], sets[i], ends[i] = t1 - t0, t2 - t1, t3 - t2
    pieces = [
        Piece("request", name, statistics.median(lat) - overhead, percentile(lat, 99) - overhead)
        for name, lat in (
            ("span start + context attach", starts),
            (f"span.set_attributes ({len(attrs)} attributes)", sets),
            ("span end (to batch queue) + detach", ends),
        )
    ]

    def new_event() -> InferenceEvent:
        return InferenceEvent(
            model=ev.model,
            request_id=new_request_id(),
            service=settings.service_name,
            team=settings.team,
            endpoint=ENDPOINT,
            inputs=ev.inputs,
            input_size=ev.input_size,
        )

    # Bounded like the monitor's queue, but never full here: the consumer gets the GIL only
    # now and then while this loop runs, and a full queue would time the drop path instead.
    put = put_cost(queue.Queue(maxsize=n + 1), ev, n, overhead)
    simple_put = put_cost(queue.SimpleQueue(), ev, n, overhead)
    return [
        *pieces,
        Piece("request", "InferenceEvent + new_request_id", *timed(new_event, n, overhead)),
        Piece("request", "span_attributes(ev)", *timed(lambda: span_attributes(ev), n, overhead)),
        Piece("request", "queue put_nowait (waiting consumer)", *put),
        Piece("request", "@contextmanager enter/exit + clocks", *timed(_enter_exit, n, overhead)),
        Piece("compare", "SimpleQueue.put (waiting consumer)", *simple_put),
    ]


def put_cost(
    q: queue.Queue[Any] | queue.SimpleQueue[Any], item: object, n: int, overhead: float
) -> tuple[float, float]:
    """(median, p99) ns of ``q.put_nowait`` while a consumer thread waits on the queue, as the
    monitor's worker does (so each put may wake it)."""
    stop = object()

    def drain() -> None:
        while q.get() is not stop:
            pass

    consumer = threading.Thread(target=drain, name="bench-drain", daemon=True)
    consumer.start()
    cost = timed(lambda: q.put_nowait(item), n, overhead)
    q.put(stop)
    consumer.join()
    return cost


def worker_pieces(monitor: Monitor, ev: InferenceEvent, n: int, overhead: float) -> list[Piece]:
    """What the monitor's worker thread does per event: metric points and the log record."""
    ins, logger = monitor.telemetry.instruments, monitor.telemetry.logger
    mattrs = metric_attributes(ev)
    ctx = context_of(ev)
    body = log_record(ev)

    def record_metrics(context: otel_context.Context | None) -> None:
        """The three synchronous histograms, every one with the given exemplar context."""
        ins.duration.record(ev.duration_ns / 1e9, mattrs, context=context)
        ins.input_size.record(ev.input_size, mattrs, context=context)
        ins.confidence.record(ev.confidence or 0.0, mattrs, context=context)

    def emit() -> None:
        logger.emit(
            timestamp=ev.start_time_ns,
            context=ctx,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=body,
            event_name="infertrail.inference",
        )

    # The benchmark thread has no current span, so context=None records no exemplar.
    no_exemplar = timed(lambda: record_metrics(None), n, overhead)
    pieces = [
        Piece(
            "worker",
            "metrics as recorded (3 histograms, 1 count)",
            *timed(lambda: monitor._record_metrics(ev), n, overhead),
        ),
        Piece("worker", "log_record(ev)", *timed(lambda: log_record(ev), n, overhead)),
        Piece(
            "worker", "logger.emit (1 batch processor)", *timed(emit, n, overhead, monitor.flush)
        ),
    ]
    monitor.flush()
    all_exemplars = timed(lambda: record_metrics(ctx), n, overhead)
    pieces.append(Piece("compare", "3 histograms, exemplars on all", *all_exemplars))
    pieces.append(Piece("compare", "3 histograms, no exemplars", *no_exemplar))
    return pieces


def exporter_pieces(monitor: Monitor, ev: InferenceEvent, out: Path) -> list[Piece]:
    """Per-record CPU of the file exporters, timed on batches of 512 as the SDK sends them."""
    resource = monitor.telemetry.resource
    spans_mem = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(spans_mem))
    tracer = tp.get_tracer("infertrail")
    logs_mem = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs_mem))
    logger = lp.get_logger("infertrail")
    attrs, body = span_attributes(ev), log_record(ev)
    for _ in range(BATCH):
        span = tracer.start_span(c.SPAN_NAME_INFERENCE, kind=SpanKind.INTERNAL)
        span.set_attributes(attrs)
        span.end()
        logger.emit(timestamp=ev.start_time_ns, context=context_of(ev), body=body)
    spans, logs = spans_mem.get_finished_spans(), logs_mem.get_finished_logs()
    out.mkdir(parents=True, exist_ok=True)
    exporters: list[tuple[str, str, Callable[[], object]]] = [
        (
            "exporter",
            "span -> traces.jsonl (OTLP/JSON)",
            partial(OtlpJsonSpanExporter(out / "t").export, spans),
        ),
        (
            "exporter",
            "log -> logs.jsonl (OTLP/JSON)",
            partial(OtlpJsonLogExporter(out / "l").export, logs),
        ),
        (
            "exporter",
            "log -> inference.log.jsonl",
            partial(InferenceLogExporter(out / "i").export, logs),
        ),
        # What an OTLP/HTTP exporter spends before the network: protobuf bytes, no JSON.
        ("compare", "span -> OTLP protobuf bytes", lambda: encode_spans(spans).SerializeToString()),
        ("compare", "log -> OTLP protobuf bytes", lambda: encode_logs(logs).SerializeToString()),
    ]
    pieces = []
    for thread, name, export in exporters:
        per_batch = []
        for _ in range(5):
            # CPU time of this thread: a whole batch is long enough to be preempted on a busy
            # machine, which wall time would count.
            t0 = time.thread_time_ns()
            export()
            per_batch.append(time.thread_time_ns() - t0)
        pieces.append(Piece(thread, name, statistics.median(per_batch) / BATCH))
    tp.shutdown()
    lp.shutdown()
    return pieces


def metric_export_ns(monitor: Monitor) -> float:
    """Median CPU of one metric collection and file export (every 10 s, not per inference)."""
    times = []
    for _ in range(5):
        t0 = time.thread_time_ns()
        monitor.telemetry.meter_provider.force_flush()
        times.append(time.thread_time_ns() - t0)
    return statistics.median(times)


# -- report -----------------------------------------------------------------------------------


def us(ns: float) -> str:
    return f"{ns / 1000:9.1f}"


def report_latency(title: str, bare: list[Block], inst: list[Block]) -> float:
    """Print one latency table; returns the median added request-thread latency (ns)."""
    med = statistics.median
    stats = {
        name: (
            med(b.median_ns for b in blocks),
            med(b.p99_ns for b in blocks),
            med(b.mean_ns for b in blocks),
        )
        for name, blocks in (("bare predict", bare), ("instrumented", inst))
    }
    pairs = list(zip(bare, inst, strict=True))
    added = (
        med(i.median_ns - b.median_ns for b, i in pairs),
        med(i.p99_ns - b.p99_ns for b, i in pairs),
        med(i.mean_ns - b.mean_ns for b, i in pairs),
    )
    (bm, bp, ba), (im, ip, ia) = stats["bare predict"], stats["instrumented"]
    print(f"\n{title}")
    print(f"latency per inference, us: median over {len(pairs)} block pairs of each statistic")
    print(f"{'variant':<36}{'median':>9}{'p99':>9}{'mean':>9}")
    for name, (m, p, a) in stats.items():
        print(f"{name:<36}{us(m)}{us(p)}{us(a)}")
    print(f"{'added on request thread (paired)':<36}{us(added[0])}{us(added[1])}{us(added[2])}")
    print(f"{'ratio instrumented / bare':<36}{im / bm:9.3f}{ip / bp:9.3f}{ia / ba:9.3f}")
    return added[0]


def cpu_per_inference(blocks: list[Block]) -> tuple[float, float]:
    """(request-thread, whole-process) CPU ns per inference over ``blocks``."""
    count = sum(len(b.latencies_ns) for b in blocks)
    return (
        sum(b.thread_cpu_ns for b in blocks) / count,
        sum(b.process_cpu_ns for b in blocks) / count,
    )


def report_cpu(bare: list[Block], inst: list[Block]) -> float:
    """Print the CPU table; returns the added process CPU per inference (ns)."""
    (thr_b, proc_b), (thr_i, proc_i) = cpu_per_inference(bare), cpu_per_inference(inst)
    print("\nCPU per inference, us, whole back-to-back run (instrumented includes draining the")
    print("event queue and exporting after each block: CPU moved off the request thread counts)")
    print(f"{'':<36}{'request':>9}{'process':>9}{'other threads':>15}")
    for name, thr, proc in (("bare predict", thr_b, proc_b), ("instrumented", thr_i, proc_i)):
        print(f"{name:<36}{us(thr)}{us(proc)}{us(proc - thr):>15}")
    off = (proc_i - thr_i) - (proc_b - thr_b)
    print(f"{'added':<36}{us(thr_i - thr_b)}{us(proc_i - proc_b)}{us(off):>15}")
    return proc_i - proc_b


def report_breakdown(pieces: list[Piece], added_cpu_ns: float, metric_export: float) -> None:
    print("\nBreakdown, us per inference: each piece timed alone, per call (timer cost")
    print("subtracted); exporters: CPU per record over batches of 512")
    print(f"{'thread':<10}{'piece':<40}{'median':>9}{'p99':>9}")
    total = 0.0
    for thread in ("request", "worker", "exporter"):
        subtotal = 0.0
        for p in (p for p in pieces if p.thread == thread):
            subtotal += p.median_ns
            p99 = us(p.p99_ns) if p.p99_ns is not None else f"{'-':>9}"
            print(f"{p.thread:<10}{p.name:<40}{us(p.median_ns)}{p99}")
        print(f"{'':<10}{'sum, ' + thread + ' thread':<40}{us(subtotal)}")
        total += subtotal
    print(f"{'':<10}{'sum, all threads':<40}{us(total)}")
    print(f"{'':<10}{'measured added CPU (process, above)':<40}{us(added_cpu_ns)}")
    print(f"{'':<10}{'metric collect + export, per export':<40}{us(metric_export)}  (every 10 s)")
    for p in (p for p in pieces if p.thread == "compare"):
        print(f"{'compare':<10}{p.name:<40}{us(p.median_ns)}")


def profile_observe(monitor: Monitor, model: sentiment.SentimentModel, n: int) -> None:
    """cProfile of ``observe`` around a constant prediction: only the instrumentation shows."""
    pred = model.predict("a fine phone")
    text = "a fine phone"

    def call() -> None:
        with monitor.observe(model.info, text, input_size=len(text), endpoint=ENDPOINT) as ev:
            ev.label, ev.score, ev.confidence = pred.label, pred.score, pred.confidence

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        call()
    prof.disable()
    monitor.flush()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    print(f"\ncProfile of {n} observe() calls around a constant prediction (request thread).")
    print("Time inside calls that release the GIL (os.urandom) includes waiting for the")
    print("worker and exporter threads, which take the GIL whenever it is released.")
    print(out.getvalue())


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
        # Explicit telemetry settings so INFERTRAIL_*/OTEL_* in the environment cannot change them.
        settings = Settings(
            data_dir=Path(tmp),
            telemetry_files=True,
            otlp_endpoint=None,
            traces_sampler="parentbased_always_on",
            log_raw_input=False,
        )
        settings.ensure_dirs()
        sentiment.train(settings.models_dir)
        model = sentiment.SentimentModel.load(settings.models_dir)
        texts = sentiment.split().test_texts
        monitor = Monitor(settings)
        last: list[InferenceEvent] = []

        def instrumented(text: str) -> None:
            with monitor.observe(model.info, text, input_size=len(text), endpoint=ENDPOINT) as ev:
                p = model.predict(text)
                ev.label, ev.score, ev.confidence = p.label, p.score, p.confidence
            if not last:
                last.append(ev)

        p0 = model.predict("a fine phone")
        constant = (p0.label, p0.score, p0.confidence)

        def no_model(text: str) -> None:
            with monitor.observe(model.info, text, input_size=len(text), endpoint=ENDPOINT) as ev:
                ev.label, ev.score, ev.confidence = constant

        try:
            print("infertrail telemetry overhead, in process")
            print(f"cpu      {cpu_model()} ({os.cpu_count()} logical CPUs, shared)")
            print(f"date     {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
            print(f"load     {load_average()} (1/5/15 min) at start: other work adds noise")
            versions = ", ".join(
                f"{pkg} {metadata.version(pkg)}" for pkg in ("opentelemetry-sdk", "scikit-learn")
            )
            print(f"python   {platform.python_version()}, {versions}")
            print(f"run      {n} inferences per variant, blocks of {block}, alternated (ABBA)")
            print("telemetry spans, metrics, logs to OTLP/JSON files; exemplars on; always sampled")
            warm = min(1_000, n // 4)
            interleaved(model.predict, instrumented, monitor, texts, warm, warm // 2)
            if not args.no_gc_freeze:
                # As the server does at start-up (create_app(freeze_gc=True)): full collections
                # then skip the start-up objects; without it each costs ~85 ms, ~85 us/inference.
                gc.collect()
                gc.freeze()
            print(f"gc       start-up objects frozen: {'no' if args.no_gc_freeze else 'yes'}")
            bare, inst = interleaved(model.predict, instrumented, monitor, texts, n, block)
            added_ns = report_latency("BACK TO BACK (request thread never idle)", bare, inst)
            added_cpu_ns = report_cpu(bare, inst)
            # Paced: idle time after each call equal to an instrumented inference's whole CPU
            # cost, so the background threads can run in the gaps, as in a service under
            # moderate load.
            gap_s = cpu_per_inference(inst)[1] / 1e9
            paced_n, paced_block = n // 4, block // 2
            paced = interleaved(
                model.predict, instrumented, monitor, texts, paced_n, paced_block, gap_s
            )
            report_latency(
                f"PACED ({gap_s * 1e6:.0f} us idle after each call; {paced_n} per variant)", *paced
            )
            alone = run_block(no_model, texts, 0, block, monitor.flush, gap_s)
            row = f"{us(alone.median_ns)}{us(alone.p99_ns)}{us(alone.mean_ns)}"
            print(f"{'observe() around no model, paced':<36}{row}")

            k = min(n, 20_000)
            overhead = timer_overhead_ns(k)
            ev = last[0]
            pieces = [
                *request_pieces(monitor, ev, k, overhead),
                *worker_pieces(monitor, ev, k, overhead),
                *exporter_pieces(monitor, ev, Path(tmp) / "exporter-bench"),
            ]
            report_breakdown(pieces, added_cpu_ns, metric_export_ns(monitor))

            added_us = added_ns / 1000
            met = added_us <= TARGET_ADDED_MEDIAN_US
            print(
                f"\ntarget   median added request-thread latency <= {TARGET_ADDED_MEDIAN_US:.0f}"
                f" us (back to back): {'MET' if met else 'MISSED'} ({added_us:.1f} us)"
            )
            print(f"dropped  {monitor.dropped_events} events, {monitor.sink_errors} sink errors")
            print(f"load     {load_average()} (1/5/15 min) at the end")
            print(
                "note     all threads share one GIL: CPU moved to the worker and exporter threads"
            )
            print("         still delays a request thread that has no idle time between calls.")
            if args.profile or not met:
                profile_observe(monitor, model, min(n, 5_000))
        finally:
            monitor.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
