"""Flush and shutdown are bounded in time, even against a collector that never answers; OTLP
exporters are imported only for the signals that use them.

The "black hole" is a real TCP server on loopback that accepts every connection and never sends
a byte: the worst case for an exporter, which waits for its own timeout (5 s) on each attempt.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infertrail.config import Settings
from infertrail.telemetry.setup import OTLP_EXPORT_TIMEOUT_S, Telemetry

PROTOCOLS = ["http/protobuf", "grpc"]


class BlackHole:
    """Accepts TCP connections on loopback and never answers; closes them all on ``close``."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self._conns.append(conn)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        # Closing alone does not wake a thread blocked in accept() on Linux; shutdown does.
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)
        for conn in self._conns:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


def _emit_all_signals(telemetry: Telemetry) -> None:
    with telemetry.tracer.start_as_current_span("inference"):
        telemetry.instruments.duration.record(0.01, (("model", "m"),))
        telemetry.logger.emit(body={"event": "inference"})


def _stuck_telemetry(tmp_path: Path, hole: BlackHole, protocol: str) -> Telemetry:
    settings = Settings(
        data_dir=tmp_path / "data",
        otlp_endpoint=hole.url,
        otlp_protocol=protocol,  # type: ignore[arg-type]
        metric_export_interval_ms=60_000,
    )
    telemetry = Telemetry(settings)
    _emit_all_signals(telemetry)
    return telemetry


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_returns_in_time_against_a_black_hole(
    tmp_path: Path, black_hole: BlackHole, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry = _stuck_telemetry(tmp_path, black_hole, protocol)
    timeout_s = 1.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="infertrail.telemetry"):
        stopped = telemetry.shutdown(timeout_s=timeout_s)
    elapsed = time.monotonic() - started

    assert elapsed < timeout_s + 1.0, elapsed
    # Each export waits up to 5 s for the collector: the shutdown cannot have completed.
    assert timeout_s < OTLP_EXPORT_TIMEOUT_S
    assert stopped is False
    assert black_hole.connections > 0, "the exporter never reached the black hole"
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert "shutdown did not finish in 1.0 s" in warning
    assert "traces" in warning and black_hole.url in warning
    # The local file was written before the OTLP exporter got stuck.
    assert "inference" in (tmp_path / "data" / "telemetry" / "traces.jsonl").read_text()
    # Idempotent: a second call starts nothing and still says the providers are busy.
    started = time.monotonic()
    assert telemetry.shutdown(timeout_s=timeout_s) is False
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_force_flush_returns_in_time_against_a_black_hole(
    tmp_path: Path, black_hole: BlackHole, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    earlier_threads = set(threading.enumerate())  # other tests' abandoned flushes may linger
    telemetry = _stuck_telemetry(tmp_path, black_hole, protocol)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="infertrail.telemetry"):
            flushed = telemetry.force_flush(timeout_millis=1000)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 1.0, elapsed
        assert flushed is False
        assert "flush did not finish in 1.0 s" in caplog.text
        assert black_hole.url in caplog.text

        # Repeated flushes while the first is stuck each return in time and queue behind it
        # instead of starting a thread each.
        for _ in range(5):
            started = time.monotonic()
            assert telemetry.force_flush(timeout_millis=200) is False
            assert time.monotonic() - started < 0.2 + 1.0
        flush_threads = [
            t
            for t in set(threading.enumerate()) - earlier_threads
            if t.name.startswith("infertrail-flush")
        ]
        assert len(flush_threads) <= 3, flush_threads
    finally:
        telemetry.shutdown(timeout_s=0.1)


def test_flush_and_shutdown_succeed_quickly_without_otlp(tmp_path: Path) -> None:
    earlier_threads = set(threading.enumerate())
    telemetry = Telemetry(Settings(data_dir=tmp_path / "data", metric_export_interval_ms=60_000))
    _emit_all_signals(telemetry)
    assert telemetry.force_flush(timeout_millis=5000) is True
    assert telemetry.force_flush(timeout_millis=5000) is True  # the flush threads are reused
    started = time.monotonic()
    assert telemetry.shutdown(timeout_s=5.0) is True
    assert time.monotonic() - started < 2.0
    assert telemetry.shutdown() is True
    assert telemetry.force_flush(timeout_millis=100) is False  # nothing to flush into any more
    ours = set(threading.enumerate()) - earlier_threads
    leftover = [t for t in ours if t.name.startswith("infertrail-")]
    deadline = time.monotonic() + 2
    while leftover and time.monotonic() < deadline:  # closed flushers end once they wake
        time.sleep(0.01)
        leftover = [t for t in leftover if t.is_alive()]
    assert not leftover


# -- in a fresh interpreter: what gets imported, what happens at exit -------------------------
def _python(script: str, cwd: Path, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INFERTRAIL_"))}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


_MODULES = """
import json, sys
def loaded(prefix):
    return any(m == prefix or m.startswith(prefix + ".") for m in sys.modules)
def report(**extra):
    names = ["requests", "google.protobuf", "grpc", "opentelemetry.proto",
             "opentelemetry.exporter.otlp.proto.http.trace_exporter",
             "opentelemetry.exporter.otlp.proto.http.metric_exporter",
             "opentelemetry.exporter.otlp.proto.http._log_exporter"]
    print(json.dumps({n: loaded(n) for n in names}))
"""


def test_importing_the_setup_loads_no_otlp_protobuf_or_grpc(tmp_path: Path) -> None:
    script = _MODULES + (
        "import infertrail.telemetry.setup\n"
        "report()\n"
        "from infertrail.config import Settings\n"
        "t = infertrail.telemetry.setup.Telemetry(Settings(telemetry_files=False))\n"
        "report()\n"
        "t.shutdown()\n"
    )
    run = _python(script, tmp_path)
    assert run.returncode == 0, run.stderr
    after_import, after_build = (json.loads(line) for line in run.stdout.splitlines())
    assert not any(after_import.values()), after_import
    assert not any(after_build.values()), after_build


def test_a_traces_only_endpoint_loads_only_the_trace_exporter(tmp_path: Path) -> None:
    script = _MODULES + (
        "from infertrail.config import Settings\n"
        "from infertrail.telemetry.setup import Telemetry\n"
        "t = Telemetry(Settings(telemetry_files=False,"
        " otlp_traces_endpoint='http://127.0.0.1:9/v1/traces'))\n"
        "report()\n"
        "t.shutdown(0.5)\n"
    )
    run = _python(script, tmp_path)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert loaded["opentelemetry.exporter.otlp.proto.http.trace_exporter"]
    assert not loaded["opentelemetry.exporter.otlp.proto.http.metric_exporter"]
    assert not loaded["opentelemetry.exporter.otlp.proto.http._log_exporter"]
    assert not loaded["grpc"]


def test_missing_grpc_extra_is_a_clear_error_before_any_thread_starts(tmp_path: Path) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    script = (
        "import sys, threading\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.grpc'] = None\n"
        "from infertrail.config import Settings\n"
        "from infertrail.telemetry.setup import Telemetry\n"
        "settings = Settings(telemetry_files=False, otlp_endpoint='http://127.0.0.1:4317',"
        " otlp_protocol='grpc')\n"
        "try:\n"
        "    Telemetry(settings)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "print(threading.active_count())\n"
    )
    run = _python(script, tmp_path)
    assert run.returncode == 0, run.stderr
    message, threads = run.stdout.splitlines()
    assert "install infertrail[grpc]" in message
    assert "OTLP/gRPC export of traces" in message
    assert threads == "1"


def test_process_exit_does_not_wait_for_a_stuck_collector(
    tmp_path: Path, black_hole: BlackHole
) -> None:
    # The SDK's exit hook (shutdown_on_exit=True) would run an unbounded shutdown here and wait
    # for the pending span's export: 5 s against the black hole.
    script = (
        "import sys, time\n"
        "from infertrail.config import Settings\n"
        "from infertrail.telemetry.setup import Telemetry\n"
        f"t = Telemetry(Settings(telemetry_files=False, otlp_traces_endpoint={black_hole.url!r}"
        " + '/v1/traces'))\n"
        "with t.tracer.start_as_current_span('pending'):\n"
        "    pass\n"
        "time.sleep(1.5)  # the batch processor has sent it: its export is now stuck\n"
        "print(time.time(), flush=True)\n"
    )
    run = _python(script, tmp_path)
    exited = time.time()
    assert run.returncode == 0, run.stderr
    assert black_hole.connections > 0
    assert exited - float(run.stdout) < 2.0
