"""Console pages on a 10M-record lake: GET /ui/overview and the request explorer's lookups.

Run: .venv/bin/python bench/console_pages.py [--records N] [--days D] [--runs R] [--out DIR]
                                             [--quick]

Builds once (cached under bench/out/console-<N>-<D>d/, rebuilt when older than a day, since
the pages ask for "the last 24 hours") the data directory of a service whose audit log holds N
SYNTHETIC inference records spread evenly over the D days before the build (default 10M over
30 days: ~333k a day, ~2.3M in the last 7 days): three models, two versions each, 1 % errors,
latency 0.5-20 ms, a confidence on 90 % of them, UUIDv7 request ids made from their times.
Each record is a real-schema record (``derive_record`` of an ``InferenceEvent``), appended to
the REAL AuditLog (fsync off while building) and sealed into the lake by the REAL Sealer every
1M records (hour files, signed manifests), so the lake is what a service writes; only the
records are made up. Compaction is off (``audit_compact=false``): the pages read hour files.

Then a service is started on that data directory in-process (``instrument(app, console=True)``,
the ASGI app driven by Starlette's TestClient), a user logs in, and the bench times:

  1. GET /ui/overview (HTML) for range=1h, 24h, 7d: the aggregates over the lake and the unsealed
     tail, the charts, SLOs, cost, alerts, rendered;
  2. the request explorer's data functions (console/explorer_data.py): ``find_inference`` of a
     request id (its UUIDv7 time bounds the window) and ``similar_requests`` in that record's
     window (decision "approve", confidence 0.8 +- 0.05), called directly on the service's
     engine;
  3. GET /ui/explorer?request_id=... (auditor: the record, its proof checked in the page,
     similar requests; every view writes its access record).

Median and p90 of R requests each, after 3 warm-up requests; target: median <= 300 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import re
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from starlette.testclient import TestClient

from infertrail.audit.keys import open_signer
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import DEFAULT_RETENTION, derive_record
from infertrail.config import Settings
from infertrail.console.explorer_data import (
    Located,
    find_inference,
    request_window,
    similar_requests,
)
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.runtime.asgi import instrument

SEAL_EVERY = 1_000_000
MODELS = [
    ModelInfo(name, version, hashlib.sha256(f"{name}-{version}".encode()).hexdigest())
    for name in ("credit", "fraud", "churn")
    for version in ("1.0", "1.1")
]
DECISIONS = ("approve", "refer", "decline")


def uuid7(ms: int, rng: random.Random) -> str:
    """A UUIDv7 of the instant ``ms`` (as ``events.new_request_id`` makes them)."""
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62
    return str(uuid.UUID(int=value | rng.getrandbits(62)))


def make_record(rng: random.Random, start_ns: int, service: str) -> dict[str, object]:
    """One synthetic inference record at ``start_ns``."""
    model = MODELS[rng.randrange(len(MODELS))]
    score = rng.random()
    ev = InferenceEvent(
        model=model,
        request_id=uuid7(start_ns // 1_000_000, rng),
        service=service,
        team="risk",
        endpoint=f"/v1/{model.name}",
        inputs=None,
        input_size=20,
        subject="unused",
        start_time_ns=start_ns,
        duration_ns=rng.randint(500_000, 20_000_000),
        decision=DECISIONS[min(2, int(score * 3))],
        score=score,
        confidence=0.5 + abs(score - 0.5) if rng.random() < 0.9 else None,
        trace_id=rng.getrandbits(128) | 1,
        span_id=rng.getrandbits(64) | 1,
    )
    if rng.random() < 0.01:
        ev.status = "error"
        ev.error_type = "ValueError"
    return derive_record(
        ev,
        input_hmac=f"{rng.getrandbits(256):064x}",
        input_hmac_key_id="hk-bench",
        subject_pseudonym=f"p-{rng.randrange(10_000):08d}",
        retention=DEFAULT_RETENTION,
        producer="infertrail/bench",
    )


def settings_for(root: Path) -> Settings:
    return Settings(
        data_dir=root / "data",
        service_name="console-bench",
        set_global_providers=False,
        telemetry_files=False,
        audit_compact=False,
    )


def build(root: Path, n: int, days: int) -> list[str]:
    """Build (once a day) the data directory; returns request ids of records in the last day."""
    done = root / "done"
    if done.exists() and time.time() - done.stat().st_mtime < 86_400:
        return done.read_text().split()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    settings = settings_for(root)
    signer = open_signer(settings)
    rng = random.Random(17)
    end_ns = time.time_ns()
    span_ns = days * 86_400 * 1_000_000_000
    step = span_ns // n
    print(f"building a {n:,}-record lake over {days} days in {root} (once; minutes) ...")
    t0 = time.perf_counter()
    samples: list[str] = []
    with AuditLog.open(
        settings.audit_log_dir,
        signer=signer,
        origin=settings.audit_origin,
        fsync=False,
        batch_max=65_536,
    ) as log:
        sealer = Sealer(log, settings.lake_url, signer, max_rows_per_file=SEAL_EVERY)
        pending = []
        for i in range(n):
            record = make_record(rng, end_ns - span_ns + i * step + rng.randrange(step), "bench")
            if i >= n - n // days and i % 5000 == 0:
                samples.append(str(record["request_id"]))
            pending.append(log.append_async(record))
            if len(pending) >= 50_000 or (i + 1) % SEAL_EVERY == 0 or i + 1 == n:
                for future in pending:
                    future.result()
                pending.clear()
            if (i + 1) % SEAL_EVERY == 0 or i + 1 == n:
                files = sealer.seal()
                rate = (i + 1) / (time.perf_counter() - t0)
                print(f"  {i + 1:>11,} records, {len(files)} files sealed ({rate:,.0f}/s)")
        log.flush()
    done.write_text("\n".join(samples) + "\n")
    return samples


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, values_ms: list[float]) -> str:
    median = statistics.median(values_ms)
    verdict = "met" if median <= 300 else "MISSED"
    return (
        f"| {label:<46} | {median:>9,.1f} | {pct(values_ms, 0.9):>9,.1f} | {len(values_ms):>4} "
        f"| {verdict:<6} |"
    )


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    for _ in range(3):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def login(client: TestClient, key: str) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/ui/login",
        data={"api_key": key, "login_csrf": token.group(1), "next": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--quick", action="store_true", help="1M records, 10 runs")
    args = parser.parse_args()
    if args.quick:
        args.records, args.runs = 1_000_000, 10
    root = args.out / f"console-{args.records}-{args.days}d"
    samples = build(root, args.records, args.days)
    settings = settings_for(root)
    app = FastAPI()
    t0 = time.perf_counter()
    runtime = instrument(app, settings, models=MODELS[::2], console=True)
    print(f"service started on the lake in {time.perf_counter() - t0:.1f} s")
    assert runtime.compliance is not None
    engine = runtime.compliance.engine
    users = runtime.compliance.users
    lines = []
    with TestClient(app, base_url="http://testserver") as client:
        login(client, users.add(f"bench-engineer-{time.time_ns()}", "engineer")[1])
        for name in ("1h", "24h", "7d"):
            url = f"/ui/overview?range={name}"
            first = client.get(url)
            assert first.status_code == 200, first.text[:300]
            ms = timed(partial(client.get, url), args.runs)
            lines.append(row(f"GET /ui/overview?range={name}", ms))
        week = client.get("/ui/overview.json?range=7d").json()
        in_week = sum(m["requests"] for m in week["models"])
        rng = random.Random(5)
        picks = [rng.choice(samples) for _ in range(args.runs + 3)]
        found: list[Located] = []

        def find() -> None:
            rid = picks[len(found) % len(picks)]
            window = request_window(rid)
            assert window is not None
            located = find_inference(engine, "request_id", rid, window)
            assert located is not None, rid
            found.append(located)

        lines.append(row("explorer_data.find_inference(request id)", timed(find, args.runs)))
        target = found[0]
        window = request_window(picks[0])
        assert window is not None and target.model_name is not None
        model_name = target.model_name

        def similar() -> None:
            similar_requests(
                engine,
                model_name=model_name,
                decision="approve",  # the explorer takes these from the audit record
                confidence=0.8,
                window=window,
                exclude_seq=target.seq,
            )

        lines.append(row("explorer_data.similar_requests(its window)", timed(similar, args.runs)))
        client.cookies.clear()
        login(client, users.add(f"bench-auditor-{time.time_ns()}", "auditor")[1])
        rid = samples[len(samples) // 2]
        r = client.get(f"/ui/explorer?request_id={rid}")
        assert r.status_code == 200, r.text[:300]
        ms = timed(partial(client.get, f"/ui/explorer?request_id={rid}"), args.runs)
        lines.append(row("GET /ui/explorer?request_id= (auditor)", ms))
    print()
    print(
        f"{args.records:,} synthetic records over {args.days} days ({in_week:,} in the last 7), "
        f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}"
    )
    print(f"| {'request':<46} | median ms | p90 ms    | n    | ≤300ms |")
    print(f"|{'-' * 48}|-----------|-----------|------|--------|")
    for line in lines:
        print(line)
    built = datetime.fromtimestamp((root / "done").stat().st_mtime, UTC)
    print(f"\nlake built {built:%Y-%m-%d %H:%M} UTC; each range ends at the request's time")


if __name__ == "__main__":
    main()
