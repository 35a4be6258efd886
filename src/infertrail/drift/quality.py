"""Data-quality checks of each drift window: missing, mistyped, out-of-range and unseen values,
and columns stuck on one value, per feature, against the model's :class:`QualitySchema`.

:class:`DataQualityAnalyzer` is a window analyzer (:mod:`infertrail.drift.analysis`): the drift
thread hands it every closed window after the univariate detector. Feature rows alone cannot
tell a missing value from an unseen category (a NaN category is the category ``"nan"``) nor a
number from a numeric string, so for tabular inputs it reads the raw inputs of the window too,
and the inputs whose feature extraction failed (``window.rejected``) field by field. The numeric
checks run on the feature rows, vectorised; the raw values are only looked at per type, and per
value only where a type or a code is suspect, so a 1,000-row window of 20 features costs about
1.3 ms (bench/data_quality.py). Definitions and signals: docs/data-quality.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.analysis import Analysis
from infertrail.drift.profile import FeatureProfile, Profile, category_key
from infertrail.drift.quality_fields import (
    MISSING,
    OTHER,
    STRING,
    TYPE_ERROR,
    RawColumns,
    field_state,
    fields_of,
    of_types,
)
from infertrail.drift.quality_schema import (
    FeatureQuality,
    QualitySchema,
    QualitySchemaError,
    quality_schema_for,
    quality_schema_path,
)

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftWindow

__all__ = [
    "CONSTANT_CHANCE",
    "DataQualityAnalyzer",
    "QualitySchema",
    "QualitySchemaError",
    "quality_schema_for",
    "quality_schema_path",
]

BoolArray = NDArray[np.bool_]

#: A column holding one value is flagged only when the reference makes that this unlikely: the
#: chance that that many reference draws are all equal (at most p_max ** (n - 1)) is below this.
CONSTANT_CHANCE = 1e-3
#: Unseen categories named per feature (the most frequent), and the longest value shown.
UNSEEN_VALUES_SHOWN = 10
UNSEEN_VALUE_CHARS = 64

SIGNALS = (
    "quality.missing_share_max",
    "quality.out_of_range_share_max",
    "quality.unseen_category_share_max",
    "quality.type_error_share",
    "quality.constant_columns",
)


@dataclass(frozen=True, eq=False)
class _Check:
    """One checked feature, with what the analyzer precomputed for it."""

    rule: FeatureQuality
    column: int  # in the profile's feature rows, and in a sequence input
    log_p_max: float  # log of the largest share of one reference value (0: no constant check)
    allowed: BoolArray  # categorical: per profile code, + the 'unseen' code, is it allowed
    extra: frozenset[str]  # categorical: allowed categories the profile does not know
    suspect: NDArray[np.float64]  # categorical: codes whose raw values need a look


@dataclass
class _Counts:
    """Per checked feature, what the window held."""

    missing: NDArray[np.int64]
    type_errors: NDArray[np.int64]
    out_of_range: NDArray[np.int64]
    unseen: NDArray[np.int64]
    constant: BoolArray
    unseen_values: list[Counter[str]]


class DataQualityAnalyzer:
    """Per window and feature: missing share, type errors, out-of-range and unseen-category
    shares, constant columns; the largest of each as alert signals (``quality.*``).

    ``schema`` defaults to the one inferred from ``profile``; a given one must fit the profile.
    """

    name = "data_quality"

    def __init__(self, profile: Profile, schema: QualitySchema | None = None) -> None:
        if schema is None:
            schema = QualitySchema.infer(profile)
        else:
            schema.check(profile)
        self.profile = profile
        self.schema = schema
        index = {f.name: j for j, f in enumerate(profile.columns)}
        self._checks = [
            _prepare(rule, index[rule.name], profile.columns[index[rule.name]])
            for rule in schema.features
        ]
        self._names = [c.rule.name for c in self._checks]
        num = [c for c in self._checks if c.rule.kind == "numerical"]
        self._num = np.array(
            [i for i, c in enumerate(self._checks) if c.rule.kind == "numerical"], dtype=np.intp
        )
        self._num_cols = np.array([c.column for c in num], dtype=np.intp)
        self._low = np.array([-np.inf if c.rule.low is None else c.rule.low for c in num])
        self._high = np.array([np.inf if c.rule.high is None else c.rule.high for c in num])
        self._num_log_p = np.array([c.log_p_max for c in num])
        self._cat = [i for i, c in enumerate(self._checks) if c.rule.kind == "categorical"]
        self._tabular = profile.kind == "tabular"
        self._n_features = len(profile.columns)
        self._raw = RawColumns(self._names, [c.column for c in self._checks], self._n_features)

    def analyze(self, window: DriftWindow) -> Analysis:
        """The data quality of ``window``: a section per feature and the ``quality.*`` signals."""
        rows = np.asarray(window.rows, dtype=np.float64)
        n = rows.shape[0]
        k = len(self._checks)
        counts = _Counts(
            missing=np.zeros(k, np.int64),
            type_errors=np.zeros(k, np.int64),
            out_of_range=np.zeros(k, np.int64),
            unseen=np.zeros(k, np.int64),
            constant=np.zeros(k, bool),
            unseen_values=[Counter() for _ in range(k)],
        )
        # the raw inputs, when the window has them for its rows (one built without has not)
        raw = self._raw(window.inputs) if self._tabular and len(window.inputs) == n else None
        row_errors = np.zeros(n, bool)
        self._numerical(rows, raw, counts, row_errors)
        for i in self._cat:
            self._categorical(i, rows, raw, counts, row_errors)
        bad_rejected, malformed = self._rejected(window.rejected, counts)
        n_inputs = n + len(window.rejected)
        with_errors = int(row_errors.sum()) + bad_rejected
        return self._analysis(n, n_inputs, with_errors, malformed, counts)

    # -- numerical features, vectorised over the window ----------------------------------------
    def _numerical(
        self,
        rows: NDArray[np.float64],
        raw: list[tuple[Any, ...]] | None,
        counts: _Counts,
        row_errors: BoolArray,
    ) -> None:
        if self._num.size == 0:
            return
        values = rows[:, self._num_cols]  # a copy: type errors are blanked below
        blanked = np.zeros(self._num.size, np.int64)
        if raw is not None:
            for a, i in enumerate(self._num):
                wrong = of_types(raw[i], (STRING, OTHER))
                if wrong is None:
                    continue  # numbers and None only: NaN rows are the missing values
                blanked[a] = int(wrong.sum())
                row_errors |= wrong
                values[wrong, a] = np.nan  # a type error is neither missing nor out of range
        counts.type_errors[self._num] += blanked
        missing = np.isnan(values)
        counts.missing[self._num] += missing.sum(axis=0) - blanked
        with np.errstate(invalid="ignore"):
            outside = (values < self._low) | (values > self._high)
        counts.out_of_range[self._num] = outside.sum(axis=0)
        if values.shape[0]:
            present = (~missing).sum(axis=0)
            single = np.fmin.reduce(values, axis=0) == np.fmax.reduce(values, axis=0)
            unlikely = (present - 1) * self._num_log_p < math.log(CONSTANT_CHANCE)
            counts.constant[self._num] = (present >= 2) & single & unlikely

    # -- categorical features, one at a time ----------------------------------------------------
    def _categorical(
        self,
        i: int,
        rows: NDArray[np.float64],
        raw: list[tuple[Any, ...]] | None,
        counts: _Counts,
        row_errors: BoolArray,
    ) -> None:
        check = self._checks[i]
        n_cats = check.allowed.size - 1
        codes = rows[:, check.column]
        missing = np.isnan(codes)  # None
        wrong: BoolArray = np.zeros(codes.size, bool)
        codes_int = np.where(missing, n_cats, codes).astype(np.intp)
        allowed = check.allowed[np.minimum(codes_int, n_cats)]
        unseen_raw: dict[int, str] = {}
        if raw is not None:
            column = raw[i]
            flagged = of_types(column, (OTHER,))
            if flagged is not None:
                wrong = flagged
            # NaN and "" become the codes of "nan", "" or of no category: look at those rows.
            for r in np.flatnonzero(np.isin(codes, check.suspect) & ~wrong):
                value = column[r]
                if field_state(value, numerical=False) == MISSING:
                    missing[r] = True
                    continue
                key = category_key(value)
                if key in check.extra:
                    allowed[r] = True
                elif codes_int[r] == n_cats:
                    unseen_raw[int(r)] = key
        valid = ~missing & ~wrong
        unseen = valid & ~allowed
        counts.missing[i] += int(missing.sum())
        counts.type_errors[i] += int(wrong.sum())
        row_errors |= wrong
        counts.unseen[i] = int(unseen.sum())
        if counts.unseen[i]:
            names = self.profile.columns[check.column].categories
            found = counts.unseen_values[i]
            for r in np.flatnonzero(unseen):
                c = codes_int[r]
                value = names[c] if c < n_cats else unseen_raw.get(int(r))
                if value is not None:
                    found[value[:UNSEEN_VALUE_CHARS]] += 1
        known = codes_int[valid & (codes_int < n_cats)]
        counts.constant[i] = (
            known.size >= 2
            and known.size == int(valid.sum())
            and bool(known.min() == known.max())
            and (known.size - 1) * check.log_p_max < math.log(CONSTANT_CHANCE)
        )

    # -- inputs without a row -------------------------------------------------------------------
    def _rejected(self, rejected: Sequence[Any], counts: _Counts) -> tuple[int, int]:
        """Missing and mistyped fields of the inputs whose extraction failed; returns how many
        of them hold a type error, and how many could not be read field by field at all."""
        if not self._tabular:
            return len(rejected), len(rejected)  # not text / not an image of the right shape
        with_errors = malformed = 0
        positions = [c.column for c in self._checks]
        for x in rejected:
            values = fields_of(x, self._names, positions, self._n_features)
            if values is None:
                with_errors += 1
                malformed += 1
                continue
            bad = False
            for i, (check, value) in enumerate(zip(self._checks, values, strict=True)):
                verdict = field_state(value, numerical=check.rule.kind == "numerical")
                if verdict == MISSING:
                    counts.missing[i] += 1
                elif verdict == TYPE_ERROR:
                    counts.type_errors[i] += 1
                    bad = True
            with_errors += bad
        return with_errors, malformed

    # -- the report ------------------------------------------------------------------------------
    def _analysis(
        self, n: int, n_inputs: int, with_errors: int, malformed: int, counts: _Counts
    ) -> Analysis:
        allowed = np.array([c.rule.allowed_missing_share for c in self._checks])
        per_input = max(n_inputs, 1)
        per_row = max(n, 1)
        missing_share = counts.missing / per_input
        excess = np.maximum(missing_share - allowed, 0.0)
        type_share = counts.type_errors / per_input
        range_share = counts.out_of_range / per_row
        unseen_share = counts.unseen / per_row
        features: dict[str, dict[str, Any]] = {}
        for i, check in enumerate(self._checks):
            entry: dict[str, Any] = {
                "missing_share": float(missing_share[i]),
                "missing_excess": float(excess[i]),
                "type_error_share": float(type_share[i]),
            }
            if check.rule.kind == "numerical":
                entry["out_of_range_share"] = float(range_share[i]) if n else None
            else:
                entry["unseen_share"] = float(unseen_share[i]) if n else None
                entry["unseen_values"] = dict(
                    counts.unseen_values[i].most_common(UNSEEN_VALUES_SHOWN)
                )
            entry["constant"] = bool(counts.constant[i])
            features[check.rule.name] = entry
        num = self._num.tolist()
        worst = {
            "missing_share": self._worst(excess, range(len(self._checks)), n_inputs > 0),
            "type_error_share": self._worst(type_share, range(len(self._checks)), n_inputs > 0),
            "out_of_range_share": self._worst(range_share, num, n > 0),
            "unseen_category_share": self._worst(unseen_share, self._cat, n > 0),
        }
        constant = [self._names[i] for i in np.flatnonzero(counts.constant)]
        section: dict[str, Any] = {
            "n_rows": n,
            "n_rejected": n_inputs - n,
            "inputs_with_type_errors": with_errors,
            "malformed_inputs": malformed,
            "type_error_share": with_errors / n_inputs if n_inputs else None,
            "constant_columns": constant,
            "worst": worst,
            "features": features,
        }
        signals: dict[str, float] = {}
        if n_inputs:
            signals["quality.type_error_share"] = with_errors / n_inputs
            if self._checks:
                signals["quality.missing_share_max"] = float(excess.max())
                signals["quality.constant_columns"] = float(len(constant))
        if n and num:
            signals["quality.out_of_range_share_max"] = float(range_share[num].max())
        if n and self._cat:
            signals["quality.unseen_category_share_max"] = float(unseen_share[self._cat].max())
        return Analysis(section, signals)

    def _worst(
        self, shares: NDArray[np.float64], among: Sequence[int] | range, measured: bool
    ) -> dict[str, Any] | None:
        """The feature with the largest share among ``among``; None when every share is 0."""
        if not measured or len(among) == 0:
            return None
        best = max(among, key=lambda i: shares[i])
        if shares[best] <= 0.0:
            return None
        return {"feature": self._names[best], "value": float(shares[best])}


def _prepare(rule: FeatureQuality, column: int, f: FeatureProfile) -> _Check:
    """What :class:`DataQualityAnalyzer` needs per feature, computed once."""
    allowed = np.zeros(len(f.categories) + 1, bool)
    extra: frozenset[str] = frozenset()
    suspect = np.empty(0)
    if rule.kind == "categorical":
        wanted = set(rule.categories)
        allowed[:-1] = [c in wanted for c in f.categories]
        extra = frozenset(wanted - set(f.categories))
        codes = [len(f.categories)] + [f.code_of(c) for c in ("nan", "") if c in f.categories]
        suspect = np.array(codes, dtype=np.float64)
    return _Check(
        rule=rule,
        column=column,
        log_p_max=0.0 if rule.expect_constant else math.log(_largest_share(f)),
        allowed=allowed,
        extra=extra,
        suspect=suspect,
    )


def _largest_share(f: FeatureProfile) -> float:
    """An upper bound of the share of the reference's most frequent value (1: unknown).

    Categories and few-valued numbers have their counts; other numbers their fine quantile bins,
    a bin's count bounding that of any value in it.
    """
    counts = f.category_counts
    if counts is None and f.bins is not None:
        counts = f.bins.counts
    if counts is None or counts.sum() == 0:
        return 1.0
    return float(counts.max() / counts.sum())
