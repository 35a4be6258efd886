"""The audit trail uses the pseudonym table and, when enabled, the raw-payload store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infertrail.audit.canonical import canonicalize
from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.privacy.errors import SubjectErasedError
from infertrail.runtime.audit import AuditTrail
from tests.unit.privacy.conftest import ADMIN, COMPLIANCE, CREDIT_INPUTS, JUSTIFICATION

MODEL = ModelInfo("credit-logreg", "2026.11.1", "ab" * 32)


def event(request_id: str, subject: str | None) -> InferenceEvent:
    return InferenceEvent(
        model=MODEL,
        request_id=request_id,
        service="credit-api",
        team="risk",
        endpoint="/v1/credit/score",
        inputs=CREDIT_INPUTS,
        input_size=5,
        subject=subject,
        start_time_ns=time.time_ns(),
        duration_ns=2_000_000,
        decision="decline",
        score=0.31,
    )


def open_trail(tmp_path: Path, **overrides: object) -> AuditTrail:
    settings = Settings(data_dir=tmp_path / "data", telemetry_files=False, **overrides)
    return AuditTrail.open(settings, fsync=False)


@pytest.fixture
def trail(tmp_path: Path, clean_env: None) -> Iterator[AuditTrail]:
    t = open_trail(tmp_path, raw_payloads_enabled=True)
    yield t
    t.close()


def test_records_carry_the_mapped_pseudonym_and_payloads_are_stored(trail: AuditTrail) -> None:
    ev = event("req-1", "applicant-0001")
    trail(ev)
    seq = ev.audit.result(timeout=30).seq
    ((_, raw),) = trail.log.read(seq, seq + 1)
    record = json.loads(raw)
    assert record["subject"] == trail.pseudonym("applicant-0001")
    assert record["subject"] == trail.privacy.pseudonyms.lookup("applicant-0001")
    assert "applicant-0001" not in raw.decode()
    payloads = trail.privacy.payloads
    assert payloads is not None
    payloads.flush()
    payload = payloads.read("req-1", ADMIN, JUSTIFICATION)
    assert payload.plaintext == canonicalize(CREDIT_INPUTS)
    assert payload.pseudonym == record["subject"]


def test_an_erased_subject_gets_no_record_and_no_payload(trail: AuditTrail) -> None:
    trail(event("req-1", "leaver"))
    receipt = trail.privacy.erase("leaver", COMPLIANCE, "GDPR Art. 17 request")
    size = trail.log.size
    ev = event("req-2", "leaver")
    trail(ev)
    with pytest.raises(SubjectErasedError):
        ev.audit.result(timeout=30)
    trail.log.flush()
    assert trail.log.size == size
    status = trail.privacy.erasure_status("leaver")
    assert status is not None and status.receipt_seq == receipt.receipt_seq


def test_events_without_a_subject_store_no_payload(trail: AuditTrail) -> None:
    ev = event("req-anon", None)
    trail(ev)
    ev.audit.result(timeout=30)
    payloads = trail.privacy.payloads
    assert payloads is not None
    payloads.flush()
    assert payloads.stats.stored == 0


def test_raw_payloads_are_off_by_default(tmp_path: Path, clean_env: None) -> None:
    trail = open_trail(tmp_path)
    try:
        trail(event("req-1", "applicant-0001"))
        assert trail.privacy.payloads is None
        assert not (tmp_path / "data" / "privacy" / "payloads.db").exists()
        assert (tmp_path / "data" / "privacy" / "subjects.db").exists()
    finally:
        trail.close()
    trail.close()  # idempotent, privacy services included
