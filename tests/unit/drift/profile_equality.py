"""Comparing two profiles field by field: exact for counts, categories, quantiles, bins and the
ECDF; within a relative tolerance for floating-point sums (means, standard deviations, bin sums,
gap sums)."""

from __future__ import annotations

import math

import numpy as np

from infertrail.drift.profile import FeatureProfile, Profile


def _close(a: float, b: float, rtol: float, scale: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= rtol * max(abs(a), abs(b), scale)


def feature_differences(a: FeatureProfile, b: FeatureProfile, rtol: float) -> list[str]:
    """What differs between two features (empty when they are equal)."""
    out = []
    for attr in ("name", "kind", "count", "n_unique", "categories", "q_low", "q_high"):
        x, y = getattr(a, attr), getattr(b, attr)
        if x != y and not (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
            out.append(f"{a.name}.{attr}: {x!r} != {y!r}")
    # sums of values: a tolerance relative to the values' magnitude, not to a near-zero result
    scale = 0.0
    if a.bins is not None:
        scale = float(np.max(np.abs(a.bins.edges)))
    for attr in ("mean", "std"):
        if not _close(getattr(a, attr), getattr(b, attr), rtol, scale):
            out.append(f"{a.name}.{attr}: {getattr(a, attr)!r} != {getattr(b, attr)!r}")
    for attr in ("psi_edges", "support", "category_counts"):
        x, y = getattr(a, attr), getattr(b, attr)
        if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
            out.append(f"{a.name}.{attr} differs")
    if (a.bins is None) != (b.bins is None):
        out.append(f"{a.name}.bins present in one only")
    elif a.bins is not None and b.bins is not None:
        if not np.array_equal(a.bins.edges, b.bins.edges):
            out.append(f"{a.name}.bins.edges differ")
        if not np.array_equal(a.bins.counts, b.bins.counts):
            out.append(f"{a.name}.bins.counts differ")
        total = float(np.sum(np.abs(a.bins.sums))) or 1.0
        if a.bins.sums.shape != b.bins.sums.shape or not np.allclose(
            a.bins.sums, b.bins.sums, rtol=rtol, atol=rtol * total
        ):
            out.append(f"{a.name}.bins.sums differ")
    if (a.ecdf is None) != (b.ecdf is None):
        out.append(f"{a.name}.ecdf present in one only")
    elif a.ecdf is not None and b.ecdf is not None:
        for attr in ("knots", "le", "lt"):
            if not np.array_equal(getattr(a.ecdf, attr), getattr(b.ecdf, attr)):
                out.append(f"{a.name}.ecdf.{attr} differ")
    if (a.distribution is None) != (b.distribution is None):
        out.append(f"{a.name}.distribution present in one only")
    elif (
        a.distribution is not None
        and b.distribution is not None
        and not a.distribution.equals(b.distribution, rtol)
    ):
        out.append(f"{a.name}.distribution differs")
    return out


def profile_differences(a: Profile, b: Profile, *, rtol: float = 1e-9, sample: bool) -> list[str]:
    """What differs between two profiles; the sample (rows, labels, confidences) only when
    ``sample`` is True (merged samples are other uniform draws)."""
    out = []
    for attr in ("kind", "model_name", "model_sha256", "n_rows", "image", "text", "sample_size"):
        if getattr(a, attr) != getattr(b, attr):
            out.append(f"{attr}: {getattr(a, attr)!r} != {getattr(b, attr)!r}")
    if len(a.columns) != len(b.columns):
        return [*out, f"{len(a.columns)} columns != {len(b.columns)}"]
    for fa, fb in zip(a.columns, b.columns, strict=True):
        out += feature_differences(fa, fb, rtol)
    for part in ("prediction", "confidence", "pooled"):
        fa, fb = getattr(a, part), getattr(b, part)
        if (fa is None) != (fb is None):
            out.append(f"{part} present in one only")
        elif fa is not None:
            out += feature_differences(fa, fb, rtol)
    if a.sample.shape != b.sample.shape:
        out.append(f"sample shapes {a.sample.shape} != {b.sample.shape}")
    elif sample:
        if not np.array_equal(a.sample, b.sample, equal_nan=True):
            out.append("sample rows differ")
        for attr in ("sample_labels", "sample_confidences"):
            x, y = getattr(a, attr), getattr(b, attr)
            if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
                out.append(f"{attr} differ")
    return out
