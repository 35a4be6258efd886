"""The raw values of tabular inputs, as the data-quality checks see them.

A feature row cannot tell a missing value from an unseen category (NaN is the category
``"nan"``) nor a number from a numeric string (``float("3.5")`` extracts fine), so
:mod:`infertrail.drift.quality` reads the raw inputs too. This module says what one raw value
is (:func:`field_state`: fine, missing or mistyped) and reads a window's inputs column by column
(:class:`RawColumns`) at C speed where it can: types are classified once per type, not per value.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ABSENT",
    "MISSING",
    "NONE",
    "NUMBER",
    "OK",
    "OTHER",
    "STRING",
    "TYPE_ERROR",
    "RawColumns",
    "field_state",
    "fields_of",
    "of_types",
    "type_class",
]

BoolArray = NDArray[np.bool_]

#: What a raw value is, by its type.
NONE, NUMBER, STRING, OTHER = range(4)
#: What a raw field holds.
OK, MISSING, TYPE_ERROR = range(3)


class _Absent:
    """The value of a key the input does not have."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()

_TYPE_CLASSES: dict[type, int] = {}


def type_class(t: type) -> int:
    """:data:`NONE` (None, absent), :data:`NUMBER` (real numbers, bools, numpy's), :data:`STRING`
    or :data:`OTHER`; decided once per type (an isinstance walk), then looked up."""
    known = _TYPE_CLASSES.get(t)
    if known is not None:
        return known
    if t is type(None) or t is _Absent:
        found = NONE
    elif issubclass(t, numbers.Real | np.bool_):
        found = NUMBER
    elif issubclass(t, str):
        found = STRING
    else:
        found = OTHER
    if len(_TYPE_CLASSES) < 1024:  # bounded: inputs could bring types without end
        _TYPE_CLASSES[t] = found
    return found


def field_state(value: Any, numerical: bool) -> int:
    """What one raw value is for a feature: :data:`OK`, :data:`MISSING` (absent, None, NaN, the
    empty string) or :data:`TYPE_ERROR` (a numerical feature takes numbers, a categorical one
    numbers and strings)."""
    c = type_class(type(value))
    if c == NONE:
        return MISSING
    if c == NUMBER:
        return MISSING if value != value else OK  # NaN; no float(): 10**400 has none
    if c == STRING:
        return MISSING if value == "" else (TYPE_ERROR if numerical else OK)
    return TYPE_ERROR


def of_types(column: Sequence[Any], classes: tuple[int, ...]) -> BoolArray | None:
    """Which values of ``column`` have a type of ``classes``; None when none has (the usual
    case, found from the column's few distinct types without a pass in Python)."""
    flagged = {t for t in set(map(type, column)) if type_class(t) in classes}
    if not flagged:
        return None
    return np.fromiter(map(flagged.__contains__, map(type, column)), np.bool_, len(column))


def fields_of(
    x: Any, names: Sequence[str], positions: Sequence[int], n_features: int
) -> tuple[Any, ...] | None:
    """The raw values of features ``names`` (at ``positions`` in a sequence) of any input,
    absent keys as :data:`ABSENT`; None when the input is neither a mapping nor a sequence of
    ``n_features`` values (a malformed input)."""
    if isinstance(x, Mapping):
        return tuple(x.get(name, ABSENT) for name in names)
    try:
        if isinstance(x, str | bytes) or len(x) != n_features:
            return None
        return tuple(x[j] for j in positions)
    except (IndexError, KeyError, TypeError):
        return None


class RawColumns:
    """Reads some features' raw values out of a window's inputs, column by column: when every
    input is a mapping (by name) or every one a sequence (in column order), through C-level
    ``itemgetter`` calls over the whole window; otherwise input by input."""

    def __init__(self, names: Sequence[str], positions: Sequence[int], n_features: int) -> None:
        self._names = tuple(names)
        self._positions = tuple(positions)
        self._n_features = n_features
        self._by_name: itemgetter[Any] | None = None
        self._by_position: itemgetter[Any] | None = None
        if names:
            self._by_name = itemgetter(*self._names)
            self._by_position = itemgetter(*self._positions)

    def __call__(self, inputs: Sequence[Any]) -> list[tuple[Any, ...]] | None:
        """One tuple of raw values per feature; None when an input cannot be read."""
        if not self._names or not inputs:
            return None
        types = set(map(type, inputs))
        getter = None
        if all(issubclass(t, Mapping) for t in types):
            getter = self._by_name
        elif not any(issubclass(t, Mapping | str | bytes) for t in types):
            getter = self._by_position
        if getter is not None:
            try:
                if len(self._names) == 1:
                    return [tuple(map(getter, inputs))]
                return list(zip(*map(getter, inputs), strict=True))
            except (KeyError, IndexError, TypeError):
                pass  # an input the extraction took but itemgetter does not: read one by one
        rows = []
        for x in inputs:
            values = fields_of(x, self._names, self._positions, self._n_features)
            if values is None:
                return None
            rows.append(values)
        return list(zip(*rows, strict=True))
