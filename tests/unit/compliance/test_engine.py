"""The engine on its own: a lake behind fsspec (not the local disk) and the decoded tail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import fsspec

from infertrail.audit import merkle
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.compliance.engine import LakeQuery
from infertrail.compliance.filters import QueryFilters, parse_window

from .conftest import World, make_record

T0 = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp() * 1e9)
HOUR_NS = 3600 * 10**9


def test_lake_in_an_fsspec_filesystem(tmp_path: Path) -> None:
    skey, vkey = NoteSigner.generate("test.example/fsspec")
    signer = NoteSigner.from_key(skey)
    lake = f"memory://lake-{uuid.uuid4().hex}"
    log = AuditLog.open(
        tmp_path / "log", signer=signer, origin="test.example/fsspec", fsync=False, batch_wait_ms=0
    )
    try:
        for i in range(10):
            log.append(make_record(i, T0 + i * HOUR_NS, None))
        assert len(Sealer(log, lake, signer).seal()) == 10
        for i in range(10, 13):
            log.append(make_record(i, T0 + i * HOUR_NS, None))
        engine = LakeQuery(log, lake, NoteVerifier.from_key(vkey))
        cp = engine.checkpoint()
        everything = QueryFilters.create(parse_window("2026-07-01", "2026-07-02", 366))
        assert [r.seq for b in engine.rows(everything, cp.size) for r in b] == list(range(13))
        assert engine.count(everything, cp.size) == 13
        assert engine.record(4, cp.size).seq == 4
        narrow = QueryFilters.create(parse_window("2026-07-01T03:00Z", "2026-07-01T05:00Z", 1))
        assert [r.seq for b in engine.rows(narrow, cp.size) for r in b] == [3, 4]
        engine.close()
    finally:
        log.close()
        fsspec.filesystem("memory").rm(lake.removeprefix("memory://"), recursive=True)


def test_memoized_proofs_equal_the_logs_own(world: World) -> None:
    """Proofs from memoized hash-store roots equal AuditLog.inclusion_proof's, as the log grows."""
    engine = LakeQuery(world.log, world.settings.lake_url, world.verifier, root_cache=64)
    try:
        everything = QueryFilters.create(parse_window("2026-06-01", "2026-08-01", 366))
        for extra in range(3):
            if extra:  # the read-only hash store handle must see leaves added since it opened
                world.log.append(make_record(500 + extra, T0, None))
            cp = engine.checkpoint()
            rows = [r for b in engine.rows(everything, cp.size) for r in b]
            assert len(rows) == len(world.written) + extra
            for row in rows:
                assert row.proof == world.log.inclusion_proof(row.seq, cp.size)
                leaf = merkle.leaf_hash(row.canonical)
                assert merkle.verify_inclusion(row.seq, cp.size, leaf, row.proof, cp.root)
    finally:
        engine.close()
