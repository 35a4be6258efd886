"""Outcome ingestion and join throughput: outcomes accepted and joined per second (>= 20,000).

Run: .venv/bin/python bench/outcomes_ingest.py [--quick] [--batch 1000] [--rounds 5]

Set-up (not timed): a fresh outcomes database in a temporary directory with N indexed credit
predictions (request id, score, label, latency), and N outcomes as JSON request bodies of
--batch outcomes each, as a client would POST them.

Timed, per batch, exactly what ``POST /v1/outcomes`` does after reading the body:
``orjson.loads`` + ``OutcomeService.ingest`` = whole-batch validation (pydantic), normal form,
lookup of every request id's prediction and of stored outcomes, conflict/repeat checks, insert
in one SQLite transaction (WAL, synchronous=NORMAL), and the join listener (the performance
windows, which measure every window of 200 joined outcomes with scikit-learn). Variants:

  1. store + join, no audit log;
  2. store + join + audit: one ``outcome`` record per accepted outcome in a real AuditLog with
     fsync on, waited for until durable before the transaction commits (the service default);
  3. the same batches again (all repeats): the idempotent no-op path;
  4. HTTP: the same as 2 through the FastAPI router, driven in-process by Starlette's TestClient
     (its portal thread adds its own overhead; a real server is not measured here).

Then the report join: ``performance_report`` over all N joined outcomes (SQL join, grouping,
metrics, KPI bands), as outcomes joined per second.

Each variant runs --rounds times on a fresh database; the table shows the median over rounds of
outcomes/s (wall clock) and of per-batch latency (median and p99 by nearest rank).
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from infertrail.audit.checkpoint import NoteSigner
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import DEFAULT_RETENTION
from infertrail.outcomes.ingest import OutcomeAudit, OutcomeService
from infertrail.outcomes.join import OutcomeSpec, performance_report
from infertrail.outcomes.performance import PerformanceWindows
from infertrail.outcomes.store import OutcomeStore, Prediction
from machine import cpu_model

ORIGIN = "bench.infertrail/outcomes"
T0 = 1_772_359_200 * 1_000_000_000


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)]


def make_data(n: int, batch: int) -> tuple[list[Prediction], list[bytes]]:
    predictions = []
    outcomes = []
    for i in range(n):
        score = (i * 7919 % 1000) / 1000
        rid = f"0195f3c4-{i:04x}-7000-8000-{i:012x}"
        predictions.append(
            Prediction(
                rid,
                T0 + i * 1_000_000,
                "credit",
                "1.0.0",
                None,
                score,
                None,
                "approve" if score >= 0.5 else "decline",
                1.0 + (i % 50) / 10,
                "risk",
                "/v1/credit/score",
            )
        )
        good = (i * 104729 % 1000) / 1000 < score  # calibrated truth
        outcomes.append({"request_id": rid, "outcome": int(good)})
    bodies = [orjson.dumps(outcomes[i : i + batch]) for i in range(0, n, batch)]
    return predictions, bodies


class Rig:
    """A fresh database (and audit log) with the predictions indexed."""

    def __init__(self, root: Path, predictions: list[Prediction], audit: bool) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.store = OutcomeStore(root / "outcomes.db")
        self.store.add_predictions(predictions)
        self.log = None
        outcome_audit = None
        if audit:
            skey, _ = NoteSigner.generate(ORIGIN)
            self.log = AuditLog.open(root / "log", signer=NoteSigner.from_key(skey), origin=ORIGIN)
            outcome_audit = OutcomeAudit(self.log, DEFAULT_RETENTION, "infertrail/bench")
        self.service = OutcomeService(self.store, audit=outcome_audit, batch_max=100_000)
        windows = PerformanceWindows(lambda m: OutcomeSpec("1"), size=200)
        self.service.add_listener(windows)

    def close(self) -> None:
        self.store.close()
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.root)


def timed(bodies: list[bytes], ingest: Callable[[bytes], Any]) -> tuple[float, list[float]]:
    gc.collect()
    latencies = []
    t0 = time.perf_counter()
    for body in bodies:
        s = time.perf_counter()
        ingest(body)
        latencies.append(time.perf_counter() - s)
    return time.perf_counter() - t0, latencies


def run_variant(
    name: str,
    tmp: Path,
    rounds: int,
    predictions: list[Prediction],
    bodies: list[bytes],
    n: int,
    *,
    audit: bool,
    repeat: bool = False,
    http: bool = False,
) -> tuple[str, float, float, float]:
    rates, medians, p99s = [], [], []
    for r in range(rounds):
        rig = Rig(tmp / f"{name}-{r}", predictions, audit)
        try:
            ingest = http_ingest(rig) if http else direct_ingest(rig)
            if repeat:
                timed(bodies, ingest)  # first pass stores them; the timed pass repeats them
            wall, lat = timed(bodies, ingest)
            expected = n
            counts = rig.store.counts()["outcomes"]
            assert counts == expected, (counts, expected)
        finally:
            rig.close()
        rates.append(n / wall)
        medians.append(statistics.median(lat))
        p99s.append(p99(lat))
    return name, statistics.median(rates), statistics.median(medians), statistics.median(p99s)


def direct_ingest(rig: Rig) -> Callable[[bytes], Any]:
    def ingest(body: bytes) -> Any:
        return rig.service.ingest(orjson.loads(body))

    return ingest


def http_ingest(rig: Rig) -> Callable[[bytes], Any]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from infertrail.outcomes.api import outcomes_router

    app = FastAPI()
    app.include_router(outcomes_router(rig.service, lambda m: OutcomeSpec("1")))
    client = TestClient(app)

    def ingest(body: bytes) -> Any:
        r = client.post("/v1/outcomes", content=body, headers={"content-type": "application/json"})
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
        return r.json()

    return ingest


def join_rate(
    tmp: Path, predictions: list[Prediction], bodies: list[bytes], n: int, rounds: int
) -> float:
    rig = Rig(tmp / "join", predictions, audit=False)
    try:
        for body in bodies:
            rig.service.ingest(orjson.loads(body))
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            report = performance_report(rig.store, lambda m: OutcomeSpec("1"))
            wall = time.perf_counter() - t0
            assert report.groups[0].performance.n == n
            rates.append(n / wall)
        return statistics.median(rates)
    finally:
        rig.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 outcomes, 2 rounds")
    ap.add_argument("-n", type=int, default=100_000, help="outcomes per round")
    ap.add_argument("--batch", type=int, default=1000, help="outcomes per request")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n, rounds = (20_000, 2) if args.quick else (args.n, args.rounds)
    print(f"# outcomes_ingest  {datetime.now(UTC):%Y-%m-%d %H:%M}Z  CPU: {cpu_model()}")
    print(
        f"# python {platform.python_version()}, n={n} outcomes per round, batch={args.batch}, "
        f"rounds={rounds}, load average {' '.join(f'{x:.2f}' for x in _load())}"
    )
    predictions, bodies = make_data(n, args.batch)
    with tempfile.TemporaryDirectory(prefix="infertrail-bench-") as d:
        tmp = Path(d)
        rows = [
            run_variant("store + join", tmp, rounds, predictions, bodies, n, audit=False),
            run_variant(
                "store + join + audit (fsync)", tmp, rounds, predictions, bodies, n, audit=True
            ),
            run_variant(
                "repeats (no-op) + audit",
                tmp,
                rounds,
                predictions,
                bodies,
                n,
                audit=True,
                repeat=True,
            ),
            run_variant(
                "HTTP (TestClient, in-process) + audit",
                tmp,
                rounds,
                predictions,
                bodies,
                n,
                audit=True,
                http=True,
            ),
        ]
        join = join_rate(tmp, predictions, bodies, n, rounds)
    print()
    print("| variant | outcomes/s | batch median ms | batch p99 ms |")
    print("|---|---:|---:|---:|")
    for name, rate, med, tail in rows:
        print(f"| {name} | {rate:,.0f} | {med * 1000:.1f} | {tail * 1000:.1f} |")
    print(f"| report join (performance_report over {n:,}) | {join:,.0f} | | |")
    print(f"\n# load average at end {' '.join(f'{x:.2f}' for x in _load())}; target >= 20,000/s")


def _load() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    main()
