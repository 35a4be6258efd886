"""Fixtures for the privacy tests: a keyring, a real audit log, the stores, a settable clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import DEFAULT_RETENTION, Actor
from infertrail.keyring import Keyring
from infertrail.privacy.crypto import KeyringKEK
from infertrail.privacy.pseudonyms import PseudonymTable
from infertrail.privacy.raw_payloads import PayloadStore
from infertrail.privacy.records import AuditRecorder

ORIGIN = "infertrail.test/privacy"
ADMIN = Actor(id="staff-17", role="admin")
COMPLIANCE = Actor(id="staff-42", role="compliance")
AUDITOR = Actor(id="staff-99", role="auditor")
JUSTIFICATION = "INC-2041: reproduce a wrong decline for this request"
T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@dataclass
class Clock:
    """A settable UTC clock for the payload store."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Ticker:
    """A settable monotonic clock for the pseudonym cache refresh."""

    t: float = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Keys:
    signer: NoteSigner
    verifier: NoteVerifier


@pytest.fixture(scope="session")
def keys() -> Keys:
    skey, vkey = NoteSigner.generate(ORIGIN)
    return Keys(NoteSigner.from_key(skey), NoteVerifier.from_key(vkey))


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keys" / "keyring.json")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "log"


@pytest.fixture
def audit_log(log_dir: Path, keys: Keys) -> Iterator[AuditLog]:
    log = AuditLog.open(log_dir, signer=keys.signer, origin=ORIGIN, fsync=False, batch_wait_ms=0)
    yield log
    log.close()


@pytest.fixture
def recorder(audit_log: AuditLog) -> AuditRecorder:
    return AuditRecorder(audit_log, DEFAULT_RETENTION, "infertrail/0.1.0", service="credit-api")


@pytest.fixture
def table(tmp_path: Path, keyring: Keyring, recorder: AuditRecorder) -> Iterator[PseudonymTable]:
    t = PseudonymTable(tmp_path / "privacy" / "subjects.db", keyring, recorder)
    yield t
    t.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(
    tmp_path: Path,
    keyring: Keyring,
    table: PseudonymTable,
    recorder: AuditRecorder,
    clock: Clock,
) -> Iterator[PayloadStore]:
    s = PayloadStore(
        tmp_path / "privacy" / "payloads.db",
        KeyringKEK(keyring),
        table.is_live,
        recorder,
        clock=clock,
    )
    yield s
    s.close()


def records(log: AuditLog) -> list[dict[str, Any]]:
    """Every committed record of the log, parsed."""
    return [json.loads(raw) for _, raw in log.read(0, log.size)]


def raw_records(log: AuditLog) -> list[bytes]:
    """Every committed record's canonical bytes."""
    return [raw for _, raw in log.read(0, log.size)]


CREDIT_INPUTS: dict[str, Any] = {
    "checking_status": "A11",
    "duration_months": 24,
    "credit_amount": 4870,
    "purpose": "A43",
    "age_years": 35,
}
