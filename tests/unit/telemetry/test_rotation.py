"""Telemetry files rotate by size and by age, the directory keeps a bounded total (oldest
rotated files deleted first), no line is ever split or lost, and ``infertrail trace`` reads a
request back across rotated files."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic import ValidationError

from infertrail.config import Settings
from infertrail.telemetry import conventions as c
from infertrail.telemetry.files import (
    TRACES_FILE,
    OtlpJsonSpanExporter,
    RotationPolicy,
    _JsonLinesFile,
    rotated_files,
    telemetry_files,
)
from infertrail.telemetry.readback import find_request
from infertrail.telemetry.setup import INFERENCE_LOG_FILE, Telemetry

T0 = datetime(2026, 12, 7, 10, 15, tzinfo=UTC).timestamp()
HOUR = 3600.0


@dataclass
class Clock:
    t: float = T0

    def __call__(self) -> float:
        return self.t


def line(i: int, pad: int = 0) -> str:
    return json.dumps({"i": i, "pad": "x" * pad}) + "\n"


def all_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for p in telemetry_files(path) for x in p.read_text().splitlines()]


def write_at(f: _JsonLinesFile, text: str, clock: Clock, at: float) -> None:
    """Write at clock time ``at``, the file's mtime following the clock (as it does in life)."""
    clock.t = at
    f.write(text)
    os.utime(f.path, (at, at))


def test_a_file_rotates_before_a_write_would_take_it_past_its_size(tmp_path: Path) -> None:
    path = tmp_path / TRACES_FILE
    f = _JsonLinesFile(path, RotationPolicy(100, HOUR, 10_000, clock=Clock()))
    size = len(line(0, pad=25))
    assert 2 * size <= 100 < 3 * size
    for i in range(5):
        f.write(line(i, pad=25))
    rotated = rotated_files(path)
    assert [len(p.read_bytes()) for p in rotated] == [2 * size, 2 * size]
    assert len(path.read_bytes()) == size
    assert all(p.name.startswith("traces.20261207T101500") for p in rotated)
    assert [x["i"] for x in all_lines(path)] == [0, 1, 2, 3, 4]  # in order, none lost


def test_a_write_larger_than_the_limit_goes_whole_into_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / TRACES_FILE
    f = _JsonLinesFile(path, RotationPolicy(100, HOUR, 10_000, clock=Clock()))
    f.write(line(0))
    big = "".join(line(i, pad=50) for i in range(1, 4))  # one export batch of 3 lines
    f.write(big)
    f.write(line(4))
    assert [p.read_text() for p in telemetry_files(path)] == [line(0), big, line(4)]


def test_a_file_rotates_when_a_write_falls_in_a_later_age_window(tmp_path: Path) -> None:
    path = tmp_path / TRACES_FILE
    clock = Clock()
    f = _JsonLinesFile(path, RotationPolicy(10_000, HOUR, 100_000, clock=clock))
    start = (T0 // HOUR) * HOUR  # 10:00
    write_at(f, line(0), clock, start + 60)
    write_at(f, line(1), clock, start + HOUR - 1)  # 10:59:59, same window
    assert rotated_files(path) == []
    write_at(f, line(2), clock, start + HOUR)  # 11:00: a new window, a new file
    (rotated,) = rotated_files(path)
    assert rotated.read_text() == line(0) + line(1) and path.read_text() == line(2)
    assert rotated.name == "traces.20261207T110000000000Z.jsonl"


def test_a_file_left_by_an_earlier_run_rotates_at_the_first_write_of_a_later_window(
    tmp_path: Path,
) -> None:
    path = tmp_path / INFERENCE_LOG_FILE
    path.write_text(line(0))
    os.utime(path, (T0 - 2 * HOUR, T0 - 2 * HOUR))
    f = _JsonLinesFile(path, RotationPolicy(10_000, HOUR, 100_000, clock=Clock()))
    f.write(line(1))
    (rotated,) = rotated_files(path)
    assert rotated.name.startswith("inference.log.20261207T") and rotated.read_text() == line(0)
    assert path.read_text() == line(1)


def test_the_oldest_rotated_files_go_first_and_files_being_written_are_kept(
    tmp_path: Path,
) -> None:
    clock = Clock()
    # 4 files being written, 100 bytes each, leave 200 bytes of a 600-byte total for rotated ones.
    policy = RotationPolicy(100, HOUR, 600, clock=clock)
    files = {
        name: _JsonLinesFile(tmp_path / name, policy)
        for name in ("traces.jsonl", "metrics.jsonl", "logs.jsonl", INFERENCE_LOG_FILE)
    }
    for i in range(12):
        clock.t = T0 + i  # rotations in time order, alternating files
        name = ("traces.jsonl", "metrics.jsonl")[i % 2]
        files[name].write(line(i, pad=55))  # ~75 bytes: each write after a file's first rotates it
    rotated = sorted(tmp_path.glob("*.*Z.jsonl"))
    assert sum(p.stat().st_size for p in rotated) <= 200
    survivors = sorted(json.loads(p.read_text())["i"] for p in rotated)
    assert survivors == [8, 9]  # the newest rotated files; 0..7 were deleted oldest first
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total <= 600
    assert [x["i"] for x in all_lines(tmp_path / "traces.jsonl")] == [8, 10]


def test_concurrent_writers_never_split_or_lose_a_line(tmp_path: Path) -> None:
    path = tmp_path / TRACES_FILE
    f = _JsonLinesFile(path, RotationPolicy(4096, HOUR, 10**9, clock=Clock()))

    def writer(k: int) -> None:
        for i in range(200):
            f.write(line(k * 1000 + i, pad=(i * 37) % 300))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [x["i"] for x in all_lines(path)]  # json.loads fails on a split line
    assert sorted(got) == sorted(k * 1000 + i for k in range(4) for i in range(200))
    assert len(rotated_files(path)) > 10


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="max_total_bytes >= max_bytes"):
        RotationPolicy(100, HOUR, 50)
    with pytest.raises(ValueError, match="max_age_s > 0"):
        RotationPolicy(100, 0, 500)


@pytest.mark.usefixtures("clean_env")
def test_the_settings_bound_must_hold_the_four_files_being_written() -> None:
    with pytest.raises(ValidationError, match=r"at least 4 x telemetry_file_max_mb \(50\)"):
        Settings(telemetry_files_max_total_mb=199)
    Settings(telemetry_file_max_mb=1, telemetry_files_max_total_mb=4)


def emit_requests(provider: TracerProvider, ids: list[str]) -> None:
    tracer = provider.get_tracer("test")
    for request_id in ids:
        with tracer.start_as_current_span("POST /v1/score") as root:
            root.set_attribute(c.REQUEST_ID, request_id)
            with tracer.start_as_current_span("inference"):
                pass


def test_trace_readback_finds_a_request_whose_spans_are_in_rotated_files(tmp_path: Path) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "t"}))
    exporter = OtlpJsonSpanExporter(
        tmp_path / TRACES_FILE, RotationPolicy(600, HOUR, 10**6, clock=Clock())
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # one line per span
    emit_requests(provider, [f"req-{i}" for i in range(6)])
    provider.shutdown()
    assert len(rotated_files(tmp_path / TRACES_FILE)) >= 3
    first = find_request(tmp_path, "req-0")  # in the oldest file
    assert first is not None
    assert [s.name for _, s in first.tree()] == ["POST /v1/score", "inference"]
    last = find_request(tmp_path, "req-5")
    assert last is not None and len(last.spans) == 2 and last.trace_id != first.trace_id
    assert find_request(tmp_path, "req-404") is None


@pytest.mark.usefixtures("clean_env")
def test_the_service_rotates_its_files_under_the_settings_bound(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        set_global_providers=False,
        telemetry_file_max_mb=0.001,  # 1048 bytes
        telemetry_files_max_total_mb=0.01,
    )
    telemetry = Telemetry(settings)
    try:
        for i in range(40):  # one export batch each
            emit_requests(telemetry.tracer_provider, [f"req-{i}"])
            telemetry.tracer_provider.force_flush()
    finally:
        telemetry.shutdown(5)
    tdir = settings.telemetry_dir
    assert rotated_files(tdir / TRACES_FILE)
    assert sum(p.stat().st_size for p in tdir.iterdir()) <= 0.01 * 2**20
    found = find_request(tdir, "req-39")
    assert found is not None and len(found.spans) == 2


def test_a_file_another_writer_rotated_is_reopened(tmp_path: Path) -> None:
    """Two writers of one path (two processes on one data directory): after one rotates, the
    other's lines go to the new file once it has looked again, and none is lost."""
    path = tmp_path / "logs.jsonl"
    clock = Clock()
    a = _JsonLinesFile(path, RotationPolicy(100, HOUR, 10_000, clock=clock))
    b = _JsonLinesFile(path, RotationPolicy(100, HOUR, 10_000, clock=clock))
    a.write(line(0, pad=20))
    b.write(line(1, pad=20))  # 2 x 38 bytes
    b._checked = -b.RECHECK_S
    a._checked = -a.RECHECK_S  # a sees b's line, so the next write would pass 100: a rotates
    a.write(line(2, pad=20))
    b._checked = -b.RECHECK_S  # b's next write looks at the path again
    b.write(line(3, pad=20))
    found = [
        json.loads(ln)["i"] for f in sorted(tmp_path.iterdir()) for ln in f.read_text().splitlines()
    ]
    assert sorted(found) == [0, 1, 2, 3]
    assert [json.loads(ln)["i"] for ln in path.read_text().splitlines()] == [2, 3]
    assert len(list(tmp_path.iterdir())) == 2


def test_a_removed_file_is_created_again(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "traces.jsonl"
    f = _JsonLinesFile(path)
    f.write(line(0))
    path.unlink()
    f._checked = -f.RECHECK_S
    f.write(line(1))
    assert path.read_text() == line(1)
    f.close()
    f.close()
    f.write(line(2))  # a closed file opens again
    assert path.read_text() == line(1) + line(2)
