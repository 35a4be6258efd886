"""Building reference profiles from training data: tabular rows, images and texts.

Each builder turns the training inputs into feature rows with the same extraction code the live
path uses (:meth:`Profile.features`), profiles every column once from all rows, keeps a bounded
seeded sample of rows (for calibration), and profiles the model's predictions and confidences.
It does so through a :class:`~infertrail.drift.partial.PartialProfile`, the mergeable state of
a profile: :func:`tabular_partial` builds one from a batch of columns, so that a table too large
for memory is profiled batch by batch and merged (:mod:`infertrail.drift.reference`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.partial import CategoricalPart, NumericalPart, PartialProfile
from infertrail.drift.profile import (
    DEFAULT_SAMPLE_SIZE,
    IMAGE_DERIVED,
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

#: A seed, or a generator shared by the batches of one build (so their samples are independent).
Seed = int | np.random.Generator


@dataclass(frozen=True)
class CategoryCodes:
    """A categorical column as codes into ``categories`` (-1 = missing), in any order: how a
    reader that encoded a batch itself (pyarrow's dictionary encoding) hands it over."""

    codes: IntArray
    categories: Sequence[str]


def numerical_feature(name: str, values: FloatArray) -> FeatureProfile:
    """Profile one numerical column (NaN values are missing and skipped)."""
    return NumericalPart.of_values(name, values).feature(name)


def categorical_feature(name: str, codes: IntArray, categories: Sequence[str]) -> FeatureProfile:
    """Profile one categorical column given as codes into ``categories`` (-1 = missing)."""
    return _categorical_part(name, codes, categories).feature(name)


def _categorical_part(name: str, codes: IntArray, categories: Sequence[str]) -> CategoricalPart:
    c = np.asarray(codes, dtype=np.int64)
    c = c[c >= 0]
    if c.size and c.max() >= len(categories):
        raise ValueError(f"feature {name!r} has codes beyond its {len(categories)} categories")
    return CategoricalPart(tuple(categories), np.bincount(c, minlength=len(categories)))


def _sample_rows(n: int, size: int, seed: Seed) -> IntArray:
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
) -> tuple[CategoricalPart | None, IntArray | None, NumericalPart | None, FloatArray | None]:
    label_part = codes = conf_part = conf = None
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
        label_part = _categorical_part("prediction.label", codes, cats)
    if confidences is not None:
        conf = np.asarray(confidences, dtype=np.float64)
        if conf.shape != (n,):
            raise ValueError(f"confidences must have shape ({n},), got {conf.shape}")
        if np.any((conf < 0) | (conf > 1)):
            raise ValueError("confidences must lie in [0, 1]")
        conf_part = NumericalPart.of_values("prediction.confidence", conf)
    return label_part, codes, conf_part, conf


def _assemble(
    kind: ProfileKind,
    n: int,
    names: Sequence[str],
    columns: Sequence[NumericalPart | CategoricalPart],
    sample: FloatArray,
    pick: IntArray,
    *,
    predictions: Sequence[Any] | NDArray[Any] | None,
    confidences: Sequence[float] | FloatArray | None,
    labels: Sequence[str] | None,
    model_name: str,
    model_sha256: str,
    sample_size: int,
    pooled: CategoricalPart | None = None,
    image: ImageSpec | None = None,
    text: TextSpec | None = None,
) -> PartialProfile:
    """The partial profile of ``n`` rows; ``sample`` holds the feature rows at ``pick``."""
    label, codes, confidence, conf = _prediction_parts(n, predictions, confidences, labels)
    return PartialProfile(
        kind=kind,
        model_name=model_name,
        model_sha256=model_sha256,
        names=tuple(names),
        columns=tuple(columns),
        n_rows=n,
        sample=np.ascontiguousarray(sample, dtype=np.float64),
        sample_size=sample_size,
        sample_labels=None if codes is None else codes[pick],
        sample_confidences=None if conf is None else conf[pick],
        label=label,
        confidence=confidence,
        pooled=pooled,
        image=image,
        text=text,
    )


def tabular_partial(
    columns: Mapping[str, FloatArray | CategoryCodes],
    *,
    predictions: Sequence[Any] | NDArray[Any] | None = None,
    confidences: Sequence[float] | FloatArray | None = None,
    labels: Sequence[str] | None = None,
    model_name: str = "",
    model_sha256: str = "",
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: Seed = 0,
) -> PartialProfile:
    """The partial profile of one batch of a table: numerical columns as floats (NaN =
    missing), categorical ones as :class:`CategoryCodes`, in feature order.

    A column may lack any value in a batch; the profile refuses a feature without any only
    when it is computed (:meth:`PartialProfile.profile`).
    """
    if not columns:
        raise ValueError("a tabular profile needs at least one feature column")
    lengths = {
        name: len(c.codes) if isinstance(c, CategoryCodes) else len(c)
        for name, c in columns.items()
    }
    n = next(iter(lengths.values()))
    if n == 0 or any(length != n for length in lengths.values()):
        raise ValueError(f"columns must be non-empty and of one length, got {lengths}")
    pick = _sample_rows(n, sample_size, seed)
    sample = np.empty((pick.size, len(columns)))
    parts: list[NumericalPart | CategoricalPart] = []
    for j, (name, col) in enumerate(columns.items()):
        if isinstance(col, CategoryCodes):
            part, codes = _sorted_categories(name, col)
            sample[:, j] = np.where(codes[pick] < 0, np.nan, codes[pick])
            parts.append(part)
        else:
            values = np.asarray(col, dtype=np.float64)
            parts.append(NumericalPart.of_values(name, values))
            sample[:, j] = values[pick]
    return _assemble(
        "tabular",
        n,
        list(columns),
        parts,
        sample,
        pick,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
        sample_size=sample_size,
    )


def _sorted_categories(name: str, col: CategoryCodes) -> tuple[CategoricalPart, IntArray]:
    """The part of a coded column with its categories sorted (as :func:`build_tabular_profile`
    finds them, so batches merge), and its codes into the sorted categories."""
    cats = list(col.categories)
    if len(set(cats)) != len(cats):
        raise ValueError(f"feature {name!r} lists a category twice: {cats[:10]}")
    codes = np.asarray(col.codes, dtype=np.int64)
    if codes.size and codes.max() >= len(cats):
        raise ValueError(f"feature {name!r} has codes beyond its {len(cats)} categories")
    order = sorted(range(len(cats)), key=cats.__getitem__)
    if order != list(range(len(cats))):
        new_code = np.empty(len(cats), dtype=np.int64)
        new_code[order] = np.arange(len(cats))
        codes = np.where(codes < 0, -1, new_code[np.maximum(codes, 0)])
        cats = [cats[i] for i in order]
    return _categorical_part(name, codes, cats), codes


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
    if len(set(names)) != len(names):
        raise ValueError(f"feature_names lists a name twice: {names}")
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
    columns: dict[str, FloatArray | CategoryCodes] = {}
    for j, name in enumerate(names):
        if name in cat:
            keys = [None if v is None else category_key(v) for v in cols[:, j]]
            cats = sorted({k for k in keys if k is not None})
            index = {c: i for i, c in enumerate(cats)}
            codes = np.array([-1 if k is None else index[k] for k in keys], dtype=np.int64)
            columns[name] = CategoryCodes(codes, cats)
        elif cols.dtype == np.float64:
            columns[name] = cols[:, j]  # an all-numerical table: no copy, no per-value loop
        else:
            try:
                columns[name] = np.array([np.nan if v is None else v for v in cols[:, j]], float)
            except (TypeError, ValueError):
                raise ValueError(
                    f"feature {name!r} is not numerical; list it in categorical"
                ) from None
    return tabular_partial(
        columns,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
        sample_size=sample_size,
        seed=seed,
    ).profile()


def _numerical_rows(
    kind: ProfileKind,
    rows: FloatArray,
    names: Sequence[str],
    sample_size: int,
    seed: int,
    **rest: Any,
) -> Profile:
    """The profile of feature rows whose columns are all numerical (images, texts)."""
    n = rows.shape[0]
    pick = _sample_rows(n, sample_size, seed)
    parts = [NumericalPart.of_values(nm, rows[:, j]) for j, nm in enumerate(names)]
    return _assemble(
        kind, n, names, parts, rows[pick], pick, sample_size=sample_size, **rest
    ).profile()


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
    levels = np.bincount(pixels.astype(np.int64).ravel(), minlength=spec.pixel_max + 1)
    pooled = CategoricalPart(tuple(str(i) for i in range(spec.pixel_max + 1)), levels)
    return _numerical_rows(
        "image",
        image_rows(spec, pixels),
        [f"pixel_{i}" for i in range(spec.n_pixels)] + list(IMAGE_DERIVED),
        sample_size,
        seed,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
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
    ignored: OOV is counted per token); by default the tokens of ``texts`` themselves (then
    only profiles of the same texts' vocabulary merge: pass the model's).
    """
    if len(texts) == 0:
        raise ValueError("texts is empty; a profile needs training texts")
    probe = TextSpec(frozenset(), token_pattern, lowercase)
    if vocabulary is None:
        vocab = frozenset(t for text in texts for t in probe.tokens(text))
    else:
        vocab = frozenset(v for v in vocabulary if not any(ch.isspace() for ch in v))
    spec = TextSpec(vocab, token_pattern, lowercase)
    return _numerical_rows(
        "text",
        np.vstack([text_row(spec, t) for t in texts]),
        TEXT_FEATURES,
        sample_size,
        seed,
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        model_name=model_name,
        model_sha256=model_sha256,
        text=spec,
    )
