"""The service compacts closed months on the sealer's thread (``audit_compact``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.runtime.audit import AuditTrail

MODEL = ModelInfo("credit-logreg", "2026.11.1", "ab" * 32)
LONG_AGO = int(datetime(2025, 3, 14, 9, tzinfo=UTC).timestamp() * 1e9)


def decide(trail: AuditTrail, i: int) -> None:
    ev = InferenceEvent(
        model=MODEL,
        request_id=f"req-{i}",
        service="credit-api",
        team="risk",
        endpoint="/v1/credit/score",
        inputs=None,
        input_size=5,
        start_time_ns=LONG_AGO + i * 10**9,
        duration_ns=2_000_000,
        decision="approve",
        score=0.8,
    )
    trail(ev)
    ev.audit.result(timeout=30)


def open_trail(tmp_path: Path, **overrides: object) -> AuditTrail:
    settings = Settings(
        data_dir=tmp_path / "data", telemetry_files=False, audit_seal_interval_s=0.05, **overrides
    )
    return AuditTrail.open(settings, fsync=False)


def wait_for(path: Path, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.usefixtures("clean_env")
def test_the_sealer_thread_compacts_closed_months(tmp_path: Path) -> None:
    trail = open_trail(tmp_path)
    try:
        for i in range(3):
            decide(trail, i)
        note = tmp_path / "data/audit/lake/_compactions/2025-03.json.note"
        assert wait_for(note)
        assert trail.sealer.last_error is None
    finally:
        trail.close()


@pytest.mark.usefixtures("clean_env")
def test_compaction_can_be_switched_off(tmp_path: Path) -> None:
    trail = open_trail(tmp_path, audit_compact=False)
    try:
        decide(trail, 0)
        assert wait_for(tmp_path / "data/audit/lake/_manifests")
        time.sleep(0.3)  # several seal rounds
        assert not (tmp_path / "data/audit/lake/_compactions").exists()
    finally:
        trail.close()


@pytest.mark.usefixtures("clean_env")
def test_a_negative_grace_is_refused() -> None:
    with pytest.raises(ValidationError, match="audit_compact_grace_s"):
        Settings(audit_compact_grace_s=-1)
