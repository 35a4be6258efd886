"""Reference data of a user's own model: its training table, feature types and predictions.

What ``infertrail drift baseline --name ...`` needs, as plain functions the CLI only wires:

- :func:`load_schema` and :func:`parse_column_specs`: which columns are features and of which
  type (``numeric`` or ``categorical``), from a JSON schema file or ``age,plan:categorical``;
- :func:`~infertrail.drift.reference_files.open_table`: a Parquet (file or directory), CSV/TSV
  (optionally gzipped) or NumPy file as named, typed columns (:mod:`.reference_files`);
- :func:`infer_type`: the type of a column nobody declared (the rule is in docs/drift.md);
- :func:`~infertrail.drift.reference_model.resolve_model`: ``module:function`` imported and
  called for the fitted model, and its predictions (:mod:`.reference_model`);
- :func:`build_reference`: features chosen and typed, reference predictions computed, the
  tabular :class:`~infertrail.drift.profile.Profile` built, batch by batch.

Two kinds of failure, so the CLI can tell usage (exit 2) from runtime (exit 1):
:class:`ReferenceInputError` for what the user pointed at (a file, a schema, a column name, a
value in a column, a ``module:function`` that does not exist), :class:`ModelCodeError` when the
user's own code fails or returns something unusable. The names of the two other modules are
exported here too, so ``infertrail.drift.reference`` stays the one import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.build import CategoryCodes, tabular_partial
from infertrail.drift.partial import PartialProfile
from infertrail.drift.profile import DEFAULT_SAMPLE_SIZE, Profile, category_key
from infertrail.drift.reference_files import (
    BATCH_ROWS,
    DEFAULT_NA_VALUES,
    Column,
    ReferenceInputError,
    ReferenceTable,
    SourceType,
    first_repeat,
    open_table,
)
from infertrail.drift.reference_model import (
    ModelCodeError,
    ReferencePredictions,
    file_sha256,
    import_path,
    model_columns,
    parse_sha256,
    reference_predictions,
    resolve_model,
)

__all__ = [
    "BATCH_ROWS",
    "DEFAULT_NA_VALUES",
    "INT_CATEGORICAL_MAX_UNIQUE",
    "STRING_MAX_CATEGORIES",
    "Column",
    "Feature",
    "FeatureSpec",
    "FeatureType",
    "ModelCodeError",
    "PredictionsProfiled",
    "ReferenceBuild",
    "ReferenceInputError",
    "ReferencePredictions",
    "ReferenceTable",
    "build_reference",
    "file_sha256",
    "import_path",
    "infer_type",
    "load_schema",
    "open_table",
    "parse_column_specs",
    "parse_schema",
    "parse_sha256",
    "reference_predictions",
    "resolve_model",
]

FeatureType = Literal["numeric", "categorical"]

#: An integer column with at most this many distinct values is inferred categorical (codes,
#: small counts); with more, numeric.
INT_CATEGORICAL_MAX_UNIQUE = 20
#: A string column with more distinct values than this is not inferred at all: it is an
#: identifier or free text, and profiling it as categories would store every value.
STRING_MAX_CATEGORIES = 1000

_TYPE_NAMES: dict[str, FeatureType] = {
    "numeric": "numeric",
    "numerical": "numeric",
    "categorical": "categorical",
}


# -- feature specs: schema file and --columns -------------------------------------------------
@dataclass(frozen=True)
class FeatureSpec:
    """A column chosen as a feature; ``type`` None means inferred from the data."""

    name: str
    type: FeatureType | None = None


def _feature_type(value: Any, where: str) -> FeatureType:
    found = _TYPE_NAMES.get(value) if isinstance(value, str) else None
    if found is None:
        raise ReferenceInputError(f"{where}: type {value!r} is not numeric or categorical")
    return found


def _no_duplicates(specs: Sequence[FeatureSpec], where: str) -> list[FeatureSpec]:
    twice = first_repeat([s.name for s in specs])
    if twice is not None:
        raise ReferenceInputError(f"{where} names column {twice!r} twice")
    return list(specs)


def parse_schema(text: str, source: str = "schema") -> list[FeatureSpec]:
    """The features of a schema document: ``{"features": [{"name": ..., "type": ...}, ...]}``.

    Every feature needs both keys (a schema fixes the types; use ``--columns`` to let some be
    inferred); unknown keys are refused so that a misspelt one is not silently ignored.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReferenceInputError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"features"}:
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise ReferenceInputError(
            f'{source} must be an object with the one key "features", found {found}'
        )
    entries = doc["features"]
    if not isinstance(entries, list) or not entries:
        raise ReferenceInputError(f'{source}: "features" must be a non-empty list')
    specs = []
    for i, entry in enumerate(entries):
        where = f"{source}: features[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "type"}:
            found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ReferenceInputError(
                f'{where} must be an object with the keys "name" and "type", found {found}'
            )
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise ReferenceInputError(f"{where}: name must be a non-empty string, got {name!r}")
        specs.append(FeatureSpec(name, _feature_type(entry["type"], f"{where} ({name!r})")))
    return _no_duplicates(specs, source)


def load_schema(path: Path) -> list[FeatureSpec]:
    """The features of the schema file at ``path`` (see :func:`parse_schema`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReferenceInputError(f"schema file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceInputError(f"schema file {path} cannot be read: {exc}") from None
    return parse_schema(text, f"schema file {path}")


def parse_column_specs(value: str) -> list[FeatureSpec]:
    """``"age,income:numeric,plan:categorical"``: names, each optionally with its type."""
    specs = []
    for item in value.split(","):
        name, sep, kind = item.strip().rpartition(":")
        if not sep:
            name, kind = kind, ""
        if not name:
            raise ReferenceInputError(
                f"columns {value!r}: expected NAME or NAME:TYPE separated by commas, got {item!r}"
            )
        where = f"columns {value!r}, {name!r}"
        specs.append(FeatureSpec(name, _feature_type(kind, where) if sep else None))
    return _no_duplicates(specs, f"columns {value!r}")


# -- column types -----------------------------------------------------------------------------


def infer_type(column: Column) -> tuple[FeatureType, str]:
    """The feature type of an undeclared column, and why (shown to the user).

    Floats are numeric; booleans and strings categorical; integers categorical when they take
    at most :data:`INT_CATEGORICAL_MAX_UNIQUE` distinct values, else numeric. A string column
    with more than :data:`STRING_MAX_CATEGORIES` distinct values is refused.
    """
    needs_count = column.source_type in ("integer", "string")
    return _inferred(column.name, column.source_type, column.n_distinct() if needs_count else 0)


def _inferred(
    name: str, kind: SourceType, k: int, *, at_least: bool = False
) -> tuple[FeatureType, str]:
    """:func:`infer_type` from the source type and the number of distinct values ``k``
    (``at_least``: counting stopped at ``k``, beyond :data:`STRING_MAX_CATEGORIES`)."""
    if kind == "float":
        return "numeric", "float column"
    if kind == "boolean":
        return "categorical", "boolean column"
    many = f"more than {STRING_MAX_CATEGORIES}" if at_least else str(k)
    if kind == "integer":
        limit = INT_CATEGORICAL_MAX_UNIQUE
        if k <= limit:
            return "categorical", f"integer column, {k} distinct values <= {limit}"
        return "numeric", f"integer column, {many} distinct values > {limit}"
    if k > STRING_MAX_CATEGORIES:
        counted = many if at_least else f"{k} distinct strings (more than {STRING_MAX_CATEGORIES})"
        raise ReferenceInputError(
            f"column {name!r} holds {counted}{' distinct strings' if at_least else ''}: an "
            "identifier or free text rather than categories; exclude it, or declare its type if "
            "it really is a feature"
        )
    return "categorical", f"string column, {k} distinct values"


def _numeric_values(column: Column, first_row: int = 0) -> NDArray[np.float64]:
    """The column as float64 with NaN for missing; a value that is no number is an error
    (naming its row, counted from ``first_row`` + 1 for a batch)."""
    if column.is_number:
        out = column.values.astype(np.float64)
    elif column.source_type == "boolean":
        out = np.array([np.nan if v is None else float(v) for v in column.values])
    else:
        out = np.full(column.values.shape, np.nan)
        for i, v in enumerate(column.values.tolist()):
            if v is None:
                continue
            try:
                out[i] = float(v)
            except ValueError:
                raise ReferenceInputError(
                    f"column {column.name!r} is numeric, but row {first_row + i + 1} holds {v!r}, "
                    "which is "
                    "not a number; declare it categorical or fix the value"
                ) from None
    infinite = np.flatnonzero(np.isinf(out))
    if infinite.size:
        raise ReferenceInputError(
            f"column {column.name!r} holds an infinite value at row {first_row + infinite[0] + 1}; "
            "a reference needs finite numbers (or missing values)"
        )
    return out


def _category_codes(column: Column) -> CategoryCodes:
    """The column as codes into its categories (as :func:`category_key` names them), -1 for
    missing: numbers through one ``np.unique``, other values through one dictionary."""
    if column.is_number:
        present = ~column.missing
        uniq, inverse = np.unique(column.values[present], return_inverse=True)
        codes = np.full(len(column.values), -1, dtype=np.int64)
        codes[present] = inverse
        return CategoryCodes(codes, [category_key(float(u)) for u in uniq])
    if column.encoded is not None:
        codes, distinct = column.encoded
        return CategoryCodes(codes, [category_key(v) for v in distinct])
    index: dict[str, int] = {}
    codes = np.fromiter(
        (-1 if v is None else index.setdefault(category_key(v), len(index)) for v in column.values),
        dtype=np.int64,
        count=len(column.values),
    )
    return CategoryCodes(codes, list(index))


# -- the profile ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """A profiled column: its type, why it has it, and how many of its values are missing."""

    name: str
    type: FeatureType
    reason: str
    n_missing: int


@dataclass(frozen=True)
class PredictionsProfiled:
    """What the model's outputs gave the profile: its classes (None when it has no
    ``classes_``) and whether confidences came from ``predict_proba``."""

    classes: list[str] | None
    confidences: bool


@dataclass(frozen=True)
class ReferenceBuild:
    """A built profile with what was decided on the way (shown by the CLI)."""

    profile: Profile
    features: list[Feature]
    predictions: PredictionsProfiled | None


def _choose(
    table: ReferenceTable,
    specs: Sequence[FeatureSpec] | None,
    target: str | None,
    exclude: Sequence[str],
) -> list[FeatureSpec]:
    if target is not None:
        table.check_columns([target], "target")
    if specs is not None:
        if exclude:
            raise ReferenceInputError(
                "exclusions apply to inferred features; list only the wanted ones instead"
            )
        table.check_columns([s.name for s in specs], "feature")
        if target is not None and target in {s.name for s in specs}:
            raise ReferenceInputError(f"target {target!r} is also listed as a feature")
        return list(specs)
    table.check_columns(exclude, "excluded column")
    left = [FeatureSpec(n) for n in table.names if n != target and n not in exclude]
    if not left:
        raise ReferenceInputError(f"reference file {table.path} has no column left as a feature")
    return left


def build_reference(
    table: ReferenceTable,
    *,
    model_name: str,
    model_sha256: str,
    specs: Sequence[FeatureSpec] | None = None,
    target: str | None = None,
    exclude: Sequence[str] = (),
    model: Any = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ReferenceBuild:
    """The tabular profile of ``table``: features from ``specs`` (None: every column except
    ``target`` and ``exclude``), typed as declared or by :func:`infer_type`, predictions from
    ``model`` (see :func:`resolve_model`) when given.

    A Parquet reference is read ``batch_rows`` rows at a time: each batch becomes a partial
    profile (and gets the model's predictions) and is merged into the others, so memory holds
    one batch and the profile's bounded state. Undeclared integer and string columns are typed
    by one pass over them first (their number of distinct values decides). ``progress`` is
    called with the number of rows of each batch done. The profile equals the one built from
    the whole table at once, but for the sample: a uniform sample of ``sample_size`` rows either
    way, drawn with ``seed``, the same rows when the data is one batch.
    """
    chosen = _choose(table, specs, target, exclude)
    names = [s.name for s in chosen]
    for_model = [] if model is None else model_columns(model, names)
    table.check_columns(for_model, "the model's input column")
    types = _batched_types(table, chosen, batch_rows) if table.batched else None
    rng = np.random.default_rng(seed)
    missing = dict.fromkeys(names, 0)
    merged: PartialProfile | None = None
    outputs: PredictionsProfiled | None = None
    done = 0
    for columns in table.batches(names + for_model, batch_rows):
        if types is None:  # the whole table in one batch: typed from all its values
            _check_not_empty(columns, names, len(columns[names[0]].values))
            types = {s.name: _declared_or_inferred(s, columns[s.name]) for s in chosen}
        batch: dict[str, NDArray[np.float64] | CategoryCodes] = {}
        for name in names:
            col = columns[name]
            missing[name] += int(col.missing.sum())
            numeric = types[name][0] == "numeric"
            batch[name] = _numeric_values(col, done) if numeric else _category_codes(col)
        predictions = None if model is None else reference_predictions(model, columns, names)
        if predictions is not None:
            outputs = PredictionsProfiled(predictions.classes, predictions.confidences is not None)
        part = tabular_partial(
            batch,
            predictions=None if predictions is None else predictions.labels,
            confidences=None if predictions is None else predictions.confidences,
            labels=None if predictions is None else predictions.classes,
            model_name=model_name,
            model_sha256=model_sha256,
            sample_size=sample_size,
            seed=rng,
        )
        merged = part if merged is None else merged.merge(part, rng)
        n = len(columns[names[0]].values)
        done += n
        if progress is not None:
            progress(n)
    assert merged is not None and types is not None  # batches() yields at least one batch
    for name, n_missing in missing.items():
        if n_missing == done:
            raise ReferenceInputError(
                f"column {name!r} has no value: all its {n_missing} rows are missing"
            )
    features = [Feature(n, types[n][0], types[n][1], missing[n]) for n in names]
    return ReferenceBuild(merged.profile(), features, outputs)


def _check_not_empty(columns: Mapping[str, Column], names: Sequence[str], n: int) -> None:
    """Refuse a column without any value before the model sees it (whole tables)."""
    for name in names:
        n_missing = int(columns[name].missing.sum())
        if n_missing == n:
            raise ReferenceInputError(
                f"column {name!r} has no value: all its {n_missing} rows are missing"
            )


def _declared_or_inferred(spec: FeatureSpec, column: Column) -> tuple[FeatureType, str]:
    return (spec.type, "declared") if spec.type is not None else infer_type(column)


def _batched_types(
    table: ReferenceTable, chosen: Sequence[FeatureSpec], batch_rows: int
) -> dict[str, tuple[FeatureType, str]]:
    """Types of the features of a table read in batches: declared, by the source type alone
    (floats, booleans), or, for integer and string columns, by a first pass counting their
    distinct values (up to one more than :data:`STRING_MAX_CATEGORIES`, so memory is bounded)."""
    assert table.source_types is not None  # known up front for a batched (Parquet) table
    source = table.source_types
    types: dict[str, tuple[FeatureType, str]] = {}
    counted: dict[str, set[Any]] = {}
    for spec in chosen:
        kind = source[spec.name]
        if spec.type is not None:
            types[spec.name] = (spec.type, "declared")
        elif kind is None:  # cannot be profiled: reading it says so, naming its type
            table.read([spec.name])
            raise ReferenceInputError(
                f"column {spec.name!r} has a type that cannot be profiled (numbers, booleans "
                "and strings can); leave it out of the features"
            )
        elif kind in ("integer", "string"):
            counted[spec.name] = set()
        else:
            types[spec.name] = _inferred(spec.name, kind, 0)
    if counted:
        cap = STRING_MAX_CATEGORIES + 1
        for columns in table.batches(list(counted), batch_rows):
            for name, col in columns.items():
                seen = counted[name]
                if len(seen) < cap:
                    present = col.values[~col.missing]
                    seen.update(np.unique(present).tolist() if col.is_number else present.tolist())
        for name, seen in counted.items():
            kind = source[name]
            assert kind is not None
            k = min(len(seen), cap)
            types[name] = _inferred(name, kind, k, at_least=len(seen) >= cap)
    return {s.name: types[s.name] for s in chosen}
