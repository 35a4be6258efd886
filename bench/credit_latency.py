"""Latency of the credit endpoint (explanation and audit on) against the bare model, in-process.

Variants, each timed one request at a time over the same applicants (german.data rows):

* ``sklearn predict``: ``pipeline.predict_proba`` on one row: the model as scikit-learn runs it
  (score only, no interval, no explanation): a reference point.
* ``bare assess``: ``CreditModel.assess``: score, 90% bootstrap interval, exact SHAP values,
  decision and reason codes, no instrumentation. This is "the bare model" of the comparison.
* ``endpoint, audit off``: ``POST /v1/credit/score`` through the ASGI app (FastAPI routing, body
  validation, ``Monitor.observe`` with telemetry files on, response model), without HTTP client.
* ``endpoint, audit on``: the same with the audit trail as a request-thread sink; each request
  waits until its record is durable (group commit, fsync on), as the service does by default.
* ``endpoint, audit no fsync``: the same with the ledger's fsync off, which separates the CPU
  cost of auditing from the disk's flush latency (one request at a time, every request waits
  for a commit of its own: the worst case for group commit).

Blocks of each variant alternate (the order rotates every round) so machine noise hits them
alike; the table gives the median over blocks of each block's p50 and p99.

    .venv/bin/python bench/credit_latency.py            # 8 rounds of 500 requests per variant
    .venv/bin/python bench/credit_latency.py --quick    # 3 rounds of 200

Settings come from the environment as in the service, so the ledger's group-commit wait can be
varied without code: ``INFERTRAIL_AUDIT_BATCH_WAIT_MS=0 .venv/bin/python bench/credit_latency.py``
(the default 2 ms wait dominates the audited latency of requests sent one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path

from fastapi import FastAPI
from starlette.types import Message

from infertrail.config import Settings
from infertrail.models import credit
from infertrail.models.credit import CreditModel, as_application, as_row, load_dataset
from infertrail.monitor import Monitor
from infertrail.runtime.audit import AuditTrail
from infertrail.server.credit import CREDIT_SCORE_PATH, credit_router

Call = Callable[[int], Awaitable[None]]


def cpu_model() -> str:
    """The CPU model name as ``lscpu`` prints it (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))])


class AsgiCaller:
    """POSTs prepared JSON bodies straight into an ASGI app: no client, no sockets."""

    def __init__(self, app: FastAPI, bodies: list[bytes]) -> None:
        self.app = app
        self.bodies = bodies

    async def __call__(self, i: int) -> None:
        payload = self.bodies[i % len(self.bodies)]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": CREDIT_SCORE_PATH,
            "raw_path": CREDIT_SCORE_PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False
        status = 0

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"request {i} answered {status}")


async def run_block(call: Call, start: int, n: int) -> list[int]:
    clock = time.perf_counter_ns
    out = [0] * n
    for k in range(n):
        t0 = clock()
        await call(start + k)
        out[k] = clock() - t0
    return out


def build_app(monitor: Monitor, model: CreditModel, settings: Settings) -> FastAPI:
    app = FastAPI()
    app.include_router(credit_router(monitor, model, settings))
    return app


async def measure(
    variants: dict[str, Call], rounds: int, block: int, monitors: list[Monitor]
) -> dict[str, list[list[int]]]:
    names = list(variants)
    blocks: dict[str, list[list[int]]] = {name: [] for name in names}
    for name in names:  # warm-up: imports, caches, first checkpoint
        await run_block(variants[name], 0, 50)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            blocks[name].append(await run_block(variants[name], r * block, block))
            for m in monitors:  # the worker's backlog is not left to slow the next block
                m.flush()
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 200 (smoke run)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=500, help="requests per block")
    args = parser.parse_args()
    rounds, block = (3, 200) if args.quick else (args.rounds, args.block)

    with tempfile.TemporaryDirectory(prefix="credit-bench-") as tmp:
        root = Path(tmp)
        credit.train(root / "models")
        model = CreditModel.load(root / "models")
        data = load_dataset()
        applications = [as_application(row) for row in data.X]
        rows = [as_row(a) for a in applications]
        bodies = [
            json.dumps({"applicant_id": f"applicant-{i}", **a}).encode()
            for i, a in enumerate(applications)
        ]
        n = len(applications)

        plain = Settings(data_dir=root / "plain", metric_export_interval_ms=60_000)
        audited = Settings(data_dir=root / "audited", metric_export_interval_ms=60_000)
        no_fsync = Settings(data_dir=root / "no-fsync", metric_export_interval_ms=60_000)
        monitors = [Monitor(s) for s in (plain, audited, no_fsync)]
        trails = [AuditTrail.open(audited), AuditTrail.open(no_fsync, fsync=False)]
        for monitor, trail in zip(monitors[1:], trails, strict=True):
            monitor.add_sink(trail, on_request_thread=True)
        pipeline = model.pipeline

        async def sklearn_predict(i: int) -> None:
            pipeline.predict_proba(rows[i % n])

        async def bare_assess(i: int) -> None:
            model.assess(applications[i % n])

        variants: dict[str, Call] = {
            "sklearn predict": sklearn_predict,
            "bare assess": bare_assess,
            "endpoint, audit off": AsgiCaller(build_app(monitors[0], model, plain), bodies),
            "endpoint, audit on": AsgiCaller(build_app(monitors[1], model, audited), bodies),
            "endpoint, audit no fsync": AsgiCaller(build_app(monitors[2], model, no_fsync), bodies),
        }
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        try:
            blocks = asyncio.run(measure(variants, rounds, block, monitors))
        finally:
            for trail in trails:
                trail.close()
            for monitor in monitors:
                monitor.shutdown()
        elapsed = time.perf_counter() - t0
        load1 = os.getloadavg()

    print(f"credit endpoint latency, in-process  ({dt.date.today().isoformat()})")
    print(f"cpu: {cpu_model()}  cores: {os.cpu_count()}  python {platform.python_version()}")
    print(
        "versions: "
        + ", ".join(f"{p} {metadata.version(p)}" for p in ("fastapi", "scikit-learn", "numpy"))
    )
    print(f"model: {model.info.name} {model.info.version} sha256={model.info.sha256[:16]}...")
    print(f"{rounds} rounds x {block} requests per variant, {elapsed:.1f} s")
    print(f"load average: start {load0[0]:.2f}, end {load1[0]:.2f}")
    print()
    base = statistics.median(percentile(b, 50) for b in blocks["bare assess"])
    header = f"{'variant':<26} {'p50 us':>9} {'p99 us':>9} {'p50 / bare assess':>18}"
    print(header)
    print("-" * len(header))
    for name, bs in blocks.items():
        p50 = statistics.median(percentile(b, 50) for b in bs)
        p99 = statistics.median(percentile(b, 99) for b in bs)
        print(f"{name:<26} {p50 / 1e3:>9.1f} {p99 / 1e3:>9.1f} {p50 / base:>17.1f}x")
    print()
    print("p50/p99: median over blocks of each block's percentile; requests one at a time.")


if __name__ == "__main__":
    main()
