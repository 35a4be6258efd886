"""End-to-end HTTP cost of infertrail against a bare FastAPI endpoint and plain OpenTelemetry.

Every variant serves the same trained sentiment model on the same route (``POST /v1/sentiment``,
the same pydantic request and response models) under uvicorn with one worker in its own process,
so the load generator does not share their GIL. ``wrk`` drives them with a Lua POST script, with
the same threads, connections and duration, alternated over several rounds; medians are
reported, with each variant's throughput as a ratio to the bare endpoint's and to plain
OpenTelemetry's (the peer, measured in the same run).

Variants (the first four by default, the others with ``--diagnose``):

* ``bare``: the route and the model, no telemetry at all;
* ``otel-plain``: what users do today: the bare route with ``FastAPIInstrumentor``, an SDK
  ``TracerProvider`` (``BatchSpanProcessor``), a span and a duration histogram around
  ``model.predict``, OTLP/HTTP exporters of traces and metrics to a local sink (otlp_sink.py);
* ``telemetry-only``: infertrail's service with its telemetry only (no audit, drift, cost,
  outcomes), to OTLP/JSON files;
* ``instrumented``: the service as ``infertrail serve`` runs it (telemetry files, audit trail);
* ``otel-tuned``: otel-plain tuned (no receive/send spans, no-op meters for the HTTP
  instrumentation, ``BatchSpanProcessor(max_export_batch_size=2048, schedule_delay_millis=5000)``);
* ``telemetry-otlp``: telemetry-only exporting over OTLP/HTTP to the sink instead of files;
* ``instr-no-*``: the service with one part off, to attribute its cost.

After the rounds the servers are stopped (SIGINT: they flush their telemetry and exit), and a
telemetry accounting compares the requests served with the spans, log records and histogram
counts that reached the sink or the files.

    .venv/bin/python bench/http_load.py            # 3 rounds of -t1 -c8 -d10s per variant
    .venv/bin/python bench/http_load.py --quick    # 3 rounds of -d3s

``wrk`` is the Debian package of that name; when it is missing and this runs as root with
apt-get, the script installs it. The script re-runs itself with ``--serve`` to start a server,
and starts otlp_sink.py as its own process.
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
from collections.abc import Callable
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
# create_app() runs, which the bare and OpenTelemetry apps never call.
from infertrail.server.sentiment import SENTIMENT_PATH, SentimentRequest, SentimentResponse
from otlp_sink import ServiceCounts, count_files

BARE, INSTRUMENTED = "bare", "instrumented"
OTEL_PLAIN, OTEL_TUNED = "otel-plain", "otel-tuned"
TELEMETRY_ONLY, TELEMETRY_OTLP = "telemetry-only", "telemetry-otlp"
_TELEMETRY_ONLY = {
    "audit_enabled": False,
    "drift_enabled": False,
    "cost_enabled": False,
    "outcomes_enabled": False,
}
# infertrail's service, with these settings over the bench's (see serve()).
SERVICE_VARIANTS: dict[str, dict[str, Any]] = {
    TELEMETRY_ONLY: _TELEMETRY_ONLY,
    TELEMETRY_OTLP: {**_TELEMETRY_ONLY, "telemetry_files": False},  # and OTLP to the sink
    INSTRUMENTED: {},
    "instr-no-files": {"telemetry_files": False},
    "instr-no-audit": {"audit_enabled": False},
    "instr-no-drift": {"drift_enabled": False},
    "instr-no-cost-outcomes": {"cost_enabled": False, "outcomes_enabled": False},
}
VARIANTS = (BARE, OTEL_PLAIN, OTEL_TUNED, *SERVICE_VARIANTS)  # the order of the tables
DEFAULT_VARIANTS = (BARE, OTEL_PLAIN, TELEMETRY_ONLY, INSTRUMENTED)
OPTIONAL_VARIANTS = tuple(v for v in VARIANTS if v not in DEFAULT_VARIANTS)
TO_SINK = (OTEL_PLAIN, OTEL_TUNED, TELEMETRY_OTLP)  # the variants exporting over OTLP
TARGET_THROUGHPUT_RATIO = 0.85
N_BODIES = 200  # distinct held-out review sentences cycled through by the Lua script
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SINK_SCRIPT = Path(__file__).with_name("otlp_sink.py")

# The names the accounting looks for. The server span and the HTTP duration histogram are the
# FastAPI instrumentation's (stable HTTP conventions in both apps); the inference span is
# infertrail's (docs/conventions.md), a name the OpenTelemetry apps use too; the inference
# histograms differ: infertrail's is namespaced, the OpenTelemetry apps name theirs plainly.
SERVER_SPAN = f"POST {SENTIMENT_PATH}"
INFERENCE_SPAN = "inference"
HTTP_DURATION = "http.server.request.duration"
INFERTRAIL_DURATION = "infertrail.inference.duration"
OTEL_DURATION = "inference.duration"
QUEUE_FULL = "Queue full, dropping"  # the SDK's warning for each span or log record it drops


# -- the servers (each run in a child process with --serve) -----------------------------------

Predict = Callable[[str], sentiment.Prediction]


def bare_app(
    models_dir: Path,
    max_text_chars: int,
    predictor: Callable[[sentiment.SentimentModel], Predict] | None = None,
) -> FastAPI:
    """The same route, models and checks as the service, with no infertrail instrumentation;
    ``predictor`` makes the function the route predicts with (default: the model's own)."""
    model = sentiment.SentimentModel.load(models_dir)
    predict = model.predict if predictor is None else predictor(model)
    app = FastAPI(title="bare sentiment endpoint")
    info = {"name": model.info.name, "version": model.info.version, "sha256": model.info.sha256}

    @app.post(SENTIMENT_PATH, response_model=SentimentResponse)
    async def predict_route(body: SentimentRequest) -> Any:
        text = body.text
        if not text.strip() or len(text) > max_text_chars:
            return JSONResponse({"error": "invalid_input"}, status_code=422)
        p = predict(text)
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


def otel_app(
    variant: str, models_dir: Path, max_text_chars: int, otlp_endpoint: str
) -> tuple[FastAPI, Callable[[], None]]:
    """:func:`bare_app` instrumented with OpenTelemetry as its users do it, exporting traces
    and metrics over OTLP/HTTP to ``otlp_endpoint``; tuned for ``otel-tuned``. Returns the app
    and what flushes and stops the providers (to call when the server has stopped)."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tuned = variant == OTEL_TUNED
    # The stable HTTP conventions, as infertrail uses them (importing it sets this too), so
    # that both record http.server.request.duration in seconds.
    os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "http"
    resource = Resource.create({"service.name": variant})
    tracer_provider = TracerProvider(resource=resource)
    batching = {"max_export_batch_size": 2048, "schedule_delay_millis": 5000} if tuned else {}
    spans = OTLPSpanExporter(endpoint=f"{otlp_endpoint}/v1/traces")
    tracer_provider.add_span_processor(BatchSpanProcessor(spans, **batching))
    points = OTLPMetricExporter(endpoint=f"{otlp_endpoint}/v1/metrics")
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(points)]
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    tracer = trace.get_tracer("bench.http_load")
    duration = metrics.get_meter("bench.http_load").create_histogram(
        OTEL_DURATION, unit="s", description="Duration of model inference."
    )

    def predictor(model: sentiment.SentimentModel) -> Predict:
        attributes = {"model.name": model.info.name, "model.version": model.info.version}

        def predict(text: str) -> sentiment.Prediction:
            with tracer.start_as_current_span(INFERENCE_SPAN, attributes=attributes):
                start = time.perf_counter()
                prediction = model.predict(text)
                duration.record(time.perf_counter() - start, attributes)
            return prediction

        return predict

    app = bare_app(models_dir, max_text_chars, predictor)
    if tuned:
        FastAPIInstrumentor.instrument_app(
            app, meter_provider=NoOpMeterProvider(), exclude_spans=["receive", "send"]
        )
    else:
        FastAPIInstrumentor.instrument_app(app)

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return app, shutdown


def serve(variant: str, data_dir: Path, port: int, otlp_endpoint: str | None) -> None:
    """Serve one variant on 127.0.0.1:``port`` until SIGINT (then flush telemetry and exit)."""
    import uvicorn

    if variant in TO_SINK and otlp_endpoint is None:
        raise SystemExit(f"--serve {variant} needs --otlp-endpoint (the sink's URL)")
    # Explicit telemetry settings (the caller's environment is cleaned too), then the variant's.
    options: dict[str, Any] = {
        "data_dir": data_dir,
        "telemetry_files": True,
        "otlp_endpoint": None,
        "traces_sampler": "parentbased_always_on",
        "log_raw_input": False,
        **SERVICE_VARIANTS.get(variant, {}),
    }
    if variant == TELEMETRY_OTLP:
        options |= {"otlp_endpoint": otlp_endpoint, "service_name": variant}
    settings = Settings(**options)
    shutdown: Callable[[], None] | None = None
    if variant == BARE:
        app = bare_app(settings.models_dir, settings.max_text_chars)
    elif variant in (OTEL_PLAIN, OTEL_TUNED):
        assert otlp_endpoint is not None
        app, shutdown = otel_app(
            variant, settings.models_dir, settings.max_text_chars, otlp_endpoint
        )
    else:
        from infertrail.server.app import build_services, create_app

        app = create_app(build_services(settings), close_on_shutdown=True, freeze_gc=True)
    # The same options as `infertrail serve`: one worker, access log off (it logs at INFO).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    if shutdown is not None:
        shutdown()


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


class Child:
    """A process this script started: a server under test or the sink, logging to ``log``."""

    def __init__(self, name: str, cmd: list[str], log: Path, cwd: Path) -> None:
        self.name, self.log = name, log
        # A clean environment: INFERTRAIL_*/OTEL_* settings of the caller must not change the run.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))}
        with log.open("w") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=f, env=env, cwd=cwd)

    def wait_for(self, url: str, timeout_s: float = 120.0) -> None:
        """Wait until a GET of ``url`` answers 200; fails if the process exits meanwhile."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready in {timeout_s:.0f} s")
                time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds the process has used so far."""
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        """SIGINT, and wait for the process to exit (servers flush their telemetry first)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_count(self, needle: str) -> int:
        """Occurrences of ``needle`` in the process's output."""
        return self.log.read_text(errors="replace").count(needle)


class Server(Child):
    """A variant served by a child process of this script."""

    def __init__(self, variant: str, data_dir: Path, log: Path, otlp_endpoint: str) -> None:
        self.variant, self.port = variant, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, __file__, "--serve", variant, "--data-dir", str(data_dir)]
        cmd += ["--port", str(self.port), "--otlp-endpoint", otlp_endpoint]
        super().__init__(f"{variant} server", cmd, log, data_dir)

    def wait_ready(self, body: dict[str, str]) -> None:
        """Wait for /healthz, then check that one prediction is answered correctly."""
        self.wait_for(self.url + "/healthz")
        r = httpx.post(self.url + SENTIMENT_PATH, json=body, timeout=10.0)
        if r.status_code != 200 or r.json().get("label") not in sentiment.LABELS:
            raise RuntimeError(f"{self.variant} answered {r.status_code}: {r.text[:300]}")


class Sink(Child):
    """otlp_sink.py, receiving what the variants export over OTLP/HTTP."""

    def __init__(self, root: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        cmd = [sys.executable, str(SINK_SCRIPT), "--port", self.url.rsplit(":", 1)[1]]
        super().__init__("otlp sink", cmd, root / "otlp-sink.log", root)

    def counts(self) -> dict[str, ServiceCounts]:
        """What each service has exported so far, by service name."""
        r = httpx.get(self.url + "/counts", timeout=10.0)
        r.raise_for_status()
        return {name: ServiceCounts.from_json(c) for name, c in r.json().items()}


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
    """Print every run and the medians with their throughput ratios to bare and to otel-plain;
    returns instrumented / bare throughput."""
    head = f"{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms/req':>19}"
    print(f"\n{'round':<7}{'variant':<24}{head}{'errors':>8}")
    for i, r in enumerate(runs):
        row = f"{r.rps:9.0f}{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.cpu_ms_per_request:19.3f}"
        print(f"{i // len(variants) + 1:<7}{r.variant:<24}{row}{r.errors + r.status_errors:8d}")
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
    print(f"{'variant':<24}{head}{'req/s vs bare':>15}{'vs otel-plain':>15}")
    for v in variants:
        rps, p50, p99, cpu = med[v]
        ratios = f"{rps / med[BARE][0]:15.3f}{rps / med[OTEL_PLAIN][0]:15.3f}"
        print(f"{v:<24}{rps:9.0f}{p50:9.2f}{p99:9.2f}{cpu:19.3f}{ratios}")
    return med[INSTRUMENTED][0] / med[BARE][0]


@dataclass
class Accounting:
    """What one variant exported, against the requests it served."""

    variant: str
    where: str  # "sink" or "files"
    served: int
    counts: ServiceCounts
    queue_full: int  # the SDK's "Queue full, dropping" warnings in the server's output

    @property
    def expected(self) -> dict[str, int | None]:
        """Each count that should be at least one per request served; None: not exported."""
        c = self.counts
        otel = self.variant in (OTEL_PLAIN, OTEL_TUNED)
        return {
            "server spans": c.spans[SERVER_SPAN],
            "inference spans": c.spans[INFERENCE_SPAN],
            "log records": None if otel else c.log_records,
            # otel-tuned gives the HTTP instrumentation no-op meters
            "http hist n": None if self.variant == OTEL_TUNED else _hist(c, HTTP_DURATION),
            "inference hist n": _hist(c, OTEL_DURATION if otel else INFERTRAIL_DURATION),
        }

    @property
    def lost(self) -> dict[str, int]:
        """Per count, how many fewer than the requests served it holds (when fewer)."""
        return {
            k: self.served - n
            for k, n in self.expected.items()
            if n is not None and n < self.served
        }


def _hist(counts: ServiceCounts, name: str) -> int:
    return counts.histogram_counts.get(name, 0)


def print_accounting(rows: list[Accounting], slack: int) -> bool:
    """The telemetry accounting table; returns whether every count covers every request."""
    print(
        "\ntelemetry accounting, after the servers flushed and exited (served: answered requests"
        " wrk counted,\nwarm-up and readiness check included; each run's requests still in"
        f" flight when it ends are\nserved but not counted, so counts may exceed served by up"
        f" to {slack}; 'all spans' includes other spans)"
    )
    columns = ["server spans", "inference spans", "log records", "http hist n", "inference hist n"]
    header = "".join(f"{c:>{len(c) + 2}}" for c in columns)
    print(
        f"{'variant':<24}{'to':<6}{'served':>8}{header}{'all spans':>11}{'queue full':>12}  verdict"
    )
    for a in rows:
        cells = "".join(
            f"{'-' if (n := a.expected[c]) is None else n:>{len(c) + 2}}" for c in columns
        )
        lost = ", ".join(f"{k} -{n}" for k, n in a.lost.items())
        verdict = f"LOST {lost}" if lost else "ok"
        total = sum(a.counts.spans.values())
        print(
            f"{a.variant:<24}{a.where:<6}{a.served:8d}{cells}{total:11d}{a.queue_full:12d}"
            f"  {verdict}"
        )
    return not any(a.lost for a in rows)


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
        choices=OPTIONAL_VARIANTS,
        help="also run this variant (repeatable); the description above says what each is",
    )
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--otlp-endpoint", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        if opts.data_dir is None or opts.port is None:
            parser.error("--serve needs --data-dir and --port")
        serve(opts.serve, opts.data_dir, opts.port, opts.otlp_endpoint)
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
    print("infertrail HTTP load: bare FastAPI endpoint, plain OpenTelemetry, infertrail")
    print(f"cpu      {cpu_model()}, {cores} logical CPUs SHARED by wrk and the server under test")
    print(f"date     {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"load     {load_average()} (1/5/15 min) at start: other work adds noise")
    packages = ("uvicorn", "fastapi", "opentelemetry-sdk", "opentelemetry-instrumentation-fastapi")
    versions = ", ".join(f"{pkg} {metadata.version(pkg)}" for pkg in packages)
    print(f"python   {platform.python_version()}, {versions}")
    print(f"wrk      -t{opts.threads} -c{opts.connections} -d{seconds}s, POST {SENTIMENT_PATH},")
    print(f"         {N_BODIES} held-out review sentences in turn; {opts.rounds} alternated rounds")
    print("servers  uvicorn (asyncio, h11), 1 worker, own process, always sampled. bare = the")
    print("         route and model; otel-plain = bare + FastAPIInstrumentor, SDK providers, a")
    print("         span and a histogram around predict, OTLP/HTTP to a local sink (its own")
    print("         process); telemetry-only = create_app(build_services()) without audit, drift,")
    print("         cost, outcomes; instrumented = all of it; both write OTLP/JSON files")

    with tempfile.TemporaryDirectory(prefix="infertrail-http-") as tmp:
        root = Path(tmp)
        train_all(root / "models")  # every demo model the service loads
        texts = sentiment.split().test_texts[:N_BODIES]
        lua = root / "post.lua"
        write_lua(lua, texts)
        chosen = {*DEFAULT_VARIANTS, *opts.diagnose}
        variants = [v for v in VARIANTS if v in chosen]
        sink = Sink(root)
        try:
            sink.wait_for(sink.url + "/counts")
            servers: dict[str, Server] = {}
            for v in variants:
                # Each server has its own data dir: an audit log has one writer process.
                shutil.copytree(root / "models", root / v / "models")
                servers[v] = Server(v, root / v, root / f"{v}.log", sink.url)
            runs: list[Run] = []
            try:
                for s in servers.values():
                    s.wait_ready({"text": texts[0]})
                served = {v: 1 for v in variants}  # the readiness check's prediction
                for s in servers.values():  # warm-up, not reported
                    url = s.url + SENTIMENT_PATH
                    warm = run_wrk(wrk, lua, url, s.variant, s.proc.pid, opts, 2)
                    served[s.variant] += warm.requests
                for k in range(opts.rounds):
                    order = variants[k % len(variants) :] + variants[: k % len(variants)]
                    for v in order:
                        s = servers[v]
                        run = run_wrk(
                            wrk, lua, s.url + SENTIMENT_PATH, v, s.proc.pid, opts, seconds
                        )
                        served[v] += run.requests
                        runs.append(run)
            finally:
                for s in servers.values():
                    s.stop()
            sink_counts = sink.counts()
            sink_cpu_s = sink.cpu_s()
        finally:
            sink.stop()
        ratio = report(runs, variants, opts, seconds)
        verdict = "MET" if ratio >= TARGET_THROUGHPUT_RATIO else "MISSED"
        print(
            f"\ntarget   instrumented keeps >= {TARGET_THROUGHPUT_RATIO:.0%} of bare throughput:"
            f" {verdict} ({ratio:.1%})"
        )
        rows = []
        for v in variants:
            if v in TO_SINK:
                where, counts = "sink", sink_counts.get(v, ServiceCounts())
            elif v in SERVICE_VARIANTS and SERVICE_VARIANTS[v].get("telemetry_files", True):
                where, counts = "files", count_files(root / v / "telemetry")
            else:
                continue  # exports nothing: bare, instr-no-files
            rows.append(Accounting(v, where, served[v], counts, servers[v].log_count(QUEUE_FULL)))
        complete = print_accounting(rows, opts.connections * (opts.rounds + 1))
        print(f"sink     {sink_cpu_s:.1f} CPU s over the whole run, on the same {cores} CPUs")
        if not complete:
            print("WARNING  some telemetry was lost at this load: see the verdicts above")
        if any(r.errors or r.status_errors for r in runs):
            print("WARNING  some requests failed (socket errors or non-2xx); see the errors column")
        print(f"load     {load_average()} (1/5/15 min) at the end")
        print(f"note     the {cores} CPUs are shared: wrk takes about one, the server the other.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
