"""Slices of a drift window: the rows of one tenant, one channel, one age band.

A drift verdict over all traffic can hide a change in one part of it (one tenant's inputs
shifted, one endpoint's model degraded). A :class:`SliceSpec`, parsed from a settings string,
names what to slice by:

=============================  ==================================================================
``tenant``                     a request attribute (``tenant``, ``endpoint``, ``team``): one
                               slice per value, ``tenant=acme``
``feature:channel``            a feature of the profile: per category (``channel=web``), or per
                               value of a numerical feature (``n_items=3``)
``feature:age:18,30,50``       a numerical feature in bins [18, 30), [30, 50), with the open
                               ends: ``age=(-inf,18)``, ``age=[18,30)``, ..., ``age=[50,inf)``
=============================  ==================================================================

Several specs are separated by ``;`` (:func:`parse_slice_specs`). A :class:`Slicer` splits a
window into the slices of every spec (a row is in exactly one slice of each spec), with the
cardinality bounded: a spec has at most ``max_slices`` value slices; the other values fold into
``<name>=other``, and rows without a value (a missing attribute or feature value) go to
``<name>=none``. Which values get a slice is stable from window to window: a categorical
feature's most frequent reference categories, a binned feature's bins (which must fit), and for
attributes and unbinned numbers the first ``max_slices`` values seen. A value that is literally
``other`` or ``none`` is quoted (``tenant='other'``), so it never joins a reserved slice.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from infertrail.drift.detector import DriftWindow
from infertrail.drift.profile import FeatureProfile, Profile, category_key
from infertrail.drift.stats import IntArray
from infertrail.drift.window import ATTRIBUTES

__all__ = ["DEFAULT_MAX_SLICES", "SliceSpec", "Slicer", "parse_slice_specs"]

#: Value slices per spec; the values beyond fold into ``<name>=other``.
DEFAULT_MAX_SLICES = 20
_RESERVED = ("other", "none")
_NONE = -1  # slot of a row without a value
_OTHER = -2  # slot of a row whose value has no slice of its own

SliceSource = Literal["attribute", "feature"]


@dataclass(frozen=True)
class SliceSpec:
    """What to slice by: a request ``attribute`` or a ``feature`` (optionally in bins)."""

    source: SliceSource
    name: str
    edges: tuple[float, ...] = ()

    @classmethod
    def parse(cls, text: str, attributes: Iterable[str] = ATTRIBUTES) -> SliceSpec:
        """``tenant``, ``feature:NAME`` or ``feature:NAME:EDGE,EDGE,...`` (see the module
        docstring); ``attributes`` are the request attributes a window carries."""
        spec = text.strip()
        known = tuple(attributes)
        head, sep, rest = spec.partition(":")
        if not sep:
            if spec not in known:
                raise ValueError(
                    f"slice {text!r}: {spec!r} is not a request attribute ({', '.join(known)}); "
                    "slice by a feature with feature:NAME"
                )
            return cls("attribute", spec)
        if head != "feature":
            raise ValueError(
                f"slice {text!r}: expected an attribute ({', '.join(known)}), feature:NAME or "
                f"feature:NAME:EDGE,EDGE,..., not {head!r}:"
            )
        name, sep, edge_text = rest.partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"slice {text!r}: the feature has no name (feature:NAME)")
        if not sep:
            return cls("feature", name)
        return cls("feature", name, _parse_edges(text, edge_text))

    @property
    def label(self) -> str:
        """The spec as it is written (``feature:age:18,30``)."""
        if self.source == "attribute":
            return self.name
        edges = ",".join(category_key(e) for e in self.edges)
        return f"feature:{self.name}" + (f":{edges}" if edges else "")


def _parse_edges(text: str, edge_text: str) -> tuple[float, ...]:
    edges = []
    for item in edge_text.split(","):
        try:
            edge = float(item.strip())
        except ValueError:
            raise ValueError(
                f"slice {text!r}: bin edge {item.strip()!r} is not a number "
                "(feature:NAME:EDGE,EDGE,..., e.g. feature:age:18,30,50)"
            ) from None
        if not math.isfinite(edge):
            raise ValueError(f"slice {text!r}: bin edges must be finite, got {item.strip()!r}")
        edges.append(edge)
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"slice {text!r}: bin edges must be strictly increasing, got {edges}")
    return tuple(edges)


def parse_slice_specs(text: str, attributes: Iterable[str] = ATTRIBUTES) -> list[SliceSpec]:
    """The specs of a settings string, separated by ``;`` (``tenant; feature:age:18,30,50``)."""
    items = [item.strip() for item in text.split(";")]
    if not text.strip():
        return []
    if any(not item for item in items):
        raise ValueError(f"slices {text!r}: an empty entry between ';'")
    specs = [SliceSpec.parse(item, attributes) for item in items]
    _check_unique(specs, f"slices {text!r}")
    return specs


def _check_unique(specs: Iterable[SliceSpec], where: str) -> None:
    """Slice keys start with the name, so one name may be sliced once (attribute or feature)."""
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"{where}: {spec.name!r} is sliced twice")
        seen.add(spec.name)


def _value_key(name: str, value: str) -> str:
    return f"{name}={value!r}" if value in _RESERVED else f"{name}={value}"


class _SpecSlicer:
    """The slices of one spec: each row's slot (a slice of its own, other or none)."""

    def __init__(self, spec: SliceSpec, profile: Profile, max_slices: int) -> None:
        self.spec = spec
        self.max_slices = max_slices
        self.column = -1
        self.feature: FeatureProfile | None = None
        self.keys: list[str] = []  # key of each slot
        self._slot: dict[str, int] = {}  # value -> slot, for attributes and unbinned numbers
        self._code_slot = np.empty(0, dtype=np.int64)  # category code -> slot
        self._lock = threading.Lock()
        self.folded = 0  # rows that went to <name>=other
        if spec.source == "attribute":
            return
        if spec.name not in profile.feature_names:
            raise ValueError(
                f"slice {spec.label!r}: the profile has no feature {spec.name!r} "
                f"(its features: {', '.join(profile.feature_names[:20])})"
            )
        self.column = profile.feature_names.index(spec.name)
        self.feature = f = profile.columns[self.column]
        if spec.edges:
            if f.kind == "categorical":
                raise ValueError(
                    f"slice {spec.label!r}: feature {spec.name!r} is categorical; bin edges "
                    "apply to numerical features"
                )
            if len(spec.edges) + 1 > max_slices:
                raise ValueError(
                    f"slice {spec.label!r}: {len(spec.edges) + 1} bins are more than "
                    f"max_slices={max_slices}"
                )
            lows = ["-inf", *(category_key(e) for e in spec.edges)]
            highs = [*(category_key(e) for e in spec.edges), "inf"]
            self.keys = [
                f"{spec.name}={'(' if lo == '-inf' else '['}{lo},{hi})"
                for lo, hi in zip(lows, highs, strict=True)
            ]
        elif f.kind == "categorical":
            assert f.category_counts is not None
            # the most frequent reference categories (ties in category order), in category
            # order: the same slices for every window; an unseen category (code len(categories))
            # is other
            top = np.sort(np.argsort(-f.category_counts, kind="stable")[:max_slices])
            self._code_slot = np.full(len(f.categories) + 1, _OTHER, dtype=np.int64)
            self._code_slot[top] = np.arange(top.size)
            self.keys = [_value_key(spec.name, f.categories[code]) for code in top]

    def slots(self, window: DriftWindow) -> IntArray:
        """The slot of every row of ``window``."""
        n = window.n_samples
        if self.spec.source == "attribute":
            values = window.attributes.get(self.spec.name)
            if values is None:
                return np.full(n, _NONE, dtype=np.int64)
            if len(values) != n:
                raise ValueError(
                    f"window attribute {self.spec.name!r} has {len(values)} values for {n} rows"
                )
            return self._first_seen(values)
        col = np.asarray(window.rows[:, self.column], dtype=np.float64)
        missing = np.isnan(col)
        if self.spec.edges:
            out = np.searchsorted(np.asarray(self.spec.edges), col, "right").astype(np.int64)
        elif self.feature is not None and self.feature.kind == "categorical":
            codes = np.where(missing, 0, col).astype(np.int64)
            codes = np.clip(codes, 0, len(self._code_slot) - 1)  # beyond: an unseen category
            out = self._code_slot[codes]
        else:
            keys = [
                None if m else category_key(v) for v, m in zip(col.tolist(), missing, strict=True)
            ]
            out = self._first_seen(keys)
        out[missing] = _NONE
        return out

    def _first_seen(self, values: Iterable[str | None]) -> IntArray:
        """Slots of values that get a slice in the order first seen, up to ``max_slices``."""
        with self._lock:
            out = []
            for v in values:
                if v is None:
                    out.append(_NONE)
                    continue
                slot = self._slot.get(v)
                if slot is None:
                    if len(self.keys) < self.max_slices:
                        slot = self._slot[v] = len(self.keys)
                        self.keys.append(_value_key(self.spec.name, v))
                    else:
                        slot = _OTHER
                out.append(slot)
            return np.array(out, dtype=np.int64)


class Slicer:
    """Splits windows into the slices of ``specs`` (see the module docstring).

    ``partition(window)`` returns slice key -> row indices, for every slice with at least one
    row: per spec, the value slices in a stable order, then ``<name>=other`` and
    ``<name>=none``. :attr:`folded` counts, per spec, the rows that went to ``other``.
    """

    def __init__(
        self,
        profile: Profile,
        specs: Iterable[SliceSpec],
        max_slices: int = DEFAULT_MAX_SLICES,
    ) -> None:
        if max_slices < 1:
            raise ValueError(f"max_slices must be at least 1, got {max_slices}")
        self.specs = list(specs)
        _check_unique(self.specs, "Slicer")
        self.max_slices = max_slices
        self._slicers = [_SpecSlicer(s, profile, max_slices) for s in self.specs]

    @property
    def folded(self) -> Mapping[str, int]:
        """Rows folded into ``<name>=other`` so far, per spec (as written)."""
        return {s.spec.label: s.folded for s in self._slicers}

    def partition(self, window: DriftWindow) -> dict[str, IntArray]:
        """Slice key (``tenant=acme``, ``age=[30,50)``) -> sorted row indices of ``window``."""
        out: dict[str, IntArray] = {}
        for slicer in self._slicers:
            slots = slicer.slots(window)
            order = np.argsort(slots, kind="stable")
            present, starts = np.unique(slots[order], return_index=True)
            groups = dict(zip(present.tolist(), np.split(order, starts[1:]), strict=True))
            for slot in range(len(slicer.keys)):
                if slot in groups:
                    out[slicer.keys[slot]] = groups[slot].astype(np.int64)
            name = slicer.spec.name
            if _OTHER in groups:
                out[f"{name}=other"] = groups[_OTHER].astype(np.int64)
                slicer.folded += int(groups[_OTHER].size)
            if _NONE in groups:
                out[f"{name}=none"] = groups[_NONE].astype(np.int64)
        return out
