"""The WAL batch index: reads seek to a record's batch; a wrong or missing index costs only time."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import wal
from infertrail.audit.wal import (
    HEADER_SIZE,
    SegmentWriter,
    encode_frame,
    iter_records,
    scan_wal,
    segment_index_path,
    segment_path,
)
from tests.unit.audit.test_wal import record

ENTRY = struct.Struct("<QQ")


def write_indexed(
    root: Path, batches: list[int], segment_bytes: int = 1 << 20, pad: int = 10
) -> list[bytes]:
    """Write batches through an indexing SegmentWriter into root/wal (index in root/idx)."""
    (root / "wal").mkdir(exist_ok=True)
    writer = SegmentWriter(
        root / "wal",
        scan_wal(root / "wal"),
        segment_bytes=segment_bytes,
        fsync=False,
        index_dir=root / "idx",
    )
    payloads: list[bytes] = []
    for count in batches:
        first = len(payloads)
        batch = [record(first + i, pad) for i in range(count)]
        writer.write(first, count, b"".join(encode_frame(p) for p in batch))
        payloads.extend(batch)
    writer.close()
    return payloads


def entries(path: Path) -> list[tuple[int, int]]:
    return list(ENTRY.iter_unpack(path.read_bytes()))


def read(root: Path, start: int, end: int | None = None) -> list[tuple[int, bytes]]:
    return list(iter_records(root / "wal", start, end, index_dir=root / "idx"))


def test_one_entry_per_batch_with_its_first_seq_and_offset(tmp_path: Path) -> None:
    payloads = write_indexed(tmp_path, [3, 1, 4])
    offsets = [0, sum(HEADER_SIZE + len(p) for p in payloads[:3])]
    offsets.append(offsets[1] + HEADER_SIZE + len(payloads[3]))
    assert entries(segment_index_path(tmp_path / "idx", 0)) == [
        (0, 0),
        (3, offsets[1]),
        (4, offsets[2]),
    ]


def test_each_segment_has_its_own_index(tmp_path: Path) -> None:
    write_indexed(tmp_path, [5, 5, 5, 5], segment_bytes=400, pad=20)
    firsts = [first for first, _ in wal.list_segments(tmp_path / "wal")]
    assert len(firsts) > 1
    for first in firsts:
        assert entries(segment_index_path(tmp_path / "idx", first))[0] == (first, 0)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    segment_bytes=st.integers(60, 600),
    data=st.data(),
)
def test_indexed_reads_return_any_range(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[int],
    segment_bytes: int,
    data: st.DataObject,
) -> None:
    root = tmp_path_factory.mktemp("wal")
    payloads = write_indexed(root, batches, segment_bytes=segment_bytes)
    start = data.draw(st.integers(0, len(payloads)))
    end = data.draw(st.one_of(st.none(), st.integers(start, len(payloads))))
    expected = [(seq, payloads[seq]) for seq in range(start, len(payloads) if end is None else end)]
    assert read(root, start, end) == expected


def test_a_read_starts_at_the_batch_of_its_first_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = write_indexed(tmp_path, [100, 100, 100], pad=50)
    offsets: list[int] = []
    real_pread = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        offsets.append(offset)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    assert read(tmp_path, 250, 251) == [(250, payloads[250])]
    batch_start = sum(HEADER_SIZE + len(p) for p in payloads[:200])
    assert min(offsets) == batch_start


@pytest.mark.parametrize(
    "index",
    [
        b"",
        b"\x01\x02\x03",  # not even one entry
        os.urandom(64),
        ENTRY.pack(5, 3) + ENTRY.pack(7, 10**9),  # offsets inside a frame / past the end
        ENTRY.pack(9, 0),  # an entry whose frame carries another seq
        ENTRY.pack(12, 0) + ENTRY.pack(3, 0),  # out of order
    ],
)
def test_a_wrong_index_is_ignored(tmp_path: Path, index: bytes) -> None:
    payloads = write_indexed(tmp_path, [4, 4, 4])
    segment_index_path(tmp_path / "idx", 0).write_bytes(index)
    for start in range(12):
        assert read(tmp_path, start) == [(s, payloads[s]) for s in range(start, 12)]


def test_a_missing_index_is_ignored(tmp_path: Path) -> None:
    payloads = write_indexed(tmp_path, [4, 4])
    segment_index_path(tmp_path / "idx", 0).unlink()
    assert read(tmp_path, 5) == [(s, payloads[s]) for s in range(5, 8)]


def test_reopen_after_a_torn_tail_drops_stale_entries(tmp_path: Path) -> None:
    payloads = write_indexed(tmp_path, [3, 3, 3])
    seg = segment_path(tmp_path / "wal", 0)
    cut = sum(HEADER_SIZE + len(p) for p in payloads[:6]) + 5  # into the third batch
    os.truncate(seg, cut)
    state = scan_wal(tmp_path / "wal")
    assert state.next_seq == 6 and state.torn_tail is not None
    writer = SegmentWriter(
        tmp_path / "wal", state, segment_bytes=1 << 20, fsync=False, index_dir=tmp_path / "idx"
    )
    idx = segment_index_path(tmp_path / "idx", 0)
    assert [seq for seq, _ in entries(idx)] == [0, 3]
    new = [record(6 + i, pad=40) for i in range(3)]  # other sizes: old offsets would be wrong
    writer.write(6, 3, b"".join(encode_frame(p) for p in new))
    writer.close()
    assert [seq for seq, _ in entries(idx)] == [0, 3, 6]
    assert read(tmp_path, 7) == [(7, new[1]), (8, new[2])]


def test_retire_deletes_the_index_too(tmp_path: Path) -> None:
    write_indexed(tmp_path, [3, 3, 3], segment_bytes=100)
    writer = SegmentWriter(
        tmp_path / "wal",
        scan_wal(tmp_path / "wal"),
        segment_bytes=100,
        fsync=False,
        index_dir=tmp_path / "idx",
    )
    writer.retire_through(5)
    writer.close()
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        segment_index_path(tmp_path / "idx", 6).name
    ]


def test_an_index_write_error_only_stops_indexing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wal").mkdir()
    writer = SegmentWriter(
        tmp_path / "wal",
        scan_wal(tmp_path / "wal"),
        segment_bytes=1 << 20,
        fsync=False,
        index_dir=tmp_path / "idx",
    )
    writer.write(0, 1, encode_frame(record(0)))
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if len(data) == ENTRY.size:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    writer.write(1, 1, encode_frame(record(1)))
    monkeypatch.undo()
    writer.write(2, 1, encode_frame(record(2)))
    writer.close()
    assert entries(segment_index_path(tmp_path / "idx", 0)) == [(0, 0)]
    assert [s for s, _ in read(tmp_path, 1)] == [1, 2]
