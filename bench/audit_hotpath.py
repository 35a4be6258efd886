"""Per-record cost of the audit hot path: derive_record, canonicalize, enqueue, and their sum.

Run: .venv/bin/python bench/audit_hotpath.py [--quick] [--records N]
Prints medians and p99 per stage over N distinct records of the real schema (timed one record
at a time with perf_counter_ns, so each figure includes ~timer-overhead ns, printed too), then
canonicalize against the encoder used without the C module (orjson), rfc8785.dumps and
json.dumps(sort_keys=True) on the same records.
What a request thread does per record: derive_record, canonical_parts (the record encoded around
its seq) and the enqueue (numbering under the queue lock, its future); the leaf hash is the
writer thread's. The enqueue is timed on a bare CommitQueue (no writer thread competing for the
GIL); bench/audit_append.py times append_async with the writer running.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import rfc8785

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_append import derive, make_events  # the same synthetic credit-scoring records
from infertrail.audit import canonical
from infertrail.audit.canonical import canonical_parts, canonicalize
from infertrail.audit.commitqueue import CommitQueue


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def time_each(fn: Callable[[Any], Any], items: list[Any]) -> list[int]:
    """Nanoseconds of ``fn(item)`` for each item, timed one call at a time."""
    clock = time.perf_counter_ns
    out = []
    for item in items:
        t0 = clock()
        fn(item)
        out.append(clock() - t0)
    return out


def summary(ns: list[int]) -> tuple[float, float]:
    """(median, p99) in microseconds."""
    ordered = sorted(ns)
    return statistics.median(ordered) / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 records: a smoke run")
    parser.add_argument("--records", type=int, default=20_000, help="records per stage")
    args = parser.parse_args()
    n = 2_000 if args.quick else max(args.records, 1)

    events = make_events(n, seed=1)
    seqs = list(range(n))
    unnumbered = [derive(ev, h) for ev, h in events]

    def parts_of(i: int) -> tuple[dict[str, Any], str]:
        return unnumbered[i], "seq"

    def full(i: int) -> bytes:
        ev, h = events[i]
        record = derive(ev, h)
        record["seq"] = i
        return leaf_hash(canonicalize(record))

    # Warm up caches (timestamp prefix, entropy buffer, retention dates) and the allocator.
    for i in range(min(n, 500)):
        full(i)
    records = [derive(ev, h) | {"seq": i} for i, (ev, h) in enumerate(events)]
    payloads = [canonicalize(r) for r in records]
    assert all(p == rfc8785.dumps(r) for p, r in zip(payloads[:200], records, strict=False))

    queue = CommitQueue(Path(tempfile.gettempdir()), 0, batch_max=n, batch_wait=0, queue_max=n)
    parts = [canonical_parts(derive(ev, h), "seq") for ev, h in events]

    def enqueue(i: int) -> None:
        if i % 1000 == 999:  # keep memory reused, as a writer draining the queue does
            queue.take(lambda: None)
        queue.put(*parts[i], None)

    def request_thread(i: int) -> None:
        ev, h = events[i]
        queue.put(*canonical_parts(derive(ev, h), "seq"), None)
        if i % 1000 == 999:
            queue.take(lambda: None)

    gc.collect()
    overhead = summary(time_each(lambda _: None, list(seqs)))[0]
    rows = [
        ("derive_record", time_each(lambda i: derive(*events[i]), list(seqs))),
        ("canonicalize", time_each(canonicalize, records)),
        ("canonical_parts (around seq)", time_each(lambda i: canonical_parts(*parts_of(i)), seqs)),
        ("enqueue (CommitQueue.put)", time_each(enqueue, list(seqs))),
        ("leaf hash (writer thread)", time_each(leaf_hash, payloads)),
        ("request thread: derive+parts+put", time_each(request_thread, list(seqs))),
        ("old path w/o its enqueue+Future", time_each(full, list(seqs))),
    ]
    # The same two calls through the encoder an install without a C compiler uses (orjson after
    # a Python type pass), for the C encoder's gain measured in this run.
    saved, canonical._native = canonical._native, None
    try:
        parts_no_c = time_each(lambda i: canonical_parts(*parts_of(i)), seqs)
        without_c = [
            ("canonicalize, no C encoder", time_each(canonicalize, records)),
            ("canonical_parts, no C encoder", parts_no_c),
        ]
    finally:
        canonical._native = saved
    compare = [
        ("canonicalize (infertrail)", time_each(canonicalize, records)),
        *without_c,
        ("rfc8785.dumps", time_each(rfc8785.dumps, records)),
        (
            "json.dumps(sort_keys=True)",
            time_each(lambda r: json.dumps(r, sort_keys=True).encode(), records),
        ),
    ]

    print(f"audit hot path, {n} records of {len(records[0])} fields, {len(payloads[0])} B each")
    print(f"cpu: {cpu_model()}; python {platform.python_version()}; orjson {orjson.__version__}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"timer overhead per call (included below): {overhead:.3f} us")
    print()
    print(f"{'stage':30} {'median us':>10} {'p99 us':>10}")
    for name, ns in rows:
        med, p99 = summary(ns)
        print(f"{name:30} {med:10.2f} {p99:10.2f}")
    print()
    base = summary(compare[0][1])[0]
    print(f"{'encoder':30} {'median us':>10} {'p99 us':>10} {'x ours':>8}")
    for name, ns in compare:
        med, p99 = summary(ns)
        print(f"{name:30} {med:10.2f} {p99:10.2f} {med / base:8.2f}")


if __name__ == "__main__":
    main()
