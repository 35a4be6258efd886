"""The raw-payload store keeps one data key per subject and month, so a month can be shredded
alone; stores written before key periods (schema version 1) are upgraded in place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from infertrail.audit.canonical import canonicalize
from infertrail.keyring import Keyring
from infertrail.privacy.crypto import KeyringKEK, new_data_key, payload_aad, seal
from infertrail.privacy.errors import PayloadIntegrityError, PayloadNotFoundError
from infertrail.privacy.raw_payloads import PayloadStore, ShredCounts
from tests.unit.retention.conftest import ADMIN, JUSTIFICATION, World

APRIL = datetime(2026, 4, 2, 8, tzinfo=UTC)


def db(world: World) -> sqlite3.Connection:
    return sqlite3.connect(world.payloads.path, isolation_level=None)


def test_a_subject_gets_one_data_key_per_month_and_payloads_keep_the_decision_time(
    world: World,
) -> None:
    world.decide("alice", "r-march-1", {"n": 1})
    world.decide("alice", "r-march-2", {"n": 2})
    world.clock.set(APRIL)
    world.decide("alice", "r-april", {"n": 3})
    rows = db(world).execute("SELECT key_period, kek_id FROM deks ORDER BY key_period").fetchall()
    assert rows == [("2026-03", "kek@2026-03"), ("2026-04", "kek@2026-04")]
    assert world.payloads.periods() == {
        "2026-03": ShredCounts(1, 2),
        "2026-04": ShredCounts(1, 1),
    }
    payload = world.payloads.read("r-march-1", ADMIN, JUSTIFICATION)
    assert payload.stored_at == "2026-03-10T12:00:00.000000Z"  # at_ns, not the store's clock
    assert payload.inputs() == {"n": 1}


def test_a_data_key_moved_to_another_month_fails_authentication(world: World) -> None:
    world.decide("alice", "r-march", {"n": 1})
    world.clock.set(APRIL)
    world.decide("alice", "r-april", {"n": 2})
    conn = db(world)
    march_key = conn.execute("SELECT wrapped_dek FROM deks WHERE key_period = '2026-03'")
    conn.execute(
        "UPDATE deks SET wrapped_dek = ?, kek_id = 'kek@2026-03' WHERE key_period = '2026-04'",
        march_key.fetchone(),
    )
    with pytest.raises(PayloadIntegrityError, match="wrapped data key under kek@2026-03"):
        world.payloads.read("r-april", ADMIN, JUSTIFICATION)


def test_shredding_a_month_leaves_the_next_one_readable(world: World) -> None:
    world.decide("alice", "r-march", {"n": 1})
    world.decide("bob", "r-march-bob", {"n": 2})
    world.clock.set(APRIL)
    world.decide("alice", "r-april", {"n": 3})
    assert world.payloads.held(periods=["2026-03"]) == ShredCounts(2, 2)
    assert world.payloads.shred_keys(periods=["2026-03"]) == ShredCounts(2, 2)
    assert world.payloads.held(periods=["2026-03"]) == ShredCounts(0, 0)
    for request_id in ("r-march", "r-march-bob"):
        with pytest.raises(PayloadNotFoundError):
            world.payloads.read(request_id, ADMIN, JUSTIFICATION)
    assert world.payloads.read("r-april", ADMIN, JUSTIFICATION).inputs() == {"n": 3}
    assert world.payloads.shred_keys() == ShredCounts(0, 0)  # nothing selected: nothing gone


def test_shredding_under_a_kek_takes_every_data_key_it_wraps(world: World) -> None:
    world.decide("alice", "r-march", {"n": 1})
    world.clock.set(APRIL)
    world.decide("alice", "r-april", {"n": 2})
    assert world.payloads.held(kek_ids=["kek@2026-04"]) == ShredCounts(1, 1)
    assert world.payloads.shred_keys(kek_ids=["kek@2026-04"]) == ShredCounts(1, 1)
    assert world.payloads.read("r-march", ADMIN, JUSTIFICATION).inputs() == {"n": 1}
    with pytest.raises(PayloadNotFoundError):
        world.payloads.read("r-april", ADMIN, JUSTIFICATION)


def test_purge_drops_a_months_data_key_with_its_last_payload(world: World) -> None:
    world.decide("alice", "r-march", {"n": 1})
    world.clock.set(APRIL)
    world.decide("alice", "r-april", {"n": 2})
    world.clock.set(datetime(2026, 4, 5, tzinfo=UTC))  # March's payload is 26 days old
    report = world.payloads.purge()
    assert (report.payloads, report.data_keys) == (1, 1)
    assert set(world.payloads.periods()) == {"2026-04"}


V1_SCHEMA = (
    """CREATE TABLE payloads (request_id TEXT PRIMARY KEY, pseudonym TEXT NOT NULL,
        ts INTEGER NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL, aad BLOB NOT NULL
    ) STRICT""",
    "CREATE INDEX payloads_by_subject ON payloads (pseudonym)",
    "CREATE INDEX payloads_by_ts ON payloads (ts)",
    """CREATE TABLE deks (pseudonym TEXT PRIMARY KEY, wrapped_dek BLOB NOT NULL,
        kek_id TEXT NOT NULL) WITHOUT ROWID, STRICT""",
)


def write_v1_store(path: Path, keyring: Keyring, pseudonym: str, ts_us: int) -> None:
    """A payloads.db as schema version 1 wrote it: one data key per subject, context = pseudonym."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in V1_SCHEMA:
        conn.execute(statement)
    dek = new_data_key()
    wrapped = KeyringKEK(keyring).wrap(dek, pseudonym.encode())
    aad = payload_aad(pseudonym, "r-old", ts_us)
    nonce, ciphertext = seal(dek, canonicalize({"old": True}), aad)
    conn.execute("INSERT INTO deks VALUES (?, ?, ?)", (pseudonym, wrapped.blob, wrapped.kek_id))
    conn.execute(
        "INSERT INTO payloads VALUES (?, ?, ?, ?, ?, ?)",
        ("r-old", pseudonym, ts_us, nonce, ciphertext, aad),
    )
    conn.execute("PRAGMA user_version=1")
    conn.close()
    path.chmod(0o600)


def test_a_version_1_store_is_upgraded_and_its_payloads_stay_readable(
    tmp_path: Path, world: World
) -> None:
    legacy = Keyring(tmp_path / "legacy-keyring.json")  # kek-1: not a period key
    pseudonym = world.table.pseudonym("alice")
    path = tmp_path / "v1" / "payloads.db"
    write_v1_store(path, legacy, pseudonym, int(world.clock.seconds() * 1e6))
    store = PayloadStore(
        path, KeyringKEK(legacy), world.table.is_live, world.recorder, clock=world.clock
    )
    try:
        assert store.read("r-old", ADMIN, JUSTIFICATION).inputs() == {"old": True}
        store.store(pseudonym, "r-new", {"new": True}, at_ns=world.clock.ns())
        store.flush(10)
        assert store.periods() == {"": ShredCounts(1, 1), "2026-03": ShredCounts(1, 1)}
        assert orjson.loads(store.read("r-new", ADMIN, JUSTIFICATION).plaintext) == {"new": True}
        # Legacy data keys belong to no key period: only the purge (or an erasure) removes them.
        assert store.held(periods=["2026-03"]) == ShredCounts(1, 1)
        world.clock.advance(timedelta(days=8))
        assert store.purge().payloads == 2
        assert store.periods() == {}
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (2,)
