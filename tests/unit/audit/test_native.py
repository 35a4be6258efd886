"""infertrail._native, the optional C speedups: each function against its pure-Python twin."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import canonical, commitqueue, subtrees, walread
from infertrail.audit.canonical import canonical_parts, canonicalize
from tests.fuzz.twins import outcome, parsed_seq, python_only
from tests.unit.audit.test_canonical import _json, _text

try:
    from infertrail import _native
except ImportError as exc:  # pragma: no cover - what a broken build looks like
    pytest.fail(
        f"infertrail._native is not built ({exc}): the install needs gcc, the Python headers "
        "and OpenSSL's headers (Debian: libssl-dev); see hatch_build.py",
        pytrace=False,
    )


def test_the_package_uses_the_compiled_functions() -> None:
    assert canonical._native == (_native.canonical, _native.canonical_parts)
    assert subtrees._native_leaf_hashes is _native.leaf_hashes
    assert subtrees._native_leaf_hashes_arrow is _native.leaf_hashes_arrow
    assert subtrees._native_node_hashes is _native.node_hashes
    assert subtrees._native_node_level is _native.node_level
    assert walread._native_top_level_int is _native.top_level_int
    assert commitqueue._join_numbered is _native.join_numbered


class _Str(str):
    pass


class _Float(float):
    pass


def _nested(depth: int) -> Any:
    value: Any = [0.5]
    for _ in range(depth):
        value = {"k": value}
    return value


# -- the C RFC 8785 encoder ------------------------------------------------------------------

DECLINED = [  # values C leaves to the exact encoder: it encodes them or names what is wrong
    [_Str("x")],
    [_Float(0.5)],
    {_Str("k"): 1},
    [Decimal("0.5")],
    [math.nan],
    [-math.inf],
    [2**53],
    [-(2**53)],
    [2**70],
    {1: "x"},
    {"\U0001f600": 1},  # a key beyond the BMP: UTF-16 order differs from code point order
    ["\ud800"],
    {"\udfff": 1},
    _nested(40),
]


@pytest.mark.parametrize("value", DECLINED, ids=repr)
def test_canonical_declines_what_only_the_exact_encoder_decides(value: Any) -> None:
    assert _native.canonical(value) is None
    assert outcome(canonicalize, value) == outcome(canonical._exact, value)


ENCODED = [
    {"a": 0.5, "b": [1, "x", None, True, False, (2.5,)]},
    {"score": 1.0, "low": -0.0, "n": [2.0**53 - 1, -(2**53 - 1)]},
    [2.0**53, 1e21, 1e-7, 1e-6, 5e-324, -1.7976931348623157e308, 1e16 + 2],
    {"\u20ac": 1, "\u00e9": 2, "z": 3, "": 4, "\uffff": 5, "\ue000": 6},  # kinds 1 and 2 mixed
    {"abcdefghij": 1, "abcdefghi": 2, "abcdefghik": 3, "a\x00": 4, "a": 5},  # 8-byte prefixes
    {f"k{i:03d}": i for i in range(99, -1, -1)},  # reversed, and past the on-stack size
    {"big": ['\x00"' * 3000, list(range(3000)), [i / 7 for i in range(2000)]]},  # > 4 KiB
    ["\n" * 3000],  # fits the 4 KiB first buffer, its escaped form does not
    {"a" * 3000 + "\n": ["\n" * 3000]},  # the same for a key
    "\U0001f600 in a value is fine",
    _nested(30),
]


@pytest.mark.parametrize("value", ENCODED, ids=lambda v: repr(v)[:40])
def test_canonical_encodes_like_the_rfc8785_package(value: Any) -> None:
    snapshot = repr(value)
    assert _native.canonical(value) == rfc8785.dumps(value) == canonical._exact(value)
    assert repr(value) == snapshot  # the input is never changed


@pytest.mark.parametrize("char", ['"', "\\", "\x00", "\x08", "\x1f", "\x7f", "\u00e9", "\u2028"])
def test_string_escapes_at_every_position_of_an_eight_byte_scan(char: str) -> None:
    for at in range(20):  # the escape check reads 8 bytes at a time, then the remainder
        text = "a" * at + char + "b" * (19 - at)
        assert _native.canonical(text) == canonical._exact(text) == rfc8785.dumps(text)
    every_ascii = "".join(map(chr, range(128)))
    assert _native.canonical(every_ascii) == rfc8785.dumps(every_ascii)


def test_float_digits_match_cpython_repr_over_the_whole_range() -> None:
    # Schubfach against CPython's dtoa (behind _number_to_string), which gives ECMAScript's
    # digits: every power of two (the asymmetric-gap case), every power of ten, subnormals
    # (printed through CPython), neighbours of the layout thresholds, and random bit patterns.
    rng = random.Random(1)
    values = [2.0**e for e in range(-1074, 1024)] + [10.0**e for e in range(-323, 309)]
    for edge in (1e-7, 1e-6, 1e21, 1e22, 2.0**53, 2.2250738585072014e-308):
        x = y = edge
        for _ in range(50):
            x, y = math.nextafter(x, 0.0), math.nextafter(y, math.inf)
            values += [x, y]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(60000)]
    values += [rng.random() for _ in range(20000)] + [rng.gauss(0, 0.1) for _ in range(20000)]
    values = [v for v in values if math.isfinite(v) and not v.is_integer()]
    got = _native.canonical(values)
    assert got is not None
    assert got.decode().split(",") == ["[" + canonical._number_to_string(values[0])] + [
        canonical._number_to_string(v) for v in values[1:-1]
    ] + [canonical._number_to_string(values[-1]) + "]"]


def test_the_powers_of_ten_table_is_what_the_generator_writes() -> None:
    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("gen", root / "scripts/gen_shortest_table.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (root / "src/infertrail/_shortest_table.h").read_text() == generator.render()


@settings(max_examples=400, deadline=None)
@given(_json)
def test_the_three_encoders_agree(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert _native.canonical(value) in (expected, None)
    assert canonicalize(value) == expected
    with python_only():
        assert canonicalize(value) == expected
    if isinstance(value, dict) and "seq" not in value:
        parts = canonical_parts(value, "seq")
        head, tail = parts
        assert head + b"7" + tail == rfc8785.dumps({**value, "seq": 7})
        with python_only():
            assert canonical_parts(value, "seq") == parts


_long_text = st.text(  # past the eight-byte scan, with escapes and every string kind
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0, max_codepoint=0x1F),
        st.sampled_from(['"', "\\", "\x7f", "\u00e9", "\u00ff", "\u20ac", "\uffff"]),
        st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
    ),
    max_size=40,
)
_bmp_key = st.text(  # keys the C encoder sorts itself: 1- and 2-byte string kinds
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from(["\x00", "\n", '"', "\u00e9", "\u00ff", "\u0100", "\u20ac", "\uffff"]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 80).flatmap(  # sizes spread evenly: past 32 members a third of the time
        lambda size: st.dictionaries(
            _bmp_key,
            st.one_of(_long_text, st.floats(allow_nan=False, allow_infinity=False)),
            min_size=size // 2,
            max_size=size,
        )
    ),
    _long_text,
)
def test_long_strings_and_large_objects_match_rfc8785(members: dict[str, Any], text: str) -> None:
    # Objects past the 32 members sorted on the stack, keys sharing 8-byte prefixes or not.
    value = {"text": text, "members": members, "list": [text, members]}
    assert _native.canonical(value) == rfc8785.dumps(value)
    if "\u00e9t\u00e9" not in members:
        head, tail = _native.canonical_parts(members, "\u00e9t\u00e9") or (b"", b"")
        assert head + b"3" + tail == rfc8785.dumps({**members, "\u00e9t\u00e9": 3})


def test_canonical_parts_cases() -> None:
    record = {"z": 1, "a": [0.25], "seq1": None, "se": "x"}
    head, tail = _native.canonical_parts(record, "seq") or (b"", b"")
    assert head + b"12" + tail == rfc8785.dumps({**record, "seq": 12})
    assert _native.canonical_parts({}, "seq") == (b'{"seq":', b"}")
    assert _native.canonical_parts({"x": math.nan}, "seq") is None
    assert _native.canonical_parts({"x": 1}, "\U0001f600") is None  # the exact path places it
    assert canonical_parts({"x": 1}, "\U0001f600") == (b'{"x":1,"\xf0\x9f\x98\x80":', b"}")
    with pytest.raises(ValueError, match="already has the member 'z'"):
        _native.canonical_parts(record, "z")
    with pytest.raises(TypeError, match="takes a dict and a str"):
        _native.canonical_parts([1], "seq")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a dict and a str"):
        _native.canonical_parts(record, 5)  # type: ignore[arg-type]


def test_leaf_hashes_match_hashlib() -> None:
    records = [b"", b"\x00", b"x" * 63, b"y" * 64, b"z" * 1257, bytes(range(256)) * 9]
    expected = [hashlib.sha256(b"\x00" + r).digest() for r in records]
    assert _native.leaf_hashes(records) == expected
    assert _native.leaf_hashes(tuple(records)) == expected
    assert _native.leaf_hashes([]) == []


def test_node_hashes_match_hashlib() -> None:
    lefts = [hashlib.sha256(bytes([i])).digest() for i in range(9)]
    rights = lefts[::-1]
    pairs = zip(lefts, rights, strict=True)
    expected = [hashlib.sha256(b"\x01" + a + b).digest() for a, b in pairs]
    assert _native.node_hashes(lefts, rights) == expected
    assert _native.node_hashes([], []) == []


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: _native.leaf_hashes([b"ok", "text"]), TypeError, r"records\[1\] must be bytes"),
        (lambda: _native.leaf_hashes([bytearray(b"x")]), TypeError, "not bytearray"),
        (lambda: _native.leaf_hashes(5), TypeError, "sequence of bytes"),
        (lambda: _native.node_hashes([b"a" * 32], [b"b" * 31]), ValueError, "32 bytes, got 31"),
        (lambda: _native.node_hashes([b"a" * 32], []), ValueError, "1 hashes but rights has 0"),
        (lambda: _native.node_hashes([b"a" * 32]), TypeError, "expected 2 arguments"),
    ],
)
def test_bad_arguments_are_refused(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_subtrees_fall_back_to_hashlib_for_other_buffers() -> None:
    records = [bytearray(b"abc"), memoryview(b"def")]
    assert subtrees.leaf_hashes(records) == [  # type: ignore[arg-type]
        hashlib.sha256(b"\x00" + bytes(r)).digest() for r in records
    ]
    odd = [b"a" * 33]
    assert subtrees.node_hashes(odd, odd) == [hashlib.sha256(b"\x01" + odd[0] * 2).digest()]


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary()])
def test_leaf_hashes_arrow_match_hashlib(kind: pa.DataType) -> None:
    values = [b"", b"a", b"xyz" * 500, b"\x00" * 64]
    array = pa.array(values * 3, kind).slice(2, 9)  # an offset into shared buffers
    _, offsets, data = array.buffers()
    width = 8 if kind == pa.large_binary() else 4
    expected = b"".join(hashlib.sha256(b"\x00" + v).digest() for v in array.to_pylist())
    assert _native.leaf_hashes_arrow(offsets, data, array.offset, len(array), width) == expected
    assert subtrees._py_leaf_hashes_arrow(offsets, data, array.offset, 9, width) == expected


def test_leaf_hashes_arrow_refuses_bad_buffers() -> None:
    offsets = struct.pack("<4i", 0, 3, 2, 4)  # the third value would end before it starts
    with pytest.raises(ValueError, match="offset 2 of value 2 is out of order"):
        _native.leaf_hashes_arrow(offsets, b"abcd", 0, 3, 4)
    with pytest.raises(ValueError, match="outside a data buffer of 3 bytes"):
        _native.leaf_hashes_arrow(struct.pack("<2i", 0, 4), b"abc", 0, 1, 4)
    with pytest.raises(ValueError, match="outside an offsets buffer"):
        _native.leaf_hashes_arrow(struct.pack("<2i", 0, 1), b"a", 0, 2, 4)
    with pytest.raises(ValueError, match="offset_size must be 4 or 8"):
        _native.leaf_hashes_arrow(struct.pack("<2i", 0, 1), b"a", 0, 1, 2)
    assert _native.leaf_hashes_arrow(struct.pack("<1i", 0), b"", 0, 0, 4) == b""


@pytest.mark.parametrize("count", [0, 1, 2, 3, 8, 9])
@pytest.mark.parametrize("skip", [0, 1])
def test_node_level_matches_hashlib(count: int, skip: int) -> None:
    hashes = [hashlib.sha256(b"%d" % i).digest() for i in range(count)]
    pairs = max(0, count - skip) // 2
    expected = b"".join(
        hashlib.sha256(b"\x01" + hashes[skip + 2 * i] + hashes[skip + 2 * i + 1]).digest()
        for i in range(pairs)
    )
    level = b"".join(hashes)
    assert _native.node_level(level, skip) == expected
    assert _native.node_level(memoryview(level), skip) == expected  # any buffer
    assert subtrees._py_node_level(level, skip) == expected


def test_node_level_refuses_bad_levels() -> None:
    with pytest.raises(ValueError, match="a level of 32-byte hashes cannot be 33 bytes long"):
        _native.node_level(b"x" * 33, 0)
    with pytest.raises(ValueError, match="skip must be 0 or 1, got 2"):
        _native.node_level(b"x" * 64, 2)
    with pytest.raises(TypeError):
        _native.node_level("text", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "seq"),
    [
        (b'{"seq":5}', 5),
        (b'{"a":{"seq":1},"seq":7,"z":[1,{"seq":3}]}', 7),  # nested seqs are not the record's
        (b'{"a":"x\\"seq\\":9","seq":4}', 4),  # nor one inside a string
        (b'{"a":"\\\\","seq":3}', 3),  # a string ending in an escaped backslash
        (b' { "seq" : -12 , "b" : [ true , null ] } ', -12),
        (b'{"seq":0,"b":-0}', 0),
        (b'{"seq":1,"seq":2}', 2),  # repeated: the last, as parsers keep it
        (b'{"seq":999999999999999999}', 999999999999999999),  # 18 digits
        (b'{"seq":1.0}', None),  # floats, strings, leading zeros: not an integer
        (b'{"seq":"5"}', None),
        (b'{"seq":05}', None),
        (b'{"seq":-}', None),
        (b'{"seq":9999999999999999999}', None),  # 19 digits: left to the parser
        (b'{"s\\u0065q":3}', None),  # an escaped key: left to the parser
        (b'{"seq":1}x', None),  # trailing bytes
        (b'{"seq":1', None),
        (b'{"seq":1,}', None),
        (b'{"seq":}', None),
        (b'{"seq" 1}', None),
        (b'{"a":"unterminated', None),
        (b'{"a":[1,2}', None),
        (b"[1,2]", None),
        (b"{}", None),
        (b"", None),
    ],
)
def test_top_level_int_cases(data: bytes, seq: int | None) -> None:
    assert _native.top_level_int(data, b"seq") == seq


@pytest.mark.parametrize(
    ("data", "seq"),
    [(b'{"s\\u0065q":3}', 3), (b'{"seq":9999999999999999999}', 9999999999999999999),
     (b'{"seq":1.0}', None), (b"not json", None), (b"[1]", None), (b'{"seq":true}', None)],
)  # fmt: skip
def test_record_seq_parses_what_the_scan_leaves(data: bytes, seq: int | None) -> None:
    assert walread.record_seq(data) == seq == parsed_seq(data)


def test_top_level_int_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="bytes-like object is required"):
        _native.top_level_int("text", b"seq")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"top_level_int\(\) takes exactly 2 arguments"):
        _native.top_level_int(b"{}")  # type: ignore[call-arg]


_seqs = st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 10**9), _json, st.just(True))


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.one_of(_text, st.just("seq")), _json, max_size=6),
    st.none() | _seqs,
    st.sampled_from(["compact", "ascii", "indent"]),
)
def test_top_level_int_agrees_with_parsing(record: dict[str, Any], seq: Any, style: str) -> None:
    if seq is not None:
        record = {**record, "seq": seq}
    if style == "compact":  # as the writer's orjson writes it (but any int)
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    else:  # escaped non-ASCII keys and values; whitespace everywhere
        indent = 1 if style == "indent" else None
        data = json.dumps(record, ensure_ascii=True, indent=indent).encode()
    expected = parsed_seq(data)
    got = _native.top_level_int(data, b"seq")
    assert got is None or got == expected  # None: undecided, record_seq then parses
    assert walread.record_seq(data) == expected
    plain_keys = all(b"\\" not in orjson.dumps(key) for key in record)
    if style == "compact" and plain_keys and type(seq) is int and abs(seq) < 10**18:
        assert got == seq  # records as the writer writes them are decided in C


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=40)), max_size=20),
    st.one_of(st.integers(0, 20), st.integers(0, 2**53)),
)
def test_join_numbered_matches_formatting(parts: list[tuple[bytes, bytes]], first: int) -> None:
    heads, tails = [h for h, _ in parts], [t for _, t in parts]
    expected = [b"%b%d%b" % (h, first + i, t) for i, (h, t) in enumerate(parts)]
    assert _native.join_numbered(heads, tails, first) == expected
    assert commitqueue._py_join_numbered(heads, tails, first) == expected


def test_join_numbered_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2 heads but 1 tails"):
        _native.join_numbered([b"a", b"b"], [b"c"], 0)
    with pytest.raises(ValueError, match=r"first seq must be in \[0, 2\*\*62\], got -1"):
        _native.join_numbered([b"a"], [b"b"], -1)
    with pytest.raises(TypeError, match=r"heads\[1\] and tails\[1\] must be bytes"):
        _native.join_numbered([b"a", "b"], [b"c", b"d"], 0)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _native.join_numbered((b"a",), [b"b"], 0)  # type: ignore[arg-type]
