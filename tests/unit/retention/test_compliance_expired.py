"""Compliance query rows say whether a record is past its retention_until (``expired``):
a field of the row, sealed or in the WAL tail, never an error; the row stays provable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit import merkle
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import DEFAULT_RETENTION, derive_record
from infertrail.compliance.engine import LakeQuery
from infertrail.compliance.filters import QueryFilters, parse_window
from infertrail.events import InferenceEvent, ModelInfo
from tests.unit.retention.conftest import ORIGIN

MODEL = ModelInfo("credit-lr", "1.0.0", "a" * 64)
# ts -> retention_until (184 days): 2026-03-10 -> 2026-09-10; 2026-04-01 -> 2026-10-02.
DECISIONS = (datetime(2026, 3, 10, 9, tzinfo=UTC), datetime(2026, 4, 1, 9, tzinfo=UTC))


def record(i: int, moment: datetime) -> dict[str, Any]:
    ev = InferenceEvent(
        model=MODEL,
        request_id=f"req-{i}",
        service="credit-api",
        team="risk",
        endpoint="/v1/score",
        inputs=None,
        input_size=1,
        start_time_ns=int(moment.timestamp()) * 10**9,
        duration_ns=1_000_000,
        decision="approve",
    )
    return derive_record(
        ev,
        input_hmac=None,
        input_hmac_key_id=None,
        subject_pseudonym=None,
        retention=DEFAULT_RETENTION,
        producer="infertrail/test",
    )


@pytest.fixture
def log(tmp_path: Path, signing: tuple[NoteSigner, NoteVerifier]) -> Iterator[AuditLog]:
    signer, _ = signing
    log = AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False)
    log.append(record(0, DECISIONS[0]))
    Sealer(log, str(tmp_path / "lake"), signer).seal()
    log.append(record(1, DECISIONS[1]))  # stays in the WAL tail
    log.flush()
    yield log
    log.close()


def expired_on(log: AuditLog, lake: str, today: date) -> list[tuple[int, bool]]:
    engine = LakeQuery(log, lake, today=lambda: today)
    try:
        filters = QueryFilters.create(parse_window("2026-03-01", "2026-05-01", 366))
        checkpoint = engine.checkpoint()
        rows = [r for batch in engine.rows(filters, checkpoint.size) for r in batch]
        for row in rows:
            out = row.to_dict()
            assert out["expired"] is row.expired
            assert out["retention_until"] == row.fields["retention_until"].isoformat()
            assert merkle.leaf_hash(row.canonical) == row.leaf_hash and row.proof is not None
        proved = engine.prove(rows, checkpoint.size)
        assert [r.expired for r in proved] == [r.expired for r in rows]  # kept by prove()
        return [(r.seq, r.expired) for r in rows]
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 9, 10), [(0, False), (1, False)]),  # kept through retention_until
        (date(2026, 9, 11), [(0, True), (1, False)]),  # the sealed one expired
        (date(2026, 10, 3), [(0, True), (1, True)]),  # and the one in the WAL tail
    ],
)
def test_rows_say_expired_after_retention_until(
    log: AuditLog, tmp_path: Path, today: date, expected: list[tuple[int, bool]]
) -> None:
    assert expired_on(log, str(tmp_path / "lake"), today) == expected
