"""Partial profiles: what a reference profile is computed from, in a form that merges exactly.

A :class:`PartialProfile` holds, per feature, the state its statistics come from: for a
numerical feature its :class:`~infertrail.drift.distribution.ColumnDistribution` and moments
(count, mean, sum of squared deviations), for a categorical one its category counts; the same for
the predicted labels, the confidences and an image profile's pooled pixel histogram; and a
bounded random sample of rows. Partial profiles of disjoint data merge into the partial profile of
their union, and :meth:`PartialProfile.profile` computes the :class:`Profile` (quantile bins, PSI
edges, OOD range, the KS ECDF) from it. The builders (:mod:`infertrail.drift.build`) go through
it too, so ``merge(build(A), build(B))`` equals ``build(A + B)``: exactly for counts, categories,
quantiles, bins and the ECDF; within floating-point rounding for means, standard deviations and
sums. The sample is the exception: it is a uniform random sample either way, but not the same
rows (see :func:`merge_samples`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from infertrail.drift.distribution import MAX_VALUES, ColumnDistribution
from infertrail.drift.histogram import FINE_BINS, PSI_BINS
from infertrail.drift.profile import (
    DISCRETE_MAX_UNIQUE,
    OOD_QUANTILES,
    POOLED_PIXELS,
    FeatureProfile,
    ImageSpec,
    Profile,
    ProfileKind,
    TextSpec,
)
from infertrail.drift.stats import FloatArray, IntArray

__all__ = [
    "CategoricalPart",
    "NumericalPart",
    "PartialProfile",
    "merge_profiles",
    "merge_samples",
]


@dataclass(frozen=True, eq=False)
class NumericalPart:
    """A numerical column's distribution and moments (``m2``: sum of squared deviations)."""

    distribution: ColumnDistribution
    mean: float = 0.0
    m2: float = 0.0

    @property
    def count(self) -> int:
        return self.distribution.n

    @classmethod
    def of_values(
        cls, name: str, values: FloatArray, max_values: int = MAX_VALUES
    ) -> NumericalPart:
        """The part of one column; NaN is missing and skipped, an infinite value refused."""
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]  # a copy, sorted in place below
        if v.size == 0:
            return cls(ColumnDistribution.empty())
        v += 0.0  # -0.0 and 0.0 are one value
        v.sort()
        if not (np.isfinite(v[0]) and np.isfinite(v[-1])):
            raise ValueError(f"feature {name!r} holds infinite reference values")
        mean = float(v.mean())
        dev = v - mean
        m2 = float(np.dot(dev, dev))
        return cls(ColumnDistribution.of_sorted(v, max_values), mean, m2)

    @classmethod
    def of_feature(cls, f: FeatureProfile, where: str) -> NumericalPart:
        """The part a built feature came from; refused for a feature without a distribution."""
        if f.distribution is None:
            raise ValueError(
                f"{where}: feature {f.name!r} has no mergeable distribution (a profile of format "
                "version 1, or of version 2 with more than 16,384 distinct values); rebuild it "
                "with this infertrail to merge it"
            )
        return cls(f.distribution, f.mean, f.std * f.std * f.count)

    def merge(self, other: NumericalPart, max_values: int = MAX_VALUES) -> NumericalPart:
        """Both parts' values: distributions merged, moments combined (Chan et al.)."""
        na, nb = self.count, other.count
        dist = self.distribution.merge(other.distribution, max_values)
        if na == 0 or nb == 0:
            return NumericalPart(
                dist, *((other.mean, other.m2) if na == 0 else (self.mean, self.m2))
            )
        n = na + nb
        delta = other.mean - self.mean
        mean = self.mean + delta * nb / n
        return NumericalPart(dist, mean, self.m2 + other.m2 + delta * delta * na * nb / n)

    def feature(self, name: str) -> FeatureProfile:
        """The profiled feature: bins, PSI edges, OOD range and ECDF from the distribution."""
        d = self.distribution
        if d.n == 0:
            raise ValueError(f"feature {name!r} has no non-missing reference value")
        q_low, q_high = d.quantiles(np.array(OOD_QUANTILES))
        discrete = d.is_exact and d.values.size <= DISCRETE_MAX_UNIQUE
        return FeatureProfile(
            name=name,
            kind="numerical",
            count=d.n,
            n_unique=int(d.values.size),
            mean=self.mean,
            std=math.sqrt(self.m2 / d.n),
            q_low=float(q_low),
            q_high=float(q_high),
            bins=d.bins(d.quantile_edges(FINE_BINS)),
            psi_edges=d.quantile_edges(PSI_BINS),
            support=d.values if discrete else None,
            category_counts=d.counts if discrete else None,
            ecdf=d.ecdf(),
            distribution=d,
        )


@dataclass(frozen=True, eq=False)
class CategoricalPart:
    """A categorical column's categories and their counts (zero for a declared, unseen one)."""

    categories: tuple[str, ...]
    counts: IntArray

    @classmethod
    def of_feature(cls, f: FeatureProfile) -> CategoricalPart:
        assert f.category_counts is not None  # a categorical feature always has its counts
        return cls(f.categories, f.category_counts)

    def merge(
        self, other: CategoricalPart, name: str
    ) -> tuple[CategoricalPart, IntArray, IntArray]:
        """Both parts' counts, and where each part's category codes go in the merged part.

        The same categories add up. Different ones merge only when both lists are sorted, as
        the builders sort the categories they find: a declared order (``labels=``) that
        differs between the parts leaves no order to build the union in.
        """
        if self.categories == other.categories:
            same = np.arange(len(self.categories), dtype=np.int64)
            return CategoricalPart(self.categories, self.counts + other.counts), same, same
        if list(self.categories) != sorted(self.categories) or list(other.categories) != sorted(
            other.categories
        ):
            raise ValueError(
                f"feature {name!r} has categories {_shown(self.categories)} in one profile and "
                f"{_shown(other.categories)} in the other, in a declared order: build both with "
                "the same labels to merge them"
            )
        union = tuple(sorted(set(self.categories) | set(other.categories)))
        index = {c: i for i, c in enumerate(union)}
        map_a = np.array([index[c] for c in self.categories], dtype=np.int64)
        map_b = np.array([index[c] for c in other.categories], dtype=np.int64)
        counts = np.zeros(len(union), dtype=np.int64)
        np.add.at(counts, map_a, self.counts)
        np.add.at(counts, map_b, other.counts)
        return CategoricalPart(union, counts), map_a, map_b

    def feature(self, name: str) -> FeatureProfile:
        total = int(self.counts.sum())
        if total == 0:
            raise ValueError(f"feature {name!r} has no non-missing reference value")
        return FeatureProfile(
            name=name,
            kind="categorical",
            count=total,
            n_unique=int(np.count_nonzero(self.counts)),
            categories=self.categories,
            category_counts=self.counts,
        )


def _shown(categories: Sequence[str]) -> str:
    return repr(list(categories[:8])) + (
        f" (+{len(categories) - 8})" if len(categories) > 8 else ""
    )


Part = NumericalPart | CategoricalPart


def _part_of(f: FeatureProfile, where: str) -> Part:
    return (
        CategoricalPart.of_feature(f)
        if f.kind == "categorical"
        else NumericalPart.of_feature(f, where)
    )


@dataclass(frozen=True, eq=False)
class PartialProfile:
    """The mergeable state of a :class:`Profile` (see the module docstring)."""

    kind: ProfileKind
    model_name: str
    model_sha256: str
    names: tuple[str, ...]
    columns: tuple[Part, ...]
    n_rows: int
    sample: FloatArray
    sample_size: int
    sample_labels: IntArray | None = None
    sample_confidences: FloatArray | None = None
    label: CategoricalPart | None = None
    confidence: NumericalPart | None = None
    pooled: CategoricalPart | None = None
    image: ImageSpec | None = None
    text: TextSpec | None = None

    @classmethod
    def of_profile(cls, profile: Profile) -> PartialProfile:
        """The state ``profile`` was computed from (its features keep it)."""
        where = f"profile of model {profile.model_name!r}"
        return cls(
            kind=profile.kind,
            model_name=profile.model_name,
            model_sha256=profile.model_sha256,
            names=tuple(profile.feature_names),
            columns=tuple(_part_of(f, where) for f in profile.columns),
            n_rows=profile.n_rows,
            sample=profile.sample,
            sample_size=profile.sample_size,
            sample_labels=profile.sample_labels,
            sample_confidences=profile.sample_confidences,
            label=None
            if profile.prediction is None
            else CategoricalPart.of_feature(profile.prediction),
            confidence=(
                None
                if profile.confidence is None
                else NumericalPart.of_feature(profile.confidence, where)
            ),
            pooled=None if profile.pooled is None else CategoricalPart.of_feature(profile.pooled),
            image=profile.image,
            text=profile.text,
        )

    def merge(
        self, other: PartialProfile, rng: np.random.Generator, max_values: int = MAX_VALUES
    ) -> PartialProfile:
        """The partial profile of both parts' rows; ``rng`` draws the merged sample."""
        self._check_mergeable(other)
        columns: list[Part] = []
        code_maps: dict[int, tuple[IntArray, IntArray]] = {}
        for j, (a, b) in enumerate(zip(self.columns, other.columns, strict=True)):
            if isinstance(a, CategoricalPart) and isinstance(b, CategoricalPart):
                merged, map_a, map_b = a.merge(b, self.names[j])
                columns.append(merged)
                code_maps[j] = (map_a, map_b)
            elif isinstance(a, NumericalPart) and isinstance(b, NumericalPart):
                columns.append(a.merge(b, max_values))
        label = label_maps = None
        if self.label is not None and other.label is not None:
            label, map_a, map_b = self.label.merge(other.label, "prediction.label")
            label_maps = (map_a, map_b)
        pooled = None
        if self.pooled is not None and other.pooled is not None:
            pooled = self.pooled.merge(other.pooled, POOLED_PIXELS)[0]
        confidence = None
        if self.confidence is not None and other.confidence is not None:
            confidence = self.confidence.merge(other.confidence, max_values)
        size = min(self.sample_size, other.sample_size)
        pick_a, pick_b = merge_samples(
            (self.n_rows, self.sample.shape[0]), (other.n_rows, other.sample.shape[0]), size, rng
        )
        rows = np.vstack([self.sample[pick_a], other.sample[pick_b]])
        for j, (map_a, map_b) in code_maps.items():
            na = pick_a.size
            rows[:na, j] = _recode(rows[:na, j], map_a)
            rows[na:, j] = _recode(rows[na:, j], map_b)
        labels = None
        if self.sample_labels is not None and other.sample_labels is not None:
            a_labels, b_labels = self.sample_labels[pick_a], other.sample_labels[pick_b]
            if label_maps is not None:
                a_labels, b_labels = label_maps[0][a_labels], label_maps[1][b_labels]
            labels = np.concatenate([a_labels, b_labels])
        confidences = None
        if self.sample_confidences is not None and other.sample_confidences is not None:
            confidences = np.concatenate(
                [self.sample_confidences[pick_a], other.sample_confidences[pick_b]]
            )
        return PartialProfile(
            kind=self.kind,
            model_name=self.model_name,
            model_sha256=self.model_sha256,
            names=self.names,
            columns=tuple(columns),
            n_rows=self.n_rows + other.n_rows,
            sample=rows,
            sample_size=size,
            sample_labels=labels,
            sample_confidences=confidences,
            label=label,
            confidence=confidence,
            pooled=pooled,
            image=self.image,
            text=self.text,
        )

    def _check_mergeable(self, other: PartialProfile) -> None:
        """Raise ValueError naming the first thing that makes the two profiles different."""
        problems = [
            (self.kind != other.kind, f"kinds {self.kind!r} and {other.kind!r}"),
            (
                (self.model_name, self.model_sha256) != (other.model_name, other.model_sha256),
                f"models {self.model_name!r} (sha256 {self.model_sha256[:16] or '-'}) and "
                f"{other.model_name!r} (sha256 {other.model_sha256[:16] or '-'})",
            ),
            (
                self.names != other.names,
                f"features {_shown(self.names)} and {_shown(other.names)}",
            ),
            (self.image != other.image, f"image specs {self.image} and {other.image}"),
            (
                self.text != other.text,
                "text specs (vocabulary, token pattern or lower-casing): pass the model's "
                "vocabulary to both builds",
            ),
            (
                (self.label is None) != (other.label is None)
                or (self.sample_labels is None) != (other.sample_labels is None),
                "predictions in one profile only",
            ),
            (
                (self.confidence is None) != (other.confidence is None)
                or (self.sample_confidences is None) != (other.sample_confidences is None),
                "confidences in one profile only",
            ),
        ]
        for differs, what in problems:
            if differs:
                raise ValueError(f"cannot merge profiles with different {what}")
        for name, a, b in zip(self.names, self.columns, other.columns, strict=True):
            if type(a) is not type(b):
                kinds = [
                    "categorical" if isinstance(p, CategoricalPart) else "numerical" for p in (a, b)
                ]
                raise ValueError(
                    f"cannot merge profiles: feature {name!r} is {kinds[0]} in one and {kinds[1]} "
                    "in the other"
                )

    def profile(self) -> Profile:
        """The profile of this state: every statistic computed once, from all its rows."""
        if self.n_rows == 0:
            raise ValueError("a profile needs at least one reference row")
        return Profile(
            kind=self.kind,
            model_name=self.model_name,
            model_sha256=self.model_sha256,
            n_rows=self.n_rows,
            columns=tuple(p.feature(n) for n, p in zip(self.names, self.columns, strict=True)),
            sample=np.ascontiguousarray(self.sample),
            sample_labels=self.sample_labels,
            sample_confidences=self.sample_confidences,
            prediction=None if self.label is None else self.label.feature("prediction.label"),
            confidence=(
                None
                if self.confidence is None
                else self.confidence.feature("prediction.confidence")
            ),
            pooled=None if self.pooled is None else self.pooled.feature(POOLED_PIXELS),
            image=self.image,
            text=self.text,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            sample_size=self.sample_size,
        )


def _recode(codes: FloatArray, mapping: IntArray) -> FloatArray:
    """Category codes of a sample column (NaN = missing) moved to the merged categories."""
    present = ~np.isnan(codes)
    out = codes.copy()
    out[present] = mapping[codes[present].astype(np.int64)]
    return out


def merge_samples(
    a: tuple[int, int], b: tuple[int, int], size: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Which rows of two samples make the merged one; ``a`` and ``b`` are (rows, sample rows).

    Each sample is a uniform random sample (without replacement) of its part's rows. The merged
    one takes k = min(size, all rows) rows: how many come from the first part is drawn as in a
    uniform k-subset of the union (hypergeometric: count which of k distinct random row numbers
    fall into the first part), then that many of the first sample's rows and the rest of the
    second's, uniformly. A uniform subset of a uniform sample is uniform, so the result is a
    uniform sample of the union, as a build from all the rows would keep, but not the same rows.
    When both samples hold all their rows and fit, every row is kept, in order.
    """
    (n_a, s_a), (n_b, s_b) = a, b
    k = min(size, n_a + n_b)
    if s_a == n_a and s_b == n_b and k == n_a + n_b:
        return np.arange(s_a, dtype=np.int64), np.arange(s_b, dtype=np.int64)
    from_a = int(np.count_nonzero(rng.choice(n_a + n_b, size=k, replace=False) < n_a))
    from_b = k - from_a
    if from_a > s_a or from_b > s_b:
        raise ValueError(
            f"a sample holds fewer rows ({s_a} of {n_a}, {s_b} of {n_b}) than the merged sample "
            f"of {k} needs: its profile's sample_size is wrong"
        )
    pick_a = np.sort(rng.choice(s_a, size=from_a, replace=False)).astype(np.int64)
    pick_b = np.sort(rng.choice(s_b, size=from_b, replace=False)).astype(np.int64)
    return pick_a, pick_b


def merge_profiles(
    profiles: Iterable[Profile],
    *,
    seed: int | np.random.Generator = 0,
    max_values: int = MAX_VALUES,
) -> Profile:
    """The profile of all the rows of ``profiles`` (same model, features and kinds).

    Equal to the profile built from all their rows at once, except for the sample, a uniform
    sample of the union drawn with ``seed`` (:func:`merge_samples`). Raises ValueError naming
    what differs between two profiles, or a feature that cannot merge (an old file).
    """
    rng = np.random.default_rng(seed)
    merged: PartialProfile | None = None
    for p in profiles:
        part = PartialProfile.of_profile(p)
        merged = part if merged is None else merged.merge(part, rng, max_values)
    if merged is None:
        raise ValueError("merge_profiles needs at least one profile")
    return merged.profile()
