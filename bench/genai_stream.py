"""Request-thread cost of recording a streamed generation (GenAI.stream), per token and per call.

A consumer reads a 100-chunk in-memory stream (strings, no I/O) three ways, in alternating
rounds so that a slow spell of the shared machine hits all three alike:

- bare: the stream iterated as it is;
- empty call: ``GenAI.begin`` + ``GenAI.stream`` over no chunk (begin, end: the span ended,
  the event handed to the request-thread sinks and queued), the per-call cost;
- the same inside an HTTP request (its request id given, as infertrail's middleware does:
  outside one, each call draws a new UUIDv7, os.urandom included);
- recorded: ``GenAI.begin`` + ``GenAI.stream`` over the 100 chunks.

Per token = (recorded - empty call - bare) / 100; per call = empty call. Each sample is a block
of calls timed together (request-thread CPU time, as the machines here are shared; the wall
median beside it); the table gives medians over rounds. Telemetry has no exporter (no files,
no OTLP): the export runs on other threads and is not what this measures. Targets: <= 2 us per
token, <= 40 us per call.

    .venv/bin/python bench/genai_stream.py            # 300 rounds of 50 calls
    .venv/bin/python bench/genai_stream.py --quick    # 40 rounds, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from infertrail.config import Settings
from infertrail.genai import GenAI
from infertrail.monitor import Monitor
from machine import cpu_model

TOKENS = 100
TARGET_TOKEN_US = 2.0
TARGET_CALL_US = 40.0
MESSAGES = [{"role": "user", "content": "Write a short review of a phone."}]
CHUNKS = [f"tok{i} " for i in range(TOKENS)]


def _text(chunk: str) -> str:
    return chunk


def timed(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """CPU and wall microseconds per call of ``fn`` over ``calls`` calls."""
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(calls):
        fn()
    c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
    return (c1 - c0) / calls / 1000, (w1 - w0) / calls / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 rounds: a smoke run")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--calls", type=int, default=50, help="calls timed together per sample")
    args = ap.parse_args()
    rounds = 40 if args.quick else args.rounds

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            telemetry_files=False,
            metric_export_interval_ms=3_600_000,
            set_global_providers=False,
        )
        monitor = Monitor(settings, queue_max=1_000_000)
        genai = GenAI(monitor, provider="openai", server_address="llm.internal")

        def bare() -> None:
            for _ in iter(CHUNKS):
                pass

        def empty_call() -> None:
            call = genai.begin("gpt-4o-mini", MESSAGES, stream=True)
            for _ in genai.stream(call, iter(()), _text):
                pass

        def in_request() -> None:
            call = genai.begin("gpt-4o-mini", MESSAGES, stream=True, request_id="r-1")
            for _ in genai.stream(call, iter(()), _text):
                pass

        def recorded() -> None:
            call = genai.begin("gpt-4o-mini", MESSAGES, stream=True)
            for _ in genai.stream(call, iter(CHUNKS), _text):
                pass

        for fn in (bare, empty_call, in_request, recorded):  # warm-up
            timed(fn, args.calls)
        samples: dict[str, list[tuple[float, float]]] = {
            "bare": [],
            "empty": [],
            "request": [],
            "rec": [],
        }
        for _ in range(rounds):
            samples["bare"].append(timed(bare, args.calls))
            samples["empty"].append(timed(empty_call, args.calls))
            samples["request"].append(timed(in_request, args.calls))
            samples["rec"].append(timed(recorded, args.calls))
            monitor.flush_events(30)  # the worker drains between rounds, not during them
        monitor.shutdown()

    def med(name: str, i: int) -> float:
        return statistics.median(s[i] for s in samples[name])

    # per-round differences, then their median: robust to a slow round
    per_token = [
        (r[0] - e[0] - b[0]) / TOKENS
        for b, e, r in zip(samples["bare"], samples["empty"], samples["rec"], strict=True)
    ]
    per_token_wall = [
        (r[1] - e[1] - b[1]) / TOKENS
        for b, e, r in zip(samples["bare"], samples["empty"], samples["rec"], strict=True)
    ]
    tok, call = statistics.median(per_token), med("empty", 0)
    print(f"# GenAI.stream, {TOKENS}-token in-memory stream; {cpu_model()}; {dt.date.today()}")
    print(f"# {rounds} alternating rounds of {args.calls} calls; medians (request thread)")
    print("| measure                                  |   CPU us |  wall us | target  |")
    print("|------------------------------------------|---------:|---------:|---------|")

    def row(name: str, cpu: float, wall: float, target: str = "") -> None:
        print(f"| {name:<40} | {cpu:8.3f} | {wall:8.3f} | {target:<7} |")

    row(f"bare iteration, {TOKENS} chunks", med("bare", 0), med("bare", 1))
    row(f"recorded stream, {TOKENS} chunks", med("rec", 0), med("rec", 1))
    row("per call (begin + end, no chunk)", call, med("empty", 1), f"<= {TARGET_CALL_US:g}")
    row("per call, request id given", med("request", 0), med("request", 1), "")
    wall_tok = statistics.median(per_token_wall)
    row(f"per token ((recorded-call-bare) / {TOKENS})", tok, wall_tok, f"<= {TARGET_TOKEN_US:g}")
    ratio = (med("rec", 0) / med("bare", 0), med("rec", 1) / med("bare", 1))
    row("ratio recorded / bare", *ratio)
    ok = tok <= TARGET_TOKEN_US and call <= TARGET_CALL_US
    print(f"targets {'met' if ok else 'MISSED'}: {tok:.3f} us/token, {call:.2f} us/call")


if __name__ == "__main__":
    main()
