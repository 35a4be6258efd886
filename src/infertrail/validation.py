"""Pydantic errors in the words of a user's file: '<field> must ..., got X'.

Shared by every file infertrail validates (alert rules, SLO definitions), so that all of them
report mistakes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic_core import ErrorDetails

_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def describe_error(
    err: ErrorDetails,
    field: str,
    *,
    tag_field: str,
    tag_values: Sequence[str],
    value_error_sep: str = ": ",
) -> str:
    """One error for ``field``; ``tag_field``/``tag_values`` name a discriminated union's tag."""
    kind, ctx, got = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "missing":
        return f"{field} is required"
    if kind == "extra_forbidden":
        return f"{field} is not a known field"
    if kind == "union_tag_not_found":
        return f"{tag_field} is required (one of {', '.join(tag_values)})"
    if kind == "union_tag_invalid":
        return f"{tag_field} must be one of {', '.join(tag_values)}, got {ctx.get('tag')!r}"
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        return f"{field} must be {op} {ctx[key]}, got {got!r}"
    if kind == "literal_error":
        return f"{field} must be one of {ctx['expected']}, got {got!r}"
    if kind == "string_pattern_mismatch":
        return f"{field} must match {ctx['pattern']}, got {got!r}"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return f"{field}{value_error_sep}{msg}" if field else msg
    if kind == "finite_number" or (isinstance(got, float) and not math.isfinite(got)):
        return f"{field} must be a finite number, got {got!r}"
    what = err["msg"][0].lower() + err["msg"][1:]
    return f"{field}: {what}, got {got!r}" if field else f"{what}, got {got!r}"
