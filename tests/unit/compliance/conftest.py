"""A real audit log + lake for the query tests: decisions over several days, some unsealed.

The world is built once per session (log, sealed lake, pseudonym table, users) into a template
directory; each test gets its own copy, opened afresh, so tests may append freely.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.keys import generate_signing_key, load_signer
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import DEFAULT_RETENTION, derive_record
from infertrail.compliance.access import ROLES, UserStore, users_db_path
from infertrail.compliance.engine import LakeQuery
from infertrail.compliance.queries import Caller, QueryService
from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.privacy.stores import PrivacyService

ORIGIN = "infertrail.test/query"
SUBJECTS = ("alice-001", "bob-002", "carol-003")
MODELS = (ModelInfo("credit-lr", "1.0.0", "a" * 64), ModelInfo("credit-lr", "1.1.0", "b" * 64))
DECISIONS = ("approve", "decline", "refer")
DAYS = (datetime(2026, 6, 30, tzinfo=UTC), *(datetime(2026, 7, d, tzinfo=UTC) for d in (1, 2, 3)))
HOURS = (0, 7, 13, 23)
PER_HOUR = 4
SEALED_FRACTION = 0.7


@dataclass
class Template:
    root: Path
    keys: dict[str, str]  # role -> API key (kept outside the data dir)
    written: list[dict[str, Any]]  # every record written, with its seq
    pseudonyms: dict[str, str]  # subject id -> pseudonym
    sealed_until: int  # first seq left in the tail


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, audit_origin=ORIGIN, telemetry_files=False)


def make_record(i: int, ts_ns: int, subject: str | None) -> dict[str, Any]:
    """Decision i: subjects, models, decisions and a few human reviews in rotation."""
    ev = InferenceEvent(
        model=MODELS[i % 2],
        request_id=f"req-{i:05d}",
        service="credit-api",
        team="risk",
        endpoint="/v1/credit/score",
        inputs=None,
        input_size=20,
        start_time_ns=ts_ns,
        duration_ns=2_000_000,
        decision=DECISIONS[i % 3],
        score=(i % 10) / 10,
        confidence=0.8,
        ci_low=0.1,
        ci_high=0.9,
        trace_id=i + 1,
        span_id=i + 1,
    )
    review = i % 9 == 4
    return derive_record(
        ev,
        input_hmac=None,
        input_hmac_key_id=None,
        subject_pseudonym=subject,
        retention=DEFAULT_RETENTION,
        producer="infertrail/test",
        event_type="human_review" if review else "inference",
        actor={"id": "staff-7", "role": "reviewer"} if review else None,
    )


def build_template(root: Path) -> Template:
    settings = settings_for(root / "data")
    settings.ensure_dirs()
    generate_signing_key(settings.signing_key_file, ORIGIN)
    signer = load_signer(settings.signing_key_file)
    log = AuditLog.open(
        settings.audit_log_dir, signer=signer, origin=ORIGIN, fsync=False, batch_wait_ms=0
    )
    privacy = PrivacyService.open(settings, log)
    pseudonyms = {s: privacy.pseudonyms.pseudonym(s) for s in SUBJECTS}
    times = [
        int((day.timestamp() + h * 3600 + k * 600) * 1e9)
        for day in DAYS
        for h in HOURS
        for k in range(PER_HOUR)
    ]
    sealed_until = int(len(times) * SEALED_FRACTION)
    written = []
    for i, ts_ns in enumerate(times):
        subject = None if i % 4 == 3 else pseudonyms[SUBJECTS[i % 4]]
        record = make_record(i, ts_ns, subject)
        receipt = log.append(record)
        written.append({**record, "seq": receipt.seq})
        if i + 1 == sealed_until:
            Sealer(log, settings.lake_url, signer).seal()
    log.flush()
    users = UserStore(users_db_path(settings.data_dir))
    keys = {role: users.add(f"staff-{role}", role)[1] for role in ROLES}
    users.close()
    privacy.close()
    log.close()
    (root / "written.json").write_text(json.dumps(written))
    return Template(root, keys, written, pseudonyms, sealed_until)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return build_template(tmp_path_factory.mktemp("query-world"))


@dataclass
class World:
    """One test's copy of the world, opened: the log (writer), privacy, engine, service."""

    settings: Settings
    signer: NoteSigner
    verifier: NoteVerifier
    log: AuditLog
    privacy: PrivacyService
    engine: LakeQuery
    service: QueryService
    users: UserStore
    template: Template

    @property
    def keys(self) -> dict[str, str]:
        return self.template.keys

    @property
    def written(self) -> list[dict[str, Any]]:
        return self.template.written

    def caller(self, role: str, channel: str = "http") -> Caller:
        user = self.users.get(f"staff-{role}")
        assert user is not None
        return Caller(user, channel, request_id=f"rid-{role}")

    def close(self) -> None:
        self.engine.close()
        self.privacy.close()
        self.log.close()
        self.users.close()


def open_world(template: Template, root: Path) -> World:
    shutil.copytree(template.root / "data", root / "data")
    settings = settings_for(root / "data")
    signer = load_signer(settings.signing_key_file)
    verifier = NoteVerifier.from_key(signer.verifier_key)
    log = AuditLog.open(
        settings.audit_log_dir, signer=signer, origin=ORIGIN, fsync=False, batch_wait_ms=0
    )
    privacy = PrivacyService.open(settings, log)
    engine = LakeQuery(log, settings.lake_url, verifier)
    service = QueryService(engine, privacy.recorder, privacy)
    users = UserStore(users_db_path(settings.data_dir))
    return World(settings, signer, verifier, log, privacy, engine, service, users, template)


@pytest.fixture
def world(template: Template, tmp_path: Path) -> Iterator[World]:
    w = open_world(template, tmp_path)
    yield w
    w.close()
