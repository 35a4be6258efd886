"""Reference profiles: what the training data looked like, precomputed once per model.

A :class:`Profile` holds, per feature of a row, its type, quantile bins with counts and sums, the
empirical CDF of all its values (for KS tests), its summary statistics, and a bounded seeded
sample of reference rows (for calibration); for every model the prediction distribution (label
shares, confidence bins). Images add derived image statistics and a pooled pixel-intensity
histogram; text is profiled through derived features (length in characters and tokens,
out-of-vocabulary rate against the stored training vocabulary). :meth:`Profile.features` turns
one live input into the same feature row the profile was built from, so live rows and reference
rows are computed by the same code. The builders are in :mod:`infertrail.drift.build`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.distribution import ColumnDistribution
from infertrail.drift.ecdf import ReferenceEcdf
from infertrail.drift.histogram import NumericBins
from infertrail.drift.stats import FloatArray, IntArray

FeatureKind = Literal["numerical", "categorical"]
ProfileKind = Literal["tabular", "image", "text"]

#: Numerical features with at most this many distinct reference values are treated as
#: categories by the default rule (Evidently's "<= 5 unique values").
DISCRETE_MAX_UNIQUE = 5
#: Rows kept from the reference for calibration (KS reads the full reference's ECDF instead).
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

    Numerical features have ``bins`` (fine quantile bins, overflow included), ``psi_edges`` and
    ``ecdf`` (the empirical CDF of all their values, for KS), all computed from
    ``distribution`` (every distinct value and its count, compacted beyond
    :data:`~infertrail.drift.distribution.MAX_VALUES`), which is kept so that profiles merge;
    a numerical feature with few distinct values also has ``support`` (those values), and every
    categorical or discrete feature has ``category_counts`` (one per category or support value).
    ``n_unique`` counts the knots of a compacted distribution (a lower bound). ``ecdf`` is None
    only for a numerical feature read from a version-1 file whose stored sample lacks it;
    ``distribution`` is None for one read from a file of version 1, or of version 2 whose ECDF
    was sketched: such a feature cannot merge.
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
    ecdf: ReferenceEcdf | None = None
    distribution: ColumnDistribution | None = None
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
    """The reference profile of one model: feature columns, predictions and a bounded sample.

    ``sample`` holds min(``n_rows``, ``sample_size``) rows drawn uniformly.
    """

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
    sample_size: int = DEFAULT_SAMPLE_SIZE

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.columns]

    # -- live feature extraction --------------------------------------------------------------
    def features(self, inputs: Any) -> FloatArray:
        """The feature row of one live input, computed as the reference rows were."""
        if self.kind == "text":
            return text_row(self._text_spec, inputs)
        if self.kind == "image":
            row: FloatArray = image_rows(self._image_spec, np.asarray(inputs, float)[None])[0]
            return row
        return _tabular_row(self.columns, inputs)

    def features_batch(self, inputs: Sequence[Any] | NDArray[Any]) -> FloatArray:
        """Feature rows of many inputs, shape (n, n_features)."""
        if self.kind == "image":
            return image_rows(self._image_spec, np.asarray(inputs, dtype=np.float64))
        if len(inputs) == 0:
            return np.empty((0, len(self.columns)))
        return np.vstack([self.features(x) for x in inputs])

    def label_code(self, label: Any) -> int:
        """Index of ``label`` among the reference labels; -1 when absent, len(labels) if new."""
        if label is None or self.prediction is None:
            return -1
        return self.prediction.code_of(label)

    def merge(self, other: Profile, *, seed: int = 0) -> Profile:
        """The profile of this profile's rows and ``other``'s (same model, features, kinds).

        Equal to the profile built from all the rows at once but for the sample, a uniform
        sample of both drawn with ``seed``; see :func:`infertrail.drift.partial.merge_profiles`.
        """
        from infertrail.drift.partial import merge_profiles

        return merge_profiles([self, other], seed=seed)

    def save(self, path: Path) -> None:
        """Write ``path`` (JSON) and its ``.npz`` arrays next to it, atomically."""
        from infertrail.drift.profile_io import save_profile

        save_profile(self, path)

    @classmethod
    def load(cls, path: Path, *, expected_sha256: str | None = None) -> Profile:
        """Read and validate a profile; ``expected_sha256`` must match the model it names."""
        from infertrail.drift.profile_io import load_profile

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


def text_row(spec: TextSpec, text: Any) -> FloatArray:
    if not isinstance(text, str):
        raise ValueError(f"a text profile needs str inputs, got {type(text).__name__}")
    tokens = spec.tokens(text)
    oov = sum(t not in spec.vocabulary for t in tokens) / len(tokens) if tokens else 0.0
    return np.array([len(text), len(tokens), oov], dtype=np.float64)


def image_rows(spec: ImageSpec, images: FloatArray) -> FloatArray:
    """Feature rows of a batch of images: the pixels, then the derived image statistics."""
    n = images.shape[0] if images.ndim else 0
    pixels = images.reshape(n, -1) if n else images.reshape(0, spec.n_pixels)
    if pixels.shape[1] != spec.n_pixels:
        raise ValueError(
            f"an image must have {spec.n_pixels} pixels (shape {spec.shape}), got {pixels.shape[1]}"
        )
    # Few, fused numpy calls: this runs per event on the Monitor's worker (one image at a time).
    out = np.empty((n, spec.n_pixels + len(IMAGE_DERIVED)))
    out[:, : spec.n_pixels] = pixels
    mean = pixels.sum(axis=1) / spec.n_pixels
    mean_sq = np.einsum("ij,ij->i", pixels, pixels) / spec.n_pixels
    out[:, -3] = mean / spec.pixel_max
    out[:, -2] = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)) / spec.pixel_max
    out[:, -1] = np.count_nonzero(pixels, axis=1) / spec.n_pixels
    return out


def profile_path(models_dir: Path, model_name: str) -> Path:
    """Where a model's profile lives: ``<models_dir>/<name>/profile.json`` (+ ``.npz``)."""
    return Path(models_dir) / model_name / PROFILE_FILE
