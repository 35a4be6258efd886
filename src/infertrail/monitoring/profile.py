"""Reference profiles: what the training data looked like, precomputed once per model.

A :class:`Profile` holds, per feature of a row, its type, quantile bins with counts and sums, a
bounded seeded sample of reference rows (for exact tests and calibration) and its summary
statistics; for every model the prediction distribution (label shares, confidence bins). Images
add derived image statistics and a pooled pixel-intensity histogram; text is profiled through
derived features (length in characters and tokens, out-of-vocabulary rate against the stored
training vocabulary). :meth:`Profile.features` turns one live input into the same feature row the
profile was built from, so live rows and reference rows are computed by the same code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from infertrail.monitoring.histogram import (
    FINE_BINS,
    PSI_BINS,
    NumericBins,
    sorted_quantile_edges,
    sorted_unique,
)
from infertrail.monitoring.stats import FloatArray, IntArray

FeatureKind = Literal["numerical", "categorical"]
ProfileKind = Literal["tabular", "image", "text"]

#: Numerical features with at most this many distinct reference values are treated as
#: categories by the default rule (Evidently's "<= 5 unique values").
DISCRETE_MAX_UNIQUE = 5
#: Rows kept from the reference for exact tests and calibration.
DEFAULT_SAMPLE_SIZE = 5_000
#: Reference quantiles bounding the in-distribution range of a numerical feature (OOD rule).
OOD_QUANTILES = (0.005, 0.995)
#: sklearn's default token pattern and lower-casing: the sentiment model's tokenizer.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # noqa: S105 (a regex, not a secret)
IMAGE_DERIVED = ("mean_intensity", "intensity_std", "ink_fraction")
TEXT_FEATURES = ("n_chars", "n_tokens", "oov_rate")
POOLED_PIXELS = "pixel_intensity"
PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class FeatureProfile:
    """One column of the reference: its type, bins and summary statistics.

    Numerical features have ``bins`` (fine quantile bins, overflow included) and ``psi_edges``;
    a numerical feature with few distinct values also has ``support`` (those values), and every
    categorical or discrete feature has ``category_counts`` (one per category or support value).
    """

    name: str
    kind: FeatureKind
    count: int
    n_unique: int
    mean: float = math.nan
    std: float = math.nan
    q_low: float = math.nan
    q_high: float = math.nan
    bins: NumericBins | None = None
    psi_edges: FloatArray | None = None
    support: FloatArray | None = None
    categories: tuple[str, ...] = ()
    category_counts: IntArray | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.categories)})

    def code_of(self, value: Any) -> int:
        """Index of a categorical value; ``len(categories)`` for a value the reference lacks."""
        return self._index.get(category_key(value), len(self.categories))

    @property
    def is_discrete(self) -> bool:
        """True when the default rule compares categories (categorical or few values)."""
        return self.kind == "categorical" or self.support is not None

    @property
    def n_categories(self) -> int:
        """Number of reference categories (support values), not counting the 'unseen' bucket."""
        return len(self.categories) if self.kind == "categorical" else _len(self.support)


def _len(a: FloatArray | None) -> int:
    return 0 if a is None else int(a.size)


@dataclass(frozen=True)
class ImageSpec:
    """Shape and intensity range of image inputs (integers 0..pixel_max)."""

    shape: tuple[int, ...]
    pixel_max: int

    @property
    def n_pixels(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class TextSpec:
    """How text inputs are tokenized, and the training vocabulary OOV is measured against."""

    vocabulary: frozenset[str]
    token_pattern: str = TOKEN_PATTERN
    lowercase: bool = True
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.token_pattern))

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` under this spec."""
        return self._regex.findall(text.lower() if self.lowercase else text)


@dataclass(frozen=True)
class Profile:
    """The reference profile of one model: feature columns, predictions and a bounded sample."""

    kind: ProfileKind
    model_name: str
    model_sha256: str
    n_rows: int
    columns: tuple[FeatureProfile, ...]
    sample: FloatArray
    sample_labels: IntArray | None = None
    sample_confidences: FloatArray | None = None
    prediction: FeatureProfile | None = None
    confidence: FeatureProfile | None = None
    pooled: FeatureProfile | None = None
    image: ImageSpec | None = None
    text: TextSpec | None = None
    created_at: str = ""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.columns]

    # -- live feature extraction --------------------------------------------------------------
    def features(self, inputs: Any) -> FloatArray:
        """The feature row of one live input, computed as the reference rows were."""
        if self.kind == "text":
            return _text_row(self._text_spec, inputs)
        if self.kind == "image":
            row: FloatArray = _image_rows(self._image_spec, np.asarray(inputs, float)[None])[0]
            return row
        return _tabular_row(self.columns, inputs)

    def features_batch(self, inputs: Sequence[Any] | NDArray[Any]) -> FloatArray:
        """Feature rows of many inputs, shape (n, n_features)."""
        if self.kind == "image":
            return _image_rows(self._image_spec, np.asarray(inputs, dtype=np.float64))
        if len(inputs) == 0:
            return np.empty((0, len(self.columns)))
        return np.vstack([self.features(x) for x in inputs])

    def label_code(self, label: Any) -> int:
        """Index of ``label`` among the reference labels; -1 when absent, len(labels) if new."""
        if label is None or self.prediction is None:
            return -1
        return self.prediction.code_of(label)

    def save(self, path: Path) -> None:
        """Write ``path`` (JSON) and its ``.npz`` arrays next to it, atomically."""
        from infertrail.monitoring.profile_io import save_profile

        save_profile(self, path)

    @classmethod
    def load(cls, path: Path, *, expected_sha256: str | None = None) -> Profile:
        """Read and validate a profile; ``expected_sha256`` must match the model it names."""
        from infertrail.monitoring.profile_io import load_profile

        return load_profile(path, expected_sha256=expected_sha256)

    @property
    def _text_spec(self) -> TextSpec:
        if self.text is None:
            raise ValueError("a text profile must carry its TextSpec")
        return self.text

    @property
    def _image_spec(self) -> ImageSpec:
        if self.image is None:
            raise ValueError("an image profile must carry its ImageSpec")
        return self.image


def category_key(value: Any) -> str:
    """The string a categorical value is stored under (1 and 1.0 are the same category)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return category_key(value.item())
    return str(value)


def _tabular_row(features: Sequence[FeatureProfile], inputs: Any) -> FloatArray:
    if isinstance(inputs, Mapping):
        try:
            values = [inputs[f.name] for f in features]
        except KeyError as exc:
            raise ValueError(f"input has no value for feature {exc.args[0]!r}") from None
    else:
        values = list(inputs)
        if len(values) != len(features):
            raise ValueError(f"input has {len(values)} values, the profile {len(features)}")
    row = np.empty(len(features))
    for j, (f, v) in enumerate(zip(features, values, strict=True)):
        if v is None:
            row[j] = math.nan
        elif f.kind == "categorical":
            row[j] = f.code_of(v)
        else:
            try:
                row[j] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"feature {f.name!r} must be a number, got {v!r}") from None
    return row


def _text_row(spec: TextSpec, text: Any) -> FloatArray:
    if not isinstance(text, str):
        raise ValueError(f"a text profile needs str inputs, got {type(text).__name__}")
    tokens = spec.tokens(text)
    oov = sum(t not in spec.vocabulary for t in tokens) / len(tokens) if tokens else 0.0
    return np.array([len(text), len(tokens), oov], dtype=np.float64)


def _image_rows(spec: ImageSpec, images: FloatArray) -> FloatArray:
    n = images.shape[0] if images.ndim else 0
    pixels = images.reshape(n, -1) if n else images.reshape(0, spec.n_pixels)
    if pixels.shape[1] != spec.n_pixels:
        raise ValueError(
            f"an image must have {spec.n_pixels} pixels (shape {spec.shape}), got {pixels.shape[1]}"
        )
    scaled = pixels / spec.pixel_max
    derived = np.column_stack([scaled.mean(axis=1), scaled.std(axis=1), (pixels > 0).mean(axis=1)])
    return np.hstack([pixels, derived])


# -- building --------------------------------------------------------------------------------
def numerical_feature(name: str, values: FloatArray) -> FeatureProfile:
    """Profile one numerical column (NaN values are missing and skipped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError(f"feature {name!r} has no non-missing reference value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"feature {name!r} holds infinite reference values")
    s = np.sort(v)  # once: unique values, quantiles and bins all read the sorted column
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
    rows = _image_rows(spec, pixels)
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
    rows = np.vstack([_text_row(spec, t) for t in texts])
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


def profile_path(models_dir: Path, model_name: str) -> Path:
    """Where a model's profile lives: ``<models_dir>/<name>/profile.json`` (+ ``.npz``)."""
    return Path(models_dir) / model_name / PROFILE_FILE
