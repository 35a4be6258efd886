"""End-to-end fixtures: the service with digits and drift monitoring, a real Alertmanager.

The service is the demo service, ``build_services`` / ``create_app``: its runtime starts drift
monitoring of every served model (these tests drive sentiment and digits).
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from infertrail.config import Settings
from infertrail.drift import DriftMonitor, DriftReport, profile_path
from infertrail.runtime import Runtime
from infertrail.server.app import DemoService, build_services, create_app
from tests.integration.conftest import (
    LOOPBACK,
    ManagedProcess,
    ProcessLauncher,
    assert_loopback_only,
    free_port,
    isolated_env,
    launcher,
    wait_http_ok,
)

__all__ = ["isolated_env", "launcher"]  # fixtures re-exported for the e2e tests


@pytest.fixture(scope="session")
def drift_models(trained_models: Path) -> Path:
    """The session's trained models plus the digits model, each with its reference profile."""
    for name in ("sentiment", "digits"):
        assert profile_path(trained_models, name).is_file(), f"{name} was trained without profile"
    return trained_models


@dataclass
class DriftService:
    """The running service and the objects behind it."""

    base_url: str
    services: DemoService

    @property
    def runtime(self) -> Runtime:
        return self.services.runtime

    def drift_monitor(self, model: str) -> DriftMonitor:
        return self.runtime.drift[model]

    def judged(self, model: str, timeout_s: float = 30.0) -> list[DriftReport]:
        """Every report of ``model`` once the traffic answered so far has been judged.

        The Monitor's queue is drained first (so full windows are closed), then the drift
        worker is waited for; its listeners, alert evaluation included, have run by then.
        """
        self.services.monitor.flush(timeout_s)
        if not self.drift_monitor(model).flush(timeout_s):
            pytest.fail(f"the {model} drift worker did not finish in {timeout_s} s")
        return self.drift_monitor(model).reports


def build_drift_service(settings: Settings) -> tuple[DemoService, FastAPI]:
    """The services (digits and drift monitoring included) and their app."""
    services = build_services(settings)
    if not {"sentiment", "digits"} <= set(services.runtime.drift):
        services.close()
        pytest.fail("build_services did not start drift monitoring (drift_enabled is off?)")
    return services, create_app(services)


@contextlib.contextmanager
def drift_service(settings: Settings, models: Path) -> Iterator[DriftService]:
    """The service on a free loopback port for the block; stopped and flushed on exit."""
    shutil.copytree(models, settings.models_dir, dirs_exist_ok=True)
    services, app = build_drift_service(settings)
    port = free_port()
    config = uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the service did not start on port {port}", pytrace=False)
            time.sleep(0.02)
        yield DriftService(f"http://{LOOPBACK}:{port}", services)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        services.close()


# -- a real Alertmanager ------------------------------------------------------------------------
# No notification integrations: the test reads the alerts back through the API.
AM_CONFIG = """\
route:
  receiver: api-only
  group_by: ['alertname', 'model']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: api-only
"""


@pytest.fixture
def alertmanager(launcher: ProcessLauncher, tmp_path: Path) -> tuple[str, ManagedProcess]:
    """Debian's prometheus-alertmanager on a free loopback port: (base URL, process)."""
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager is not installed; run scripts/test-services.sh")
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG)
    port = free_port()
    proc = launcher.start(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",  # no HA gossip port on 0.0.0.0:9094
        ],
    )
    base = f"http://{LOOPBACK}:{port}"
    wait_http_ok(f"{base}/-/ready", timeout_s=30, process=proc)
    assert_loopback_only(port, proc)
    return base, proc


def alertmanager_alerts(base: str, alertname: str) -> list[dict[str, Any]]:
    """The alerts named ``alertname`` Alertmanager holds (GET /api/v2/alerts)."""
    r = httpx.get(f"{base}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, timeout=5)
    r.raise_for_status()
    alerts: list[dict[str, Any]] = r.json()
    return alerts
