"""WAL framing, segment writing and rolling, reading, and torn-tail versus corruption on scan."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit.wal import (
    FRAME_HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    LogCorruptedError,
    SegmentWriter,
    WalState,
    encode_frame,
    iter_records,
    list_segments,
    read_frames,
    scan_wal,
    segment_path,
)


def record(seq: int, pad: int = 0) -> bytes:
    return json.dumps({"pad": "x" * pad, "seq": seq}, separators=(",", ":")).encode()


def write_log(
    wal_dir: Path, batches: list[int], segment_bytes: int = 1 << 20, pad: int = 10
) -> list[bytes]:
    """Write batches of records through a SegmentWriter; return all payloads in seq order."""
    wal_dir.mkdir(exist_ok=True)
    writer = SegmentWriter(wal_dir, scan_wal(wal_dir), segment_bytes=segment_bytes, fsync=False)
    payloads: list[bytes] = []
    for count in batches:
        first = len(payloads)
        batch = [record(first + i, pad) for i in range(count)]
        writer.write(first, count, b"".join(encode_frame(p) for p in batch))
        payloads.extend(batch)
    writer.close()
    return payloads


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def frame_offsets(payloads: list[bytes]) -> list[int]:
    offsets, at = [], 0
    for p in payloads:
        offsets.append(at)
        at += HEADER_SIZE + len(p)
    return offsets


# ---- framing ----------------------------------------------------------------------------------


def test_encode_frame_layout() -> None:
    frame = encode_frame(b'{"seq":0}')
    length, crc = FRAME_HEADER.unpack_from(frame)
    assert length == 9 and crc == zlib.crc32(b'{"seq":0}') and frame[8:] == b'{"seq":0}'


@pytest.mark.parametrize("size", [0, MAX_PAYLOAD + 1])
def test_encode_frame_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="frame payload must be"):
        encode_frame(b"x" * size)


# ---- writing, rolling and reading ------------------------------------------------------------


def test_empty_dir_scans_as_empty(tmp_path: Path) -> None:
    assert scan_wal(tmp_path) == WalState(0, 0, (), None)


def test_writer_rolls_segments_named_by_first_seq(tmp_path: Path) -> None:
    payloads = write_log(tmp_path, [5, 5, 5, 5], segment_bytes=400, pad=20)
    segments = list_segments(tmp_path)
    assert len(segments) > 1
    assert [p.name for _, p in segments] == [f"{first:020d}.seg" for first, _ in segments]
    state = scan_wal(tmp_path)
    assert (state.first_seq, state.next_seq, state.torn_tail) == (0, 20, None)
    assert [p for _, p in iter_records(tmp_path)] == payloads


def test_a_batch_never_straddles_segments(tmp_path: Path) -> None:
    write_log(tmp_path, [3, 50, 3], segment_bytes=200, pad=5)
    firsts = [first for first, _ in list_segments(tmp_path)]
    assert firsts == [0, 3, 53]  # the 50-record batch exceeds segment_bytes but stays whole


def test_writer_appends_to_the_last_segment_on_reopen(tmp_path: Path) -> None:
    write_log(tmp_path, [4])
    writer = SegmentWriter(tmp_path, scan_wal(tmp_path), segment_bytes=1 << 20, fsync=True)
    writer.write(4, 1, encode_frame(record(4)))
    writer.close()
    assert len(list_segments(tmp_path)) == 1
    assert scan_wal(tmp_path).next_seq == 5


def test_writer_rejects_out_of_order_batches(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, scan_wal(tmp_path), segment_bytes=1 << 20, fsync=False)
    with pytest.raises(ValueError, match="expected 0"):
        writer.write(3, 1, encode_frame(record(3)))
    writer.close()


def test_segment_bytes_must_fit_a_frame(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment_bytes"):
        SegmentWriter(tmp_path, scan_wal(tmp_path), segment_bytes=8, fsync=False)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    segment_bytes=st.integers(60, 600),
    data=st.data(),
)
def test_iter_records_returns_any_range(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[int],
    segment_bytes: int,
    data: st.DataObject,
) -> None:
    wal_dir = tmp_path_factory.mktemp("wal")
    payloads = write_log(wal_dir, batches, segment_bytes=segment_bytes)
    start = data.draw(st.integers(0, len(payloads)))
    end = data.draw(st.integers(start, len(payloads)))
    got = list(iter_records(wal_dir, start, end))
    assert got == [(seq, payloads[seq]) for seq in range(start, end)]


def test_iter_records_bad_ranges(tmp_path: Path) -> None:
    write_log(tmp_path, [3])
    with pytest.raises(ValueError, match="bad seq range"):
        list(iter_records(tmp_path, 2, 1))
    with pytest.raises(ValueError, match="bad seq range"):
        list(iter_records(tmp_path, -1))
    with pytest.raises(LogCorruptedError, match="seq 3 missing"):
        list(iter_records(tmp_path, 0, 4))


def test_iter_records_below_the_oldest_segment(tmp_path: Path) -> None:
    write_log(tmp_path, [3, 3, 3], segment_bytes=100)
    writer = SegmentWriter(tmp_path, scan_wal(tmp_path), segment_bytes=100, fsync=False)
    assert writer.retire_through(4) == [segment_path(tmp_path, 0)]  # seq 5 keeps [3, 6)
    assert writer.retire_through(5) == [segment_path(tmp_path, 3)]
    writer.close()
    assert list_segments(tmp_path)[0][0] == 6
    with pytest.raises(LookupError, match="oldest seq: 6"):
        list(iter_records(tmp_path, 2, 8))
    assert [s for s, _ in iter_records(tmp_path, 6, 9)] == [6, 7, 8]


def test_iter_records_detects_damage_in_range(tmp_path: Path) -> None:
    payloads = write_log(tmp_path, [5])
    flip(segment_path(tmp_path, 0), frame_offsets(payloads)[2] + HEADER_SIZE + 1)
    assert [s for s, _ in iter_records(tmp_path, 0, 2)] == [0, 1]
    with pytest.raises(LogCorruptedError, match=r"offset .* \(seq 2\)"):
        list(iter_records(tmp_path, 0, 5))


def test_retire_never_deletes_the_active_segment(tmp_path: Path) -> None:
    write_log(tmp_path, [3, 3], segment_bytes=100)
    writer = SegmentWriter(tmp_path, scan_wal(tmp_path), segment_bytes=100, fsync=False)
    writer.retire_through(10**6)
    assert writer.first_seq == 3
    writer.write(6, 1, encode_frame(record(6)))
    writer.close()
    assert [s for s, _ in iter_records(tmp_path, 3)] == [3, 4, 5, 6]


# ---- scanning: torn tails are cut, corruption is reported -----------------------------------


@pytest.mark.parametrize("keep", [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 3])
def test_truncated_last_frame_is_a_torn_tail(tmp_path: Path, keep: int) -> None:
    payloads = write_log(tmp_path, [4])
    seg = segment_path(tmp_path, 0)
    last = frame_offsets(payloads)[-1]
    os.truncate(seg, last + keep)
    state = scan_wal(tmp_path)
    assert state.next_seq == 3
    assert state.torn_tail is not None
    assert (state.torn_tail.segment, state.torn_tail.offset) == (seg, last)
    assert state.torn_tail.bytes_dropped == keep
    assert seg.stat().st_size == last
    assert scan_wal(tmp_path).torn_tail is None  # repaired for good


@pytest.mark.parametrize("garbage", [b"\x00", b"\x00" * 100, b"\xff" * 13, os.urandom(300)])
def test_garbage_after_the_last_frame_is_a_torn_tail(tmp_path: Path, garbage: bytes) -> None:
    payloads = write_log(tmp_path, [4])
    seg = segment_path(tmp_path, 0)
    end = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(garbage)
    state = scan_wal(tmp_path)
    assert state.next_seq == 4 and state.torn_tail is not None
    assert (state.torn_tail.offset, state.torn_tail.bytes_dropped) == (end, len(garbage))
    assert [p for _, p in iter_records(tmp_path)] == payloads


@pytest.mark.parametrize("where", [0, 3, 4, 7, HEADER_SIZE, HEADER_SIZE + 5])
def test_flipped_byte_in_the_last_frame_is_a_torn_tail(tmp_path: Path, where: int) -> None:
    payloads = write_log(tmp_path, [4], pad=30)
    last = frame_offsets(payloads)[-1]
    flip(segment_path(tmp_path, 0), last + where)
    state = scan_wal(tmp_path)
    assert state.next_seq == 3
    assert state.torn_tail is not None and state.torn_tail.offset == last
    assert "seq 3" in state.torn_tail.reason


@pytest.mark.parametrize("where", [0, 2, 5, HEADER_SIZE, HEADER_SIZE + 20])
def test_flipped_byte_in_a_middle_frame_is_corruption(tmp_path: Path, where: int) -> None:
    payloads = write_log(tmp_path, [6], pad=30)
    seg = segment_path(tmp_path, 0)
    offset = frame_offsets(payloads)[2]
    size = seg.stat().st_size
    flip(seg, offset + where)
    with pytest.raises(LogCorruptedError, match=f"offset {offset}.*not a torn tail"):
        scan_wal(tmp_path)
    assert seg.stat().st_size == size  # nothing was cut


def test_zero_filled_tail_is_a_torn_tail_even_when_long(tmp_path: Path) -> None:
    write_log(tmp_path, [4])
    seg = segment_path(tmp_path, 0)
    with seg.open("ab") as f:
        f.write(bytes(4 << 20))  # what some filesystems show after losing an unsynced write
    state = scan_wal(tmp_path)
    assert state.torn_tail is not None and state.torn_tail.bytes_dropped == 4 << 20


def test_intact_frame_after_a_zeroed_hole_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, [4])
    seg = segment_path(tmp_path, 0)
    with seg.open("ab") as f:
        f.write(bytes(5000) + encode_frame(record(5)))
    with pytest.raises(LogCorruptedError, match="followed by an intact frame"):
        scan_wal(tmp_path)


def test_damage_in_a_non_last_segment_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, [3, 3, 3], segment_bytes=100)
    first_seg = segment_path(tmp_path, 0)
    os.truncate(first_seg, first_seg.stat().st_size - 2)
    with pytest.raises(LogCorruptedError, match=r"00000000000000000000\.seg.*seq 2.*last segment"):
        scan_wal(tmp_path)


def test_missing_segment_is_a_gap(tmp_path: Path) -> None:
    write_log(tmp_path, [3, 3, 3], segment_bytes=100)
    segment_path(tmp_path, 3).unlink()
    with pytest.raises(LogCorruptedError, match="gap"):
        scan_wal(tmp_path)


def test_segment_whose_records_disagree_with_its_name(tmp_path: Path) -> None:
    write_log(tmp_path, [3])
    segment_path(tmp_path, 0).rename(segment_path(tmp_path, 7))
    with pytest.raises(LogCorruptedError, match=r"holds seq 0.*makes it seq 7"):
        scan_wal(tmp_path)


def test_reordered_frames_inside_a_segment(tmp_path: Path) -> None:
    seg = segment_path(tmp_path, 0)
    seg.write_bytes(encode_frame(record(1)) + encode_frame(record(0)))
    with pytest.raises(LogCorruptedError, match="holds seq 1"):
        scan_wal(tmp_path)


def test_non_json_record_is_corruption(tmp_path: Path) -> None:
    segment_path(tmp_path, 0).write_bytes(encode_frame(b"not json"))
    with pytest.raises(LogCorruptedError, match="not a JSON object"):
        scan_wal(tmp_path)


def test_bad_segment_name(tmp_path: Path) -> None:
    (tmp_path / "12.seg").write_bytes(b"")
    with pytest.raises(LogCorruptedError, match="20 decimal digits"):
        scan_wal(tmp_path)


def test_scan_without_repair_only_reports(tmp_path: Path) -> None:
    write_log(tmp_path, [2])
    seg = segment_path(tmp_path, 0)
    with seg.open("ab") as f:
        f.write(b"\x05\x00")
    size = seg.stat().st_size
    state = scan_wal(tmp_path, repair=False)
    assert state.torn_tail is not None and state.torn_tail.bytes_dropped == 2
    assert seg.stat().st_size == size


def test_empty_last_segment_is_fine(tmp_path: Path) -> None:
    write_log(tmp_path, [2])
    segment_path(tmp_path, 2).write_bytes(b"")
    state = scan_wal(tmp_path)
    assert (state.next_seq, state.torn_tail) == (2, None)


# ---- single framed files (checkpoint history) -------------------------------------------------


def test_read_frames_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_frames(tmp_path / "nope") == ([], None)


def test_read_frames_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "history.log"
    path.write_bytes(encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three")[:-1])
    frames, tail = read_frames(path)
    assert frames == [b"one", b"two"]
    assert tail is not None and tail.offset == 2 * HEADER_SIZE + 6
    assert read_frames(path) == ([b"one", b"two"], None)


def test_read_frames_refuses_mid_file_damage(tmp_path: Path) -> None:
    path = tmp_path / "history.log"
    path.write_bytes(encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three"))
    flip(path, HEADER_SIZE + 1)
    with pytest.raises(LogCorruptedError, match="offset 0"):
        read_frames(path)
