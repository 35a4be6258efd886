"""Regression tests for what the fuzzers and the sanitizers found (tests/fuzz/README.md).

They run with the installed build in the unit suite and again against the sanitized build
(tests/fuzz/test_sanitizers.py), where an out-of-bounds read or an overflow is a report even
when the result happens to come out right.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

import pytest

from infertrail import _native
from infertrail.audit import canonical, commitqueue, subtrees
from tests.fuzz.twins import python_only


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {"k": value, "n": None} if i % 2 else [value, "x"]
    return value


def test_the_python_encoder_converts_a_deep_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The canonical fuzzer's first find (a 10 s timeout): a float the fast path must rewrite
    # (1.0 is written 1), 25 levels down, took 86 s. Each level converted its changed child
    # twice, so the work doubled with every level.
    calls = 0
    convert = canonical._fast_dict

    def counted(d: dict[Any, Any]) -> dict[Any, Any]:
        nonlocal calls
        calls += 1
        return convert(d)

    monkeypatch.setattr(canonical, "_fast_dict", counted)
    value = nested(16, 1.0)  # 8 dicts: 2**16 calls before the fix, a second
    with python_only():
        assert canonical.canonicalize(value) == canonical._exact(value)
    assert calls <= 2 * 8  # each dict at most twice (found changed, then copied)


def arrow(values: list[bytes], width: int) -> tuple[bytes, bytes]:
    """An Arrow binary array's offsets and data buffers."""
    bounds = [0]
    for v in values:
        bounds.append(bounds[-1] + len(v))
    return struct.pack(f"<{len(bounds)}{'i' if width == 4 else 'q'}", *bounds), b"".join(values)


LEAF_HASHES_ARROW = [_native.leaf_hashes_arrow, subtrees._py_leaf_hashes_arrow]


@pytest.mark.parametrize("hash_values", LEAF_HASHES_ARROW, ids=["C", "twin"])
@pytest.mark.parametrize(
    ("start", "count"),
    [(1, 2**63 - 1), (2**62, 2**62), (2**63 - 1, 1), (0, 2**63 - 1), (3, 0)],
)
def test_leaf_hashes_arrow_refuses_a_range_whose_end_overflows(
    hash_values: Callable[..., bytes], start: int, count: int
) -> None:
    # Found by the sanitized fuzzer (UBSan: signed integer overflow in start + count + 1): the
    # sum wrapped negative, passed the bounds check, and the offsets were read past their
    # buffer until one looked out of order.
    offsets, data = arrow([b"a", b"bc"], 4)
    with pytest.raises(ValueError, match="outside an offsets buffer"):
        hash_values(offsets, data, start, count, 4)


@pytest.mark.parametrize("width", [4, 8])
def test_leaf_hashes_arrow_reads_unaligned_offsets(width: int) -> None:
    # Found by the sanitized fuzzer (UBSan: load of misaligned address): a memoryview can
    # start anywhere, and the offsets were read as aligned int32/int64.
    values = [b"", b"a", b"xyz" * 50, b"\x00" * 64]
    offsets, data = arrow(values, width)
    unaligned = memoryview(b"\x00" + offsets)[1:]
    expected = b"".join(hashlib.sha256(b"\x00" + v).digest() for v in values)
    assert _native.leaf_hashes_arrow(unaligned, data, 0, len(values), width) == expected
    assert subtrees.leaf_hashes_arrow(unaligned, data, 0, len(values), width) == expected


# The pure-Python twins are what an install without a compiler runs; the fuzzers found them
# accepting what C refuses, and answering something else.
@pytest.mark.parametrize(
    ("node_hashes", "size"),
    [
        (_native.node_hashes, 32),
        (subtrees._py_node_hashes, 32),
        (subtrees.node_hashes, 32),
        (subtrees.node_hashes, 33),  # not 32 bytes: the wrapper falls back to the twin
    ],
    ids=["C", "twin", "wrapper", "wrapper-fallback"],
)
def test_node_hashes_refuse_unpaired_hashes(
    node_hashes: Callable[..., list[bytes]], size: int
) -> None:
    # map() stopped at the shorter list: hashes paired with nothing vanished silently.
    with pytest.raises(ValueError, match="lefts has 2 hashes but rights has 1"):
        node_hashes([b"a" * size] * 2, [b"b" * size])


@pytest.mark.parametrize(
    "join", [_native.join_numbered, commitqueue._py_join_numbered], ids=["C", "twin"]
)
@pytest.mark.parametrize(
    ("heads", "tails", "first", "message"),
    [
        ([b"a"], [b"b"], -1, r"first seq must be in \[0, 2\*\*62\], got -1"),  # twin: b"a-1b"
        ([b"a"], [b"b"], 2**62 + 1, r"first seq must be in \[0, 2\*\*62\]"),
        (["text"], [], 0, "1 heads but 0 tails"),  # lengths first, as C checks them
    ],
)
def test_join_numbered_refuses_what_it_cannot_number(
    join: Callable[..., list[bytes]], heads: list[Any], tails: list[bytes], first: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        join(heads, tails, first)


@pytest.mark.parametrize("hash_values", LEAF_HASHES_ARROW, ids=["C", "twin"])
@pytest.mark.parametrize(
    ("bounds", "start", "count", "width", "message"),
    [
        ([0, 3, 2, 4], 0, 3, 4, "out of order"),  # the twin's slice came out empty
        ([0, 9], 0, 1, 4, "outside a data buffer"),  # the twin's slice stopped at the end
        ([-2, 1], 0, 1, 8, "outside a data buffer"),  # the twin sliced from the end
        ([0, 1], 0, 1, 2, "offset_size must be 4 or 8"),  # the twin read them as int64
    ],
)
def test_leaf_hashes_arrow_refuse_bad_offsets(
    hash_values: Callable[..., bytes],
    bounds: list[int],
    start: int,
    count: int,
    width: int,
    message: str,
) -> None:
    offsets = struct.pack(f"<{len(bounds)}{'i' if width != 8 else 'q'}", *bounds)
    with pytest.raises(ValueError, match=message):
        hash_values(offsets, b"abcd", start, count, width)
