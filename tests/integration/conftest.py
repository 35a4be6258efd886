"""Fixtures for tests against real services: free ports, external processes that are always
stopped, and the sentiment service running in-process on a real socket.

Everything binds to 127.0.0.1. The external programs (Prometheus, Phoenix) are installed by
``scripts/test-services.sh``; a test whose service cannot start FAILS with the service's log,
it never skips, so a broken install cannot pass CI unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import httpx
import pytest
import uvicorn

from infertrail.config import Settings
from infertrail.server.app import DemoService, build_services, create_app

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
# Environment variables our Settings or the OpenTelemetry SDK would pick up from the machine.
# OTEL_SEMCONV_STABILITY_OPT_IN stays: OpenTelemetry instrumentations read it once per process,
# so what the process was started with must not change under them.
_KEEP_OTEL = {"OTEL_SEMCONV_STABILITY_OPT_IN"}
_SCRUBBED_PREFIXES = ("OTEL_", "INFERTRAIL_", "PHOENIX_")

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


# -- external processes -------------------------------------------------------------------------
@dataclass
class ManagedProcess:
    """A process started by a test, with its combined output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def log_tail(self, max_chars: int = 6000) -> str:
        """The end of the process's output, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return text[-max_chars:]

    def fail(self, why: str) -> NoReturn:
        """Fail the test with the reason and the process's log."""
        state = "running" if self.alive() else f"exited with {self.popen.returncode}"
        pytest.fail(
            f"{self.name} (pid {self.pid}, {state}): {why}\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group we created for it, then SIGKILL if it lingers."""
        try:
            if self.alive():
                _signal_group(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    _signal_group(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=grace_s)
            else:
                # The leader is gone; children it may have left keep the group id.
                _signal_group(self.pid, signal.SIGKILL)
        finally:
            self._log_file.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group was created by start_new_session=True for exactly this process: its id is the
    # pid we launched, so this never reaches anything we did not start.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class ProcessLauncher:
    """Starts processes in their own session and stops every one of them on ``stop_all``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` with output to ``<log_dir>/<name>.log``; it is stopped at teardown."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("wb")
        try:
            popen = subprocess.Popen(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            pytest.fail(f"cannot start {name} ({argv[0]}): {exc}", pytrace=False)
        proc = ManagedProcess(name, popen, log_path, log_file)
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop every process started here, newest first; report all failures together."""
        errors: list[str] = []
        while self._procs:
            proc = self._procs.pop()
            try:
                proc.stop()
            except Exception as exc:
                errors.append(f"{proc.name} (pid {proc.pid}): {exc!r}")
        if errors:
            raise RuntimeError("could not stop: " + "; ".join(errors))


@contextlib.contextmanager
def process_launcher(log_dir: Path) -> Iterator[ProcessLauncher]:
    """A launcher whose processes are stopped when the block exits, also on failure."""
    launcher = ProcessLauncher(log_dir)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[ProcessLauncher]:
    """Per-test process launcher; logs go to ``tmp_path/logs``."""
    with process_launcher(tmp_path / "logs") as pl:
        yield pl


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child service, without OTEL_/INFERTRAIL_/PHOENIX_
    settings from the machine, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(extra)
    return env


# -- polling ------------------------------------------------------------------------------------
def poll(
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float = 0.25,
    process: ManagedProcess | None = None,
    what: str,
) -> T:
    """Call ``probe`` until it returns non-None; fail (with the process log) on timeout or exit.

    ``probe`` may raise ``httpx.TransportError`` while a server is still coming up.
    """
    deadline = time.monotonic() + timeout_s
    last_error: str = "no answer yet"
    while True:
        if process is not None and not process.alive():
            process.fail(f"exited while waiting for {what}")
        try:
            result = probe()
        except httpx.TransportError as exc:
            last_error = repr(exc)
        else:
            if result is not None:
                return result
            last_error = "probe returned nothing"
        if time.monotonic() >= deadline:
            why = f"timed out after {timeout_s:.0f} s waiting for {what} ({last_error})"
            if process is not None:
                process.fail(why)
            pytest.fail(why, pytrace=False)
        time.sleep(interval_s)


def wait_http_ok(
    url: str, *, timeout_s: float, process: ManagedProcess | None = None, what: str = ""
) -> None:
    """Wait until GET ``url`` answers 200."""

    def probe() -> bool | None:
        return True if httpx.get(url, timeout=2.0).status_code == 200 else None

    poll(probe, timeout_s=timeout_s, process=process, what=what or f"200 from {url}")


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets LISTENing on ``port``."""
    found: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            next(fh)  # header
            for line in fh:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A = TCP_LISTEN
                    found.append(addr)
    return found


_LOOPBACK_HEX = {
    "0100007F",  # 127.0.0.1 (little-endian)
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


def assert_loopback_only(port: int, process: ManagedProcess) -> None:
    """Fail unless every listener on ``port`` is bound to a loopback address."""
    addrs = listening_addresses(port)
    if not addrs:
        process.fail(f"nothing listens on port {port}")
    exposed = [a for a in addrs if a not in _LOOPBACK_HEX]
    if exposed:
        process.fail(f"port {port} listens beyond loopback: {exposed} (hex, /proc/net/tcp*)")


# -- the service, in-process (models: the session's `trained_models` from tests/conftest.py) --
@dataclass
class RunningService:
    """The FastAPI service on a real loopback socket, with the objects behind it."""

    base_url: str
    services: DemoService
    server: uvicorn.Server
    thread: threading.Thread

    def client(self) -> httpx.Client:
        """An HTTP client for this service (close it, e.g. with ``with``)."""
        return httpx.Client(base_url=self.base_url, timeout=10.0)

    def stop(self) -> None:
        """Stop serving, then close the monitor (which flushes every exporter)."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.services.close()
        if self.thread.is_alive():
            raise RuntimeError(f"uvicorn thread serving {self.base_url} did not stop in 30 s")


def start_service(settings: Settings, trained_models: Path) -> RunningService:
    """Copy the trained model into ``settings.models_dir`` and serve on a free loopback port."""
    shutil.copytree(trained_models, settings.models_dir, dirs_exist_ok=True)
    services = build_services(settings)
    port = free_port()
    try:
        app = create_app(services)
    except BaseException:
        services.close()
        raise
    config = uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    running = RunningService(f"http://{LOOPBACK}:{port}", services, server, thread)
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"the service did not start on port {port}", pytrace=False)
        time.sleep(0.02)
    return running


@contextlib.contextmanager
def serving(settings: Settings, trained_models: Path) -> Iterator[RunningService]:
    """The service for the duration of a block; stopped and flushed on exit, also on failure."""
    running = start_service(settings, trained_models)
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def isolated_environment(scratch: Path) -> Iterator[None]:
    """Keep the machine's OTEL_*/INFERTRAIL_* variables and ./infertrail.toml out of Settings
    and the exporters for the duration of the block."""
    empty_toml = scratch / "empty-infertrail.toml"
    empty_toml.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(_SCRUBBED_PREFIXES) and name not in _KEEP_OTEL:
                mp.delenv(name)
        mp.setenv("INFERTRAIL_CONFIG", str(empty_toml))
        yield


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[None]:
    """:func:`isolated_environment` for one test."""
    with isolated_environment(tmp_path):
        yield


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test service: everything under ``data_dir``, every trace sampled."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "traces_sampler": "parentbased_always_on",
        **overrides,
    }
    return Settings(**values)
