"""Profile files: ``profile.json`` (metadata, versioned) next to ``profile.npz`` (arrays).

The JSON names its format and version, the model sha256 the profile belongs to, and the sha256 of
the ``.npz``, so a stale or swapped arrays file is caught. Arrays are read with
``allow_pickle=False``. Every problem found on load raises :class:`ProfileError` naming the file
and what is wrong with it.

Version 2 added each numerical feature's ECDF over all reference values (KS against the whole
reference). A version-1 file is still read: its numerical features get the ECDF of its stored
sample, which is exactly the test version 1 ran (docs/drift.md says why old files are read
rather than refused). Whenever an ECDF counts fewer values than its feature, loading warns that
KS runs against a sample and asks for a rebuild.

Since issue 18 a file also holds each numerical feature's distribution (every distinct value
and its count, compacted beyond a bound: :mod:`infertrail.drift.distribution`) and the sample
size, so that profiles merge. These are added arrays and keys, which earlier readers of version
2 ignore, so the version stays 2 and such a file still loads in an older infertrail (which
cannot merge it). A file without them gets, for each numerical feature whose ECDF holds every
value, the distribution that ECDF is; a feature with a sketched ECDF (more than 16,384 distinct
values) has none, and its profile is judged as before but cannot merge.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from infertrail.drift.distribution import EXACT, ColumnDistribution
from infertrail.drift.ecdf import ReferenceEcdf
from infertrail.drift.histogram import NumericBins
from infertrail.drift.profile import (
    DEFAULT_SAMPLE_SIZE,
    IMAGE_DERIVED,
    TEXT_FEATURES,
    FeatureProfile,
    ImageSpec,
    Profile,
    TextSpec,
)

FORMAT = "infertrail-drift-profile"
FORMAT_VERSION = 2
#: Versions this code reads: 1 lacks the ECDFs (KS then runs against the stored sample).
READABLE_VERSIONS = (1, 2)
_KINDS = ("tabular", "image", "text")
_log = logging.getLogger("infertrail.drift")


class ProfileError(ValueError):
    """A profile file that is missing, malformed, of another version or of another model."""


def arrays_path(path: Path) -> Path:
    """The ``.npz`` file that belongs to the profile JSON at ``path``."""
    return Path(path).with_suffix(".npz")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _feature_meta(f: FeatureProfile, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    for attr in ("psi_edges", "support", "category_counts"):
        value = getattr(f, attr)
        if value is not None:
            arrays[f"{prefix}.{attr}"] = value
    if f.bins is not None:
        arrays[f"{prefix}.edges"] = f.bins.edges
        arrays[f"{prefix}.counts"] = f.bins.counts
        arrays[f"{prefix}.sums"] = f.bins.sums
    if f.ecdf is not None:
        arrays[f"{prefix}.ecdf_knots"] = f.ecdf.knots
        arrays[f"{prefix}.ecdf_le"] = f.ecdf.le
        arrays[f"{prefix}.ecdf_lt"] = f.ecdf.lt
    precision = None
    if f.distribution is not None:
        d = f.distribution
        precision = d.precision
        arrays[f"{prefix}.values"] = d.values
        arrays[f"{prefix}.value_counts"] = _smallest_uint(d.counts)
        if not d.is_exact:
            arrays[f"{prefix}.gap_counts"] = _smallest_uint(d.gap_counts)
            arrays[f"{prefix}.gap_sums"] = d.gap_sums

    def num(x: float) -> float | None:
        return None if math.isnan(x) else x

    return {
        "name": f.name,
        "kind": f.kind,
        "count": f.count,
        "n_unique": f.n_unique,
        "mean": num(f.mean),
        "std": num(f.std),
        "q_low": num(f.q_low),
        "q_high": num(f.q_high),
        "categories": list(f.categories),
        "precision": precision,
    }


def _smallest_uint(a: np.ndarray) -> np.ndarray:
    """Counts in the smallest unsigned type that holds them: most are 1 for continuous data."""
    top = int(a.max()) if a.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return a.astype(dtype)
    return a.astype(np.uint64)


def save_profile(profile: Profile, path: Path) -> None:
    """Write the profile as ``path`` plus ``path.with_suffix('.npz')``, each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"sample": profile.sample}
    if profile.sample_labels is not None:
        arrays["sample_labels"] = profile.sample_labels
    if profile.sample_confidences is not None:
        arrays["sample_confidences"] = profile.sample_confidences
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": profile.kind,
        "model": {"name": profile.model_name, "sha256": profile.model_sha256},
        "n_rows": profile.n_rows,
        "sample_size": profile.sample_size,
        "created_at": profile.created_at,
        "columns": [_feature_meta(f, f"col{j}", arrays) for j, f in enumerate(profile.columns)],
    }
    for part in ("prediction", "confidence", "pooled"):
        fp = getattr(profile, part)
        meta[part] = None if fp is None else _feature_meta(fp, part, arrays)
    meta["image"] = (
        None
        if profile.image is None
        else {"shape": list(profile.image.shape), "pixel_max": profile.image.pixel_max}
    )
    meta["text"] = (
        None
        if profile.text is None
        else {
            "token_pattern": profile.text.token_pattern,
            "lowercase": profile.text.lowercase,
            "vocabulary": sorted(profile.text.vocabulary),
        }
    )
    npz = arrays_path(path)
    tmp_npz = npz.with_name(f".{npz.name}.tmp")
    with tmp_npz.open("wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    meta["arrays"] = {"file": npz.name, "sha256": _sha256(tmp_npz)}
    tmp_json = path.with_name(f".{path.name}.tmp")
    tmp_json.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    tmp_npz.replace(npz)
    tmp_json.replace(path)


class _Reader:
    """Typed access to the JSON and arrays, raising ProfileError with the file's name."""

    def __init__(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.path, self.meta, self.arrays = path, meta, arrays
        self.version = meta.get("format_version")

    def fail(self, problem: str) -> ProfileError:
        return ProfileError(f"profile {self.path}: {problem}")

    def get(self, obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(f"{where} lacks the required field {key!r}")
        value = obj[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(f"{where}.{key} must be a number, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(f"{where}.{key} has the wrong type ({type(value).__name__})")
        return value

    def array(self, key: str, dtype: type) -> np.ndarray:
        if key not in self.arrays:
            raise self.fail(f"array {key!r} is missing from {arrays_path(self.path).name}")
        a = self.arrays[key]
        if not np.issubdtype(a.dtype, dtype):
            raise self.fail(f"array {key!r} has dtype {a.dtype}, expected {dtype.__name__}")
        if a.dtype.kind == "f" and key != "sample" and not np.all(np.isfinite(a)):
            raise self.fail(f"array {key!r} holds NaN or infinite values")
        return a

    def optional_float(self, obj: dict[str, Any], key: str, where: str) -> float:
        value = obj.get(key)
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}.{key} must be a number or null, got {value!r}")
        return float(value)

    def distribution(
        self, obj: dict[str, Any], prefix: str, where: str, count: int
    ) -> ColumnDistribution | None:
        """A numerical feature's stored distribution, or None when the file has none."""
        if self.version == 1 or f"{prefix}.values" not in self.arrays:
            return None
        precision = obj.get("precision")
        if isinstance(precision, bool) or not isinstance(precision, int):
            raise self.fail(f"{where}.precision must be an integer, got {precision!r}")
        values = self.array(f"{prefix}.values", np.floating)
        counts = self.array(f"{prefix}.value_counts", np.integer).astype(np.int64)
        if f"{prefix}.gap_counts" in self.arrays:
            gaps = self.array(f"{prefix}.gap_counts", np.integer).astype(np.int64)
            sums = self.array(f"{prefix}.gap_sums", np.floating).astype(np.float64)
        else:
            gaps, sums = np.zeros(values.shape, np.int64), np.zeros(values.shape)
        d = ColumnDistribution(values.astype(np.float64), counts, gaps, sums, precision)
        problem = d.problem()
        if problem is None and d.n != count:
            problem = f"the distribution counts {d.n} values, the feature {count}"
        if problem is not None:
            raise self.fail(f"{where}: {problem}")
        return d

    def ecdf(
        self, prefix: str, where: str, count: int, legacy: np.ndarray | None
    ) -> ReferenceEcdf | None:
        """A numerical feature's ECDF: stored (version 2), or of the sample's ``legacy`` values."""
        if self.version == 1:
            return None if legacy is None else ReferenceEcdf.of_values(legacy)
        ecdf = ReferenceEcdf(
            self.array(f"{prefix}.ecdf_knots", np.floating),
            self.array(f"{prefix}.ecdf_le", np.integer).astype(np.int64),
            self.array(f"{prefix}.ecdf_lt", np.integer).astype(np.int64),
        )
        problem = ecdf.problem()
        if problem is None and ecdf.n > count:
            # fewer is a version-1 sample's ECDF saved again; more is never right
            problem = f"the ECDF counts {ecdf.n} values, more than the feature's {count}"
        if problem is not None:
            raise self.fail(f"{where}: {problem}")
        return ecdf

    def feature(
        self, obj: Any, prefix: str, where: str, legacy: np.ndarray | None = None
    ) -> FeatureProfile:
        """One feature; ``legacy`` is its column of a version-1 sample (the ECDF's source)."""
        name = self.get(obj, "name", str, where)
        where = f"{where} ({name!r})"
        kind = self.get(obj, "kind", str, where)
        if kind not in ("numerical", "categorical"):
            raise self.fail(f"{where}.kind must be numerical or categorical, got {kind!r}")
        count = self.get(obj, "count", int, where)
        n_unique = self.get(obj, "n_unique", int, where)
        if count <= 0 or n_unique <= 0:
            raise self.fail(f"{where} must have a positive count and n_unique")
        categories = self.get(obj, "categories", list, where)
        if not all(isinstance(c, str) for c in categories):
            raise self.fail(f"{where}.categories must be strings")
        counts = (
            self.array(f"{prefix}.category_counts", np.integer)
            if f"{prefix}.category_counts" in self.arrays or kind == "categorical"
            else None
        )
        if kind == "categorical":
            assert counts is not None
            if counts.shape != (len(categories),):
                raise self.fail(
                    f"{where}: {counts.size} category counts for {len(categories)} categories"
                )
            return FeatureProfile(
                name, "categorical", count, n_unique,
                categories=tuple(categories), category_counts=counts.astype(np.int64),
            )  # fmt: skip
        edges = self.array(f"{prefix}.edges", np.floating)
        bin_counts = self.array(f"{prefix}.counts", np.integer)
        sums = self.array(f"{prefix}.sums", np.floating)
        psi_edges = self.array(f"{prefix}.psi_edges", np.floating)
        for label, e in (("edges", edges), ("psi_edges", psi_edges)):
            if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) < 0):
                raise self.fail(f"{where}: {label} must be at least 2 sorted values")
        if bin_counts.shape != (edges.size + 1,) or sums.shape != bin_counts.shape:
            raise self.fail(f"{where}: bin counts/sums do not match {edges.size} edges")
        support = None
        if f"{prefix}.support" in self.arrays:
            support = self.array(f"{prefix}.support", np.floating)
            if counts is None or counts.shape != support.shape:
                raise self.fail(f"{where}: support and its counts differ in length")
        std = self.optional_float(obj, "std", where)
        if not std >= 0:
            raise self.fail(f"{where}.std must be a non-negative number")
        ecdf = self.ecdf(prefix, where, count, legacy)
        distribution = self.distribution(obj, prefix, where, count)
        if distribution is None and ecdf is not None and ecdf.exact and ecdf.n == count:
            # an ECDF of every value (a file from before the distributions) is the distribution
            zeros = np.zeros(ecdf.knots.size, dtype=np.int64)
            distribution = ColumnDistribution(
                ecdf.knots, ecdf.le - ecdf.lt, zeros, zeros.astype(np.float64), EXACT
            )
        return FeatureProfile(
            name, "numerical", count, n_unique,
            mean=self.optional_float(obj, "mean", where), std=std,
            q_low=self.optional_float(obj, "q_low", where),
            q_high=self.optional_float(obj, "q_high", where),
            bins=NumericBins(edges, bin_counts.astype(np.int64), sums),
            psi_edges=psi_edges, support=support,
            category_counts=None if counts is None else counts.astype(np.int64),
            ecdf=ecdf, distribution=distribution,
        )  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ProfileError(f"profile {path}: file is missing; build and save a profile first")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"profile {path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ProfileError(f"profile {path}: not an infertrail drift profile (format={found!r})")
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ProfileError(
            f"profile {path}: format_version {version!r} is not supported "
            f"(this infertrail reads versions {READABLE_VERSIONS[0]} to {FORMAT_VERSION}); "
            "rebuild the profile"
        )
    return meta


def _read_arrays(path: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    info = meta.get("arrays")
    if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
        raise ProfileError(f"profile {path}: field 'arrays' must name the .npz and its sha256")
    npz = arrays_path(path)
    if not npz.is_file():
        raise ProfileError(f"profile {path}: its arrays file {npz} is missing")
    if _sha256(npz) != info["sha256"]:
        raise ProfileError(
            f"profile {path}: arrays file {npz.name} does not match the sha256 recorded in "
            "the profile (modified, or from another profile)"
        )
    try:
        with np.load(npz, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ProfileError(
            f"profile {path}: arrays file {npz.name} is unreadable ({exc})"
        ) from None


def _warn_sampled(path: Path, features: list[FeatureProfile | None]) -> None:
    """Warn when KS would run against a sample of a feature's values (version-1 files)."""
    sampled = [
        f.name for f in features if f is not None and f.ecdf is not None and f.ecdf.n < f.count
    ]
    if sampled:
        _log.warning(
            "drift profile %s: KS for %d feature(s) (%s) runs against a sample of their reference "
            "values, not all of them (a format-version-1 profile, or one saved from it), with "
            "less power on small shifts; rebuild it (`infertrail drift baseline`, or "
            "build_*_profile) to test against every value",
            path,
            len(sampled),
            ", ".join(sampled[:5]) + (", ..." if len(sampled) > 5 else ""),
        )


def load_profile(path: Path, *, expected_sha256: str | None = None) -> Profile:
    """Read and validate the profile at ``path``; see :class:`ProfileError` for failures."""
    path = Path(path)
    meta = _read_json(path)
    r = _Reader(path, meta, {})
    kind = r.get(meta, "kind", str, "profile")
    if kind not in _KINDS:
        raise r.fail(f"kind {kind!r} is unknown; valid: {', '.join(_KINDS)}")
    model = r.get(meta, "model", dict, "profile")
    model_name = r.get(model, "name", str, "model")
    model_sha = r.get(model, "sha256", str, "model")
    if expected_sha256 is not None and model_sha != expected_sha256:
        raise r.fail(
            f"belongs to model sha256 {model_sha[:16] or '(none)'}..., not to the loaded "
            f"model {expected_sha256[:16]}...; rebuild the profile for this model"
        )
    r.arrays = _read_arrays(path, meta)
    n_rows = r.get(meta, "n_rows", int, "profile")
    cols_meta = r.get(meta, "columns", list, "profile")
    if not cols_meta:
        raise r.fail("has no feature columns")
    sample = r.array("sample", np.floating)
    if sample.ndim != 2 or sample.shape[1] != len(cols_meta) or not 0 < sample.shape[0] <= n_rows:
        raise r.fail(f"sample has shape {sample.shape}, expected (1..{n_rows}, {len(cols_meta)})")
    s = sample.shape[0]
    if "sample_size" in meta:
        sample_size = r.get(meta, "sample_size", int, "profile")
        if sample_size < 1:
            raise r.fail(f"sample_size must be positive, got {sample_size}")
    else:  # not recorded before issue 18: the sample's own size, unless it holds every row
        sample_size = max(s, DEFAULT_SAMPLE_SIZE) if s == n_rows else s
    labels = r.array("sample_labels", np.integer) if "sample_labels" in r.arrays else None
    confs = r.array("sample_confidences", np.floating) if "sample_confidences" in r.arrays else None
    for name, a in (("sample_labels", labels), ("sample_confidences", confs)):
        if a is not None and a.shape != (s,):
            raise r.fail(f"{name} has shape {a.shape}, expected ({s},)")
    columns = tuple(
        r.feature(c, f"col{j}", f"columns[{j}]", sample[:, j]) for j, c in enumerate(cols_meta)
    )
    legacy = {"prediction": None, "confidence": confs, "pooled": None}
    parts = {
        part: None if meta.get(part) is None else r.feature(meta[part], part, part, legacy[part])
        for part in ("prediction", "confidence", "pooled")
    }
    _warn_sampled(path, [*columns, parts["confidence"]])
    image = text = None
    if kind == "image":
        im = r.get(meta, "image", dict, "profile")
        shape = r.get(im, "shape", list, "image")
        pixel_max = r.get(im, "pixel_max", int, "image")
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape) or pixel_max <= 0:
            raise r.fail(f"image spec is invalid: shape={shape!r}, pixel_max={pixel_max!r}")
        image = ImageSpec(tuple(shape), pixel_max)
        if len(columns) != image.n_pixels + len(IMAGE_DERIVED) or parts["pooled"] is None:
            raise r.fail(f"an image profile needs {image.n_pixels} pixel columns, "
                         f"{len(IMAGE_DERIVED)} derived ones and the pooled histogram")  # fmt: skip
    if kind == "text":
        tx = r.get(meta, "text", dict, "profile")
        vocab = r.get(tx, "vocabulary", list, "text")
        if not all(isinstance(v, str) for v in vocab):
            raise r.fail("text.vocabulary must be a list of strings")
        pattern = r.get(tx, "token_pattern", str, "text")
        try:
            text = TextSpec(frozenset(vocab), pattern, r.get(tx, "lowercase", bool, "text"))
        except re.error as exc:
            raise r.fail(f"text.token_pattern {pattern!r} is not a valid regex ({exc})") from None
        if [c.name for c in columns] != list(TEXT_FEATURES):
            raise r.fail(f"a text profile's columns must be {list(TEXT_FEATURES)}")
    return Profile(
        kind=kind,
        model_name=model_name,
        model_sha256=model_sha,
        n_rows=n_rows,
        columns=columns,
        sample=np.ascontiguousarray(sample, dtype=np.float64),
        sample_labels=None if labels is None else labels.astype(np.int64),
        sample_confidences=confs,
        prediction=parts["prediction"],
        confidence=parts["confidence"],
        pooled=parts["pooled"],
        image=image,
        text=text,
        created_at=str(meta.get("created_at", "")),
        sample_size=sample_size,
    )
