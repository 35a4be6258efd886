"""RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes every audit record is hashed as.

Three encoders produce the same bytes:

- the compiled one (:mod:`infertrail._native`, when it was built): one C pass over the value,
  floats printed by the Schubfach shortest round-trip algorithm; ~2.4x the orjson path below;
- without it, the fast path: one pass checks types and normalises floats (integral ones become
  ints, the few whose text orjson writes differently from ECMAScript become pre-encoded
  fragments), then orjson writes the value with sorted keys;
- :func:`_exact`, a direct transcription of RFC 8785 that also names the offending value and its
  path. It takes whatever the other two cannot prove equal (object keys outside the Basic
  Multilingual Plane, subclasses of the JSON types, invalid input).

Tests pin all three against the RFC's vectors, against each other and against the independent
``rfc8785`` package.

:func:`canonical_parts` encodes a record once, around the place where one integer member goes:
the audit writer numbers records by joining three byte strings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["MAX_SAFE_INTEGER", "CanonicalizationError", "canonical_parts", "canonicalize"]

#: Largest integer I-JSON (RFC 7493) numbers carry exactly; JCS rejects anything beyond +-this.
MAX_SAFE_INTEGER = 2**53 - 1


_Native = tuple[
    Callable[[Any], bytes | None],  # canonical
    Callable[[dict[str, Any], str], tuple[bytes, bytes] | None],  # canonical_parts
]


def _load_native() -> _Native | None:
    try:
        from infertrail._native import canonical, canonical_parts
    except ImportError:  # built without a C compiler: orjson and the Python walk below
        return None
    return canonical, canonical_parts


_native = _load_native()


class CanonicalizationError(ValueError):
    """A value that has no RFC 8785 form: the message names the value and its JSON path."""


class _NotFast(Exception):
    """Internal: the fast path cannot prove its output equals JCS for this value."""


# What orjson writes for the values the fast path lets through is JCS: strings with only '"',
# '\\', \b \f \n \r \t and \u00xx (lowercase) escaped and everything else raw UTF-8, ints in
# decimal (STRICT_INTEGER refuses beyond 2**53 - 1), non-integral floats of magnitude >= 1e-5 in
# fixed notation with the shortest round-trip digits, and keys sorted by code point.
# test_canonical.py checks each of these claims against the installed orjson.
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_FOUR_BYTE_UTF8 = re.compile(rb"[\xf0-\xf4]")
# Marks where canonical_parts splits. JSON text never holds a raw NUL: both encoders escape it
# in strings (as \u0000), so the only NUL byte in the output is this one.
_SLOT_FRAGMENT = orjson.Fragment(b"\x00")
_SLOT = object()  # the same mark for the exact path


def canonicalize(obj: Any) -> bytes:
    """Encode ``obj`` as RFC 8785 canonical JSON (UTF-8 bytes), the input of audit leaf hashes.

    Accepts dict (str keys), list, tuple, str, int, float, bool and None; anything else, a
    non-finite float, an int beyond +-(2**53 - 1) or a lone surrogate raises
    :class:`CanonicalizationError` naming the value and its path, e.g. ``$.explanation.values``.
    """
    if _native is not None:
        out = _native[0](obj)
        return _exact(obj) if out is None else out
    try:
        out = orjson.dumps(_fast(obj), option=_ORJSON_OPTIONS)
    except (_NotFast, orjson.JSONEncodeError, RecursionError):
        return _exact(obj)
    # Code point order (orjson's) equals UTF-16 order (JCS's) unless a key has a character
    # outside the BMP: its surrogate pair sorts below U+E000..U+FFFF in UTF-16. Such characters
    # are the only 4-byte UTF-8 sequences, so ASCII output (the common case) skips the check.
    if not out.isascii() and _FOUR_BYTE_UTF8.search(out) and _has_astral_key(obj):
        return _exact(obj)
    return out


def canonical_parts(obj: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    """``(head, tail)`` such that ``canonicalize({**obj, key: n}) == head + b"%d" % n + tail``.

    For any int ``n`` within +-(2**53 - 1). ``obj`` must be a dict without ``key``; it is
    checked and encoded as :func:`canonicalize` does (same errors).
    """
    if type(obj) is not dict:
        raise TypeError(f"canonical_parts needs a dict, got {type(obj).__name__}")
    if key in obj:
        raise ValueError(f"the object already has the member {key!r} to be numbered")
    out = None
    if _native is not None:
        parts = _native[1](obj, key)
        if parts is not None:
            return parts
    else:
        try:
            fast = _fast_dict(obj)
            numbered = dict(fast) if fast is obj else fast
            numbered[key] = _SLOT_FRAGMENT
            out = orjson.dumps(numbered, option=_ORJSON_OPTIONS)
        except (_NotFast, orjson.JSONEncodeError, RecursionError):
            pass
    if out is None or (
        not out.isascii() and _FOUR_BYTE_UTF8.search(out) and _has_astral_key({**obj, key: 0})
    ):
        out = _exact({**obj, key: _SLOT})
    head, _, tail = out.partition(b"\x00")
    return head, tail


# -- fast path -------------------------------------------------------------------------------


def _fast(obj: Any) -> Any:
    """Return ``obj``, or a copy with normalised floats, that orjson writes as JCS."""
    t = type(obj)
    if t is dict:
        return _fast_dict(obj)
    if t is list or t is tuple:
        return _fast_list(obj)
    if t is str or t is int or obj is None or t is bool:
        return obj
    if t is float:
        return _fast_float(obj)
    raise _NotFast


def _fast_float(x: float) -> Any:
    """``x`` itself where orjson writes it as ECMAScript does, else an int or a fragment."""
    if 1e-5 <= x < 1e16 or -1e16 < x <= -1e-5:
        if not x.is_integer():
            return x
        if -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
            return int(x)  # ECMAScript writes 2.0 as 2; orjson would write 2.0
    elif x == 0.0:
        return 0  # also -0.0, which JCS writes as 0
    if math.isfinite(x):
        return orjson.Fragment(_number_to_string(x).encode())
    raise _NotFast  # NaN and infinities: the exact path reports them with their path


def _fast_dict(d: dict[Any, Any]) -> dict[Any, Any]:
    # A first pass over the values alone finds most records need no change (floats already
    # in orjson's JCS range, nested objects unchanged); only then are keys looked at.
    for v in d.values():
        # Inlined _fast: this loop is most of canonicalize's own cost. Strings and nulls come
        # first: they are most of an audit record's values.
        t = type(v)
        if t is str or v is None:
            continue
        if t is float:
            if (1e-5 <= v < 1e16 or -1e16 < v <= -1e-5) and not v.is_integer():
                continue
            return _fixed_dict(d)
        if t is int or t is bool:
            continue
        if t is dict:
            if (new_dict := _fast_dict(v)) is not v:
                return _fixed_dict(d, v, new_dict)
        elif t is list or t is tuple:
            if (new_list := _fast_list(v)) is not v:
                return _fixed_dict(d, v, new_list)
        else:
            raise _NotFast
    return d


def _fixed_dict(d: dict[Any, Any], old: Any = None, new: Any = None) -> dict[Any, Any]:
    """A copy of ``d`` with every value replaced by its _fast form; ``old``'s is ``new``.

    The container that needed a change arrives already converted: converting it again would
    convert its own changed child twice, and so on down, 2**depth times in all.
    """
    copy = dict(d)
    for k, v in d.items():
        nv = new if v is old else _fast(v)
        if nv is not v:
            copy[k] = nv
    return copy


def _fast_list(items: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    for v in items:  # as _fast_dict: copy only once a value needs a change
        t = type(v)
        if t is str or v is None:
            continue
        if t is float:
            if (1e-5 <= v < 1e16 or -1e16 < v <= -1e-5) and not v.is_integer():
                continue
            return [_fast(x) for x in items]
        if t is int or t is bool:
            continue
        if t is dict:
            if (new_dict := _fast_dict(v)) is not v:
                return [new_dict if x is v else _fast(x) for x in items]  # as _fixed_dict
        elif t is list or t is tuple:
            if (new_list := _fast_list(v)) is not v:
                return [new_list if x is v else _fast(x) for x in items]
        else:
            raise _NotFast
    return items


def _has_astral_key(obj: Any) -> bool:
    """True if some object key anywhere in ``obj`` has a character above U+FFFF."""
    if isinstance(obj, dict):
        return any(max(k, default="") > "\uffff" or _has_astral_key(v) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return any(_has_astral_key(v) for v in obj)
    return False


# -- exact path ------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 8785 3.2.2.2: the two-character escapes where JSON has them, \u00xx (lowercase) for
# the other control characters, and nothing else escaped.
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
for _cp in range(0x20):
    _ESCAPES.setdefault(chr(_cp), f"\\u{_cp:04x}")
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Invalid(Exception):
    """Internal: a value with no JCS form; containers add their key or index on the way out."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str | int] = []  # innermost first: built only when something fails


def _path_str(path: list[str | int]) -> str:
    """Render an innermost-first path as ``$.explanation.values[3]`` or ``$["a b"]``."""
    parts = ["$"]
    for p in reversed(path):
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif _IDENTIFIER.fullmatch(p):
            parts.append(f".{p}")
        else:
            parts.append("[" + json.dumps(p) + "]")
    return "".join(parts)


def _exact(obj: Any) -> bytes:
    """Encode ``obj`` by the letter of RFC 8785: slower, covers every input, names bad values."""
    out: list[str] = []
    try:
        _exact_value(obj, out)
    except _Invalid as e:
        raise CanonicalizationError(f"{e.what} at {_path_str(e.path)}") from None
    except RecursionError:
        raise CanonicalizationError(
            "value is nested too deeply or contains itself (circular reference)"
        ) from None
    return "".join(out).encode("utf-8")


def _exact_value(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_exact_string(obj))
    elif isinstance(obj, int):
        out.append(_exact_int(int(obj)))
    elif isinstance(obj, float):
        out.append(_number_to_string(float(obj)))
    elif isinstance(obj, dict):
        _exact_object(obj, out)
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            try:
                _exact_value(item, out)
            except _Invalid as e:
                e.path.append(i)
                raise
        out.append("]")
    elif obj is _SLOT:
        out.append("\x00")
    else:
        raise _Invalid(
            f"value of type {type(obj).__module__}.{type(obj).__qualname__} has no JSON form "
            "(expected dict, list, tuple, str, int, float, bool or None)"
        )


def _exact_object(obj: dict[Any, Any], out: list[str]) -> None:
    for key in obj:
        if not isinstance(key, str):
            raise _Invalid(f"object key {key!r} of type {type(key).__name__} is not a str")
    # RFC 8785 3.2.3: sort by UTF-16 code units; big-endian UTF-16 bytes compare the same way.
    # surrogatepass lets a lone surrogate reach _exact_string, which reports it.
    keys = sorted(obj, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
    out.append("{")
    for i, key in enumerate(keys):
        if i:
            out.append(",")
        try:
            out.append(_exact_string(key))
            out.append(":")
            _exact_value(obj[key], out)
        except _Invalid as e:
            e.path.append(key)
            raise
    out.append("}")


def _exact_string(s: str) -> str:
    bad = _SURROGATE.search(s)
    if bad is not None:
        raise _Invalid(
            f"string {s[:40]!r} contains lone surrogate U+{ord(bad.group()):04X} at index "
            f"{bad.start()}, which is not valid Unicode"
        )
    if _NEEDS_ESCAPE.search(s) is None:
        return '"' + s + '"'
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], s) + '"'


def _exact_int(value: int) -> str:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    # str() of a huge int is slow and, past 4300 digits, refused: give its size instead.
    shown = str(value) if value.bit_length() <= 256 else f"of {value.bit_length()} bits"
    raise _Invalid(
        f"integer {shown} is outside the I-JSON range +-(2**53 - 1); encode it as a string"
    )


def _number_to_string(x: float) -> str:
    """ECMAScript Number::toString(x) (ECMA-262 7.1.12.1), as RFC 8785 3.2.2.3 requires."""
    if not math.isfinite(x):
        raise _Invalid(f"number {x!r} is not finite; JSON has no NaN or Infinity")
    if x == 0.0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr gives the shortest digit string that round-trips, the closest one on a tie: the
    # same digits ECMAScript chooses. Only their layout differs.
    mantissa, _, exp = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    # n: the decimal point sits n places after the first digit of `digits` (ECMAScript's n).
    n = len(int_part) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + "e" + f"{e:+d}"
    return sign + text
