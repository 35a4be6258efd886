"""Monthly compaction: one subject-sorted, signed, write-once copy per closed month."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertrail.audit import compaction
from infertrail.audit.compaction import (
    CompactionError,
    Compactor,
    compaction_names,
    month_bounds,
)
from infertrail.audit.lake import LakeReader, Sealer
from infertrail.audit.manifest import (
    COMPACTION_DIR,
    MANIFEST_DIR,
    CompactionManifest,
    ManifestError,
    open_compaction,
)
from tests.unit.audit.test_lake import BuiltLog, make_record, new_keys
from tests.unit.audit.test_verify import private_copy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=7)  # 400 records: January to mid-April
CLOCK = datetime(2026, 4, 20, tzinfo=UTC)  # January to March are closed, April is open


def record_at(i: int, ts: datetime, subject: str | None) -> dict[str, Any]:
    return make_record(i, ts=ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), subject=subject)


def subject_of(i: int) -> str | None:
    return None if i % 11 == 5 else f"p-{(i * 7) % 13:02d}"


def build_months(root: Path, n: int = 400, unsealed: int = 20) -> BuiltLog:
    """``n`` records 7 h apart from 2026-01-01 sealed in rounds of 150, then ``unsealed`` more."""
    signer, verifier = new_keys()
    built = BuiltLog(root / "log", str(root / "lake"), signer, verifier)
    with built.open(segment_bytes=16 * 1024, checkpoint_interval_ms=60_000) as log:
        sealer = Sealer(log, built.lake_url, signer)
        for i in range(n + unsealed):
            log.append(record_at(i, T0 + i * STEP, subject_of(i)))
            if (i + 1) % 150 == 0 or i + 1 == n:
                log.flush()
                sealer.seal()
    return built


def compactor(built: BuiltLog, now: datetime = CLOCK, **options: Any) -> Compactor:
    return Compactor(built.lake_url, built.signer, built.signer.name, clock=lambda: now, **options)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_months(tmp_path_factory.mktemp("months"))


@pytest.fixture
def built(pristine: BuiltLog, tmp_path: Path) -> BuiltLog:
    return private_copy(pristine, tmp_path)


def hour_manifests(built: BuiltLog, month: str) -> list[str]:
    manifests = LakeReader(built.lake_url).manifests(built.verifier)
    return [m.name.removesuffix(".json.note") for m in manifests if m.file[3:10] == month]


def test_closed_months_are_compacted_sorted_by_subject_then_seq(built: BuiltLog) -> None:
    done = compactor(built, row_group_rows=16).compact()
    assert [c.manifest.month for c in done] == ["2026-01", "2026-02", "2026-03"]
    reader = LakeReader(built.lake_url)
    for c in done:
        m = c.manifest
        assert c.manifest_path == f"{COMPACTION_DIR}/{m.month}.json.note"
        assert m.sources == tuple(hour_manifests(built, m.month))
        assert m.file == f"compacted/month={m.month}/{m.first_seq:020d}-{m.last_seq:020d}.parquet"
        data = reader.read_bytes(m.file)
        assert m.sha256 == hashlib.sha256(data).hexdigest()
        assert open_compaction(reader.read_bytes(c.manifest_path), built.verifier) == m
        parquet = pq.ParquetFile(pa.BufferReader(data))
        assert parquet.metadata.row_group(0).num_rows == 16
        assert parquet.schema_arrow.metadata[b"infertrail.origin"] == built.signer.name.encode()
        rows = parquet.read(columns=["seq", "subject", "ts"]).to_pylist()
        keys = [(r["subject"] is None, r["subject"] or "", r["seq"]) for r in rows]
        assert keys == sorted(keys)  # subject ascending, nulls last, then seq
        assert sorted(r["seq"] for r in rows) == list(range(m.first_seq, m.last_seq + 1))
        assert m.count == len(rows)
        start, end = month_bounds(m.month)
        assert all(start <= r["ts"] < end for r in rows)
        stats = parquet.metadata.row_group(0).column(parquet.schema_arrow.names.index("subject"))
        assert stats.statistics.has_min_max


def test_manifest_signature_and_origin(built: BuiltLog) -> None:
    (first, *_) = compactor(built).compact()
    note = LakeReader(built.lake_url).read_bytes(first.manifest_path)
    _, other = new_keys()
    with pytest.raises(ManifestError, match="signature"):
        open_compaction(note, other)
    forged = note.replace(b'"count":', b'"count": ')
    with pytest.raises(ManifestError):
        open_compaction(forged, built.verifier)


def test_a_second_run_does_nothing(built: BuiltLog) -> None:
    assert len(compactor(built).compact()) == 3
    lake = Path(built.lake_url)
    before = {p: p.stat().st_mtime_ns for p in lake.rglob("*")}
    assert compactor(built).compact() == []
    assert {p: p.stat().st_mtime_ns for p in lake.rglob("*")} == before


def test_open_months_and_the_grace_period(built: BuiltLog) -> None:
    # On March 31 January and February are closed; one hour into April March is still in grace.
    assert list(compactor(built, datetime(2026, 3, 31, tzinfo=UTC)).pending()) == [
        "2026-01", "2026-02",
    ]  # fmt: skip
    assert "2026-03" not in compactor(built, datetime(2026, 4, 1, 1, tzinfo=UTC)).pending()
    no_grace = compactor(built, datetime(2026, 4, 1, 1, tzinfo=UTC), grace=timedelta(0))
    assert "2026-03" in no_grace.pending()
    assert list(compactor(built, datetime(2025, 12, 1, tzinfo=UTC)).pending()) == []


def test_crash_between_file_and_manifest_adopts_an_identical_file(built: BuiltLog) -> None:
    (jan, *_) = compactor(built).compact()
    note = Path(built.lake_url) / jan.manifest_path
    note.unlink()  # as if the process died after writing the file
    again = compactor(built).compact()
    assert [c.manifest.month for c in again] == ["2026-01"]
    assert again[0].manifest.sha256 == jan.manifest.sha256


def test_crash_leftover_with_other_content_is_never_overwritten(built: BuiltLog) -> None:
    (jan, *_) = compactor(built).compact()
    (Path(built.lake_url) / jan.manifest_path).unlink()
    path = Path(built.lake_url) / jan.manifest.file
    table = pq.read_table(path)
    path.chmod(0o644)
    pq.write_table(table.slice(1), path)
    kept = path.read_bytes()
    with pytest.raises(CompactionError, match="exists with other content"):
        compactor(built).compact()
    assert path.read_bytes() == kept
    assert not (Path(built.lake_url) / jan.manifest_path).exists()


def test_a_bad_source_stops_its_month_only_and_is_retried_later(
    built: BuiltLog, caplog: pytest.LogCaptureFixture
) -> None:
    reader = LakeReader(built.lake_url)
    feb = [m for m in reader.manifests(built.verifier) if m.file.startswith("dt=2026-02")]
    path = Path(built.lake_url) / feb[1].file
    path.chmod(0o644)
    good = path.read_bytes()
    path.write_bytes(good[:-1] + b"\x00")
    worker = compactor(built)
    with pytest.raises(CompactionError, match=f"cannot compact 2026-02: {feb[1].file}: sha256"):
        worker.compact()
    # January and March were written; February wrote nothing.
    assert compaction_names(reader) == ["2026-01.json.note", "2026-03.json.note"]
    assert not (Path(built.lake_url) / "compacted/month=2026-02").exists()
    assert "compacting 2026-02 failed, next try in 3600 s" in caplog.text
    path.write_bytes(good)  # repaired, but within the hour the month is not read again
    assert worker.compact() == []
    assert compaction_names(reader) == ["2026-01.json.note", "2026-03.json.note"]
    eager = compactor(built, retry_after=timedelta(0))
    assert [c.manifest.month for c in eager.compact()] == ["2026-02"]


def test_failed_months_wait_longer_after_each_failure(
    built: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(compaction, "_monotonic", lambda: now[0])
    reader = LakeReader(built.lake_url)
    feb = next(m for m in reader.manifests(built.verifier) if m.file.startswith("dt=2026-02"))
    (Path(built.lake_url) / feb.file).unlink()
    worker = compactor(built, retry_after=timedelta(seconds=10))
    waits = []
    for _ in range(4):
        with pytest.raises(CompactionError, match="cannot compact 2026-02"):
            worker.compact()
        retry_at, wait = worker._backoff["2026-02"]
        waits.append(wait)
        assert worker.compact() == []  # within the wait: not read, nothing raised
        now[0] = retry_at
    assert waits == [10.0, 20.0, 40.0, 80.0]


def test_overlapping_sources_are_refused_before_anything_is_written(built: BuiltLog) -> None:
    reader = LakeReader(built.lake_url)
    jan = [m for m in reader.manifests(built.verifier) if m.file.startswith("dt=2026-01")]
    a = jan[3].first_seq
    file = f"{jan[3].file.rsplit('/', 1)[0]}/{a:020d}-{a + 1:020d}.parquet"
    overlapping = replace(jan[3], file=file, last_seq=a + 1)
    (Path(built.lake_url) / MANIFEST_DIR / overlapping.name).write_bytes(
        built.signer.sign(overlapping.text())
    )
    with pytest.raises(CompactionError, match=r"cannot compact 2026-01: .*disjoint"):
        compactor(built).compact()
    assert compaction_names(reader) == ["2026-02.json.note", "2026-03.json.note"]
    assert not (Path(built.lake_url) / "compacted/month=2026-01").exists()


def test_a_manifest_of_another_log_is_refused(built: BuiltLog) -> None:
    other = Compactor(built.lake_url, built.signer, "another.example/log", clock=lambda: CLOCK)
    with pytest.raises(CompactionError, match=r"another\.example/log"):
        other.compact()


def test_late_records_stay_in_hour_files(built: BuiltLog) -> None:
    assert len(compactor(built).compact()) == 3
    with built.open() as log:
        log.append(record_at(9000, datetime(2026, 1, 15, 3, tzinfo=UTC), "p-late"))
        log.flush()
        (late,) = [f for f in Sealer(log, built.lake_url, built.signer).seal() if "01-15" in f.path]
    assert compactor(built, CLOCK + timedelta(days=30)).pending().keys() == {"2026-04"}
    jan = open_compaction(
        LakeReader(built.lake_url).read_bytes(f"{COMPACTION_DIR}/2026-01.json.note"),
        built.verifier,
    )
    assert late.manifest.name.removesuffix(".json.note") not in jan.sources


def test_sealer_runs_the_compactor_after_each_round(built: BuiltLog) -> None:
    ran = threading.Event()
    with built.open() as log:
        sealer = Sealer(log, built.lake_url, built.signer, after_round=ran.set)
        sealer.start(0.01)
        try:
            assert ran.wait(5)
        finally:
            sealer.stop()
        assert sealer.last_error is None


def test_bad_options_and_months() -> None:
    signer, _ = new_keys()
    with pytest.raises(ValueError, match="grace must be >= 0"):
        Compactor("lake", signer, "o", grace=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="row_group_rows must be >= 1"):
        Compactor("lake", signer, "o", row_group_rows=0)
    with pytest.raises(ValueError, match="retry_after must be >= 0"):
        Compactor("lake", signer, "o", retry_after=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="memory_mb must be >= 64"):
        Compactor("lake", signer, "o", memory_mb=63)
    for bad in ("2026-13", "2026-1", "26-01", "2026-00"):
        with pytest.raises(ValueError, match="month must be YYYY-MM"):
            month_bounds(bad)
    assert month_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC),
    )  # fmt: skip


GOOD = CompactionManifest(
    origin="o",
    month="2026-01",
    file="compacted/month=2026-01/" + f"{0:020d}-{9:020d}.parquet",
    sources=(f"{0:020d}-{3:020d}", f"{4:020d}-{9:020d}"),
    count=10,
    sha256="a" * 64,
    created="2026-02-02T00:00:00.000000Z",
)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"month": "2026-13"}, "month '2026-13' is not YYYY-MM"),
        ({"count": 9}, "count 9 is not its sources' 10 records"),
        ({"sources": (f"{0:020d}-{4:020d}", f"{4:020d}-{9:020d}")}, "disjoint"),
        ({"sources": ()}, "non-empty list"),
        ({"file": "compacted/month=2026-01/x.parquet"}, "is not 'compacted/month=2026-01/"),
        ({"sha256": "A" * 64}, "64 lowercase hex"),
    ],
)
def test_compaction_manifest_checks(change: dict[str, Any], message: str) -> None:
    assert CompactionManifest.parse(GOOD.text()) == GOOD
    with pytest.raises(ManifestError, match=message):
        CompactionManifest.parse(replace(GOOD, **change).text())


def test_compaction_manifest_sort_order_is_fixed() -> None:
    text = GOOD.text().replace(b"subject ASC NULLS LAST, seq ASC", b"seq ASC")
    with pytest.raises(ManifestError, match="sort 'seq ASC'"):
        CompactionManifest.parse(text)


def test_hour_manifests_are_untouched(built: BuiltLog) -> None:
    lake = Path(built.lake_url)
    before = sorted(p.name for p in (lake / MANIFEST_DIR).iterdir())
    hour_files = sorted(lake.glob("dt=*/hour=*/*.parquet"))
    compactor(built).compact()
    assert sorted(p.name for p in (lake / MANIFEST_DIR).iterdir()) == before
    assert sorted(lake.glob("dt=*/hour=*/*.parquet")) == hour_files
