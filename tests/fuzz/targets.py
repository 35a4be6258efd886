"""Fuzz targets: every entry point of :mod:`infertrail._native` against its pure-Python twin.

A target takes the fuzzer's bytes, builds the arguments from them (atheris's
``FuzzedDataProvider``: the same bytes always build the same arguments), calls the C function,
its twin and the package's wrapper, and raises AssertionError when they disagree. Within a
function's documented domain the results must be equal; outside it (bad offsets, hashes of the
wrong size, lists of different lengths) the C function and the twin must both refuse with the
same exception type, and never crash or answer. The twin is what an install without a compiler
runs, so it is held to the same contract.

``python -m tests.fuzz.run NAME`` fuzzes one of :data:`TARGETS`; tests/fuzz/test_fuzz.py replays
the committed corpus through all of them. The arguments are built so that short inputs reach the
C code's edges: strings past its 8-byte scan and its 4 KiB first buffer, objects past the 32
members it sorts on the stack, nesting past its depth limit, floats of every layout, Arrow
offsets out of order or out of range, misaligned buffers.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import orjson
from atheris import FuzzedDataProvider

from infertrail import _native
from infertrail.audit import commitqueue, subtrees, walread
from infertrail.audit.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    _exact,
    canonical_parts,
    canonicalize,
)
from tests.fuzz.twins import NotJson, outcome, parsed_int, python_only

__all__ = ["TARGETS"]

Target = Callable[[bytes], None]

# -- building values -----------------------------------------------------------------------------

_CHARS = [  # the escapes, each UTF-8 length, lone surrogates, the BMP's edges, beyond it
    '"', "\\", "/", "\x00", "\x08", "\t", "\n", "\x0c", "\r", "\x1f", "\x7f", "\u00e9", "\u00ff",
    "\u0100", "\u2028", "\ud800", "\udfff", "\ue000", "\uffff", "\U0001f600", "\U0010ffff",
]  # fmt: skip
_FLOATS = [
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1e-7,
    9.999999999999997e-7, 1e-6, 1e-5, 0.1, 0.5, 1e16, 1e16 + 2, 9007199254740991.0,
    9007199254740992.0, 1e21, 999999999999999900000.0, 1e22, 1e23, 1.7976931348623157e308,
    333333333.3333332, math.nan, math.inf, -math.inf,
]  # fmt: skip
_INTS = [0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**53, -(2**53), 2**63 - 1, -(2**63), 2**64]


class _Str(str):
    """A str subclass: C leaves it to the exact encoder."""


class _Float(float):
    """A float subclass: C leaves it to the exact encoder."""


class _Int(int):
    """An int subclass: C leaves it to the exact encoder."""


class _Values:
    """Builds JSON-like values from a FuzzedDataProvider, within a budget of nodes."""

    def __init__(self, fdp: FuzzedDataProvider, budget: int = 200) -> None:
        self.fdp = fdp
        self.budget = budget

    def text(self) -> str:
        fdp = self.fdp
        mode = fdp.ConsumeIntInRange(0, 4)
        if mode == 0:
            return str(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 24)))
        if mode == 1:
            return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24)))
        if mode == 2:  # mostly ASCII, with the characters that matter where the fuzzer puts them
            return "".join(
                fdp.PickValueInList(_CHARS)
                if fdp.ConsumeBool()
                else chr(fdp.ConsumeIntInRange(32, 126))
                for _ in range(fdp.ConsumeIntInRange(0, 24))
            )
        if mode == 3:  # long: past the 8-byte scan and the 4 KiB first buffer
            piece = "".join(fdp.PickValueInList(_CHARS) for _ in range(fdp.ConsumeIntInRange(0, 3)))
            return "a" * fdp.ConsumeIntInRange(0, 9) + piece * fdp.ConsumeIntInRange(1, 1500)
        return "seq" if fdp.ConsumeBool() else ""

    def key(self) -> str:
        """Object keys: often sharing prefixes, so that sorting compares past 8 characters."""
        fdp = self.fdp
        if fdp.ConsumeIntInRange(0, 2) == 0:
            return self.text()
        stem = "abcdefghij"[: fdp.ConsumeIntInRange(0, 10)]
        return stem + "".join(
            fdp.PickValueInList(["a", "z", "\x00", "\u00e9", "\u0100", "\uffff", "\U0001f600"])
            for _ in range(fdp.ConsumeIntInRange(0, 2))
        )

    def number(self) -> Any:
        fdp = self.fdp
        mode = fdp.ConsumeIntInRange(0, 8)
        if mode == 0:
            return fdp.ConsumeIntInRange(-(2**53) - 4, 2**53 + 4)
        if mode == 1:
            return fdp.PickValueInList(_INTS)
        if mode == 2:
            return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 12))
        if mode == 3:
            return fdp.PickValueInList(_FLOATS)
        if mode == 4:  # any bit pattern: subnormals, NaN payloads, every exponent
            return struct.unpack("<d", fdp.ConsumeBytes(8).ljust(8, b"\x00"))[0]
        if mode == 5:
            return fdp.ConsumeIntInRange(-(10**9), 10**9) / 10 ** fdp.ConsumeIntInRange(0, 12)
        if mode == 6:  # a neighbour of a layout threshold
            x = fdp.PickValueInList(_FLOATS)
            for _ in range(fdp.ConsumeIntInRange(1, 3)):
                x = math.nextafter(x, math.inf if fdp.ConsumeBool() else -math.inf)
            return x
        if mode == 7:
            return float(fdp.ConsumeRegularFloat())
        return float(fdp.ConsumeFloat())

    def value(self, depth: int = 0) -> Any:
        fdp = self.fdp
        self.budget -= 1
        if self.budget <= 0 or depth > 6:
            return fdp.PickValueInList([None, True, False, 0, 0.5, "x"])
        kind = fdp.ConsumeIntInRange(0, 12)
        if kind == 0:
            return None
        if kind == 1:
            return fdp.ConsumeBool()
        if kind in (2, 3):
            return self.number()
        if kind in (4, 5):
            return self.text()
        if kind == 6:
            return [self.value(depth + 1) for _ in range(self.size())]
        if kind == 7:
            return tuple(self.value(depth + 1) for _ in range(self.size()))
        if kind in (8, 9):
            return self.object(depth + 1)
        if kind == 10:  # nested around the C encoder's depth limit (32)
            levels = fdp.ConsumeIntInRange(25, 40)
            self.budget -= levels
            inner = self.value(depth + 1)
            for _ in range(levels):
                inner = [inner] if fdp.ConsumeBool() else {"k": inner}
            return inner
        if kind == 11:  # subclasses and foreign types: declined by C, decided by the exact path
            return fdp.PickValueInList(
                [_Str("s"), _Float(0.5), _Int(3), {_Str("k"): 1}, {1: "x"}, b"x", {"x"}, object()]
            )
        # Contains itself. Only a scalar beside it: the exact encoder recurses until Python's
        # limit through whatever is inside, and that is slow enough to starve the fuzzer.
        looped: list[Any] = [fdp.PickValueInList([None, 1, "x", 0.5])]
        looped.append(looped)
        return looped

    def size(self) -> int:
        """A container's length: mostly small, sometimes past the 32 members sorted on the stack."""
        fdp = self.fdp
        return fdp.ConsumeIntInRange(0, 4) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 48)

    def object(self, depth: int = 0) -> dict[Any, Any]:
        return {self.key(): self.value(depth) for _ in range(self.size())}


# -- the RFC 8785 encoder --------------------------------------------------------------------------


def canonical_target(data: bytes) -> None:
    """C canonical() is the exact encoder's bytes or declines; every path agrees."""
    value = _Values(FuzzedDataProvider(data)).value()
    snapshot = repr(value)
    expected = outcome(_exact, value)
    native = _native.canonical(value)
    if native is not None:
        assert native == expected, f"C {native!r} != exact {expected!r} for {snapshot[:300]}"
    assert outcome(canonicalize, value) == expected, snapshot[:300]
    with python_only():
        assert outcome(canonicalize, value) == expected, snapshot[:300]
    assert repr(value) == snapshot, "the value was changed"


def _parts(obj: dict[str, Any], key: str) -> tuple[bytes, bytes] | str:
    try:
        return canonical_parts(obj, key)
    except CanonicalizationError as exc:
        return str(exc)


def canonical_parts_target(data: bytes) -> None:
    """C canonical_parts() splits the exact encoding around the numbered member, or declines."""
    fdp = FuzzedDataProvider(data)
    values = _Values(fdp)
    obj = values.object()
    key = values.key()
    n = fdp.ConsumeIntInRange(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    if key in obj:
        for split in (_native.canonical_parts, canonical_parts):
            try:
                split(obj, key)
            except ValueError as exc:
                assert "already has the member" in str(exc), exc
            else:
                raise AssertionError(f"{split} numbered a member {key!r} the object has")
        return
    expected = outcome(_exact, {**obj, key: n})
    native = _native.canonical_parts(obj, key)
    if native is not None:
        head, tail = native
        assert head + b"%d" % n + tail == expected, f"C parts {native!r} != {expected!r}"
    wrapped = _parts(obj, key)
    with python_only():
        assert _parts(obj, key) == wrapped, f"{key!r} in {obj!r}"[:300]
    if isinstance(wrapped, str):
        assert wrapped == expected
    else:
        assert wrapped[0] + b"%d" % n + wrapped[1] == expected


# -- top_level_int --------------------------------------------------------------------------------


def _document(fdp: FuzzedDataProvider, key: bytes) -> bytes:
    """An object's JSON text (the writer's layout, re-indented or escaped), or raw bytes."""
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096)))
    values = _Values(fdp, budget=60)
    record = values.object()
    if fdp.ConsumeBool():
        name = key.decode("utf-8", "replace")
        record[name] = values.number() if fdp.ConsumeBool() else values.value()
    try:
        if mode == 1:
            text = orjson.dumps(record)  # the writer's layout
        else:
            indent = fdp.PickValueInList([None, 0, 1, "\t", " \r\n"])
            text = json.dumps(record, ensure_ascii=fdp.ConsumeBool(), indent=indent).encode(
                "utf-8", "surrogatepass"
            )
    except (TypeError, ValueError, OverflowError, RecursionError, orjson.JSONEncodeError):
        return b"{}"
    if mode == 3:  # damaged: a few bytes changed, dropped or added
        damaged = bytearray(text)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            at = fdp.ConsumeIntInRange(0, len(damaged))
            byte = fdp.PickValueInList(list(b'{}[]",:\\ -0123456789e.tfn'))
            edit = fdp.ConsumeIntInRange(0, 2)
            if edit == 0:
                damaged.insert(at, byte)
            elif at < len(damaged):
                if edit == 1:
                    del damaged[at]
                else:
                    damaged[at] = byte
        text = bytes(damaged)
    return text


def top_level_int_target(data: bytes) -> None:
    """C top_level_int() is what parsing gives, or None; record_seq() is exactly parsing."""
    fdp = FuzzedDataProvider(data)
    key = b"seq" if fdp.ConsumeBool() else bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)))
    document = _document(fdp, key)
    buffer = document if fdp.ConsumeBool() else memoryview(bytearray(document))
    got = _native.top_level_int(buffer, key)
    assert got is None or type(got) is int
    try:
        name = key.decode("utf-8")
    except UnicodeDecodeError:
        name = None  # no JSON text names it; nothing should be found
    try:
        expected = parsed_int(document, name) if name is not None else None
    except NotJson:
        return  # C reads only the top level: on bytes that are not JSON it may answer anyway
    assert got is None or got == expected, f"C {got} != parsed {expected} in {document[:300]!r}"
    if key == b"seq":
        seq = walread.record_seq(document)
        assert seq == expected, f"record_seq {seq} != parsed {expected} in {document[:300]!r}"


# -- hashing ---------------------------------------------------------------------------------------


def _blob(fdp: FuzzedDataProvider) -> bytes:
    if fdp.ConsumeIntInRange(0, 7):
        return bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)))
    return bytes(fdp.ConsumeBytes(4)) * fdp.ConsumeIntInRange(0, 3000)


def _refused(call: Callable[[], Any]) -> type[Exception] | None:
    """The exception type ``call`` refuses with (TypeError or ValueError), or None if it answers."""
    try:
        call()
    except (TypeError, ValueError) as exc:
        return type(exc)
    return None


def leaf_hashes_target(data: bytes) -> None:
    """C leaf_hashes() over exact bytes equals hashlib's; anything else is a TypeError."""
    fdp = FuzzedDataProvider(data)
    records: list[Any] = []
    for _ in range(fdp.ConsumeIntInRange(0, 40)):
        blob = _blob(fdp)
        if fdp.ConsumeIntInRange(0, 15):
            records.append(blob)
        else:  # hashlib takes any buffer, C only exact bytes; str and None no one takes
            records.append(fdp.PickValueInList([bytearray, memoryview, str, lambda b: None])(blob))
    sequence = tuple(records) if fdp.ConsumeBool() else records
    if all(type(r) is bytes for r in records):
        expected = subtrees._py_leaf_hashes(sequence)
        assert _native.leaf_hashes(sequence) == expected
        assert subtrees.leaf_hashes(sequence) == expected
        return
    refused = _refused(lambda: _native.leaf_hashes(sequence))
    assert refused is TypeError, f"C: {refused} for {[type(r).__name__ for r in records]}"
    if all(isinstance(r, bytes | bytearray | memoryview) for r in records):
        plain = [bytes(r) for r in records]
        assert subtrees.leaf_hashes(sequence) == subtrees._py_leaf_hashes(plain)
    else:
        assert _refused(lambda: subtrees.leaf_hashes(sequence)) is TypeError


def node_hashes_target(data: bytes) -> None:
    """C node_hashes() equals hashlib's for equal lists of 32-byte bytes; refuses anything else."""
    fdp = FuzzedDataProvider(data)
    count = fdp.ConsumeIntInRange(0, 40)

    def side() -> list[bytes]:
        n = count if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 40)
        sizes = [
            32 if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeIntInRange(0, 70) for _ in range(n)
        ]
        return [bytes(fdp.ConsumeBytes(size)) for size in sizes]

    lefts, rights = side(), side()
    if len(lefts) != len(rights):  # no pairing: the twin and the wrapper refuse too
        for name, call in [
            ("C", _native.node_hashes),
            ("the twin", subtrees._py_node_hashes),
            ("the wrapper", subtrees.node_hashes),
        ]:
            refused = _refused(lambda call=call: call(lefts, rights))
            assert refused is ValueError, f"{name}: {refused} for {len(lefts)} and {len(rights)}"
        return
    expected = subtrees._py_node_hashes(lefts, rights)
    if all(len(h) == 32 for h in lefts + rights):
        assert _native.node_hashes(lefts, rights) == expected
    else:
        assert _refused(lambda: _native.node_hashes(lefts, rights)) is ValueError
    assert subtrees.node_hashes(lefts, rights) == expected


def _buffer(fdp: FuzzedDataProvider, data: bytes) -> Any:
    """``data`` as bytes, a bytearray, or a memoryview at an odd address (unaligned reads)."""
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        return data
    if kind == 1:
        return bytearray(data)
    return memoryview(b"\x00" + data)[1:]


def node_level_target(data: bytes) -> None:
    """C node_level() equals the twin's level, or both refuse a bad length or skip."""
    fdp = FuzzedDataProvider(data)
    count = fdp.ConsumeIntInRange(0, 70)
    level = bytes(fdp.ConsumeBytes(32)).ljust(32, b"\x01") * count
    if not fdp.ConsumeIntInRange(0, 7):
        level += bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 31)))
    skip = fdp.ConsumeIntInRange(0, 1) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeInt(4)
    buffer = _buffer(fdp, level)
    refused = _refused(lambda: _native.node_level(buffer, skip))
    twin_refused = _refused(lambda: subtrees._py_node_level(level, skip))
    assert refused is twin_refused, f"C: {refused}, twin: {twin_refused}, {len(level)} B, {skip}"
    if refused is None:
        assert subtrees.node_level(buffer, skip) == subtrees._py_node_level(level, skip)


def _valid_arrow(offsets: bytes, data_size: int, start: int, count: int, width: int) -> bool:
    """Whether leaf_hashes_arrow's documented domain holds (checked independently of C)."""
    if width not in (4, 8) or start < 0 or count < 0:
        return False
    entries = len(offsets) // width
    if start + count + 1 > entries:
        return False
    fmt = "<i" if width == 4 else "<q"
    used = [struct.unpack_from(fmt, offsets, k * width)[0] for k in range(start, start + count + 1)]
    return 0 <= used[0] <= data_size and all(a <= b <= data_size for a, b in pairwise(used))


def leaf_hashes_arrow_target(data: bytes) -> None:
    """C leaf_hashes_arrow() hashes values in place as the twin does; both refuse bad buffers."""
    fdp = FuzzedDataProvider(data)
    width = fdp.PickValueInList([4, 8]) if fdp.ConsumeIntInRange(0, 15) else fdp.ConsumeInt(1)
    fmt = "<i" if width == 4 else "<q"
    values = [_blob(fdp) for _ in range(fdp.ConsumeIntInRange(0, 30))]
    blob = b"".join(values)
    if fdp.ConsumeIntInRange(0, 3):  # Arrow's layout: running offsets from some base
        at, bounds = fdp.ConsumeIntInRange(0, 8), []
        blob = bytes(at) + blob
        for v in [b"", *values]:
            at += len(v)
            bounds.append(at)
        bounds[0] = fdp.ConsumeIntInRange(0, bounds[0])
        if not fdp.ConsumeIntInRange(0, 7):  # one offset out of order or out of range
            bad = fdp.ConsumeIntInRange(-9, len(blob) + 9)
            bounds[fdp.ConsumeIntInRange(0, len(bounds) - 1)] = bad
        packed = f"<{len(bounds)}{fmt[1]}"
        offsets = struct.pack(packed, *bounds) if width in (4, 8) else bytes(len(bounds))
    else:  # whatever the fuzzer wrote
        offsets = bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)))
    entries = len(offsets) // width if width in (4, 8) else 0
    if fdp.ConsumeIntInRange(0, 7):
        start = fdp.ConsumeIntInRange(0, max(0, entries - 1))
        count = fdp.ConsumeIntInRange(0, max(0, entries - 1 - start))
    else:  # anything a Py_ssize_t holds
        start, count = fdp.ConsumeInt(8), fdp.ConsumeInt(8)
    offsets_buffer, data_buffer = _buffer(fdp, offsets), _buffer(fdp, blob)

    def native() -> bytes:
        return _native.leaf_hashes_arrow(offsets_buffer, data_buffer, start, count, width)

    def twin() -> bytes:
        return subtrees._py_leaf_hashes_arrow(offsets, blob, start, count, width)

    if not _valid_arrow(offsets, len(blob), start, count, width):
        where = f"values {start}+{count} of {len(offsets)} B of offsets ({width}), {len(blob)} B"
        assert _refused(native) is ValueError, f"C hashed buffers outside its domain: {where}"
        assert _refused(twin) is ValueError, f"the twin hashed outside the domain: {where}"
        return
    expected = twin()
    assert native() == expected
    assert subtrees.leaf_hashes_arrow(offsets_buffer, data_buffer, start, count, width) == expected


# -- join_numbered ---------------------------------------------------------------------------------


def join_numbered_target(data: bytes) -> None:
    """C join_numbered() formats as ``bytes %`` does; both refuse bad lists and seqs."""
    fdp = FuzzedDataProvider(data)
    heads: list[Any] = [_blob(fdp) for _ in range(fdp.ConsumeIntInRange(0, 30))]
    n = len(heads) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 30)
    tails = [_blob(fdp) for _ in range(n)]
    if heads and not fdp.ConsumeIntInRange(0, 15):
        heads[fdp.ConsumeIntInRange(0, len(heads) - 1)] = "text"  # no one formats a str
    mode = fdp.ConsumeIntInRange(0, 3)
    first = (
        fdp.ConsumeIntInRange(0, 2**53)
        if mode
        else fdp.ConsumeIntInRange(-(2**63), 2**63 - 1 - len(heads))
    )
    expected_error = _refused(lambda: commitqueue._py_join_numbered(heads, tails, first))
    native_error = _refused(lambda: _native.join_numbered(heads, tails, first))
    assert native_error is expected_error, (
        f"C: {native_error}, twin: {expected_error} for {len(heads)} heads, {len(tails)} tails "
        f"from seq {first}"
    )
    if expected_error is None:
        pairs = enumerate(zip(heads, tails, strict=True))
        expected = [b"%b%d%b" % (h, first + i, t) for i, (h, t) in pairs]
        assert _native.join_numbered(heads, tails, first) == expected
        assert commitqueue._py_join_numbered(heads, tails, first) == expected


TARGETS: dict[str, Target] = {
    "canonical": canonical_target,
    "canonical_parts": canonical_parts_target,
    "top_level_int": top_level_int_target,
    "leaf_hashes": leaf_hashes_target,
    "node_hashes": node_hashes_target,
    "node_level": node_level_target,
    "leaf_hashes_arrow": leaf_hashes_arrow_target,
    "join_numbered": join_numbered_target,
}
