"""Per-feature drift thresholds calibrated on chunks of the reference itself.

Each chunk of the reference is compared with a profile built from the reference *without* that
chunk (NannyML issue #426: comparing a chunk with a reference that contains it makes the chunks
look alike and the band too tight). A feature's threshold is the mean plus ``n_sigma`` standard
deviations of its chunk distances; use chunks the size of the live windows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from infertrail.drift.build import categorical_feature, numerical_feature
from infertrail.drift.detector import DriftDetector, DriftWindow
from infertrail.drift.profile import FeatureProfile, Profile
from infertrail.drift.rule import DriftConfig
from infertrail.drift.stats import FloatArray, IntArray

#: Floor of a calibrated threshold: a feature constant in every chunk drifts on any change.
MIN_THRESHOLD = 1e-9


@dataclass(frozen=True)
class Calibration:
    """Calibrated thresholds and the chunk distances they came from."""

    thresholds: dict[str, float]
    chunk_distances: dict[str, list[float]]
    chunk_size: int
    n_sigma: float

    def config(self, base: DriftConfig | None = None) -> DriftConfig:
        """``base`` (default: the default config) with these thresholds."""
        return dataclasses.replace(base or DriftConfig(), thresholds=dict(self.thresholds))


def chunk_splits(n_rows: int, chunk_size: int) -> list[tuple[IntArray, IntArray]]:
    """Consecutive chunks of ``chunk_size`` rows, each with the indices of all other rows.

    A tail shorter than ``chunk_size`` is never a chunk (it stays in every rest).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    n_chunks = n_rows // chunk_size
    if n_chunks < 2:
        raise ValueError(
            f"calibration needs at least 2 chunks: {n_rows} rows hold "
            f"{n_chunks} chunk(s) of {chunk_size}; use smaller chunks or more rows"
        )
    everything = np.arange(n_rows, dtype=np.int64)
    splits = []
    for k in range(n_chunks):
        chunk = everything[k * chunk_size : (k + 1) * chunk_size]
        rest = np.concatenate([everything[: k * chunk_size], everything[(k + 1) * chunk_size :]])
        splits.append((chunk, rest))
    return splits


def _refit(template: FeatureProfile, values: FloatArray) -> FeatureProfile:
    if template.kind == "categorical":
        codes = np.where(np.isnan(values), -1, values).astype(np.int64)
        return categorical_feature(template.name, codes, template.categories)
    return numerical_feature(template.name, values)


def profile_of_rows(
    template: Profile,
    rows: FloatArray,
    labels: IntArray | None = None,
    confidences: FloatArray | None = None,
) -> Profile:
    """A profile of the same kind and columns as ``template``, built from feature ``rows``."""
    columns = tuple(_refit(f, rows[:, j]) for j, f in enumerate(template.columns))
    pooled = template.pooled
    if pooled is not None and template.image is not None:
        pix = rows[:, : template.image.n_pixels].astype(np.int64).ravel()
        levels = np.bincount(pix, minlength=template.image.pixel_max + 1).astype(np.int64)
        pooled = dataclasses.replace(
            pooled, count=int(pix.size), n_unique=int(np.count_nonzero(levels)),
            category_counts=levels,
        )  # fmt: skip
    prediction = template.prediction
    if prediction is not None and labels is not None:
        prediction = _refit(prediction, labels.astype(np.float64))
    confidence = template.confidence
    if confidence is not None and confidences is not None:
        confidence = _refit(confidence, confidences)
    return dataclasses.replace(
        template,
        n_rows=rows.shape[0],
        columns=columns,
        sample=rows,
        sample_labels=labels,
        sample_confidences=confidences,
        prediction=prediction,
        confidence=confidence,
        pooled=pooled,
    )


def calibrate(
    profile: Profile,
    *,
    chunk_size: int,
    reference: FloatArray | None = None,
    labels: IntArray | None = None,
    confidences: FloatArray | None = None,
    n_sigma: float = 3.0,
) -> Calibration:
    """Thresholds (mean + ``n_sigma`` std of leave-one-chunk-out distances) per feature.

    ``reference`` is the training data as feature rows (``profile.features_batch(...)``), in
    time order; by default the profile's stored sample (and its labels and confidences).
    """
    if reference is None:
        rows = profile.sample
        labels = profile.sample_labels if labels is None else labels
        confidences = profile.sample_confidences if confidences is None else confidences
    else:
        rows = np.asarray(reference, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(profile.columns):
            raise ValueError(
                f"reference must have shape (n, {len(profile.columns)}), got {rows.shape}"
            )
    for name, a in (("labels", labels), ("confidences", confidences)):
        if a is not None and a.shape != (rows.shape[0],):
            raise ValueError(f"{name} must have shape ({rows.shape[0]},), got {a.shape}")
    if not n_sigma > 0:
        raise ValueError(f"n_sigma must be positive, got {n_sigma}")
    distances: dict[str, list[float]] = {}
    for chunk, rest in chunk_splits(rows.shape[0], chunk_size):
        sub = profile_of_rows(
            profile,
            rows[rest],
            None if labels is None else labels[rest],
            None if confidences is None else confidences[rest],
        )
        parts = [*sub.columns, sub.pooled, sub.prediction, sub.confidence]
        natural = {
            f.name: ("jensenshannon" if f.is_discrete else "wasserstein")
            for f in parts
            if f is not None
        }
        detector = DriftDetector(sub, DriftConfig(feature_methods=natural))  # type: ignore[arg-type]
        report = detector.compare(
            DriftWindow(
                rows[chunk],
                None if labels is None else labels[chunk],
                None if confidences is None else confidences[chunk],
            )
        )
        verdicts = [*report.features, report.prediction.label, report.prediction.confidence]
        for v in verdicts:
            if v is not None:
                distances.setdefault(v.name, []).append(v.distance)
    thresholds = {
        name: max(float(np.mean(d) + n_sigma * np.std(d, ddof=1)), MIN_THRESHOLD)
        for name, d in distances.items()
    }
    return Calibration(thresholds, distances, chunk_size, n_sigma)
