"""The data-quality schema of a model: what each feature's values may be, editable as JSON.

:meth:`QualitySchema.infer` reads it off the reference profile (every value the training data
held passes); an operator writes it out (``infertrail drift schema``), edits it (widen a range,
allow a new category, tolerate missing values) and saves it as ``<models_dir>/<model>/quality.json``
(:func:`quality_schema_path`), where :func:`quality_schema_for` finds it. Loading validates
everything and reports every problem at once, each naming the feature and the field, so an
edited file is either used as written or refused with the reason: never half read.
The checks themselves are in :mod:`infertrail.drift.quality`; docs/data-quality.md has the
format.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infertrail.drift.profile import (
    IMAGE_DERIVED,
    TEXT_FEATURES,
    FeatureKind,
    FeatureProfile,
    Profile,
)

__all__ = [
    "QUALITY_FILE",
    "FeatureQuality",
    "QualitySchema",
    "QualitySchemaError",
    "quality_schema_for",
    "quality_schema_path",
]

FORMAT = "infertrail-quality-schema"
FORMAT_VERSION = 1
QUALITY_FILE = "quality.json"
_KINDS: dict[str, FeatureKind] = {
    "numerical": "numerical",
    "numeric": "numerical",
    "categorical": "categorical",
}
_TOP_KEYS = {"format", "format_version", "model", "features"}
_COMMON_KEYS = {"kind", "nullable", "reference_missing_share", "expect_constant"}


class QualitySchemaError(ValueError):
    """A quality schema that cannot be used: its problems, each naming the feature and field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            message = f"{source}: {problems[0]}"
        else:
            message = f"{source}: {len(problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in problems
            )
        super().__init__(message)


@dataclass(frozen=True)
class FeatureQuality:
    """What one feature's values may be.

    ``low``/``high``: the inclusive range of a numerical feature (None: unbounded on that side).
    ``categories``: the allowed values of a categorical feature, as ``category_key`` writes them.
    ``nullable``: missing values are expected, at ``reference_missing_share``; otherwise every
    missing value is a violation. ``expect_constant``: one value in a window is no finding.
    """

    name: str
    kind: FeatureKind
    nullable: bool
    reference_missing_share: float
    expect_constant: bool
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def allowed_missing_share(self) -> float:
        """The share of missing values a window may have before it counts as a finding."""
        return self.reference_missing_share if self.nullable else 0.0


@dataclass(frozen=True)
class QualitySchema:
    """The per-feature expectations of one model; a feature left out is not checked."""

    model_name: str
    features: tuple[FeatureQuality, ...]

    def feature(self, name: str) -> FeatureQuality:
        """The expectations of feature ``name``."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r} in the quality schema of {self.model_name!r}")

    @classmethod
    def infer(cls, profile: Profile) -> QualitySchema:
        """The schema every reference value passes: ranges are the reference minimum and
        maximum, categories the reference's, missing values tolerated at the reference's share.

        Tabular profiles: every feature. Image and text profiles: their derived features only
        (image statistics; length and OOV rate), the pixels and tokens being no schema's business.
        """
        wanted = {"image": IMAGE_DERIVED, "text": TEXT_FEATURES}.get(profile.kind)
        columns = [f for f in profile.columns if wanted is None or f.name in wanted]
        return cls(profile.model_name, tuple(_infer_feature(f, profile.n_rows) for f in columns))

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (features in order, keyed by name)."""
        features: dict[str, Any] = {}
        for f in self.features:
            entry: dict[str, Any] = {
                "kind": f.kind,
                "nullable": f.nullable,
                "reference_missing_share": f.reference_missing_share,
            }
            if f.kind == "numerical":
                entry["range"] = [_plain(f.low), _plain(f.high)]
            else:
                entry["categories"] = list(f.categories)
            entry["expect_constant"] = f.expect_constant
            features[f.name] = entry
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model_name,
            "features": features,
        }

    @classmethod
    def from_dict(cls, doc: Any, source: str = "quality schema") -> QualitySchema:
        """Parse and validate a document; :class:`QualitySchemaError` lists every problem."""
        problems: list[str] = []
        if not isinstance(doc, Mapping):
            raise QualitySchemaError(source, [f"must be a JSON object, got {_type(doc)}"])
        unknown = sorted(set(doc) - _TOP_KEYS)
        if unknown:
            problems.append(f"unknown keys {unknown} (known: {sorted(_TOP_KEYS)})")
        missing = sorted(_TOP_KEYS - set(doc))
        if missing:
            problems.append(f"missing keys {missing}")
        if "format" in doc and doc["format"] != FORMAT:
            problems.append(f"format must be {FORMAT!r}, got {doc['format']!r}")
        if "format_version" in doc and doc["format_version"] != FORMAT_VERSION:
            problems.append(
                f"format_version {doc['format_version']!r} is not supported "
                f"(this code reads {FORMAT_VERSION})"
            )
        model = doc.get("model", "")
        if "model" in doc and (not isinstance(model, str) or not model):
            problems.append(f"model must be a non-empty string, got {model!r}")
        features: list[FeatureQuality] = []
        entries = doc.get("features", {})
        if not isinstance(entries, Mapping):
            problems.append(
                f"features must be an object keyed by feature name, got {_type(entries)}"
            )
        else:
            for name, entry in entries.items():
                parsed = _parse_feature(name, entry, problems)
                if parsed is not None:
                    features.append(parsed)
        if problems:
            raise QualitySchemaError(source, problems)
        return cls(model, tuple(features))

    def check(self, profile: Profile) -> None:
        """Refuse a schema that does not fit ``profile``: another model, a feature the profile
        lacks, or a kind the profile does not give the feature."""
        problems = []
        if self.model_name != profile.model_name:
            problems.append(
                f"model {self.model_name!r}: the profile is of model {profile.model_name!r}"
            )
        kinds = {f.name: f.kind for f in profile.columns}
        for f in self.features:
            kind = kinds.get(f.name)
            if kind is None:
                problems.append(
                    f"feature {f.name!r}: unknown feature; the profile has {_listing(list(kinds))}"
                )
            elif kind != f.kind:
                problems.append(
                    f"feature {f.name!r}: kind {f.kind!r}, but the profile's is {kind!r}"
                )
        if problems:
            raise QualitySchemaError(f"quality schema of {self.model_name!r}", problems)

    def save(self, path: Path) -> None:
        """Write the schema as indented JSON, atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        tmp.replace(path)

    def dumps(self) -> str:
        """The JSON text :meth:`save` writes: one field per line, a range or the categories on
        one line, so that a feature reads (and is edited) at a glance."""
        doc = self.to_dict()
        head = ",\n".join(
            f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "features"
        )
        features = ",\n".join(
            f"    {json.dumps(name)}: {{\n"
            + ",\n".join(f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in entry.items())
            + "\n    }"
            for name, entry in doc["features"].items()
        )
        body = f"{{\n{features}\n  }}" if features else "{}"
        return f'{{\n{head},\n  "features": {body}\n}}\n'

    @classmethod
    def load(cls, path: Path) -> QualitySchema:
        """Read and validate a schema file (:class:`QualitySchemaError` naming the file)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise QualitySchemaError(str(path), ["file does not exist"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise QualitySchemaError(str(path), [f"cannot be read: {exc}"]) from None
        return cls.loads(text, str(path))

    @classmethod
    def loads(cls, text: str, source: str = "quality schema") -> QualitySchema:
        """Parse and validate JSON text; a key given twice is an error, not the last one wins."""
        try:
            doc = json.loads(text, object_pairs_hook=_no_repeats)
        except _RepeatedKey as exc:
            raise QualitySchemaError(source, [str(exc)]) from None
        except json.JSONDecodeError as exc:
            raise QualitySchemaError(source, [f"not valid JSON: {exc}"]) from None
        return cls.from_dict(doc, source)


def quality_schema_path(models_dir: Path, model_name: str) -> Path:
    """Where a model's quality schema lives: ``<models_dir>/<name>/quality.json``."""
    return Path(models_dir) / model_name / QUALITY_FILE


def quality_schema_for(models_dir: Path, profile: Profile) -> QualitySchema:
    """The model's schema file when there is one (checked against ``profile``), else inferred."""
    path = quality_schema_path(models_dir, profile.model_name)
    if not path.is_file():
        return QualitySchema.infer(profile)
    schema = QualitySchema.load(path)
    try:
        schema.check(profile)
    except QualitySchemaError as exc:
        raise QualitySchemaError(str(path), exc.problems) from None
    return schema


# -- inference ----------------------------------------------------------------------------------
def _infer_feature(f: FeatureProfile, n_rows: int) -> FeatureQuality:
    missing = max(0.0, 1.0 - f.count / n_rows) if n_rows else 0.0
    low = high = None
    if f.kind == "numerical":
        if f.bins is not None:  # quantile edges: the first is the minimum, the last the maximum
            low, high = float(f.bins.edges[0]), float(f.bins.edges[-1])
        elif f.ecdf is not None:
            low, high = float(f.ecdf.knots[0]), float(f.ecdf.knots[-1])
    return FeatureQuality(
        name=f.name,
        kind=f.kind,
        nullable=missing > 0.0,
        reference_missing_share=missing,
        expect_constant=f.n_unique <= 1,
        low=low,
        high=high,
        categories=f.categories if f.kind == "categorical" else (),
    )


def _plain(x: float | None) -> float | int | None:
    """A bound as JSON shows it best: integers without ``.0`` (exactly representable only)."""
    if x is not None and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


# -- validation ---------------------------------------------------------------------------------
class _RepeatedKey(ValueError):
    """A JSON object of the schema file names a key twice."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _listing(names: list[str], most: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    more = f", ... ({len(names)} in all)" if len(names) > most else ""
    return f"{shown}{more}" if names else "no features"


def _parse_feature(name: str, entry: Any, problems: list[str]) -> FeatureQuality | None:
    """One feature's entry, its problems appended to ``problems`` (None if it has any)."""
    where = f"feature {name!r}"
    before = len(problems)
    if not name:
        problems.append("a feature name must be a non-empty string")
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: must be an object, got {_type(entry)}")
        return None
    kind = _KINDS.get(entry["kind"]) if isinstance(entry.get("kind"), str) else None
    if kind is None:
        problems.append(
            f"{where}: kind must be 'numerical' or 'categorical', got {entry.get('kind')!r}"
        )
        return None
    specific = "range" if kind == "numerical" else "categories"
    allowed = _COMMON_KEYS | {specific}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        problems.append(
            f"{where}: unknown keys {unknown} for a {kind} feature (known: {sorted(allowed)})"
        )
    missing = sorted(allowed - set(entry))
    if missing:
        problems.append(f"{where}: missing keys {missing}")
    flags = {}
    for key in ("nullable", "expect_constant"):
        value = entry.get(key, False)
        if not isinstance(value, bool):
            problems.append(f"{where}: {key} must be true or false, got {value!r}")
        flags[key] = bool(value)
    share = entry.get("reference_missing_share", 0.0)
    if not _is_number(share) or not 0.0 <= share <= 1.0:
        problems.append(
            f"{where}: reference_missing_share must be a number in [0, 1], got {share!r}"
        )
        share = 0.0
    low = high = None
    categories: tuple[str, ...] = ()
    if kind == "numerical" and "range" in entry:
        low, high = _parse_range(entry["range"], where, problems)
    elif kind == "categorical" and "categories" in entry:
        categories = _parse_categories(entry["categories"], where, problems)
    if len(problems) > before:
        return None
    return FeatureQuality(
        name=name,
        kind=kind,
        nullable=flags["nullable"],
        reference_missing_share=float(share),
        expect_constant=flags["expect_constant"],
        low=low,
        high=high,
        categories=categories,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_range(value: Any, where: str, problems: list[str]) -> tuple[float | None, float | None]:
    if not isinstance(value, list) or len(value) != 2:
        problems.append(
            f"{where}: range must be [low, high] (numbers, or null for no bound), got {value!r}"
        )
        return None, None
    bounds: list[float | None] = []
    for side, bound in zip(("low", "high"), value, strict=True):
        if bound is not None and not _is_number(bound):
            problems.append(f"{where}: range {side} must be a finite number or null, got {bound!r}")
            bound = None
        bounds.append(None if bound is None else float(bound))
    low, high = bounds
    if low is not None and high is not None and low > high:
        problems.append(f"{where}: range [{value[0]}, {value[1]}]: low exceeds high")
    return low, high


def _parse_categories(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        problems.append(f"{where}: categories must be a non-empty list of strings, got {value!r}")
        return ()
    bad = [c for c in value if not isinstance(c, str)]
    if bad:
        problems.append(
            f"{where}: categories must be strings, as the profile stores them "
            f'(write "1", not 1), got {bad[:5]!r}'
        )
        return ()
    twice = sorted(c for c, n in Counter(value).items() if n > 1)
    if twice:
        problems.append(f"{where}: categories repeat {twice[:5]!r}")
    return tuple(value)
