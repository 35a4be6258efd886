"""Building reference profiles from training data: tabular rows, images and texts.

Each builder turns the training inputs into feature rows with the same extraction code the live
path uses (:meth:`Profile.features`), then profiles every column once from all rows, keeps a
bounded seeded sample of rows (for calibration), and profiles the model's predictions and
confidences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.ecdf import ReferenceEcdf
from infertrail.drift.histogram import (
    FINE_BINS,
    PSI_BINS,
    NumericBins,
    sorted_quantile_edges,
    sorted_unique,
)
from infertrail.drift.profile import (
    DEFAULT_SAMPLE_SIZE,
    DISCRETE_MAX_UNIQUE,
    IMAGE_DERIVED,
    OOD_QUANTILES,
    POOLED_PIXELS,
    TEXT_FEATURES,
    TOKEN_PATTERN,
    FeatureProfile,
    ImageSpec,
    Profile,
    ProfileKind,
    TextSpec,
    category_key,
    image_rows,
    text_row,
)
from infertrail.drift.stats import FloatArray, IntArray


def numerical_feature(name: str, values: FloatArray) -> FeatureProfile:
    """Profile one numerical column (NaN values are missing and skipped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError(f"feature {name!r} has no non-missing reference value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"feature {name!r} holds infinite reference values")
    s = np.sort(v)  # once: unique values, quantiles, bins and the ECDF all read the sorted column
    uniq, counts = sorted_unique(s)
    q_low, q_high = np.quantile(s, OOD_QUANTILES)
    discrete = uniq.size <= DISCRETE_MAX_UNIQUE
    return FeatureProfile(
        name=name,
        kind="numerical",
        count=int(v.size),
        n_unique=int(uniq.size),
        mean=float(v.mean()),
        std=float(v.std()),
        q_low=float(q_low),
        q_high=float(q_high),
        bins=NumericBins.from_sorted(sorted_quantile_edges(s, uniq, FINE_BINS), s),
        psi_edges=sorted_quantile_edges(s, uniq, PSI_BINS),
        support=uniq if discrete else None,
        category_counts=counts if discrete else None,
        ecdf=ReferenceEcdf.of_sorted(s),
    )


def categorical_feature(name: str, codes: IntArray, categories: Sequence[str]) -> FeatureProfile:
    """Profile one categorical column given as codes into ``categories`` (-1 = missing)."""
    c = np.asarray(codes, dtype=np.int64)
    c = c[c >= 0]
    if c.size == 0:
        raise ValueError(f"feature {name!r} has no non-missing reference value")
    if c.max() >= len(categories):
        raise ValueError(f"feature {name!r} has codes beyond its {len(categories)} categories")
    counts = np.bincount(c, minlength=len(categories)).astype(np.int64)
    return FeatureProfile(
        name=name,
        kind="categorical",
        count=int(c.size),
        n_unique=int(np.count_nonzero(counts)),
        categories=tuple(categories),
        category_counts=counts,
    )


def _sample_rows(n: int, size: int, seed: int) -> IntArray:
    if size <= 0:
        raise ValueError(f"sample_size must be positive, got {size}")
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _prediction_parts(
    n: int,
    predictions: Sequence[Any] | NDArray[Any] | None,
    confidences: Sequence[float] | FloatArray | None,
    labels: Sequence[str] | None,
) -> tuple[FeatureProfile | None, IntArray | None, FeatureProfile | None, FloatArray | None]:
    label_fp = codes = conf_fp = conf = None
    if predictions is not None:
        keys = [category_key(p) for p in predictions]
        if len(keys) != n:
            raise ValueError(f"predictions has {len(keys)} entries, the reference {n} rows")
        cats = list(labels) if labels is not None else sorted(set(keys))
        index = {c: i for i, c in enumerate(cats)}
        unknown = sorted(set(keys) - index.keys())
        if unknown:
            raise ValueError(f"predictions hold labels not in labels={cats}: {unknown[:5]}")
        codes = np.array([index[k] for k in keys], dtype=np.int64)
        label_fp = categorical_feature("prediction.label", codes, cats)
    if confidences is not None:
        conf = np.asarray(confidences, dtype=np.float64)
        if conf.shape != (n,):
            raise ValueError(f"confidences must have shape ({n},), got {conf.shape}")
        if np.any((conf < 0) | (conf > 1)):
            raise ValueError("confidences must lie in [0, 1]")
        conf_fp = numerical_feature("prediction.confidence", conf)
    return label_fp, codes, conf_fp, conf


def _assemble(
    kind: ProfileKind,
    rows: FloatArray,
    features: list[FeatureProfile],
    *,
    predictions: Sequence[Any] | NDArray[Any] | None,
    confidences: Sequence[float] | FloatArray | None,
    labels: Sequence[str] | None,
    model_name: str,
    model_sha256: str,
    sample_size: int,
    seed: int,
    pooled: FeatureProfile | None = None,
    image: ImageSpec | None = None,
    text: TextSpec | None = None,
) -> Profile:
    n = rows.shape[0]
    label_fp, codes, conf_fp, conf = _prediction_parts(n, predictions, confidences, labels)
    pick = _sample_rows(n, sample_size, seed)
    return Profile(
        kind=kind,
        model_name=model_name,
        model_sha256=model_sha256,
        n_rows=n,
        columns=tuple(features),
        sample=np.ascontiguousarray(rows[pick]),
        sample_labels=None if codes is None else codes[pick],
        sample_confidences=None if conf is None else conf[pick],
        prediction=label_fp,
        confidence=conf_fp,
        pooled=pooled,
        image=image,
        text=text,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def build_tabular_profile(
    X: Any,
    feature_names: Sequence[str],
    *,
    categorical: Iterable[str] = (),
    predictions: Sequence[Any] | NDArray[Any] | None = None,
    confidences: Sequence[float] | FloatArray | None = None,
    labels: Sequence[str] | None = None,
    model_name: str = "",
    model_sha256: str = "",
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> Profile:
    """Profile of tabular training data ``X`` (rows x features); ``categorical`` names columns
    whose values are categories (stored as strings, see :func:`category_key`)."""
    cat = set(categorical)
    names = list(feature_names)
    unknown = cat - set(names)
    if unknown:
        raise ValueError(f"categorical names unknown features: {sorted(unknown)}")
    try:
        cols = np.asarray(X, dtype=object if cat else np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "X holds values that are not numbers; name categorical columns in categorical="
        ) from None
    if cols.ndim != 2 or cols.shape[1] != len(names) or cols.shape[0] == 0:
        raise ValueError(
            f"X must be a non-empty 2-D table with {len(names)} columns, got shape {cols.shape}"
        )
    # an all-numerical table is used as it is: no copy, no per-value Python loop
    rows = cols if cols.dtype == np.float64 else np.empty(cols.shape, dtype=np.float64)
    features: list[FeatureProfile] = []
    for j, name in enumerate(names):
        if name in cat:
            keys = [None if v is None else category_key(v) for v in cols[:, j]]
            cats = sorted({k for k in keys if k is not None})
            index = {c: i for i, c in enumerate(cats)}
            codes = np.array([-1 if k is None else index[k] for k in keys], dtype=np.int64)
            features.append(categorical_feature(name, codes, cats))
            rows[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            if rows is not cols:
                try:
                    rows[:, j] = np.array([np.nan if v is None else v for v in cols[:, j]], float)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"feature {name!r} is not numerical; list it in categorical"
                    ) from None
            features.append(numerical_feature(name, rows[:, j]))
    return _assemble(
        "tabular",
        rows,
        features,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
        sample_size=sample_size,
        seed=seed,
    )


def build_image_profile(
    images: Any,
    *,
    pixel_max: int = 16,
    shape: tuple[int, ...] = (8, 8),
    predictions: Sequence[Any] | NDArray[Any] | None = None,
    confidences: Sequence[float] | FloatArray | None = None,
    labels: Sequence[str] | None = None,
    model_name: str = "",
    model_sha256: str = "",
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> Profile:
    """Profile of images with integer intensities 0..``pixel_max`` (default: 8x8 digits).

    Features are the pixels, then mean intensity and its std (scaled to 0..1) and the ink
    fraction (share of pixels > 0); the pooled pixel-intensity histogram is kept as well.
    """
    spec = ImageSpec(tuple(shape), int(pixel_max))
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch, got shape {arr.shape}")
    pixels = arr.reshape(arr.shape[0], -1)
    if pixels.shape[1] != spec.n_pixels:
        raise ValueError(f"images must have {spec.n_pixels} pixels each, got {pixels.shape[1]}")
    bad = (pixels < 0) | (pixels > spec.pixel_max) | (pixels != np.rint(pixels))
    if bad.any():
        raise ValueError(f"image intensities must be integers 0..{spec.pixel_max}")
    rows = image_rows(spec, pixels)
    names = [f"pixel_{i}" for i in range(spec.n_pixels)] + list(IMAGE_DERIVED)
    features = [numerical_feature(nm, rows[:, j]) for j, nm in enumerate(names)]
    levels = np.bincount(pixels.astype(np.int64).ravel(), minlength=spec.pixel_max + 1)
    pooled = FeatureProfile(
        name=POOLED_PIXELS,
        kind="categorical",
        count=int(pixels.size),
        n_unique=int(np.count_nonzero(levels)),
        categories=tuple(str(i) for i in range(spec.pixel_max + 1)),
        category_counts=levels.astype(np.int64),
    )
    return _assemble(
        "image",
        rows,
        features,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
        sample_size=sample_size,
        seed=seed,
        pooled=pooled,
        image=spec,
    )


def build_text_profile(
    texts: Sequence[str],
    vocabulary: Iterable[str] | None = None,
    predictions: Sequence[Any] | NDArray[Any] | None = None,
    confidences: Sequence[float] | FloatArray | None = None,
    *,
    labels: Sequence[str] | None = None,
    token_pattern: str = TOKEN_PATTERN,
    lowercase: bool = True,
    model_name: str = "",
    model_sha256: str = "",
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> Profile:
    """Profile of training texts: length in characters and tokens and the OOV rate.

    ``vocabulary`` is the model's training vocabulary (multi-word entries such as bigrams are
    ignored: OOV is counted per token); by default the tokens of ``texts`` themselves.
    """
    if len(texts) == 0:
        raise ValueError("texts is empty; a profile needs training texts")
    probe = TextSpec(frozenset(), token_pattern, lowercase)
    if vocabulary is None:
        vocab = frozenset(t for text in texts for t in probe.tokens(text))
    else:
        vocab = frozenset(v for v in vocabulary if not any(ch.isspace() for ch in v))
    spec = TextSpec(vocab, token_pattern, lowercase)
    rows = np.vstack([text_row(spec, t) for t in texts])
    features = [numerical_feature(nm, rows[:, j]) for j, nm in enumerate(TEXT_FEATURES)]
    return _assemble(
        "text",
        rows,
        features,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
        sample_size=sample_size,
        seed=seed,
        text=spec,
    )
