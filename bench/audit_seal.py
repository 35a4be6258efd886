"""Sealing throughput: committed audit records moved from the WAL into the Parquet lake.

Run: .venv/bin/python bench/audit_seal.py [--quick] [--out DIR]
Builds once (cached under bench/out/) an unsealed log of --records real-schema records
(derive_record on synthetic credit-scoring events, all within one hour), then seals the whole log
into a fresh lake --runs times. Retiring WAL segments is switched off (a file unlink, not the cost
being measured) so that every run seals the same records. Reports records/s (wall and per
CPU-second) and the time to seal one file of --rows-per-file rows (median and p99 over files).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_append import derive, make_event
from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog

ORIGIN = "bench.infertrail/audit-seal"
START_NS = 1_795_651_200_000_000_000  # 2026-11-26T00:00:00Z


class KeepWal:
    """An AuditLog whose retire_through does nothing, so the same records can be sealed again."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self.origin = log.origin
        self.limit = 0  # records visible to the sealer: grown one file at a time

    @property
    def size(self) -> int:
        return min(self._log.size, self.limit)

    def read(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        return self._log.read(start, end)

    def root(self, tree_size: int | None = None) -> bytes:
        return self._log.root(tree_size)

    def retire_through(self, seq: int) -> None:
        return None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_log(root: Path, n: int) -> NoteSigner:
    key_file = root / "signer.key"
    if (root / "done").exists():
        return NoteSigner.from_key(key_file.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    skey, _ = NoteSigner.generate(ORIGIN)
    key_file.write_text(skey)
    signer = NoteSigner.from_key(skey)
    rng = random.Random(11)
    print(f"building an unsealed log of {n:,} records in {root} (once) ...", flush=True)
    with AuditLog.open(root / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        pending = []
        for i in range(n):
            ev, hmac_hex = make_event(rng, i, START_NS)
            ev.start_time_ns = START_NS + i * 1_000_000  # 1 ms apart: one hour holds 3.6M
            pending.append(log.append_async(derive(ev, hmac_hex)))
            if len(pending) >= 50_000:
                for future in pending:
                    future.result()
                pending.clear()
    (root / "done").write_text("ok")
    return signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k records, 1 run")
    parser.add_argument("--records", type=int)
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    n = args.records or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    root = args.out / f"audit-seal-{n}"
    signer = build_log(root, n)

    rates, cpu_rates, per_file = [], [], []
    with AuditLog.open(root / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        for run in range(runs):
            lake = root / f"lake-{run}"
            shutil.rmtree(lake, ignore_errors=True)
            view = KeepWal(log)
            sealer = Sealer(view, str(lake), signer, max_rows_per_file=args.rows_per_file)  # type: ignore[arg-type]
            t0, c0 = time.perf_counter(), cpu_seconds()
            sealed = 0
            while view.limit < n:
                view.limit = min(n, view.limit + args.rows_per_file)
                f0 = time.perf_counter()
                sealed += sum(f.manifest.count for f in sealer.seal())
                per_file.append((time.perf_counter() - f0) * 1000)
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            assert sealed == n
            rates.append(n / elapsed)
            cpu_rates.append(n / cpu)
            size = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
            shutil.rmtree(lake)

    cpu_info = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu_info.splitlines() if "Model name" in line),
        "?",
    )
    print(
        f"\n{platform.python_version()} on {model}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}; {n:,} records, {args.rows_per_file:,} rows per file, "
        f"{runs} run(s), {size / n:.0f} bytes per record on disk (zstd)"
    )
    print(
        f"{'seal records/s (wall)':<34} median {statistics.median(rates):>10,.0f}"
        f"  min {min(rates):,.0f}"
    )
    print(f"{'seal records per CPU-second':<34} median {statistics.median(cpu_rates):>10,.0f}")
    print(
        f"{'time per file (ms)':<34} median {statistics.median(per_file):>10,.1f}"
        f"  p99 {pct(per_file, 0.99):,.1f}"
    )


if __name__ == "__main__":
    main()
