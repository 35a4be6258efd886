"""End-to-end HTTP cost of infertrail: a bare FastAPI endpoint vs the instrumented service.

Both serve the same trained sentiment model on the same route (``POST /v1/sentiment``, the same
pydantic request and response models), each under uvicorn with one worker in its own process, so
the load generator does not share their GIL. ``wrk`` drives them with a Lua POST script, with the
same threads, connections and duration, alternated over several rounds; medians are reported.

    .venv/bin/python bench/http_load.py            # 3 rounds of -t1 -c8 -d10s per variant
    .venv/bin/python bench/http_load.py --quick    # 3 rounds of -d3s

``wrk`` is the Debian package of that name; when it is missing and this runs as root with
apt-get, the script installs it. The script re-runs itself with ``--serve`` to start a server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from infertrail.config import Settings
from infertrail.demo.run import free_port
from infertrail.models import sentiment, train_all

# Importing the service module only declares its route models: nothing is instrumented until
# create_app() runs, which the bare app never calls.
from infertrail.server.sentiment import SENTIMENT_PATH, SentimentRequest, SentimentResponse
from infertrail.telemetry.setup import INFERENCE_LOG_FILE

BARE, INSTRUMENTED = "bare", "instrumented"
# Optional diagnostic variants: the service with one part switched off, to attribute its cost.
DIAGNOSTIC = {
    "instr-no-files": {"telemetry_files": False},
    "instr-no-audit": {"audit_enabled": False},
    "instr-no-drift": {"drift_enabled": False},
    "instr-no-cost-outcomes": {"cost_enabled": False, "outcomes_enabled": False},
    "telemetry-only": {
        "audit_enabled": False,
        "drift_enabled": False,
        "cost_enabled": False,
        "outcomes_enabled": False,
    },
}
VARIANTS = (BARE, INSTRUMENTED, *DIAGNOSTIC)
TARGET_THROUGHPUT_RATIO = 0.85
N_BODIES = 200  # distinct held-out review sentences cycled through by the Lua script
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the servers (each run in a child process with --serve) -----------------------------------


def bare_app(models_dir: Path, max_text_chars: int) -> FastAPI:
    """The same route, models and checks as the service, with no infertrail instrumentation."""
    model = sentiment.SentimentModel.load(models_dir)
    app = FastAPI(title="bare sentiment endpoint")
    info = {"name": model.info.name, "version": model.info.version, "sha256": model.info.sha256}

    @app.post(SENTIMENT_PATH, response_model=SentimentResponse)
    async def predict(body: SentimentRequest) -> Any:
        text = body.text
        if not text.strip() or len(text) > max_text_chars:
            return JSONResponse({"error": "invalid_input"}, status_code=422)
        p = model.predict(text)
        return {
            "request_id": str(uuid.uuid4()),
            "trace_id": "0" * 32,
            "label": p.label,
            "score": p.score,
            "confidence": p.confidence,
            "model": info,
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(variant: str, data_dir: Path, port: int) -> None:
    """Serve one variant on 127.0.0.1:``port`` until SIGINT (then flush telemetry and exit)."""
    import uvicorn

    # Explicit telemetry settings (the caller's environment is cleaned too), then the variant's.
    options: dict[str, Any] = {
        "data_dir": data_dir,
        "telemetry_files": True,
        "otlp_endpoint": None,
        "traces_sampler": "parentbased_always_on",
        "log_raw_input": False,
        **DIAGNOSTIC.get(variant, {}),
    }
    settings = Settings(**options)
    if variant == BARE:
        app = bare_app(settings.models_dir, settings.max_text_chars)
    else:
        from infertrail.server.app import build_services, create_app

        app = create_app(build_services(settings), close_on_shutdown=True, freeze_gc=True)
    # The same options as `infertrail serve`: one worker, access log off (it logs at INFO).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- driving the load ----------------------------------------------------------------------------


def ensure_wrk() -> str:
    """Path of ``wrk``; installs the Debian package when missing and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing the Debian package ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed; install it (Debian/Ubuntu: apt-get install wrk)")
    return found


def lua_string(text: str) -> str:
    """A double-quoted Lua string literal of ASCII ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_lua(path: Path, texts: list[str]) -> None:
    """A wrk script that POSTs the texts in turn and prints a JSON summary line when done."""
    bodies = ",\n  ".join(lua_string(json.dumps({"text": t})) for t in texts)
    path.write_text(
        f"""local bodies = {{
  {bodies}
}}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""
    )


@dataclass
class Run:
    """One wrk run against one server."""

    variant: str
    requests: int
    duration_s: float
    errors: int
    status_errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(self.requests, 1)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_wrk(
    wrk: str, lua: Path, url: str, variant: str, pid: int, opts: argparse.Namespace, seconds: int
) -> Run:
    """One wrk run against ``url``, with the server's CPU (process ``pid``) over the run."""
    cpu0 = process_cpu_s(pid)
    cmd = [wrk, f"-t{opts.threads}", f"-c{opts.connections}", f"-d{seconds}s", "-s", str(lua), url]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    out = proc.stdout
    cpu = process_cpu_s(pid) - cpu0
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary line; its output was:\n{out}")
    s = json.loads(line.removeprefix("WRKJSON "))
    return Run(
        variant,
        s["requests"],
        s["duration_us"] / 1e6,
        s["errors"],
        s["status_errors"],
        s["p50_us"] / 1000,
        s["p99_us"] / 1000,
        cpu,
    )


class Server:
    """A variant served by a child process of this script."""

    def __init__(self, variant: str, data_dir: Path, log: Path) -> None:
        self.variant, self.port, self.log = variant, free_port(), log
        # A clean environment: INFERTRAIL_*/OTEL_* settings of the caller must not change the run.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))}
        cmd = [sys.executable, __file__, "--serve", variant, "--data-dir", str(data_dir)]
        with log.open("w") as f:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)], stdout=f, stderr=f, env=env, cwd=data_dir
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, body: dict[str, str], timeout_s: float = 120.0) -> None:
        """Wait for /healthz, then check that one prediction is answered correctly."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.variant} server exited:\n{self.log.read_text()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.variant} server not ready in {timeout_s:.0f} s")
                time.sleep(0.1)
            r = client.post("/v1/sentiment", json=body)
            if r.status_code != 200 or r.json().get("label") not in sentiment.LABELS:
                raise RuntimeError(f"{self.variant} answered {r.status_code}: {r.text[:300]}")

    def stop(self) -> None:
        """SIGINT: uvicorn shuts down gracefully, and the service flushes its telemetry."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_count(self, needle: str) -> int:
        return self.log.read_text(errors="replace").count(needle)


def load_average() -> str:
    """The 1/5/15-minute load averages, to judge how noisy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    """The CPU model name as ``lscpu`` prints it (Linux), else what ``platform`` knows."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def report(runs: list[Run], variants: list[str], opts: argparse.Namespace, seconds: int) -> float:
    """Print every run and the medians; returns instrumented / bare throughput."""
    head = f"{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms/req':>19}"
    print(f"\n{'round':<7}{'variant':<16}{head}{'errors':>8}")
    for i, r in enumerate(runs):
        row = f"{r.rps:9.0f}{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.cpu_ms_per_request:19.3f}"
        print(f"{i // len(variants) + 1:<7}{r.variant:<16}{row}{r.errors + r.status_errors:8d}")
    med: dict[str, tuple[float, float, float, float]] = {}
    for v in variants:
        mine = [r for r in runs if r.variant == v]
        med[v] = (
            statistics.median(r.rps for r in mine),
            statistics.median(r.p50_ms for r in mine),
            statistics.median(r.p99_ms for r in mine),
            statistics.median(r.cpu_ms_per_request for r in mine),
        )
    rounds = len(runs) // len(variants)
    print(f"\nmedians of {rounds} rounds, wrk -t{opts.threads} -c{opts.connections} -d{seconds}s")
    print(f"{'variant':<23}{head}")
    for v in variants:
        rps, p50, p99, cpu = med[v]
        print(f"{v:<23}{rps:9.0f}{p50:9.2f}{p99:9.2f}{cpu:19.3f}")
    base = med[BARE]
    for v in variants[1:]:
        ratios = (m / b for m, b in zip(med[v], base, strict=True))
        print(f"{v + ' / bare':<23}" + "".join(f"{x:9.3f}" for x in ratios))
    return med[INSTRUMENTED][0] / base[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="-d3s instead of -d10s")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the variants")
    parser.add_argument(
        "--diagnose",
        action="append",
        default=[],
        choices=list(DIAGNOSTIC),
        help="also run the service with one part off (repeatable): "
        + "; ".join(f"{k}: {v}" for k, v in DIAGNOSTIC.items()),
    )
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        if opts.data_dir is None or opts.port is None:
            parser.error("--serve needs --data-dir and --port")
        serve(opts.serve, opts.data_dir, opts.port)
        return 0
    seconds = 3 if opts.quick else opts.duration
    for name in ("duration", "threads", "connections", "rounds"):
        if getattr(opts, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(opts, name)}")
    if opts.connections < opts.threads:
        parser.error(
            f"wrk needs --connections >= --threads; got {opts.connections} < {opts.threads}"
        )

    wrk = ensure_wrk()
    cores = os.cpu_count()
    print("infertrail HTTP load: bare FastAPI endpoint vs instrumented service")
    print(f"cpu      {cpu_model()}, {cores} logical CPUs SHARED by wrk and the server under test")
    print(f"date     {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"load     {load_average()} (1/5/15 min) at start: other work adds noise")
    versions = ", ".join(
        f"{pkg} {metadata.version(pkg)}" for pkg in ("uvicorn", "fastapi", "opentelemetry-sdk")
    )
    print(f"python   {platform.python_version()}, {versions}")
    print(f"wrk      -t{opts.threads} -c{opts.connections} -d{seconds}s, POST /v1/sentiment,")
    print(f"         {N_BODIES} held-out review sentences in turn; {opts.rounds} alternated rounds")
    print("servers  uvicorn (asyncio, h11), 1 worker, own process; instrumented =")
    print("         create_app(build_services()): spans, metrics, logs to OTLP/JSON files,")
    print("         always sampled; bare = same route and models, no infertrail")

    with tempfile.TemporaryDirectory(prefix="infertrail-http-") as tmp:
        root = Path(tmp)
        train_all(root / "models")  # every demo model the service loads
        texts = sentiment.split().test_texts[:N_BODIES]
        lua = root / "post.lua"
        write_lua(lua, texts)
        variants = [BARE, INSTRUMENTED, *dict.fromkeys(opts.diagnose)]
        servers = {}
        for v in variants:
            # Each server has its own data dir: an audit log has one writer process.
            shutil.copytree(root / "models", root / v / "models")
            servers[v] = Server(v, root / v, root / f"{v}.log")
        runs: list[Run] = []
        try:
            for s in servers.values():
                s.wait_ready({"text": texts[0]})
            served = {v: 1 for v in variants}  # the readiness check's prediction
            for s in servers.values():  # warm-up, not reported
                warm = run_wrk(wrk, lua, s.url + "/v1/sentiment", s.variant, s.proc.pid, opts, 2)
                served[s.variant] += warm.requests
            for k in range(opts.rounds):
                order = variants[k % len(variants) :] + variants[: k % len(variants)]
                for v in order:
                    s = servers[v]
                    url = s.url + "/v1/sentiment"
                    run = run_wrk(wrk, lua, url, v, s.proc.pid, opts, seconds)
                    served[v] += run.requests
                    runs.append(run)
        finally:
            for s in servers.values():
                s.stop()
        ratio = report(runs, variants, opts, seconds)
        verdict = "MET" if ratio >= TARGET_THROUGHPUT_RATIO else "MISSED"
        print(
            f"\ntarget   instrumented keeps >= {TARGET_THROUGHPUT_RATIO:.0%} of bare throughput:"
            f" {verdict} ({ratio:.1%})"
        )
        log_lines = _count_lines(root / INSTRUMENTED / "telemetry" / INFERENCE_LOG_FILE)
        dropped = servers[INSTRUMENTED].log_count("Queue full, dropping")
        print(
            f"telemetry {log_lines} lines in {INFERENCE_LOG_FILE} for {served[INSTRUMENTED]}"
            " answered requests (wrk does not count those in flight when a run ends)"
        )
        print(f"          {dropped} 'Queue full, dropping' warnings (spans/logs lost by the SDK)")
        if log_lines < served[INSTRUMENTED]:
            print("WARNING  fewer inference log lines than answered requests: telemetry was lost")
        if any(r.errors or r.status_errors for r in runs):
            print("WARNING  some requests failed (socket errors or non-2xx); see the errors column")
        print(f"load     {load_average()} (1/5/15 min) at the end")
        print(f"note     the {cores} CPUs are shared: wrk takes about one, the server the other.")
    return 0


def _count_lines(path: Path) -> int:
    """Lines in a file; 0 when it does not exist (no telemetry written)."""
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    raise SystemExit(main())
