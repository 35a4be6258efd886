"""Audit verification throughput (1 and 2 worker processes) and inclusion-proof generation time.

Run: .venv/bin/python bench/audit_verify.py [--quick] [--out DIR]
1. Builds once (cached under bench/out/, per log format) a log of --records real-schema records
   (derive_record on synthetic credit-scoring events, one every 10 ms of event time so files split
   by hour too), sealed into four Parquet files, with the last 5% left in the WAL.
2. verify_log over the whole log: the first (cold) run in this process, then records/s (wall),
   median and min/max of --runs runs, for 1 and 2 workers, and for 1 worker records per
   CPU-second (robust to a busy machine); also ``deep=True`` (typed columns of every file
   re-derived, as for files whose bytes changed).
3. Inclusion proofs at --proof-leaves leaves from a HashStore filled directly with random leaf
   hashes (cached): median and p99 of 1,000 proofs for random seqs; and make_evidence end to end
   on the verify log (record read from the WAL or a lake file + proof + self-check), for sealed
   and unsealed records apart.
Also the hashing floor: leaf and node hashes alone over the same kind of records in memory, the
rate no verifier of these records can beat with hashlib.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_append import derive, make_event
from infertrail.audit import merkle
from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.hashstore import HashStore
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.proofs import make_evidence
from infertrail.audit.subtrees import RangeTree, leaf_hashes
from infertrail.audit.verify import verify_log

ORIGIN = "bench.infertrail/audit-verify"
START_NS = 1_795_651_200_000_000_000  # 2026-11-26T00:00:00Z


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the verify workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


LOG_FORMAT = "v3"  # bump when the sealer's or the WAL's layout changes: the cache is rebuilt


def build_log(root: Path, n: int) -> NoteVerifier:
    """The cached bench log of ``n`` records; returns its verifier."""
    key_file = root / "signer.key"
    if (root / "done").exists():
        return NoteVerifier.from_key(NoteSigner.from_key(key_file.read_text()).verifier_key)
    root.mkdir(parents=True, exist_ok=True)
    skey, vkey = NoteSigner.generate(ORIGIN)
    key_file.write_text(skey)
    signer = NoteSigner.from_key(skey)
    rng = random.Random(7)
    print(f"building a log of {n:,} records in {root} (once) ...", flush=True)
    t0 = time.perf_counter()
    sealed_upto = n - n // 20
    with AuditLog.open(root / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        pending = []
        for i in range(n):
            if i == sealed_upto:
                log.flush()
                Sealer(log, str(root / "lake"), signer, max_rows_per_file=sealed_upto // 4).seal()
            ev, hmac_hex = make_event(rng, i, START_NS)
            ev.start_time_ns = START_NS + i * 10_000_000
            pending.append(log.append_async(derive(ev, hmac_hex)))
            if len(pending) >= 50_000:
                for future in pending:
                    future.result()
                pending.clear()
    (root / "done").write_text("ok")
    print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    return NoteVerifier.from_key(vkey)


def build_hash_store(tree_dir: Path, n: int) -> HashStore:
    store = HashStore(tree_dir)
    if store.size < n:
        print(f"filling a hash store with {n:,} random leaves (once) ...", flush=True)
        while store.size < n:
            count = min(1 << 16, n - store.size)
            data = os.urandom(32 * count)
            store.append([data[i : i + 32] for i in range(0, len(data), 32)])
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k records, 1M proof leaves")
    parser.add_argument("--records", type=int)
    parser.add_argument("--proof-leaves", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    n = args.records or (100_000 if args.quick else 1_000_000)
    leaves = args.proof_leaves or (1_000_000 if args.quick else 10_000_000)
    runs = args.runs or (1 if args.quick else 3)

    root = args.out / f"audit-verify-{LOG_FORMAT}-{n}"
    verifier = build_log(root, n)
    rows = []
    rows_seen: list[str] = []

    def verify(**options: object) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), cpu_seconds()
        report = verify_log(root / "log", str(root / "lake"), verifier, **options)  # type: ignore[arg-type]
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert report.ok and report.records == n, report.finding
        rows_seen.append(f"{report.files} files + {report.segments} WAL segments")
        return n / elapsed, n / cpu

    cold, cold_cpu = verify()
    rows.append(
        (f"verify_log, 1 worker, first run in a fresh process ({rows_seen[-1]})",
         f"{cold:,.0f} rec/s", f"{cold_cpu:,.0f} rec per CPU-second")
    )  # fmt: skip
    for label, options in (
        ("1 worker", {"workers": 1}),
        ("2 workers", {"workers": 2}),
        ("1 worker, deep (typed columns re-derived)", {"workers": 1, "deep": True}),
    ):
        rates, cpu_rates = [], []
        for _ in range(runs):
            rate, cpu_rate = verify(**options)
            rates.append(rate)
            cpu_rates.append(cpu_rate)
        # Workers are children of the forkserver, not of this process: their CPU is not seen.
        per_cpu = (
            f"; {statistics.median(cpu_rates):,.0f} rec per CPU-second"
            if options["workers"] == 1
            else ""
        )
        rows.append(
            (f"verify_log, {label}", f"{statistics.median(rates):,.0f} rec/s",
             f"min {min(rates):,.0f} / max {max(rates):,.0f}{per_cpu}")
        )  # fmt: skip

    # What hashing alone costs for these records: leaf hashes plus every tree node, as verify
    # computes them, on canonical bytes already in memory (no reading, decoding or checking).
    rng = random.Random(7)
    sample = [
        canonicalize({**derive(*make_event(rng, i, START_NS)), "seq": i})
        for i in range(min(n, 200_000))
    ]
    floors = []
    for _ in range(max(3, runs)):
        c0 = time.process_time()
        RangeTree(0, leaf_hashes(sample))
        floors.append(len(sample) / (time.process_time() - c0))
    mean_size = sum(map(len, sample)) / len(sample)
    rows.append(
        (f"hashing floor: leaf + node hashes only, {mean_size:,.0f}-byte records",
         f"{statistics.median(floors):,.0f} rec/s", "per CPU-second; verify can only be slower")
    )  # fmt: skip

    store = build_hash_store(args.out / f"hashstore-{leaves}", leaves)
    rng = random.Random(1)
    times = []
    for _ in range(1000):
        seq = rng.randrange(leaves)
        t0 = time.perf_counter()
        merkle.inclusion_proof_by(store.subtree_root, seq, leaves)
        times.append((time.perf_counter() - t0) * 1000)
    store.close()
    rows.append(
        (f"inclusion proof at {leaves:,} leaves (HashStore)",
         f"median {statistics.median(times):.3f} ms", f"p99 {pct(times, 0.99):.3f} ms")
    )  # fmt: skip
    sealed = n - n // 20
    for label, low, high in (("sealed (lake)", 0, sealed), ("unsealed (WAL)", sealed, n)):
        times = []
        for _ in range(100):
            seq = rng.randrange(low, high)
            t0 = time.perf_counter()
            make_evidence(root / "log", str(root / "lake"), seq)
            times.append((time.perf_counter() - t0) * 1000)
        rows.append(
            (f"make_evidence end to end, {label} record, {n:,}-record log",
             f"median {statistics.median(times):.2f} ms", f"p99 {pct(times, 0.99):.2f} ms")
        )  # fmt: skip

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?"
    )
    print(
        f"\n{platform.python_version()} on {model}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    width = max(len(r[0]) for r in rows)
    for name, median, spread in rows:
        print(f"{name:<{width}}  {median:>22}  {spread}")


if __name__ == "__main__":
    main()
