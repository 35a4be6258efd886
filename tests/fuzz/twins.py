"""What the C functions are compared with: their pure-Python twins, run as an install without a
compiler runs them. Shared by tests/unit/audit/test_native.py and the fuzz targets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from infertrail.audit import canonical


@contextmanager
def python_only() -> Iterator[None]:
    """Canonicalize without the C encoder (as an install without a compiler does)."""
    saved, canonical._native = canonical._native, None
    try:
        yield
    finally:
        canonical._native = saved


def outcome(encode: Callable[[Any], bytes], value: Any) -> bytes | str:
    """The encoding, or the error message for a value with no JCS form."""
    try:
        return bytes(encode(value))
    except canonical.CanonicalizationError as exc:
        return str(exc)


class NotJson(Exception):
    """The bytes are not one JSON text: nothing can be claimed about their members."""


def parsed_int(data: bytes, key: str = "seq") -> int | None:
    """The reference for top_level_int / record_seq: parse it all; NotJson if it does not parse.

    The integer the top-level object's ``key`` holds, else None (no such member, another type,
    or a top level that is not an object).
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise NotJson(str(exc)) from None
    value = document.get(key) if isinstance(document, dict) else None
    return value if type(value) is int else None


def parsed_seq(data: bytes) -> int | None:
    """:func:`parsed_int` of ``seq``, None for bytes that are not JSON (as record_seq answers)."""
    try:
        return parsed_int(data)
    except NotJson:
        return None
