"""Fixtures for the retention tests: a keyring and payload store on settable clocks, a real
audit log, and the retention service over them."""

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
from infertrail.privacy.crypto import KEK_PURPOSE, KeyringKEK
from infertrail.privacy.keys import INPUT_KEY_PURPOSE
from infertrail.privacy.pseudonyms import PseudonymTable
from infertrail.privacy.raw_payloads import PayloadStore
from infertrail.privacy.records import AuditRecorder
from infertrail.retention.service import RetentionService

ORIGIN = "infertrail.test/retention"
ADMIN = Actor(id="staff-17", role="admin")
JUSTIFICATION = "INC-2041: reproduce a wrong decline for this request"
#: The days the test keyring keeps each period key after its month (the defaults' values).
INPUT_DAYS = DEFAULT_RETENTION.days  # 184
PAYLOAD_DAYS = 7
#: March 2026: its input key is kept until 2026-03-31 + 184 days = 2026-10-01.
MARCH = datetime(2026, 3, 10, 12, tzinfo=UTC)
MARCH_KEEP_UNTIL = "2026-10-01"


@dataclass
class Clock:
    """A settable UTC wall clock, readable as a datetime or as Unix seconds."""

    now: datetime = MARCH

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    def ns(self) -> int:
        return int(self.now.timestamp()) * 10**9 + self.now.microsecond * 1000

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    """A keyring, a pseudonym table and a payload store on one clock, recording to one log."""

    clock: Clock
    keyring: Keyring
    log: AuditLog
    recorder: AuditRecorder
    table: PseudonymTable
    payloads: PayloadStore
    service: RetentionService
    verifier: NoteVerifier

    def decide(self, subject: str, request_id: str, inputs: Any) -> str:
        """What the audit trail does for a decision now: its month's input key and payload."""
        self.keyring.period_key(INPUT_KEY_PURPOSE, self.clock.seconds())
        pseudonym = self.table.pseudonym(subject)
        self.payloads.store(pseudonym, request_id, inputs, at_ns=self.clock.ns())
        self.payloads.flush(10)
        return pseudonym

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.log.read(0, self.log.size)]


@pytest.fixture(scope="session")
def signing() -> tuple[NoteSigner, NoteVerifier]:
    skey, vkey = NoteSigner.generate(ORIGIN)
    return NoteSigner.from_key(skey), NoteVerifier.from_key(vkey)


def open_keyring(path: Path, clock: Clock) -> Keyring:
    return Keyring(
        path,
        periodic={INPUT_KEY_PURPOSE: INPUT_DAYS, KEK_PURPOSE: PAYLOAD_DAYS},
        clock=clock.seconds,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(
    tmp_path: Path, clock: Clock, signing: tuple[NoteSigner, NoteVerifier]
) -> Iterator[World]:
    signer, verifier = signing
    keyring = open_keyring(tmp_path / "keys" / "keyring.json", clock)
    log = AuditLog.open(
        tmp_path / "audit" / "log", signer=signer, origin=ORIGIN, fsync=False, batch_wait_ms=0
    )
    recorder = AuditRecorder(log, DEFAULT_RETENTION, "infertrail/0.1.0", service="credit-api")
    table = PseudonymTable(tmp_path / "privacy" / "subjects.db", keyring, recorder)
    payloads = PayloadStore(
        tmp_path / "privacy" / "payloads.db",
        KeyringKEK(keyring),
        table.is_live,
        recorder,
        retention=timedelta(days=PAYLOAD_DAYS),
        clock=clock,
    )
    service = RetentionService(keyring, payloads, recorder, payload_days=PAYLOAD_DAYS, clock=clock)
    yield World(clock, keyring, log, recorder, table, payloads, service, verifier)
    payloads.close()
    table.close()
    log.close()
