"""Readiness that tells the truth: Runtime.health, the readiness route, and the demo's /readyz.

The verdicts come from real components: a runtime whose audit log is failed by an injected
full disk (system-call faults under the log directory, tests/unit/audit/test_ledger_recovery),
a lake that cannot be written, a free-space floor no disk meets. The pure pieces (reasons,
storage checks) are tested with stand-ins for the system calls.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.audit.receipts import AuditUnavailableError
from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.runtime import Runtime
from infertrail.runtime.asgi import instrument
from infertrail.runtime.health import (
    ComponentHealth,
    Health,
    error_reason,
    size_text,
    storage_problems,
)
from infertrail.server.app import build_services, create_app
from tests.unit.audit.test_ledger_recovery import Disk

MODEL = ModelInfo("churn", "1", "ab" * 32)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---- pure pieces ----------------------------------------------------------------------------


def test_error_reasons_name_the_fault_never_a_path() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "/srv/data/audit/log/wal/0.seg")
    assert error_reason(exc) == "ENOSPC (No space left on device)"
    assert error_reason(PermissionError(errno.EACCES, "denied", "/srv/x")) == (
        "EACCES (Permission denied)"
    )
    assert error_reason(RuntimeError("/srv/data is gone")) == "RuntimeError"
    assert error_reason(OSError("no errno")) == "OSError"


def test_sizes_in_binary_units() -> None:
    assert [size_text(n) for n in (0, 1023, 1024, 3 << 20, 5 << 30, 1 << 50)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "3.0 MiB",
        "5.0 GiB",
        "1048576.0 GiB",
    ]


def test_storage_problems_name_places_by_label(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    places = [("wal directory", tmp_path / "wal"), ("lake directory", tmp_path / "lake")]
    free = {tmp_path / "wal": 5 << 20, tmp_path: 600 << 10}

    def free_bytes(path: Path) -> int:
        return free[path]

    ok = storage_problems(places, 1 << 20, free_bytes=lambda _: 2 << 20, writable=lambda _: True)
    assert ok == []
    # The lake does not exist yet: its parent stands in for it, for space and permissions.
    problems = storage_problems(
        places, 1 << 20, free_bytes=free_bytes, writable=lambda p: p != tmp_path / "wal"
    )
    assert problems == [
        "wal directory is not writable",
        "600.0 KiB free on its file system, under the 1.0 MiB required",
    ]
    assert storage_problems(places, 0, free_bytes=free_bytes, writable=lambda _: True) == []

    def broken(_: Path) -> int:
        raise OSError(errno.EIO, "I/O error", str(tmp_path))

    assert storage_problems(places, 1, free_bytes=broken, writable=lambda _: True) == [
        "free space unknown: EIO (Input/output error)"
    ]


def test_storage_problems_with_the_real_system_calls(tmp_path: Path) -> None:
    places = [("here", tmp_path)]
    assert storage_problems(places, 1) == []
    assert storage_problems(places, 1 << 62)[0].endswith("under the 4294967296.0 GiB required")


def test_health_is_ready_only_when_every_component_is_ok() -> None:
    ok, bad = ComponentHealth("audit_log", True), ComponentHealth("privacy", False, "full")
    assert Health(()).ready and Health((ok,)).ready
    mixed = Health((ok, bad))
    assert not mixed.ready
    assert mixed.problems() == "privacy: full"
    assert mixed.to_dict() == {"audit_log": "ok", "privacy": "full"}


def test_retry_intervals_must_be_in_order(settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"audit_retry_s \(20\.0\) must not exceed"):
        Settings(data_dir=settings.data_dir, audit_retry_s=20, audit_retry_max_s=10)


# ---- a running runtime ------------------------------------------------------------------------


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"drift_enabled": False, "audit_retry_s": 0.05, "audit_retry_max_s": 0.2}
    )


@pytest.fixture
def runtime(fast_settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.start(fast_settings, [MODEL])
    yield rt
    rt.shutdown()


def decide(rt: Runtime, i: int) -> int:
    """One audited decision; its seq (AuditUnavailableError when it cannot be recorded)."""
    with rt.observe(MODEL, {"x": i}) as ev:
        ev.score = 0.5
    receipt = rt.audit_receipt(ev, timeout_s=10)
    assert receipt is not None
    return receipt.seq


def test_a_healthy_runtime_is_ready_and_a_stopped_one_is_not(runtime: Runtime) -> None:
    health = runtime.health()
    assert health.ready, health.problems()
    assert health.to_dict() == {"audit_log": "ok", "audit_lake": "ok", "privacy": "ok"}
    runtime.shutdown()
    assert runtime.health().to_dict() == {"runtime": "shut down"}


def test_without_the_audit_trail_nothing_blocks_readiness(settings: Settings) -> None:
    rt = Runtime.start(settings.model_copy(update={"audit_enabled": False}), [MODEL])
    try:
        assert rt.health() == Health(())
    finally:
        rt.shutdown()


def test_a_failed_audit_log_is_not_ready_until_it_reopens(
    runtime: Runtime, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert decide(runtime, 0) == 0
    disk = Disk(fast_settings.audit_log_dir, monkeypatch)
    disk.full = True
    with pytest.raises(AuditUnavailableError):
        decide(runtime, 1)
    health = runtime.health()
    assert not health.ready
    reason = health.to_dict()["audit_log"]
    assert reason.startswith("writes failed ") and ": ENOSPC (No space left on device); " in reason
    assert str(fast_settings.data_dir) not in health.problems()
    assert health.to_dict()["privacy"] == "ok"  # the other components are judged on their own
    disk.heal()
    wait_for(lambda: runtime.health().ready, "readiness after the reopen")
    assert decide(runtime, 2) == 1  # the refused decision took no seq


def test_too_little_free_space_is_not_ready(fast_settings: Settings) -> None:
    rt = Runtime.start(fast_settings.model_copy(update={"ready_min_free_bytes": 1 << 62}), [MODEL])
    try:
        verdicts = rt.health().to_dict()
        assert set(verdicts) == {"audit_log", "audit_lake", "privacy"}
        for reason in verdicts.values():
            assert reason.endswith("free on its file system, under the 4294967296.0 GiB required")
    finally:
        rt.shutdown()


def test_a_lake_that_cannot_be_written_is_not_ready_until_a_seal_succeeds(
    fast_settings: Settings,
) -> None:
    lake = fast_settings.data_dir / "elsewhere" / "lake"
    lake.parent.mkdir()
    lake.write_text("a file where the lake directory should be")
    s = fast_settings.model_copy(
        update={"audit_lake_url": str(lake), "audit_seal_interval_s": 0.05}
    )
    rt = Runtime.start(s, [MODEL])
    try:
        decide(rt, 0)
        wait_for(lambda: not rt.health().ready, "the failed seal to show")
        reason = rt.health().to_dict()["audit_lake"]
        assert reason.startswith("sealing failed: ") and str(lake) not in reason
        assert decide(rt, 1) == 1  # decisions go on: the WAL keeps the records meanwhile
        lake.unlink()
        wait_for(lambda: rt.health().ready, "readiness after a seal")
    finally:
        rt.shutdown()


# ---- the readiness route ----------------------------------------------------------------------


def test_the_readiness_route_answers_503_in_the_one_error_shape(
    runtime: Runtime, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = FastAPI()
    instrument(app, runtime=runtime, readiness_path="/ready", shutdown_with_app=False)
    with TestClient(app) as client:
        ok = client.get("/ready")
        assert ok.status_code == 200
        assert ok.json() == {
            "status": "ready",
            "models": ["churn"],
            "components": {"audit_log": "ok", "audit_lake": "ok", "privacy": "ok"},
        }
        disk = Disk(fast_settings.audit_log_dir, monkeypatch)
        disk.full = True
        with pytest.raises(AuditUnavailableError):
            decide(runtime, 0)
        r = client.get("/ready", headers={"X-Request-ID": "probe-1"})
        assert r.status_code == 503
        body = r.json()
        assert set(body) == {"error", "detail", "request_id"}
        assert body["error"] == "not_ready" and body["request_id"] == "probe-1"
        assert body["detail"].startswith("audit_log: writes failed ")
        assert str(fast_settings.data_dir) not in r.text and "/tmp" not in r.text
        disk.heal()
        wait_for(lambda: client.get("/ready").status_code == 200, "the route to answer 200")


def test_the_readiness_route_is_opt_in(runtime: Runtime) -> None:
    app = FastAPI()
    instrument(app, runtime=runtime, shutdown_with_app=False)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 404


def test_the_demo_service_readyz_is_the_runtimes_and_healthz_stays_liveness(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = build_services(settings.model_copy(update={"audit_retry_s": 0.05}))
    try:
        with TestClient(create_app(services)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["models"] == ["sentiment", "credit", "digits"]
            disk = Disk(settings.audit_log_dir, monkeypatch)
            disk.full = True
            refused = client.post("/v1/sentiment", json={"text": "fine"})
            assert refused.status_code == 503
            assert refused.json()["error"] == "audit_unavailable"
            assert str(settings.data_dir) not in refused.text
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503 and not_ready.json()["error"] == "not_ready"
            assert client.get("/healthz").status_code == 200  # alive: no restart wanted
            disk.heal()
            wait_for(lambda: client.get("/readyz").status_code == 200, "/readyz 200 again")
            assert client.post("/v1/sentiment", json={"text": "fine"}).status_code == 200
    finally:
        services.close()
