"""Queries over compacted months return exactly what the hour files (and the tail) hold."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.compaction import Compactor
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.manifest import COMPACTION_DIR
from infertrail.compliance import engine as engine_module
from infertrail.compliance.engine import LakeIntegrityError, LakeQuery
from infertrail.compliance.filters import QueryFilters, parse_window
from infertrail.compliance.lakefiles import LakeFile

from .conftest import make_record

ORIGIN = "infertrail.test/compaction"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECTS = (
    "p-a11ce000000000000000000000000000",
    "p-b0b00000000000000000000000000000",
    "p-ca201000000000000000000000000000",
    None,
)


@dataclass
class Lake:
    """A log whose lake a test compacts, and the records written (with seq and ts)."""

    log: AuditLog
    engine: LakeQuery
    signer: NoteSigner
    lake_url: str
    written: list[dict[str, Any]]
    signer_key: str = ""

    def append(self, ts: datetime, subject: str | None) -> None:
        i = len(self.written)
        record = make_record(i, int(ts.timestamp() * 1e9), subject)
        receipt = self.log.append(record)
        self.written.append({"seq": receipt.seq, "ts": ts, "subject": subject})

    def seal(self) -> None:
        self.log.flush()
        Sealer(self.log, self.lake_url, self.signer).seal()

    def compact(self, now: datetime) -> list[str]:
        compactor = Compactor(self.lake_url, self.signer, ORIGIN, clock=lambda: now)
        return [c.manifest.month for c in compactor.compact()]

    def expected(self, spec: Spec, size: int) -> list[int]:
        start, end = (datetime.fromisoformat(v).replace(tzinfo=UTC) for v in spec.window)
        return [
            w["seq"]
            for w in self.written
            if start <= w["ts"] < end
            and w["seq"] < size
            and w["seq"] > spec.after
            and (spec.subject is None or w["subject"] == spec.subject)
        ][: spec.limit]

    def query(self, spec: Spec) -> tuple[list[int], int, int]:
        """Seqs returned, the count, the tree size; rows checked against their JSON too."""
        size = self.engine.checkpoint().size
        filters = QueryFilters.create(parse_window(*spec.window, 400), pseudonym=spec.subject)
        rows = [
            r
            for batch in self.engine.rows(filters, size, after=spec.after, limit=spec.limit)
            for r in batch
        ]
        for row in rows:
            assert json.loads(row.canonical)["seq"] == row.seq
            assert row.proof is not None
        return [r.seq for r in rows], self.engine.count(filters, size), size


@dataclass(frozen=True)
class Spec:
    window: tuple[str, str]
    subject: str | None = None
    after: int = -1
    limit: int | None = None


SPECS = [
    Spec(("2026-01-01", "2026-02-01")),  # a whole compacted month
    Spec(("2026-01-10T05:00Z", "2026-01-20T17:30Z")),  # part of one
    Spec(("2026-01-25", "2026-02-05"), "p-b0b00000000000000000000000000000"),  # across two
    Spec(
        ("2026-01-01", "2026-05-01"), "p-a11ce000000000000000000000000000"
    ),  # compacted and open months, and the tail
    Spec(("2026-01-01", "2026-05-01")),
    Spec(
        ("2026-01-01", "2026-05-01"), "p-ca201000000000000000000000000000", after=40, limit=7
    ),  # a page
    Spec(("2026-01-01", "2026-05-01"), None, after=100, limit=33),
    Spec(("2026-02-01", "2026-03-01"), "p-0fffffffffffffffffffffffffffffff"),
]


def open_lake(root: Path, skey: str | None = None, written: list[Any] | None = None) -> Lake:
    """A lake at ``root`` (a new log, or the one there with its signing key)."""
    skey = skey or NoteSigner.generate(ORIGIN)[0]
    signer = NoteSigner.from_key(skey)
    log = AuditLog.open(root / "log", signer=signer, origin=ORIGIN, fsync=False, batch_wait_ms=0)
    lake_url = str(root / "lake")
    engine = LakeQuery(log, lake_url, NoteVerifier.from_key(signer.verifier_key))
    return Lake(log, engine, signer, lake_url, list(written or []), skey)


def fill(lake: Lake) -> None:
    """300 records 9 h apart from January to mid-April; every 10th is 40 days late (its ts is in
    an earlier month than its neighbours'), sealed in rounds of 70; the last 20 stay unsealed."""
    for i in range(300):
        ts = T0 + timedelta(hours=9 * i, minutes=i % 50)
        if i % 10 == 9 and ts - timedelta(days=40) >= T0:
            ts -= timedelta(days=40)
        lake.append(ts, SUBJECTS[(i * 5) % 4])
        if (i + 1) % 70 == 0:
            lake.seal()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[Any]]:
    root = tmp_path_factory.mktemp("filled")
    lake = open_lake(root)
    fill(lake)
    lake.engine.close()
    lake.log.close()
    return root, lake.signer_key, lake.written


@pytest.fixture
def lake(
    template: tuple[Path, str, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Lake]:
    """A copy of the filled lake (nothing compacted yet), opened."""
    # Few files per statement, so statement boundaries fall among the interleaved ranges.
    monkeypatch.setattr(engine_module, "_FILES_PER_STATEMENT", 16)
    root, skey, written = template
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    built = open_lake(tmp_path, skey, written)
    yield built
    built.engine.close()
    built.log.close()


def check(lake: Lake) -> None:
    for spec in SPECS:
        seqs, count, size = lake.query(spec)
        assert seqs == lake.expected(spec, size), spec
        assert count == len(lake.expected(Spec(spec.window, spec.subject), size)), spec


def test_results_are_identical_with_and_without_compaction(lake: Lake) -> None:
    before = [lake.query(spec) for spec in SPECS]
    assert lake.compact(datetime(2026, 4, 25, tzinfo=UTC)) == ["2026-01", "2026-02", "2026-03"]
    _, files = lake.engine.files.snapshot(parse_window("2026-01-01", "2026-04-01", 400))
    assert [f.path.rsplit("/", 2)[1] for f in files if "compacted" in f.path] == [
        "month=2026-01", "month=2026-02", "month=2026-03",
    ]  # fmt: skip
    assert not [f for f in files if "/dt=2026-0" in f.path]  # every hour file is covered
    assert [lake.query(spec) for spec in SPECS] == before
    check(lake)


def test_late_records_after_compaction_are_found(lake: Lake) -> None:
    lake.seal()
    lake.compact(datetime(2026, 4, 25, tzinfo=UTC))
    for day in (3, 17, 31):
        lake.append(datetime(2026, 1, day, 12, tzinfo=UTC), "p-a11ce000000000000000000000000000")
    lake.seal()
    lake.append(
        datetime(2026, 1, 5, tzinfo=UTC), "p-a11ce000000000000000000000000000"
    )  # late and not even sealed
    assert lake.compact(datetime(2026, 4, 25, tzinfo=UTC)) == []
    _, files = lake.engine.files.snapshot(parse_window("2026-01-01", "2026-02-01", 400))
    assert len([f for f in files if "/dt=2026-01" in f.path]) == 3
    check(lake)
    seqs, _, _ = lake.query(
        Spec(("2026-01-01", "2026-02-01"), "p-a11ce000000000000000000000000000")
    )
    assert seqs[-4:] == [w["seq"] for w in lake.written[-4:]]


def test_a_compaction_manifest_that_does_not_verify_is_an_integrity_error(lake: Lake) -> None:
    lake.compact(datetime(2026, 4, 25, tzinfo=UTC))
    note = Path(lake.lake_url) / COMPACTION_DIR / "2026-02.json.note"
    note.chmod(0o644)
    note.write_bytes(note.read_bytes().replace(b'"count":', b'"count":0'))
    with pytest.raises(LakeIntegrityError, match=r"_compactions/2026-02\.json\.note"):
        lake.query(Spec(("2026-02-10", "2026-02-11")))
    assert lake.query(Spec(("2026-01-10", "2026-01-11")))[0]  # other months still answer


def test_a_compaction_of_hour_files_without_manifests_is_an_integrity_error(lake: Lake) -> None:
    lake.seal()
    lake.compact(datetime(2026, 4, 25, tzinfo=UTC))
    manifests = sorted((Path(lake.lake_url) / "_manifests").iterdir())
    manifests[-1].unlink()  # the last hour file's manifest: the frontier drops, no gap
    with pytest.raises(LakeIntegrityError, match="has no manifest"):
        lake.query(Spec(("2026-01-01", "2026-05-01")))


def test_overlapping_files_share_a_statement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "_FILES_PER_STATEMENT", 2)
    files = [LakeFile(0, 0, "a"), LakeFile(1, 90, "month"), LakeFile(5, 5, "b"),
             LakeFile(50, 50, "c"), LakeFile(91, 91, "d"), LakeFile(92, 92, "e"),
             LakeFile(93, 93, "f")]  # fmt: skip
    groups = [[f.path for f in g] for g in engine_module._groups(files)]
    assert groups == [["a", "month", "b", "c"], ["d", "e"], ["f"]]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.lists(
        st.tuples(st.integers(0, 110), st.integers(0, 23), st.sampled_from(SUBJECTS)),
        min_size=1,
        max_size=60,
    ),
    seal_every=st.integers(1, 25),
    tail=st.integers(0, 5),
    page=st.tuples(st.integers(-1, 60), st.none() | st.integers(1, 20)),
)
def test_property_compacted_and_hour_files_answer_alike(
    layout: list[tuple[int, int, str | None]],
    seal_every: int,
    tail: int,
    page: tuple[int, int | None],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lake = open_lake(Path(tmp))
        try:
            for n, (day, hour, subject) in enumerate(layout, 1):
                lake.append(T0 + timedelta(days=day, hours=hour), subject)
                if n % seal_every == 0 and n <= len(layout) - tail:
                    lake.seal()
            specs = [
                Spec(("2026-01-01", "2026-05-01"), "p-b0b00000000000000000000000000000", *page),
                Spec(("2026-01-20", "2026-03-10"), None, *page),
                Spec(("2026-02-01", "2026-03-01"), "p-a11ce000000000000000000000000000"),
            ]
            before = [lake.query(s) for s in specs]
            lake.compact(datetime(2026, 4, 20, tzinfo=UTC))
            assert [lake.query(s) for s in specs] == before
            for spec, (seqs, _, size) in zip(specs, before, strict=True):
                assert seqs == lake.expected(spec, size)
        finally:
            lake.engine.close()
            lake.log.close()


def test_compaction_in_an_fsspec_filesystem(tmp_path: Path) -> None:
    """Compactor and engine through fsspec (exclusive puts, listings), not the local disk."""
    skey, vkey = NoteSigner.generate(ORIGIN)
    signer = NoteSigner.from_key(skey)
    lake_url = f"memory://lake-{uuid.uuid4().hex}"
    log = AuditLog.open(
        tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False, batch_wait_ms=0
    )
    engine = LakeQuery(log, lake_url, NoteVerifier.from_key(vkey))
    lake = Lake(log, engine, signer, lake_url, [])
    try:
        for i in range(12):
            lake.append(T0 + timedelta(days=5 * i, hours=i), SUBJECTS[i % 4])
        lake.seal()
        lake.append(T0 + timedelta(days=3), "p-b0b00000000000000000000000000000")  # the tail
        spec = Spec(("2026-01-01", "2026-03-01"), "p-b0b00000000000000000000000000000")
        before = lake.query(spec)
        assert lake.compact(datetime(2026, 3, 5, tzinfo=UTC)) == ["2026-01", "2026-02"]
        assert lake.compact(datetime(2026, 3, 5, tzinfo=UTC)) == []
        _, files = engine.files.snapshot(parse_window(*spec.window, 400))
        assert all("/compacted/" in f.path for f in files)
        assert lake.query(spec) == before
        assert before[0] == lake.expected(spec, before[2])
    finally:
        engine.close()
        log.close()
        fsspec.filesystem("memory").rm(lake_url.removeprefix("memory://"), recursive=True)
