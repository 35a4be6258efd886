"""Durable append throughput and latency of the audit ledger (AuditLog), records of the real schema.

Run: .venv/bin/python bench/audit_append.py [--quick] [--runs N] [--dir PATH]
Four measurements, all with fsync=True (durable mode) on a fresh log in --dir (default: a
temporary directory on the same disk as /tmp):
  1. request-thread cost: derive_record, then append_async (canonicalize + hash + enqueue), timed
     per record with perf_counter_ns while the writer thread runs (so GIL contention is included);
  2. throughput: N producer threads call append_async and wait for the receipts, keeping at most
     WINDOW futures outstanding each (like a service with bounded concurrency; queueing 100k
     futures at once mostly measures the garbage collector); records/s (wall), records per
     CPU-second, group commits (= WAL fdatasyncs) per second, mean and largest batch: medians of
     --runs runs on fresh logs (this machine's speed drifts by 10-20% from minute to minute);
     records pre-derived, derived in the loop, or "fresh" (derived 256 at a time just before
     they are appended, derive's CPU left out: the ledger's cost as a service sees it); the
     first two rows pin the whole process (producer and writer threads) to one CPU, the
     issue's "on one core" taken literally;
  3. sync append latency: N threads each calling append() in a loop; p50/p99 per call, for the
     default batch_wait_ms=2 and for batch_wait_ms=0.
With receipts (issue 14: a checkpoint signed per group commit before any future resolves), rows
marked "receipts serialized" also build every receipt's document (``Receipt.to_dict``: the
inclusion proof and the C2SP tlog-proof text) on the producer, as a response carrying it does.
The pre-generated events and records are moved out of the collector's way (gc.freeze): they are
bench scaffolding, not objects a service keeps alive per request.

``--against SRC`` compares this tree with another one (SRC: its ``src`` directory, e.g. a
``git archive`` of an older commit with the compiled ``_native`` module copied in) in one run:
``--pairs`` alternating pairs of fresh processes, one per tree, each measuring the one-producer
durable append rate (pinned to one CPU and not) and the latency of a sync append() (one thread,
batch_wait_ms=0, the service's default: the audit part of a decision's latency); the table gives
the median of each and the median of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.ledger import AuditLog, Receipt
from infertrail.audit.record import DEFAULT_RETENTION, derive_record, input_hmac_hex
from infertrail.events import InferenceEvent, ModelInfo, new_request_id

ORIGIN = "bench.infertrail/audit-append"
FEATURES = ["income", "age", "debt_ratio", "late_payments", "tenure", "utilization", "inquiries"]
HMAC_KEY = b"bench-hmac-key-of-32-bytes------"
WINDOW = 2048  # outstanding append_async futures per producer thread


def make_event(rng: random.Random, i: int, now: int) -> tuple[InferenceEvent, str]:
    """One credit-scoring inference with SHAP values, and its input HMAC."""
    inputs = {f: round(rng.uniform(0, 100), 2) for f in FEATURES}
    score = rng.random()
    ev = InferenceEvent(
        model=ModelInfo("credit-gbm", "2026.11.1", hashlib.sha256(b"model").hexdigest()),
        request_id=new_request_id(),
        service="credit-api",
        team="risk",
        endpoint="/v1/score",
        inputs=inputs,
        input_size=len(inputs),
        subject=f"customer-{i}",
        start_time_ns=now + i * 1000,
        duration_ns=rng.randint(500_000, 20_000_000),
        decision="approve" if score > 0.5 else "decline",
        score=score,
        confidence=max(score, 1 - score),
        ci_low=max(0.0, score - 0.05),
        ci_high=min(1.0, score + 0.05),
        explanation={
            "method": "treeshap",
            "base_value": 0.41,
            "values": {f: rng.gauss(0, 0.1) for f in FEATURES},
            "reason_codes": rng.sample(["R01", "R02", "R07", "R11", "R14"], 3),
        },
        trace_id=rng.getrandbits(128),
        span_id=rng.getrandbits(64),
    )
    return ev, input_hmac_hex(HMAC_KEY, inputs)


def derive(ev: InferenceEvent, hmac_hex: str) -> dict[str, Any]:
    return derive_record(
        ev,
        input_hmac=hmac_hex,
        input_hmac_key_id="hk-2026-11",
        subject_pseudonym="psn_" + hmac_hex[:12],
        retention=DEFAULT_RETENTION,
        producer="infertrail/bench",
    )


def make_events(n: int, seed: int) -> list[tuple[InferenceEvent, str]]:
    rng = random.Random(seed)
    now = time.time_ns()
    return [make_event(rng, i, now) for i in range(n)]


def freeze_scaffolding() -> None:
    gc.collect()
    gc.freeze()


def drain(futures: deque[Future[Receipt]], keep: int, serialize: bool = False) -> None:
    """Wait for the oldest futures until at most ``keep`` are outstanding (and, with
    ``serialize``, build each receipt's document, as a response carrying it does)."""
    while len(futures) > keep:
        receipt = futures.popleft().result()
        if serialize:
            receipt.to_dict()


def has_receipts() -> bool:
    """Whether the infertrail under test gives receipts with documents (issue 14)."""
    return hasattr(Receipt, "to_dict")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    """Opens fresh logs under one directory with one signing key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.signer = NoteSigner.from_key(NoteSigner.generate("bench.infertrail")[0])
        self.count = 0

    def open(self, **options: Any) -> AuditLog:
        self.count += 1
        return AuditLog.open(
            self.root / f"log{self.count}", signer=self.signer, origin=ORIGIN, **options
        )


def request_thread_cost(bench: Bench, n: int) -> None:
    events = make_events(n, seed=1)
    derive_ns: list[float] = []
    append_ns: list[float] = []
    futures: deque[Future[Receipt]] = deque()
    clock = time.perf_counter_ns
    freeze_scaffolding()
    with bench.open() as log:
        for ev, hmac_hex in events:
            t0 = clock()
            record = derive(ev, hmac_hex)
            t1 = clock()
            futures.append(log.append_async(record))
            t2 = clock()
            derive_ns.append(t1 - t0)
            append_ns.append(t2 - t1)
            drain(futures, WINDOW)
        kept = [f.result() for f in futures]  # the last window's receipts, for the row below
        drain(futures, 0)
    total = [d + a for d, a in zip(derive_ns, append_ns, strict=True)]
    overhead = statistics.median(-clock() + clock() for _ in range(1000))
    rows = [
        ("derive_record", derive_ns),
        ("append_async (canonicalize+hash+enqueue)", append_ns),
        ("total", total),
    ]
    if has_receipts():  # when the decision is answered: its receipt's document
        rows.append(("receipt.to_dict() (proof + tlog-proof text)", time_each(kept)))
    print(f"\n1. request-thread cost per record (n={n}, timer overhead ~{-overhead:.0f} ns)")
    print(f"   {'stage':<44}{'median us':>10}{'p99 us':>10}")
    for name, values in rows:
        print(
            f"   {name:<44}{statistics.median(values) / 1e3:>10.2f}{pct(values, 0.99) / 1e3:>10.2f}"
        )


def time_each(receipts: list[Receipt]) -> list[float]:
    """Nanoseconds of ``receipt.to_dict()`` for each receipt, timed one at a time."""
    clock = time.perf_counter_ns
    out: list[float] = []
    for receipt in receipts:
        t0 = clock()
        receipt.to_dict()
        out.append(clock() - t0)
    return out


FRESH_CHUNK = 256  # "fresh" mode: records derived just before they are appended (~1 MB)
MODES = {
    "pre": "append_async (pre-derived)",
    "loop": "derive+append_async",
    "fresh": "append_async, fresh (derive excluded)",
}


def throughput(
    bench: Bench,
    threads: int,
    per_thread: int,
    mode: str,
    runs: int,
    pin: bool = False,
    serialize: bool = False,
) -> dict[str, float]:
    """Median of ``runs`` runs on fresh logs; ``pin``: the process on one CPU (all its threads).
    ``serialize``: each receipt's document is built as it is drained. Returns the row's medians.

    ``mode``: "pre" appends records derived before the run (200k of them no longer sit in the
    CPU caches when appended); "loop" derives each one in the loop (derive's CPU counted);
    "fresh" derives FRESH_CHUNK at a time, then appends them, and leaves derive's CPU out of the
    records per CPU-second: the ledger's cost for records just built, as in a service.
    """
    batches = [make_events(per_thread, seed=10 + t) for t in range(threads)]
    pre = [[derive(ev, h) for ev, h in batch] for batch in batches] if mode == "pre" else []
    freeze_scaffolding()
    everywhere = os.sched_getaffinity(0)
    rates, cpu_rates, fsyncs, means, largest = [], [], [], [], 0
    derive_ns = [0] * threads

    def producer(t: int, log: AuditLog, start: threading.Barrier) -> None:
        futures: deque[Future[Receipt]] = deque()
        start.wait()
        if mode == "pre":
            for record in pre[t]:
                futures.append(log.append_async(record))
                drain(futures, WINDOW, serialize)
        elif mode == "loop":
            for ev, h in batches[t]:
                futures.append(log.append_async(derive(ev, h)))
                drain(futures, WINDOW, serialize)
        else:
            events = batches[t]
            for at in range(0, len(events), FRESH_CHUNK):
                t0 = time.thread_time_ns()
                chunk = [derive(ev, h) for ev, h in events[at : at + FRESH_CHUNK]]
                derive_ns[t] += time.thread_time_ns() - t0
                for record in chunk:
                    futures.append(log.append_async(record))
                    drain(futures, WINDOW, serialize)
        drain(futures, 0, serialize)

    for _ in range(runs):
        start = threading.Barrier(threads + 1)
        if pin:  # threads inherit the affinity of the thread that starts them: set it first
            os.sched_setaffinity(0, {min(everywhere)})
        try:
            with bench.open() as log:
                workers = [
                    threading.Thread(target=producer, args=(t, log, start)) for t in range(threads)
                ]
                for w in workers:
                    w.start()
                start.wait()
                wall0, cpu0 = time.perf_counter(), time.process_time()
                for w in workers:
                    w.join()
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                cpu -= sum(derive_ns) / 1e9
                derive_ns[:] = [0] * threads
                stats = log.stats
        finally:
            os.sched_setaffinity(0, everywhere)
        n = threads * per_thread
        rates.append(n / wall)
        cpu_rates.append(n / cpu)
        fsyncs.append(stats.commits / wall)
        means.append(stats.records / stats.commits)
        largest = max(largest, stats.largest_batch)
    label = f"{threads:>2} thr{', 1 CPU' if pin else ''}: {MODES[mode]}"
    if serialize:
        label += ", receipts serialized"
    spread = f"{min(cpu_rates) / 1e3:.0f}-{max(cpu_rates) / 1e3:.0f}k"
    print(
        f"   {label:<49}{statistics.median(rates):>11,.0f}{statistics.median(cpu_rates):>12,.0f}"
        f"{spread:>11}{statistics.median(fsyncs):>10,.0f}{statistics.median(means):>11,.0f}"
        f"{largest:>8}"
    )
    return {"rate": statistics.median(rates), "cpu_rate": statistics.median(cpu_rates)}


def sync_latency(
    bench: Bench, threads: int, per_thread: int, batch_wait_ms: float, serialize: bool = False
) -> dict[str, float]:
    """p50/p99 of append() per call (with ``serialize``, plus its receipt's document)."""
    events = make_events(per_thread * threads, seed=99)
    records = [derive(ev, h) for ev, h in events]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    freeze_scaffolding()

    def producer(t: int) -> None:
        mine = records[t * per_thread : (t + 1) * per_thread]
        out = latencies[t]
        start.wait()
        for record in mine:
            t0 = time.perf_counter_ns()
            receipt = log.append(record)
            if serialize:
                receipt.to_dict()
            out.append(time.perf_counter_ns() - t0)

    with bench.open(batch_wait_ms=batch_wait_ms) as log:
        workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        wall0 = time.perf_counter()
        for w in workers:
            w.join()
        wall = time.perf_counter() - wall0
        stats = log.stats
    flat = [v for per in latencies for v in per]
    label = f"{threads:>2} thr  wait {batch_wait_ms:>3} ms" + (", serialized" if serialize else "")
    print(
        f"   {label:<32}{statistics.median(flat) / 1e6:>10.3f}"
        f"{pct(flat, 0.99) / 1e6:>10.3f}{len(flat) / wall:>11,.0f}"
        f"{stats.commits / wall:>10,.0f}{stats.records / stats.commits:>11.1f}"
    )
    return {"p50_us": statistics.median(flat) / 1e3, "p99_us": pct(flat, 0.99) / 1e3}


def calibration() -> None:
    """Costs of primitives the ledger uses, to judge how fast this machine is right now.

    SHA-256 alone can look normal while the interpreter runs slow (2026-11-27: sha256 0.82 us
    while derive_record took 6.6 us instead of 4.2), hence an interpreter-heavy line too: the
    standard library's json.dumps, which no change to infertrail moves (until 2026-11-27 03:20
    UTC this line timed infertrail's own canonicalize, which the C encoder then replaced).
    """
    payload = b"x" * 900
    record = derive(*make_event(random.Random(3), 0, 0))
    for name, fn in (
        ("sha256 of 900 bytes", lambda: hashlib.sha256(payload).digest()),
        (
            "Future() + set_running_or_notify_cancel",
            lambda: Future().set_running_or_notify_cancel(),
        ),
        ("json.dumps(sort_keys) of one credit record", lambda: json.dumps(record, sort_keys=True)),
    ):
        best = min(timeit.repeat(fn, number=20_000, repeat=5)) / 20_000
        print(f"   calibration: {name:<42}{best * 1e6:>8.2f} us")


def run(bench: Bench, quick: bool, runs: int) -> None:
    scale = 1 if quick else 5
    calibration()
    request_thread_cost(bench, 20_000 * scale)
    print(
        f"\n2. durable throughput (fsync=True); each thread queues its records, then waits; "
        f"median of {runs} runs"
    )
    print(
        f"   {'producers':<49}{'rec/s':>11}{'rec/CPU-s':>12}{'min-max':>11}{'fsyncs/s':>10}"
        f"{'mean batch':>11}{'max':>8}"
    )
    throughput(bench, 1, 40_000 * scale, "pre", runs, pin=True)
    if has_receipts():
        throughput(bench, 1, 40_000 * scale, "pre", runs, pin=True, serialize=True)
    throughput(bench, 1, 40_000 * scale, "fresh", runs, pin=True)
    for threads in (1, 4, 8):
        for mode in MODES:
            throughput(bench, threads, 40_000 * scale // threads, mode, runs)
    print("\n3. sync append() latency, durable (each call returns after its batch's fdatasync)")
    print(
        f"   {'producers':<32}{'p50 ms':>10}{'p99 ms':>10}{'rec/s':>11}{'fsyncs/s':>10}"
        f"{'mean batch':>11}"
    )
    for threads in (1, 8, 32):
        for wait_ms in (2.0, 0.0):
            sync_latency(bench, threads, 400 * scale // max(1, threads // 4), wait_ms)
    if has_receipts():
        sync_latency(bench, 1, 400 * scale, 0.0, serialize=True)


def worker(scale: int) -> None:
    """One process's share of ``--against``: this tree's numbers as one JSON line on stdout."""
    bench_dir = Path(tempfile.mkdtemp(prefix="audit-append-"))
    sink = open(os.devnull, "w")  # noqa: SIM115 - the tables go nowhere; the JSON line counts
    stdout, sys.stdout = sys.stdout, sink
    try:
        bench = Bench(bench_dir)
        out = {
            "pinned": throughput(bench, 1, 40_000 * scale, "pre", 1, pin=True),
            "unpinned": throughput(bench, 1, 40_000 * scale, "pre", 1),
            "latency": sync_latency(bench, 1, 1000 * scale, 0.0),
        }
        if has_receipts():
            out["pinned_serialized"] = throughput(
                bench, 1, 40_000 * scale, "pre", 1, pin=True, serialize=True
            )
            out["latency_serialized"] = sync_latency(bench, 1, 1000 * scale, 0.0, serialize=True)
    finally:
        sys.stdout = stdout
        sink.close()
        shutil.rmtree(bench_dir, ignore_errors=True)
    print(json.dumps(out))


def against(other_src: Path, pairs: int, quick: bool) -> None:
    """Alternating pairs of worker processes, this tree's and ``other_src``'s: the ratios."""
    here = Path(__file__).resolve()
    command = [sys.executable, str(here), "--worker"] + (["--quick"] if quick else [])
    trees = {"other": {"PYTHONPATH": str(other_src)}, "this": {}}
    results: dict[str, list[dict[str, dict[str, float]]]] = {"other": [], "this": []}
    loads = []
    for pair in range(pairs):
        order = ["other", "this"] if pair % 2 == 0 else ["this", "other"]
        for name in order:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | trees[name]
            run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            results[name].append(json.loads(run.stdout.splitlines()[-1]))
        loads.append(os.getloadavg()[0])
    print(f"\n--against {other_src}: {pairs} alternating pairs of processes, 1 producer")
    print(f"   load average (1 min) after each pair: {', '.join(f'{v:.1f}' for v in loads)}")
    print(f"   {'measure':<52}{'other':>11}{'this':>11}{'ratio':>8}  ratios per pair")
    rows = [
        ("durable append rec/CPU-s, 1 CPU (pinned)", "pinned", "cpu_rate", "pinned"),
        ("durable append rec/s, 1 CPU (pinned)", "pinned", "rate", "pinned"),
        ("durable append rec/CPU-s, 2 CPUs", "unpinned", "cpu_rate", "unpinned"),
        ("durable append rec/s, 2 CPUs", "unpinned", "rate", "unpinned"),
        ("  ... receipts serialized, rec/CPU-s, 1 CPU", "pinned", "cpu_rate", "pinned_serialized"),
        ("sync append() p50 us (1 thread, batch_wait 0)", "latency", "p50_us", "latency"),
        ("sync append() p99 us", "latency", "p99_us", "latency"),
        ("  ... + receipt.to_dict(), p50 us", "latency", "p50_us", "latency_serialized"),
    ]
    for label, base_key, field, this_key in rows:
        if this_key not in results["this"][0]:
            continue
        other = [r[base_key][field] for r in results["other"]]
        this = [r[this_key][field] for r in results["this"]]
        ratios = [t / o for t, o in zip(this, other, strict=True)]
        print(
            f"   {label:<52}{statistics.median(other):>11,.1f}{statistics.median(this):>11,.1f}"
            f"{statistics.median(ratios):>8.3f}  {' '.join(f'{r:.2f}' for r in ratios)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (a few seconds)")
    parser.add_argument("--dir", type=Path, help="where to create the logs (deleted afterwards)")
    parser.add_argument("--runs", type=int, help="throughput runs per row (default 3, quick 1)")
    parser.add_argument(
        "--against", type=Path, metavar="SRC", help="compare with the infertrail in SRC (a src dir)"
    )
    parser.add_argument("--pairs", type=int, default=7, help="process pairs for --against")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(1 if args.quick else 5)
        return
    if args.against is not None:
        print(f"audit_append: python {platform.python_version()}, {platform.machine()}")
        calibration()
        against(args.against, args.pairs, args.quick)
        return
    root = Path(tempfile.mkdtemp(prefix="audit-append-", dir=args.dir))
    print(f"audit_append: python {platform.python_version()}, {platform.machine()}, logs in {root}")
    try:
        run(Bench(root), args.quick, args.runs or (1 if args.quick else 3))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
