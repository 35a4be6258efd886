"""Cost of SLO counting per inference event, and of one evaluation tick.

The SLO sinks (``SLICounter``, and ``ConfidenceWindow`` for the business signals) run on the
Monitor's background worker, so they add nothing to the request thread: what they cost is
worker CPU per event, and that is what this measures (target: <= 2 us per event, counting
only). Events are prebuilt ``InferenceEvent``s with realistic fields and increasing times (a
fresh block of them for every timed block, built outside the timing), fed to the sink in
blocks; each block's thread CPU time per event is one sample (CPU time, because the machines
these run on are shared and wall time would count other processes), and the table gives the
median and p99 over blocks, with the wall-clock median beside them. Configurations: one
latency SLO; the four SLOs of a typical service on one model (latency, availability,
confidence, plus one for every model); eight SLOs; the four with the business signals'
confidence window fed by the counter (as ``attach_slos`` wires it); that window alone as its
own sink. Then the
evaluation tick (every SLO, every window, a full 28-day ring of one-minute buckets) that runs
on the evaluator's timer, off the request path.

    .venv/bin/python bench/slo_overhead.py            # 400 blocks of 2,000 events
    .venv/bin/python bench/slo_overhead.py --quick    # 60 blocks, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infertrail.events import InferenceEvent, ModelInfo
from infertrail.slo.business import ConfidenceReference, ConfidenceWindow
from infertrail.slo.definitions import SLOSet, parse_slos
from infertrail.slo.evaluator import SLOEvaluator
from infertrail.slo.sli import SLICounter

TARGET_US = 2.0
SENTIMENT = ModelInfo("sentiment", "1", "ab" * 32)


def cpu_model() -> str:
    """The CPU model name as ``lscpu`` prints it (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100)."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def slos(n: int) -> SLOSet:
    """``n`` SLOs on the sentiment model (the first four of a typical service, then more)."""
    kinds: list[dict[str, Any]] = [
        {"kind": "latency", "threshold_seconds": 0.25},
        {"kind": "availability", "exclude_error_types": ["invalid_input"]},
        {"kind": "confidence", "threshold": 0.6},
        {"kind": "availability"},
    ]
    bodies = []
    for i in range(n):
        bodies.append(
            {
                "name": f"slo-{i}",
                "service": "bench",
                "model": "*" if i % 4 == 3 else "sentiment",
                "objective": 99,
                "sli": kinds[i % 4] if i < 4 else {"kind": "latency", "threshold_seconds": 0.5},
            }
        )
    return parse_slos({"slos": bodies})


def events(n: int, start_s: float) -> list[InferenceEvent]:
    """``n`` events over ``n / 100`` seconds: 2 % errors, varied durations and confidences."""
    out = []
    for i in range(n):
        error = i % 50 == 0
        duration_ns = 2_000_000 + (i * 7919) % 300_000_000
        out.append(
            InferenceEvent(
                model=SENTIMENT,
                request_id=f"r{i}",
                service="bench",
                team="t",
                endpoint="/v1/sentiment",
                inputs="some text",
                input_size=9,
                start_time_ns=int((start_s + i / 100) * 1e9),
                duration_ns=duration_ns,
                label=None if error else "pos",
                confidence=None if error else 0.5 + (i % 50) / 100,
                status="error" if error else "ok",
                error_type="RuntimeError" if error else None,
            )
        )
    return out


def measure(
    sink: Callable[[InferenceEvent], None], block: int, blocks: int, start_s: float
) -> tuple[list[float], list[float]]:
    """Per block: CPU and wall microseconds per event, over events later than the last block's."""
    cpu, wall = [], []
    for i in range(blocks):
        evs = events(block, start_s + i * block / 100)
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for ev in evs:
            sink(ev)
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        cpu.append((c1 - c0) / block / 1000)
        wall.append((w1 - w0) / block / 1000)
    return cpu, wall


HEADER = (
    "| configuration                              | CPU med. |  CPU p99 | wall med | unit     |\n"
    "|--------------------------------------------|---------:|---------:|---------:|----------|"
)


def row(name: str, samples: list[float], wall: list[float] | None, unit: str = "us/event") -> str:
    """One table row: median and p99 of ``samples``, and the wall-clock median if given."""
    med, p99 = statistics.median(samples), percentile(samples, 99)
    w = f"{statistics.median(wall):8.3f}" if wall else " " * 8
    return f"| {name:<42} | {med:8.3f} | {p99:8.3f} | {w} | {unit:<8} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="60 blocks instead of 400")
    parser.add_argument("--block", type=int, default=2000, help="events per block")
    args = parser.parse_args()
    blocks = 60 if args.quick else 400
    now = time.time()
    start = now - blocks * args.block / 100 - 60

    print(f"# SLO counting cost  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")
    print(f"CPU: {cpu_model()}; Python {platform.python_version()}; load {os.getloadavg()[0]:.2f}")
    print(f"{blocks} blocks of {args.block} events; target <= {TARGET_US} us/event\n")
    print(HEADER)
    baseline, wall = measure(lambda ev: None, args.block, blocks, start)
    print(row("empty sink (loop and call overhead)", baseline, wall))
    results = {}
    for n in (1, 4, 8):
        counter = SLICounter(slos(n).slos)
        results[n], wall = measure(counter, args.block, blocks, start)
        print(row(f"SLICounter, {n} SLO{'s' if n > 1 else ''}", results[n], wall))
    reference = {"sentiment": ConfidenceReference.from_confidences([0.9] * 100)}
    counter = SLICounter(slos(4).slos, confidence=ConfidenceWindow(reference))
    both, wall = measure(counter, args.block, blocks, start)
    print(row("SLICounter, 4 SLOs + business confidence", both, wall))
    conf, wall = measure(ConfidenceWindow(reference), args.block, blocks, start)
    print(row("ConfidenceWindow alone, as its own sink", conf, wall))

    # One evaluation tick over full 28-day rings (every bucket holds events).
    ticks = []
    for n in (4, 8):
        counter = SLICounter(slos(n).slos)
        minute0 = int(now // 60) - 28 * 1440
        for s in counter.slos:
            counter.restore(s.name, [(minute0 + m, 99, 100) for m in range(28 * 1440)])
        evaluator = SLOEvaluator(counter)
        samples = []
        for _ in range(10 if args.quick else 50):
            t0 = time.perf_counter_ns()
            evaluator.evaluate(now)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
        ticks.append((n, samples))
    for n, samples in ticks:
        print(row(f"evaluation tick, {n} SLOs, full 28d rings", samples, None, "ms/tick"))

    typical = statistics.median(both) - statistics.median(baseline)
    verdict = "meets" if typical <= TARGET_US else "MISSES"
    print(
        f"\n4 SLOs and business signals: {typical:.3f} us of CPU per event above the empty "
        f"sink ({verdict} the "
        f"{TARGET_US} us target); on the Monitor's worker thread, not the request thread. "
        "Evaluation ticks use wall time."
    )


if __name__ == "__main__":
    main()
