"""The query service over a real log + lake: completeness, pagination, proofs, accountability."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infertrail.audit import merkle
from infertrail.audit.checkpoint import open_checkpoint
from infertrail.audit.evidence import check_evidence
from infertrail.audit.lake import MANIFEST_DIR, Sealer
from infertrail.audit.record import validate_record
from infertrail.compliance.access import AccessDenied
from infertrail.compliance.engine import LakeIntegrityError, Row
from infertrail.compliance.filters import QueryError
from infertrail.compliance.queries import NotFoundError, QueryResult, RecordsQuery

from .conftest import SUBJECTS, World, make_record

JUSTIFY = "DSAR-1142: subject asked for their decisions"
JUL1, JUL4 = "2026-07-01", "2026-07-04"


def in_window(record: dict[str, Any], start: str = JUL1, end: str = JUL4) -> bool:
    return start <= record["ts"][:10] < end


def expected(world: World, **match: Any) -> list[int]:
    return [
        r["seq"]
        for r in world.written
        if in_window(r) and all(r.get(k) == v for k, v in match.items())
    ]


def all_pages(world: World, role: str, q: RecordsQuery) -> list[QueryResult]:
    pages = [world.service.query(world.caller(role), q)]
    while pages[-1].next_cursor is not None:
        cursor = pages[-1].next_cursor
        pages.append(world.service.query(world.caller(role), _with(q, cursor=cursor)))
    return pages


def _with(q: RecordsQuery, **changes: Any) -> RecordsQuery:
    fields = {name: getattr(q, name) for name in q.__slots__}
    return RecordsQuery(**(fields | changes))


def seqs(rows: list[Row]) -> list[int]:
    return [r.seq for r in rows]


def test_window_query_is_complete_across_lake_and_tail(world: World) -> None:
    result = world.service.query(world.caller("auditor"), RecordsQuery(JUL1, JUL4, limit=1000))
    want = expected(world)
    assert seqs(result.rows) == want
    sealed = world.template.sealed_until
    assert any(s < sealed for s in want) and any(s >= sealed for s in want)  # both sides
    assert result.next_cursor is None
    assert result.checkpoint.size >= len(world.written)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_version", "1.1.0"),
        ("decision", "decline"),
        ("event_type", "human_review"),
        ("model_name", "credit-lr"),
    ],
)
def test_field_filters(world: World, field: str, value: str) -> None:
    q = RecordsQuery(JUL1, JUL4, limit=1000, **{field: value})
    result = world.service.query(world.caller("auditor"), q)
    assert seqs(result.rows) == expected(world, **{field: value})
    assert result.rows and all(r.fields[field] == value for r in result.rows)


def test_subject_by_id_for_compliance_and_by_pseudonym_for_auditors(world: World) -> None:
    pseudonym = world.template.pseudonyms["bob-002"]
    want = expected(world, subject=pseudonym)
    by_id = world.service.query(
        world.caller("compliance"),
        RecordsQuery(JUL1, JUL4, subject_id="bob-002", justification=JUSTIFY, limit=1000),
    )
    by_pseudonym = world.service.query(
        world.caller("auditor"), RecordsQuery(JUL1, JUL4, pseudonym=pseudonym, limit=1000)
    )
    assert want and seqs(by_id.rows) == want == seqs(by_pseudonym.rows)
    assert by_id.subject is not None and by_id.subject.status == "resolved"
    assert by_pseudonym.subject is None


def test_combined_filters_and_time_precision(world: World) -> None:
    q = RecordsQuery("2026-07-02T07:00:00Z", "2026-07-02T07:30:00Z", decision="approve")
    result = world.service.query(world.caller("auditor"), q)
    want = [
        r["seq"]
        for r in world.written
        if "2026-07-02T07:00" <= r["ts"] < "2026-07-02T07:30" and r["decision"] == "approve"
    ]
    assert seqs(result.rows) == want


def test_pagination_walks_every_row_once(world: World) -> None:
    q = RecordsQuery(JUL1, JUL4, limit=7)
    pages = all_pages(world, "auditor", q)
    walked = [s for p in pages for s in seqs(p.rows)]
    assert walked == expected(world)
    assert all(len(p.rows) == 7 for p in pages[:-1]) and len(pages) > 3


def test_pagination_is_stable_while_the_log_grows_and_seals(world: World) -> None:
    q = RecordsQuery(JUL1, JUL4, limit=10)
    first = world.service.query(world.caller("auditor"), q)
    ts = int(datetime(2026, 7, 2, 12, tzinfo=UTC).timestamp() * 1e9)
    added = [world.log.append(make_record(1000 + i, ts, None)).seq for i in range(3)]
    Sealer(world.log, world.settings.lake_url, world.signer).seal()
    rest = all_pages(world, "auditor", _with(q, cursor=first.next_cursor))
    walked = seqs(first.rows) + [s for p in rest for s in seqs(p.rows)]
    assert walked == [*expected(world), *added]
    assert len(set(walked)) == len(walked)


def test_cursor_is_bound_to_its_filters(world: World) -> None:
    q = RecordsQuery(JUL1, JUL4, limit=5)
    cursor = world.service.query(world.caller("auditor"), q).next_cursor
    assert cursor is not None
    with pytest.raises(QueryError, match="other filters") as info:
        world.service.query(world.caller("auditor"), _with(q, decision="approve", cursor=cursor))
    assert info.value.field == "cursor"


def test_every_row_is_proven_against_the_signed_checkpoint(world: World) -> None:
    result = world.service.query(world.caller("auditor"), RecordsQuery(JUL1, JUL4, limit=1000))
    cp = open_checkpoint(result.checkpoint.note, world.verifier)
    assert (cp.size, cp.root) == (result.checkpoint.size, result.checkpoint.root)
    for row in result.rows:
        assert row.proof is not None
        leaf = merkle.leaf_hash(row.canonical)
        assert merkle.verify_inclusion(row.seq, cp.size, leaf, row.proof, cp.root)
        check = check_evidence(row.evidence(result.checkpoint), world.verifier.verifier_key)
        assert check.ok, check.reason
        assert json.loads(row.canonical)["seq"] == row.seq
        # Typed fields agree with the record they came from.
        record = json.loads(row.canonical)
        assert row.fields["subject"] == record["subject"]
        assert row.fields["decision"] == record["decision"]


def test_json_row_form(world: World) -> None:
    q = RecordsQuery(JUL1, JUL4, limit=1)
    row = world.service.query(world.caller("auditor"), q).to_dict()["rows"][0]
    assert row["ts"].endswith("Z") and len(row["ts"]) == 27
    assert json.loads(row["record"])["ts"] == row["ts"]
    assert row["leaf_hash"] == merkle.leaf_hash(row["record"].encode()).hex()
    assert all(len(base64.b64decode(h)) == 32 for h in row["inclusion_proof"])


def test_queries_are_audited_and_found_by_the_same_query(world: World) -> None:
    pseudonym = world.template.pseudonyms["alice-001"]
    result = world.service.query(
        world.caller("compliance"),
        RecordsQuery(JUL1, JUL4, subject_id="alice-001", justification=JUSTIFY, limit=3),
    )
    now = datetime.now(UTC)
    today = (now - timedelta(minutes=5)).isoformat()
    tomorrow = (now + timedelta(days=1)).isoformat()
    who = world.service.query(
        world.caller("auditor"),
        RecordsQuery(today, tomorrow, pseudonym=pseudonym, event_type="access_query"),
    )
    assert [r.seq for r in who.rows] == [result.access_seq]
    record = json.loads(who.rows[0].canonical)
    validate_record(record)
    assert record["actor"] == {"id": "staff-compliance", "role": "compliance", "channel": "http"}
    assert record["subject"] == pseudonym
    assert record["request_id"] == "rid-compliance"
    details = record["access_query"]
    assert details["operation"] == "query"
    assert details["justification"] == JUSTIFY
    assert details["result_count"] == 3
    assert details["filters"]["pseudonym"] == pseudonym
    assert details["subject_lookup"] == "resolved"
    assert details["outcome"] == "ok"
    assert "alice-001" not in who.rows[0].canonical.decode()


def test_raw_subject_ids_never_reach_the_log(world: World) -> None:
    for subject in SUBJECTS:
        world.service.query(
            world.caller("compliance"),
            RecordsQuery(JUL1, JUL4, subject_id=subject, justification=JUSTIFY),
        )
    with pytest.raises(AccessDenied):
        world.service.query(
            world.caller("auditor"),
            RecordsQuery(JUL1, JUL4, subject_id="alice-001", justification=JUSTIFY),
        )
    world.log.flush()
    Sealer(world.log, world.settings.lake_url, world.signer).seal()
    audit_dir = world.settings.audit_dir
    blobs = b"".join(p.read_bytes() for p in audit_dir.rglob("*") if p.is_file())
    for subject in SUBJECTS:
        assert subject.encode() not in blobs


def test_refusals_are_audited(world: World) -> None:
    pseudonym = world.template.pseudonyms["carol-003"]
    with pytest.raises(AccessDenied, match="resolve_subject"):
        world.service.query(
            world.caller("auditor"),
            RecordsQuery(JUL1, JUL4, subject_id="carol-003", justification=JUSTIFY),
        )
    with pytest.raises(AccessDenied, match="read_decisions"):
        world.service.export(world.caller("engineer"), RecordsQuery(JUL1, JUL4))
    with pytest.raises(AccessDenied):
        world.service.proof(world.caller("engineer"), 0)
    with pytest.raises(AccessDenied):
        world.service.checkpoint(world.caller("engineer"))
    with pytest.raises(AccessDenied, match="erase"):
        world.service.erase(world.caller("auditor"), "carol-003", JUSTIFY)
    size = world.log.size
    denied = [json.loads(p) for _, p in world.log.read(len(world.written), size)]
    assert [(d["actor"]["role"], d["access_query"]["operation"]) for d in denied] == [
        ("auditor", "query"),
        ("engineer", "export"),
        ("engineer", "proof"),
        ("engineer", "checkpoint"),
        ("auditor", "erasure"),
    ]
    assert all(d["access_query"]["outcome"] == "denied" for d in denied)
    assert denied[0]["subject"] == pseudonym  # who tried to look at carol, though refused
    for record in denied:
        validate_record(record)


@pytest.mark.parametrize(
    ("justification", "message"),
    [
        (None, "is required"),
        ("  ", "is required"),
        ("too short", "10 to 1000"),
        ("x" * 1001, "10 to 1000"),
    ],
)
def test_subject_id_queries_need_a_justification(
    world: World, justification: str | None, message: str
) -> None:
    q = RecordsQuery(JUL1, JUL4, subject_id="alice-001", justification=justification)
    with pytest.raises(QueryError, match=message) as info:
        world.service.query(world.caller("compliance"), q)
    assert info.value.field == "justification"


@pytest.mark.parametrize(
    ("q", "field"),
    [
        (RecordsQuery(None, JUL4), "from"),
        (RecordsQuery(JUL1, None), "to"),
        (RecordsQuery(JUL4, JUL1), "to"),
        (RecordsQuery("2025-01-01", JUL4), "to"),
        (RecordsQuery(JUL1, JUL4, limit=0), "limit"),
        (RecordsQuery(JUL1, JUL4, limit=1001), "limit"),
        (RecordsQuery(JUL1, JUL4, event_type="nope"), "event_type"),
        (RecordsQuery(JUL1, JUL4, cursor="garbage"), "cursor"),
        (
            RecordsQuery(JUL1, JUL4, subject_id="x", pseudonym="p", justification=JUSTIFY),
            "pseudonym",
        ),
        (RecordsQuery(JUL1, JUL4, subject_id="x" * 300, justification=JUSTIFY), "subject_id"),
    ],
)
def test_bad_parameters(world: World, q: RecordsQuery, field: str) -> None:
    with pytest.raises(QueryError) as info:
        world.service.query(world.caller("compliance"), q)
    assert info.value.field == field
    assert world.log.size == len(world.written)  # nothing was audited: nothing was run


def test_unknown_subject_returns_nothing_and_says_so(world: World) -> None:
    q = RecordsQuery(JUL1, JUL4, subject_id="nobody-999", justification=JUSTIFY)
    result = world.service.query(world.caller("compliance"), q)
    assert result.rows == [] and result.next_cursor is None
    assert result.subject is not None and result.subject.status == "unknown"
    record = json.loads(next(iter(world.log.read(result.access_seq, result.access_seq + 1)))[1])
    assert record["subject"] is None and record["access_query"]["subject_lookup"] == "unknown"


def test_after_erasure_queries_return_nothing_and_say_when_and_by_whom(world: World) -> None:
    receipt = world.service.erase(world.caller("compliance"), "alice-001", JUSTIFY)
    q = RecordsQuery(JUL1, JUL4, subject_id="alice-001", justification=JUSTIFY)
    result = world.service.query(world.caller("compliance"), q)
    assert result.rows == []
    notice = result.to_dict()["subject"]
    assert notice["status"] == "erased"
    assert notice["erasure"]["erased_at"] == receipt.erased_at
    assert notice["erasure"]["by"]["id"] == "staff-compliance"
    assert notice["erasure"]["receipt_seq"] == receipt.receipt_seq
    export = world.service.export(world.caller("compliance"), q)
    assert export.count == 0 and list(export.batches) == []


def test_erasure_of_unknown_subject_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError):
        world.service.erase(world.caller("compliance"), "nobody-999", JUSTIFY)
    with pytest.raises(QueryError, match="justification"):
        world.service.erase(world.caller("compliance"), "alice-001", None)


def test_export_counts_first_then_streams_everything(world: World) -> None:
    export = world.service.export(world.caller("auditor"), RecordsQuery(JUL1, JUL4))
    record = json.loads(next(iter(world.log.read(export.access_seq, export.access_seq + 1)))[1])
    assert record["access_query"]["operation"] == "export"
    assert record["access_query"]["result_count"] == export.count == len(expected(world))
    rows = [r for batch in export.batches for r in batch]
    assert seqs(rows) == expected(world)
    assert all(r.proof is not None for r in rows)
    without = world.service.export(world.caller("auditor"), RecordsQuery(JUL1, JUL4), proofs=False)
    assert all(r.proof is None for batch in without.batches for r in batch)
    with pytest.raises(QueryError, match="not paginated"):
        world.service.export(world.caller("auditor"), RecordsQuery(JUL1, JUL4, cursor="x"))


@pytest.mark.parametrize("where", ["lake", "tail"])
def test_proof_of_one_record(world: World, where: str) -> None:
    seq = 3 if where == "lake" else world.template.sealed_until + 2
    evidence, access_seq = world.service.proof(world.caller("auditor"), seq)
    assert check_evidence(evidence, world.verifier.verifier_key).ok
    assert json.loads(evidence["record"]) == world.written[seq]
    record = json.loads(next(iter(world.log.read(access_seq, access_seq + 1)))[1])
    assert record["access_query"]["seq"] == seq
    assert record["subject"] == world.written[seq]["subject"]
    with pytest.raises(NotFoundError, match="not covered"):
        world.service.proof(world.caller("auditor"), 10**6)


def test_results_stay_complete_when_the_sealer_retires_the_tail(world: World) -> None:
    q = RecordsQuery(JUL1, JUL4, limit=1000)
    before = seqs(world.service.query(world.caller("auditor"), q).rows)  # tail now cached
    Sealer(world.log, world.settings.lake_url, world.signer).seal()
    after = seqs(world.service.query(world.caller("auditor"), q).rows)
    assert before == after == expected(world)


def test_broken_lake_is_an_integrity_error(world: World) -> None:
    first = sorted((world.settings.audit_dir / "lake" / MANIFEST_DIR).iterdir())[0]
    first.unlink()
    with pytest.raises(LakeIntegrityError, match="not contiguous"):
        world.service.query(world.caller("auditor"), RecordsQuery(JUL1, JUL4))


def test_files_without_a_manifest_are_never_read(world: World) -> None:
    """A crash between the sealer's file and its manifest leaves a file no query may read."""
    lake = world.settings.audit_dir / "lake"
    sealed = sorted(lake.glob("dt=2026-07-02/hour=07/*.parquet"))[0]
    size = world.log.size
    stray = sealed.with_name(f"{size:020d}-{size + 5:020d}.parquet")
    stray.write_bytes(sealed.read_bytes())
    q = RecordsQuery(JUL1, JUL4, limit=1000)
    assert seqs(world.service.query(world.caller("auditor"), q).rows) == expected(world)
