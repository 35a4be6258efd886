"""The Parquet lake: sealing committed records into write-once, signed, hour-partitioned files."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.lake import (
    FILE_SCHEMA,
    MANIFEST_DIR,
    LakeReader,
    Manifest,
    ManifestError,
    Sealer,
    SealError,
    open_manifest,
    typed_columns,
)
from infertrail.audit.ledger import AuditLog

ORIGIN = "test.example/log"


def make_record(i: int, *, hour: int = 10, **extra: Any) -> dict[str, Any]:
    """A record of the real schema's shape (the ledger adds seq)."""
    record: dict[str, Any] = {
        "schema_version": 1,
        "record_id": f"0190a2b4-1111-7aaa-8bbb-{i:012d}",
        "event_type": "inference",
        "ts": f"2026-11-26T{hour:02d}:{i % 60:02d}:{i % 60:02d}.{i % 1_000_000:06d}Z",
        "request_id": f"req-{i}",
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "service": "credit-api",
        "team": "risk",
        "endpoint": "/predict",
        "subject": f"p-{i % 7}",
        "model_name": "credit",
        "model_version": "1.2.0",
        "model_sha256": "c" * 64,
        "input_hmac": "d" * 64,
        "decision": "approve" if i % 3 else "decline",
        "score": i / 1000,
        "confidence": 0.9,
        "ci_low": 0.1,
        "ci_high": 0.95,
        "explanation": {"method": "shap", "base_value": 0.5, "values": {"income": 0.1}},
        "decision_mode": "solely_automated",
        "latency_ms": 3.25,
        "status": "ok",
        "error": None,
        "retention_class": "eu-ai-act-6m",
        "retention_until": "2027-05-28",
        "producer": "infertrail/0.1.0",
    }
    record.update(extra)
    return record


@dataclass
class BuiltLog:
    """A closed test log on disk: its directory, lake and keys."""

    log_dir: Path
    lake_url: str
    signer: NoteSigner
    verifier: NoteVerifier

    def open(self, **options: Any) -> AuditLog:
        # Every checkpoint kept in the history: tests tamper with and count its entries.
        options.setdefault("history_interval_ms", 0)
        return AuditLog.open(
            self.log_dir, signer=self.signer, origin=self.signer.name, fsync=False, **options
        )


def new_keys(origin: str = ORIGIN) -> tuple[NoteSigner, NoteVerifier]:
    skey, vkey = NoteSigner.generate(origin)
    return NoteSigner.from_key(skey), NoteVerifier.from_key(vkey)


def build_log(
    root: Path,
    *,
    sealed: int = 600,
    unsealed: int = 150,
    origin: str = ORIGIN,
    per_hour: int = 250,
    max_rows: int = 200,
    keys: tuple[NoteSigner, NoteVerifier] | None = None,
) -> BuiltLog:
    """Append ``sealed`` records, seal them, append ``unsealed`` more (WAL only), close."""
    signer, verifier = keys or new_keys(origin)
    built = BuiltLog(root / "log", str(root / "lake"), signer, verifier)
    with built.open(segment_bytes=16 * 1024, checkpoint_interval_ms=60_000) as log:
        for i in range(sealed):
            log.append(make_record(i, hour=10 + i // per_hour))
        log.flush()
        Sealer(log, built.lake_url, signer, max_rows_per_file=max_rows).seal()
        for i in range(sealed, sealed + unsealed):
            log.append(make_record(i, hour=10 + i // per_hour))
    return built


def test_seal_writes_hour_partitions_with_signed_manifests(tmp_path: Path) -> None:
    built = build_log(tmp_path, sealed=600, unsealed=0)
    reader = LakeReader(built.lake_url)
    manifests = reader.manifests(built.verifier)
    assert [(m.first_seq, m.last_seq) for m in manifests] == [
        (0, 199), (200, 249), (250, 399), (400, 499), (500, 599),
    ]  # fmt: skip
    assert manifests[1].file.startswith("dt=2026-11-26/hour=10/")
    assert manifests[2].file.startswith("dt=2026-11-26/hour=11/")
    for m in manifests:
        table = reader.read_table(m)
        assert table.schema.remove_metadata().equals(FILE_SCHEMA)
        assert table.column("seq").to_pylist() == list(range(m.first_seq, m.last_seq + 1))
    with built.open() as log:
        assert manifests[-1].root == log.root(600)
        assert Sealer(log, built.lake_url, built.signer).seal() == []


def test_records_round_trip_with_typed_columns(tmp_path: Path) -> None:
    built = build_log(tmp_path, sealed=300, unsealed=0)
    rows = list(LakeReader(built.lake_url).iter_records(built.verifier, 5, 8))
    assert [seq for seq, _, _ in rows] == [5, 6, 7]
    _, canonical, typed = rows[0]
    record = json.loads(canonical)
    assert canonical == canonicalize(make_record(5) | {"seq": 5})
    assert typed["ts"] == datetime.fromisoformat(record["ts"])
    assert typed["ts"].utcoffset().total_seconds() == 0
    assert typed["decision"] == record["decision"]
    assert typed["score"] == record["score"]
    assert typed["retention_until"] == date(2027, 5, 28)


def test_missing_or_ill_typed_optional_fields_are_null() -> None:
    records = [
        {"seq": 0, "ts": "2026-11-26T10:00:00.000001Z"},
        {"seq": 1, "ts": "2026-11-26T10:00:00.000001Z", "score": "0.5", "subject": None},
        {"seq": 2, "ts": 5, "decision": 1, "retention_until": "soon"},
    ]
    typed = typed_columns(pa.array([canonicalize(r) for r in records], pa.binary()))
    rows = typed.to_pylist()
    assert rows[0]["score"] is None and rows[0]["model_name"] is None
    assert rows[1]["score"] is None and rows[1]["subject"] is None
    assert rows[2]["ts"] is None and rows[2]["decision"] == "1"
    assert rows[2]["retention_until"] is None
    assert [r["seq"] for r in rows] == [0, 1, 2]


def test_damaged_bytes_give_null_typed_values_not_an_error() -> None:
    typed = typed_columns(pa.array([b"\xff\xfe", b"[1, 2]", b'{"seq": 3', b'{"seq":"4"}']))
    assert typed.column("seq").to_pylist() == [None] * 4


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_number = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(
    -(2**53) + 1, 2**53 - 1
)


@settings(max_examples=60, deadline=None)
@given(
    strings=st.fixed_dictionaries(
        {}, optional={k: _text | st.none() for k in ("decision", "subject", "team")}
    ),
    numbers=st.fixed_dictionaries(
        {}, optional={k: _number | st.none() for k in ("score", "ci_low")}
    ),
    seq=st.integers(0, 2**53 - 1),
)
def test_typed_columns_equal_the_record_values(
    strings: dict[str, Any], numbers: dict[str, Any], seq: int
) -> None:
    record = {"seq": seq, "ts": "2026-11-26T10:00:00.123456Z", **strings, **numbers}
    row = typed_columns(pa.array([canonicalize(record)], pa.binary())).to_pylist()[0]
    assert row["seq"] == seq
    for key in ("decision", "subject", "team"):
        assert row[key] == strings.get(key)
    for key in ("score", "ci_low"):
        want = numbers.get(key)
        assert row[key] == (None if want is None else float(want))
        assert row[key] is None or math.isfinite(row[key])


def test_max_rows_per_file_and_wal_retirement(tmp_path: Path) -> None:
    signer, _ = new_keys()
    with AuditLog.open(
        tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False, segment_bytes=8 * 1024
    ) as log:
        for i in range(120):
            log.append(make_record(i))
        log.flush()
        segments_before = len(os.listdir(tmp_path / "log/wal"))
        sealed = Sealer(log, str(tmp_path / "lake"), signer, max_rows_per_file=50).seal()
        assert [(f.manifest.first_seq, f.manifest.count) for f in sealed] == [
            (0, 50), (50, 50), (100, 20),
        ]  # fmt: skip
        assert len(os.listdir(tmp_path / "log/wal")) < segments_before
        log.append(make_record(120))
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        assert log.size == 121


def test_sealed_file_is_never_overwritten(tmp_path: Path) -> None:
    signer, _ = new_keys()
    lake = tmp_path / "lake"
    target = lake / "dt=2026-11-26/hour=10/00000000000000000000-00000000000000000009.parquet"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's file")
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(10):
            log.append(make_record(i))
        log.flush()
        with pytest.raises(SealError, match="exists with other content"):
            Sealer(log, str(lake), signer).seal()
    assert target.read_bytes() == b"someone else's file"


def test_file_left_without_manifest_by_a_crash_is_adopted(tmp_path: Path) -> None:
    signer, verifier = new_keys()
    lake = str(tmp_path / "lake")
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(10):
            log.append(make_record(i))
        log.flush()
        (first,) = Sealer(log, lake, signer).seal()
        (tmp_path / "lake" / first.manifest_path).unlink()  # as if the crash hit before it
        (again,) = Sealer(log, lake, signer).seal()
    assert again.manifest.sha256 == first.manifest.sha256
    assert len(LakeReader(lake).manifests(verifier)) == 1


def test_record_without_ts_cannot_be_partitioned(tmp_path: Path) -> None:
    signer, _ = new_keys()
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        log.append(make_record(0))
        log.append({"decision": "approve"})
        log.flush()
        with pytest.raises(SealError, match="seq 1 has no valid RFC 3339 'ts'"):
            Sealer(log, str(tmp_path / "lake"), signer).seal()


def test_gap_in_manifests_stops_the_sealer(tmp_path: Path) -> None:
    built = build_log(tmp_path, sealed=600, unsealed=10)
    manifests = sorted((tmp_path / "lake" / MANIFEST_DIR).iterdir())
    manifests[1].unlink()
    with built.open() as log, pytest.raises(SealError, match="not contiguous"):
        Sealer(log, built.lake_url, built.signer).seal()


def test_background_sealing(tmp_path: Path) -> None:
    signer, verifier = new_keys()
    lake = str(tmp_path / "lake")
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        sealer = Sealer(log, lake, signer)
        sealer.start(0.01)
        with pytest.raises(RuntimeError, match="already running"):
            sealer.start(0.01)
        for i in range(30):
            log.append(make_record(i))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            manifests = LakeReader(lake).manifests(verifier)
            if manifests and manifests[-1].last_seq == 29:
                break
            time.sleep(0.01)
        sealer.stop()
        sealer.stop()  # idempotent
    assert manifests[-1].last_seq == 29
    assert sealer.last_error is None


def test_bad_sealer_arguments(tmp_path: Path) -> None:
    signer, _ = new_keys()
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        with pytest.raises(ValueError, match="max_rows_per_file must be >= 1, got 0"):
            Sealer(log, str(tmp_path / "lake"), signer, max_rows_per_file=0)
        with pytest.raises(ValueError, match="interval_s must be > 0"):
            Sealer(log, str(tmp_path / "lake"), signer).start(0)


# ---- manifests ---------------------------------------------------------------------------

_FILE = "dt=2026-11-26/hour=10/00000000000000000000-00000000000000000009.parquet"


def _manifest(**changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "origin": ORIGIN, "file": _FILE, "first_seq": 0, "last_seq": 9, "sha256": "a" * 64,
        "root": b"r" * 32, "created": "2026-11-26T10:00:00.000000Z",
    }  # fmt: skip
    fields.update(changes)
    return Manifest(**fields)


def test_manifest_round_trip_and_signature() -> None:
    signer, verifier = new_keys()
    manifest = _manifest()
    text = manifest.text()
    assert text.endswith(b"\n") and json.loads(text)["tree_size"] == 10
    assert Manifest.parse(text) == manifest
    assert open_manifest(signer.sign(text), verifier) == manifest
    _, other = new_keys()
    with pytest.raises(ManifestError, match="signature"):
        open_manifest(signer.sign(text), other)


def _edited(**changes: Any) -> bytes:
    obj = json.loads(_manifest().text())
    obj.update(changes)
    return canonicalize(obj) + b"\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"not json\n", "not JSON"),
        (b"[]\n", "exactly the keys"),
        (_edited(extra=1), "exactly the keys"),
        (_edited(format=2), "format 2"),
        (_edited(count=11), "count 11"),
        (_edited(tree_size=9), "tree_size 9"),
        (_edited(first_seq=-1), "first_seq must be an int >= 0"),
        (_edited(last_seq="9"), "last_seq must be an int"),
        (_edited(first_seq=10, count=0), "last_seq 9 < first_seq 10"),
        (_edited(file="elsewhere.parquet"), "does not name its seq range"),
        (_edited(sha256="A" * 64), "64 lowercase hex"),
        (_edited(root="!!"), "not base64"),
        (_edited(root="cm9vdA=="), "32 bytes"),
        (_edited(origin=5), "origin must be a string"),
        (_manifest().text().replace(b",", b", ", 1), "canonical form"),
    ],
)
def test_manifest_parse_rejects(text: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(text)


def test_reader_on_empty_lake(tmp_path: Path) -> None:
    _, verifier = new_keys()
    reader = LakeReader(str(tmp_path / "nothing"))
    assert reader.manifest_names() == []
    assert list(reader.iter_records(verifier)) == []


def test_reader_rejects_file_with_wrong_sha256(tmp_path: Path) -> None:
    built = build_log(tmp_path, sealed=10, unsealed=0)
    reader = LakeReader(built.lake_url)
    (manifest,) = reader.manifests(built.verifier)
    path = tmp_path / "lake" / manifest.file
    table = pq.read_table(path)
    path.chmod(0o644)
    pq.write_table(table.slice(1), path)
    with pytest.raises(ManifestError, match="sha256"):
        reader.read_table(manifest)
