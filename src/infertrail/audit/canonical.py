"""RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes every audit record is hashed as.

Two encoders produce the same bytes. The fast path runs on the request thread: a Python pass
checks and normalises the value (integral floats become ints, other floats are kept only where
Python's ``repr`` already is ECMAScript's ``Number::toString``), then the stdlib C JSON encoder
writes it. Whatever the fast path cannot prove equal (floats below 1e-4 or from 1e16 up, object
keys outside the Basic Multilingual Plane, invalid input) goes to :func:`_exact`, a direct
transcription of RFC 8785 that also names the offending value and its path.
"""

from __future__ import annotations

import json.encoder
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "CanonicalizationError", "canonicalize"]

#: Largest integer I-JSON (RFC 7493) numbers carry exactly; JCS rejects anything beyond +-this.
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalizationError(ValueError):
    """A value that has no RFC 8785 form: the message names the value and its JSON path."""


class _NotFast(Exception):
    """Internal: the fast path cannot prove its output equals JCS for this value."""


# The C encoder writes exactly JCS for what the fast path lets through: strings with only
# '"', '\\', \b \f \n \r \t and \u00xx (lowercase hex) escaped and everything else raw, ints in
# decimal, floats by repr, keys sorted by code point. Built once: JSONEncoder.encode would
# rebuild it on every call.
_c_encode: Callable[[Any, int], Any] | None = getattr(json.encoder, "c_make_encoder", None)
if _c_encode is not None:
    _c_encode = _c_encode(
        None,  # markers: circularity is caught by the recursion limit instead
        None,  # default: never reached, the fast path lets only JSON types through
        json.encoder.encode_basestring,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )


def canonicalize(obj: Any) -> bytes:
    """Encode ``obj`` as RFC 8785 canonical JSON (UTF-8 bytes).

    Accepts dict (str keys), list, tuple, str, int, float, bool and None; anything else, a
    non-finite float or an int beyond +-(2**53 - 1) raises :class:`CanonicalizationError`.
    """
    if _c_encode is not None:
        try:
            text = "".join(_c_encode(_fast(obj), 0))
            return text.encode("utf-8")
        except (_NotFast, UnicodeEncodeError, RecursionError):
            pass
    return _exact(obj)


# -- fast path -------------------------------------------------------------------------------


def _fast(obj: Any) -> Any:
    """Return ``obj`` (or a copy with normalised floats) that the C encoder writes as JCS."""
    t = type(obj)
    if t is dict:
        return _fast_dict(obj)
    if t is list or t is tuple:
        return _fast_list(obj)
    if t is str or obj is None or t is bool:
        return obj
    if t is int:
        if -MAX_SAFE_INTEGER <= obj <= MAX_SAFE_INTEGER:
            return obj
        raise _NotFast
    if t is float:
        return _fast_float(obj)
    raise _NotFast


def _fast_float(x: float) -> float | int:
    """Map ``x`` to a value whose Python JSON form is its ECMAScript form, or give up."""
    # In [1e-4, 1e16) repr uses fixed notation with the shortest round-trip digits, which is
    # ECMAScript's output except for the ".0" repr adds to integral values.
    if 1e-4 <= x < 1e16 or -1e16 < x <= -1e-4:
        if x.is_integer():
            if -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
                return int(x)
            raise _NotFast
        return x
    if x == 0.0:
        return 0  # also -0.0, which JCS writes as 0
    raise _NotFast


def _fast_dict(d: dict[Any, Any]) -> dict[Any, Any]:
    copy: dict[Any, Any] | None = None
    for k, v in d.items():
        # Code point order (what sort_keys does) equals UTF-16 order unless a key has a
        # character outside the BMP: those surrogate pairs sort below U+E000..U+FFFF in UTF-16.
        if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
            raise _NotFast
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                continue
            raise _NotFast
        if t is float:
            nv: Any = _fast_float(v)
            if nv is v:
                continue
        elif t is dict:
            nv = _fast_dict(v)
        elif t is list or t is tuple:
            nv = _fast_list(v)
        else:
            raise _NotFast
        if nv is not v:
            if copy is None:
                copy = dict(d)
            copy[k] = nv
    return d if copy is None else copy


def _fast_list(items: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    copy: list[Any] | None = None
    for i, v in enumerate(items):
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                continue
            raise _NotFast
        if t is float:
            nv: Any = _fast_float(v)
            if nv is v:
                continue
        elif t is dict:
            nv = _fast_dict(v)
        elif t is list or t is tuple:
            nv = _fast_list(v)
        else:
            raise _NotFast
        if nv is not v:
            if copy is None:
                copy = list(items)
            copy[i] = nv
    return items if copy is None else copy


# -- exact path ------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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


def _path_str(path: tuple[str | int, ...]) -> str:
    """Render a path as JSONPath-like text: ``$.explanation.values[3]``, ``$["a b"]``."""
    parts = ["$"]
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif _IDENTIFIER.fullmatch(p):
            parts.append(f".{p}")
        else:
            parts.append("[" + json.dumps(p) + "]")
    return "".join(parts)


def _fail(path: tuple[str | int, ...], what: str) -> CanonicalizationError:
    return CanonicalizationError(f"{what} at {_path_str(path)}")


def _exact(obj: Any) -> bytes:
    """Encode ``obj`` by the letter of RFC 8785; slower, but covers every input and names errors."""
    out: list[str] = []
    try:
        _exact_value(obj, (), out)
    except RecursionError:
        raise CanonicalizationError(
            "value is nested too deeply or contains itself (circular reference)"
        ) from None
    return "".join(out).encode("utf-8")


def _exact_value(obj: Any, path: tuple[str | int, ...], out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_exact_string(obj, path))
    elif isinstance(obj, int):
        value = int(obj)
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            # str() of a huge int is slow and, past 4300 digits, refused: show its size instead.
            shown = str(value) if value.bit_length() <= 256 else f"of {value.bit_length()} bits"
            raise _fail(
                path,
                f"integer {shown} is outside the I-JSON range +-(2**53 - 1); encode it as a string",
            )
        out.append(str(value))
    elif isinstance(obj, float):
        out.append(_number_to_string(float(obj), path))
    elif isinstance(obj, dict):
        _exact_object(obj, path, out)
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _exact_value(item, (*path, i), out)
        out.append("]")
    else:
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise _fail(
            path,
            f"value of type {kind} has no JSON form (expected dict, list, tuple, str, int, "
            "float, bool or None)",
        )


def _exact_object(obj: dict[Any, Any], path: tuple[str | int, ...], out: list[str]) -> None:
    for key in obj:
        if not isinstance(key, str):
            raise _fail(path, f"object key {key!r} of type {type(key).__name__} is not a str")
    # RFC 8785 3.2.3: sort by UTF-16 code units; big-endian UTF-16 bytes compare the same way.
    # surrogatepass lets a lone surrogate reach _exact_string, which names it.
    keys = sorted(obj, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
    out.append("{")
    for i, key in enumerate(keys):
        if i:
            out.append(",")
        out.append(_exact_string(key, path))
        out.append(":")
        _exact_value(obj[key], (*path, key), out)
    out.append("}")


def _exact_string(s: str, path: tuple[str | int, ...]) -> str:
    bad = _SURROGATE.search(s)
    if bad is not None:
        raise _fail(
            path,
            f"string {s[:40]!r} contains lone surrogate U+{ord(bad.group()):04X} at index "
            f"{bad.start()}, which is not valid Unicode",
        )
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], s) + '"'


def _number_to_string(x: float, path: tuple[str | int, ...]) -> str:
    """ECMAScript Number::toString(x) (ECMA-262 7.1.12.1), as RFC 8785 3.2.2.3 requires."""
    if not math.isfinite(x):
        raise _fail(path, f"number {x!r} is not finite; JSON has no NaN or Infinity")
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
