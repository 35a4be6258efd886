"""The pseudonym table: create on first use, look up without creating, cache, threads, keys."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infertrail.audit.ledger import AuditLog
from infertrail.audit.record import validate_record
from infertrail.keyring import Keyring
from infertrail.privacy.erasure import erase
from infertrail.privacy.errors import AccessRefusedError, PrivacyError, SubjectErasedError
from infertrail.privacy.pseudonyms import (
    SUBJECT_KEY_PURPOSE,
    PseudonymTable,
    ReEnrolment,
    subject_key,
)
from infertrail.privacy.records import SUBJECT_RE_ENROLLED, AuditRecorder
from tests.unit.privacy.conftest import ADMIN, AUDITOR, COMPLIANCE, Ticker, records

PSEUDONYM = re.compile(r"^p-[0-9a-f]{32}$")


def test_pseudonym_is_random_created_once_and_persisted(
    tmp_path: Path, keyring: Keyring, table: PseudonymTable
) -> None:
    p = table.pseudonym("applicant-0001")
    assert PSEUDONYM.match(p)
    assert table.pseudonym("applicant-0001") == p
    assert table.pseudonym("applicant-0002") != p
    reopened = PseudonymTable(table.path, keyring)
    try:
        assert reopened.lookup("applicant-0001") == p
        assert reopened.pseudonym("applicant-0001") == p
    finally:
        reopened.close()
    # Random, not derived: another table with the same key gives another pseudonym.
    other = PseudonymTable(tmp_path / "other.db", keyring)
    try:
        assert other.pseudonym("applicant-0001") != p
    finally:
        other.close()


def test_lookup_never_creates(table: PseudonymTable) -> None:
    assert table.lookup("nobody") is None
    assert table.lookup("nobody") is None
    assert table.tombstone("nobody") is None
    created = table.pseudonym("nobody")
    assert table.lookup("nobody") == created


def test_lookup_on_a_fresh_keyring_creates_no_key(tmp_path: Path, keyring: Keyring) -> None:
    t = PseudonymTable(tmp_path / "s.db", keyring)
    try:
        assert t.lookup("someone") is None
        assert keyring.key_ids(SUBJECT_KEY_PURPOSE) == []
    finally:
        t.close()


def test_the_raw_subject_id_is_not_stored(table: PseudonymTable) -> None:
    subject = "applicant-raw-id-7f3e2a"
    table.pseudonym(subject)
    stored = b"".join(p.read_bytes() for p in table.path.parent.glob("subjects.db*"))
    assert subject.encode() not in stored


def test_hits_are_served_from_the_cache(table: PseudonymTable) -> None:
    p = table.pseudonym("cached")
    statements: list[str] = []
    connections = (table._db._read, table._db._write)
    for conn in connections:
        conn.set_trace_callback(statements.append)
    try:
        for _ in range(100):
            assert table.pseudonym("cached") == p
            assert table.lookup("cached") == p
    finally:
        for conn in connections:
            conn.set_trace_callback(None)
    assert statements == []


def test_bounded_cache_still_answers_evicted_subjects(tmp_path: Path, keyring: Keyring) -> None:
    t = PseudonymTable(tmp_path / "s.db", keyring, cache_size=4)
    try:
        first = {f"s{i}": t.pseudonym(f"s{i}") for i in range(10)}
        assert len(t._cache) <= 4
        assert {s: t.pseudonym(s) for s in first} == first
    finally:
        t.close()


def test_concurrent_first_use_gives_one_pseudonym_per_subject(
    tmp_path: Path, keyring: Keyring, table: PseudonymTable
) -> None:
    # Two tables on one file stand in for two processes; each is shared by several threads.
    second = PseudonymTable(table.path, keyring)
    subjects = [f"applicant-{i}" for i in range(60)]
    seen: list[dict[str, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: PseudonymTable, offset: int) -> None:
        try:
            start.wait()
            got = {}
            for i in range(len(subjects)):
                s = subjects[(i + offset) % len(subjects)]
                got[s] = t.pseudonym(s)
            seen.append(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(table if n % 2 else second, n * 7)) for n in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    second.close()
    assert errors == []
    assert all(got == seen[0] for got in seen)
    assert len(set(seen[0].values())) == len(subjects)
    (count,) = table._db._read.execute("SELECT count(*) FROM subjects").fetchone()
    assert count == len(subjects)


def test_subject_key_rotation_keeps_existing_mappings(
    keyring: Keyring, table: PseudonymTable
) -> None:
    before = table.pseudonym("long-standing")
    old_id = keyring.active(SUBJECT_KEY_PURPOSE)[0]
    new_id = keyring.rotate(SUBJECT_KEY_PURPOSE)
    fresh = PseudonymTable(table.path, keyring)  # no cache: the rows must be found again
    try:
        assert fresh.pseudonym("long-standing") == before
        fresh.pseudonym("newcomer")
        rows = dict(fresh._db._read.execute("SELECT pseudonym, key_id FROM subjects").fetchall())
        assert rows[before] == old_id
        assert rows[fresh.lookup("newcomer")] == new_id
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("subject", "error", "message"),
    [
        ("", ValueError, "1 to 256 characters, got 0"),
        ("x" * 257, ValueError, "1 to 256 characters, got 257"),
        (42, TypeError, "must be a string, got int"),
        (None, TypeError, "must be a string, got NoneType"),
    ],
)
def test_bad_subject_ids_are_refused_without_echoing_them(
    table: PseudonymTable, subject: object, error: type[Exception], message: str
) -> None:
    for call in (table.pseudonym, table.lookup, table.tombstone):
        with pytest.raises(error, match=re.escape(message)) as info:
            call(subject)  # type: ignore[arg-type]
        if isinstance(subject, str) and subject:
            assert subject not in str(info.value)


def test_a_world_readable_table_is_refused(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "s.db"
    PseudonymTable(path, keyring).close()
    path.chmod(0o644)
    with pytest.raises(PrivacyError, match="mode 0644"):
        PseudonymTable(path, keyring)


def test_bad_options(tmp_path: Path, keyring: Keyring) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        PseudonymTable(tmp_path / "s.db", keyring, cache_size=-1)
    with pytest.raises(ValueError, match="refresh_interval_s"):
        PseudonymTable(tmp_path / "s.db", keyring, refresh_interval_s=0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(min_size=1, max_size=256), min_size=1, max_size=8, unique=True))
def test_any_subject_ids_map_stably_and_distinctly(
    table: PseudonymTable, subjects: list[str]
) -> None:
    got = [table.pseudonym(s) for s in subjects]
    assert [table.lookup(s) for s in subjects] == got
    assert len(set(got)) == len(got)
    assert all(PSEUDONYM.match(p) for p in got)


def test_subject_key_is_hmac_of_the_id() -> None:
    key = bytes(range(32))
    assert subject_key(key, "a") != subject_key(key, "b")
    assert subject_key(key, "a") != subject_key(bytes(32), "a")
    assert len(subject_key(key, "a")) == 32


# ---- tombstones and re-enrolment ---------------------------------------------------------


def test_a_tombstone_blocks_a_silent_new_pseudonym(
    table: PseudonymTable, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    table.pseudonym("leaver")
    receipt = erase("leaver", COMPLIANCE, "GDPR Art. 17 request", pseudonyms=table,
                    payloads=None, recorder=recorder)  # fmt: skip
    size = audit_log.size
    with pytest.raises(SubjectErasedError, match=re.escape(receipt.erased_at)) as info:
        table.pseudonym("leaver")
    assert info.value.receipt_seq == receipt.receipt_seq
    assert info.value.actor_id == COMPLIANCE.id
    assert table.lookup("leaver") is None
    assert audit_log.size == size  # a refusal writes nothing


def test_re_enrolment_is_recorded_before_the_new_pseudonym_exists(
    table: PseudonymTable, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    old = table.pseudonym("returning")
    receipt = erase("returning", COMPLIANCE, "GDPR Art. 17 request", pseudonyms=table,
                    payloads=None, recorder=recorder)  # fmt: skip
    why = "customer re-applied on 2026-12-01 and consented anew"
    new = table.pseudonym("returning", re_enrol=ReEnrolment(ADMIN, why))
    assert new != old and PSEUDONYM.match(new)
    last = records(audit_log)[-1]
    assert last["event_type"] == SUBJECT_RE_ENROLLED
    assert last["subject"] == new
    assert last["actor"] == {"id": ADMIN.id, "role": "admin"}
    assert last[SUBJECT_RE_ENROLLED] == {
        "reason": why,
        "erased_at": receipt.erased_at,
        "erasure_seq": receipt.receipt_seq,
    }
    assert old not in str(last)
    assert table.lookup("returning") == new
    assert table.pseudonym("returning") == new  # no further record needed
    assert audit_log.size == receipt.receipt_seq + 2
    tomb = table.tombstone("returning")  # the erasure stays on file
    assert tomb is not None and tomb.receipt_seq == receipt.receipt_seq


def test_re_enrolment_record_passes_the_schema(
    table: PseudonymTable, recorder: AuditRecorder, audit_log: AuditLog
) -> None:
    table.pseudonym("returning")
    erase("returning", COMPLIANCE, "Art. 17", pseudonyms=table, payloads=None, recorder=recorder)
    table.pseudonym("returning", re_enrol=ReEnrolment(ADMIN, "re-applied with new consent"))
    validate_record(records(audit_log)[-1])


@pytest.mark.parametrize(
    ("re_enrol", "error", "message"),
    [
        (ReEnrolment(AUDITOR, "re-applied with new consent"), AccessRefusedError, "role"),
        (ReEnrolment(ADMIN, "because"), AccessRefusedError, "10 to 1000 characters, got 7"),
        (ReEnrolment(ADMIN, "   "), AccessRefusedError, "got 0"),
    ],
)
def test_bad_re_enrolments_are_refused_and_not_recorded(
    table: PseudonymTable,
    recorder: AuditRecorder,
    audit_log: AuditLog,
    re_enrol: ReEnrolment,
    error: type[Exception],
    message: str,
) -> None:
    table.pseudonym("returning")
    erase("returning", COMPLIANCE, "Art. 17", pseudonyms=table, payloads=None, recorder=recorder)
    size = audit_log.size
    with pytest.raises(error, match=message):
        table.pseudonym("returning", re_enrol=re_enrol)
    assert audit_log.size == size
    assert table.lookup("returning") is None


def test_re_enrolment_without_an_audit_log_is_refused(
    table: PseudonymTable, recorder: AuditRecorder, keyring: Keyring
) -> None:
    table.pseudonym("returning")
    erase("returning", COMPLIANCE, "Art. 17", pseudonyms=table, payloads=None, recorder=recorder)
    read_only = PseudonymTable(table.path, keyring)
    try:
        with pytest.raises(PrivacyError, match="no audit log attached"):
            read_only.pseudonym("returning", re_enrol=ReEnrolment(ADMIN, "re-applied anew"))
    finally:
        read_only.close()


def test_re_enrol_is_ignored_for_a_subject_never_erased(
    table: PseudonymTable, audit_log: AuditLog
) -> None:
    p = table.pseudonym("regular", re_enrol=ReEnrolment(ADMIN, "not needed at all"))
    assert PSEUDONYM.match(p)
    assert audit_log.size == 0


def test_an_erasure_elsewhere_reaches_a_cache_within_the_refresh_interval(
    table: PseudonymTable, recorder: AuditRecorder, keyring: Keyring
) -> None:
    ticker = Ticker()
    server = PseudonymTable(table.path, keyring, refresh_interval_s=1.0, monotonic=ticker)
    try:
        cached = server.pseudonym("moving-on")
        erase("moving-on", COMPLIANCE, "Art. 17", pseudonyms=table, payloads=None,
              recorder=recorder)  # fmt: skip
        assert server.pseudonym("moving-on") == cached  # stale for at most one interval
        assert server.lookup("moving-on") == cached
        ticker.t = 1.0
        assert server.lookup("moving-on") is None
        with pytest.raises(SubjectErasedError):
            server.pseudonym("moving-on")
    finally:
        server.close()


def test_concurrent_first_use_of_the_keyring_creates_one_subject_key(tmp_path: Path) -> None:
    # Two Keyring objects on one file stand in for two processes.
    path = tmp_path / "keys" / "keyring.json"
    rings = [Keyring(path), Keyring(path)]
    start = threading.Barrier(8)
    got: list[str] = []

    def first_use(ring: Keyring) -> None:
        start.wait()
        got.append(ring.active(SUBJECT_KEY_PURPOSE)[0])

    threads = [threading.Thread(target=first_use, args=(rings[n % 2],)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert set(got) == {f"{SUBJECT_KEY_PURPOSE}-1"}
    assert Keyring(path).key_ids(SUBJECT_KEY_PURPOSE) == [f"{SUBJECT_KEY_PURPOSE}-1"]


def test_a_reader_opened_before_the_first_subject_still_finds_it(
    tmp_path: Path, table: PseudonymTable
) -> None:
    reader = PseudonymTable(table.path, Keyring(tmp_path / "keys" / "keyring.json"))
    try:
        p = table.pseudonym("first-ever")  # creates the subject key after the reader opened
        assert reader.lookup("first-ever") == p
    finally:
        reader.close()
