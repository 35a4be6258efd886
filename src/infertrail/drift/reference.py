"""Reference data of a user's own model: its training table, feature types and predictions.

What ``infertrail drift baseline --name ...`` needs, as plain functions the CLI only wires:

- :func:`load_schema` and :func:`parse_column_specs`: which columns are features and of which
  type (``numeric`` or ``categorical``), from a JSON schema file or ``age,plan:categorical``;
- :func:`open_table`: a Parquet, CSV/TSV (optionally gzipped) or NumPy file as named, typed
  :class:`Column` values, without pandas (pyarrow and numpy, imported when a file is read);
- :func:`infer_type`: the type of a column nobody declared (the rule is in docs/drift.md);
- :func:`resolve_model`: ``module:function`` imported and called for the fitted model;
- :func:`build_reference`: features chosen and typed, reference predictions computed, the
  tabular :class:`~infertrail.drift.profile.Profile` built.

Two kinds of failure, so the CLI can tell usage (exit 2) from runtime (exit 1):
:class:`ReferenceInputError` for what the user pointed at (a file, a schema, a column name, a
value in a column, a ``module:function`` that does not exist), :class:`ModelCodeError` when the
user's own code fails or returns something unusable.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import json
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.build import build_tabular_profile
from infertrail.drift.profile import DEFAULT_SAMPLE_SIZE, Profile, category_key

__all__ = [
    "DEFAULT_NA_VALUES",
    "INT_CATEGORICAL_MAX_UNIQUE",
    "STRING_MAX_CATEGORIES",
    "Column",
    "Feature",
    "FeatureSpec",
    "FeatureType",
    "ModelCodeError",
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
#: What a column holds as read: integers and floats are kept as float64 (NaN = missing),
#: booleans and strings as Python objects (None = missing).
SourceType = Literal["integer", "float", "boolean", "string"]

#: An integer column with at most this many distinct values is inferred categorical (codes,
#: small counts); with more, numeric.
INT_CATEGORICAL_MAX_UNIQUE = 20
#: A string column with more distinct values than this is not inferred at all: it is an
#: identifier or free text, and profiling it as categories would store every value.
STRING_MAX_CATEGORIES = 1000
#: CSV fields read as missing besides the empty field (pandas' most common ones).
DEFAULT_NA_VALUES = ("NA", "N/A", "NaN", "nan", "null", "NULL")

_TYPE_NAMES: dict[str, FeatureType] = {
    "numeric": "numeric",
    "numerical": "numeric",
    "categorical": "categorical",
}
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_SUFFIXES = ".parquet, .pq, .csv, .tsv (either optionally .gz), .npy, .npz"
_SHOWN_NAMES = 20


class ReferenceInputError(ValueError):
    """A reference file, schema, column choice or ``module:function`` that cannot be used."""


class ModelCodeError(RuntimeError):
    """The user's model code failed, or returned something that cannot give predictions."""


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return f"{shown}, ... ({more} more)" if more > 0 else shown


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


def _first_repeat(names: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _no_duplicates(specs: Sequence[FeatureSpec], where: str) -> list[FeatureSpec]:
    twice = _first_repeat([s.name for s in specs])
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


# -- columns ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One column of a reference file, as read (see :data:`SourceType` for ``values``)."""

    name: str
    source_type: SourceType
    values: NDArray[Any]

    @property
    def is_number(self) -> bool:
        return self.source_type in ("integer", "float")

    @functools.cached_property
    def missing(self) -> NDArray[np.bool_]:
        """True where the value is missing."""
        if self.is_number:
            return np.asarray(np.isnan(self.values), dtype=bool)
        return np.array([v is None for v in self.values.tolist()], dtype=bool)

    def n_distinct(self) -> int:
        """The number of distinct non-missing values."""
        present = self.values[~self.missing]
        return int(np.unique(present).size) if self.is_number else len(set(present.tolist()))


def infer_type(column: Column) -> tuple[FeatureType, str]:
    """The feature type of an undeclared column, and why (shown to the user).

    Floats are numeric; booleans and strings categorical; integers categorical when they take
    at most :data:`INT_CATEGORICAL_MAX_UNIQUE` distinct values, else numeric. A string column
    with more than :data:`STRING_MAX_CATEGORIES` distinct values is refused.
    """
    kind = column.source_type
    if kind == "float":
        return "numeric", "float column"
    if kind == "boolean":
        return "categorical", "boolean column"
    k = column.n_distinct()
    if kind == "integer":
        limit = INT_CATEGORICAL_MAX_UNIQUE
        if k <= limit:
            return "categorical", f"integer column, {k} distinct values <= {limit}"
        return "numeric", f"integer column, {k} distinct values > {limit}"
    if k > STRING_MAX_CATEGORIES:
        raise ReferenceInputError(
            f"column {column.name!r} holds {k} distinct strings (more than "
            f"{STRING_MAX_CATEGORIES}): an identifier or free text rather than categories; "
            "exclude it, or declare its type if it really is a feature"
        )
    return "categorical", f"string column, {k} distinct values"


def _numeric_values(column: Column) -> NDArray[np.float64]:
    """The column as float64 with NaN for missing; a value that is no number is an error."""
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
                    f"column {column.name!r} is numeric, but row {i + 1} holds {v!r}, which is "
                    "not a number; declare it categorical or fix the value"
                ) from None
    infinite = np.flatnonzero(np.isinf(out))
    if infinite.size:
        raise ReferenceInputError(
            f"column {column.name!r} holds an infinite value at row {infinite[0] + 1}; "
            "a reference needs finite numbers (or missing values)"
        )
    return out


def _categorical_values(column: Column) -> NDArray[Any]:
    """The column as objects with None for missing (numbers keep category_key's form)."""
    out = column.values.astype(object)
    out[column.missing] = None
    return out


# -- reading files ----------------------------------------------------------------------------
class ReferenceTable:
    """A reference file's column names; :meth:`read` converts the columns asked for."""

    def __init__(
        self, path: Path, names: list[str], reader: Callable[[list[str]], list[Column]]
    ) -> None:
        self.path = path
        self.names = names
        self._reader = reader

    def check_columns(self, names: Sequence[str], what: str) -> None:
        """Raise naming ``what`` if a name in ``names`` is not a column of the file."""
        absent = [n for n in names if n not in self.names]
        if absent:
            one = len(absent) == 1
            raise ReferenceInputError(
                f"{what}{'' if one else 's'} {_names(absent)} "
                f"{'is not a column' if one else 'are not columns'} of {self.path} "
                f"(its columns: {_names(self.names)})"
            )

    def read(self, names: Sequence[str]) -> dict[str, Column]:
        """The columns ``names`` (in that order), all of the same, non-zero number of rows."""
        self.check_columns(names, "requested column")
        columns = self._reader(list(dict.fromkeys(names)))
        if not columns or len(columns[0].values) == 0:
            raise ReferenceInputError(f"reference file {self.path} has no rows")
        return {c.name: c for c in columns}


def _table_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".parquet", ".pq", ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".npy", ".npz"):
        if name.endswith(suffix):
            return suffix.removesuffix(".gz")
    raise ReferenceInputError(
        f"reference file {path}: unknown extension {''.join(path.suffixes) or '(none)'!r}; "
        f"use one of {_SUFFIXES}"
    )


def open_table(path: Path, *, na_values: Sequence[str] | None = None) -> ReferenceTable:
    """The reference file at ``path``, by its extension; ``na_values`` are CSV/TSV only.

    Missing values: Parquet nulls, NaN in float columns, and in CSV/TSV empty fields and
    ``na_values`` (default :data:`DEFAULT_NA_VALUES`), compared after stripping whitespace.
    """
    path = Path(path)
    fmt = _table_format(path)
    if not path.exists():
        raise ReferenceInputError(f"reference file {path} does not exist")
    if not path.is_file():
        raise ReferenceInputError(f"reference file {path} is not a file")
    if na_values is not None and fmt not in _CSV_DELIMITERS:
        raise ReferenceInputError(
            f"missing-value tokens apply to CSV/TSV files only, not to {path.name}"
        )
    if fmt in (".parquet", ".pq"):
        return _parquet_table(path)
    if fmt in _CSV_DELIMITERS:
        na = DEFAULT_NA_VALUES if na_values is None else tuple(na_values)
        return _csv_table(path, _CSV_DELIMITERS[fmt], na)
    return _numpy_table(path)


def _from_arrow(name: str, array: Any) -> Column:
    """A Column from a pyarrow (chunked) array of a Parquet file's column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_dictionary(t):
        array, t = pc.cast(array, t.value_type), t.value_type
    if pa.types.is_integer(t) or pa.types.is_null(t):
        return Column(name, "integer", _arrow_floats(array))
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return Column(name, "float", _arrow_floats(array))
    if pa.types.is_boolean(t):
        return Column(name, "boolean", _objects(array.to_pylist()))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return Column(name, "string", _objects(array.to_pylist()))
    raise ReferenceInputError(
        f"column {name!r} has type {t}, which cannot be profiled (numbers, booleans and "
        "strings can); leave it out of the features"
    )


def _arrow_floats(array: Any) -> NDArray[np.float64]:
    import pyarrow as pa
    import pyarrow.compute as pc

    # Nulls become NaN: the profile's missing value for numbers.
    floats = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(floats, dtype=np.float64)


def _objects(values: list[Any]) -> NDArray[Any]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _parquet_table(path: Path) -> ReferenceTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise ReferenceInputError(f"reference file {path} is not readable Parquet: {exc}") from None

    def read(wanted: list[str]) -> list[Column]:
        try:
            table = pq.read_table(path, columns=wanted)
        except (pa.ArrowException, OSError) as exc:
            raise ReferenceInputError(f"reference file {path}: {exc}") from None
        return [_from_arrow(n, table.column(n)) for n in wanted]

    return ReferenceTable(path, _unique(names, path), read)


def _unique(names: list[str], path: Path) -> list[str]:
    twice = _first_repeat(names)
    if twice is not None:
        raise ReferenceInputError(f"reference file {path} has two columns named {twice!r}")
    return names


def _csv_table(path: Path, delimiter: str, na_values: tuple[str, ...]) -> ReferenceTable:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # Quoted fields may hold newlines (anything the csv module writes reads back).
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    try:
        with pcsv.open_csv(path, parse_options=parse) as reader:
            names = list(reader.schema.names)
    except (pa.ArrowException, OSError) as exc:
        if "Empty CSV file" in str(exc):
            raise ReferenceInputError(f"reference file {path} is empty (no header)") from None
        raise ReferenceInputError(f"reference file {path} is not valid CSV: {exc}") from None
    names = _unique(names, path)

    def read(wanted: list[str]) -> list[Column]:
        # Every field is read as text and typed here, column by column over the whole file:
        # pyarrow's own inference looks at the first block only and fails on a later one.
        convert = pcsv.ConvertOptions(
            column_types={n: pa.string() for n in wanted},
            include_columns=wanted,
            strings_can_be_null=False,
        )
        try:
            table = pcsv.read_csv(path, parse_options=parse, convert_options=convert)
        except (pa.ArrowException, OSError) as exc:
            raise ReferenceInputError(f"reference file {path} is not valid CSV: {exc}") from None
        return [_sniff(n, table.column(n), na_values) for n in wanted]

    return ReferenceTable(path, names, read)


def _sniff(name: str, text: Any, na_values: tuple[str, ...]) -> Column:
    """A CSV column typed by its values: integers, else floats, else true/false, else strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(text)
    missing = pc.is_in(text, value_set=pa.array(["", *na_values], pa.string()))
    text = pc.if_else(missing, pa.scalar(None, pa.string()), text)
    typed: tuple[tuple[SourceType, Any], ...] = (("integer", pa.int64()), ("float", pa.float64()))
    for source_type, target in typed:
        try:
            numbers = pc.cast(text, target)
        except pa.ArrowInvalid:
            continue
        return Column(name, source_type, _arrow_floats(numbers))
    lowered = pc.utf8_lower(text)
    if pc.all(pc.is_in(lowered.drop_null(), value_set=pa.array(["true", "false"]))).as_py():
        return Column(name, "boolean", _objects(pc.equal(lowered, "true").to_pylist()))
    return Column(name, "string", _objects(text.to_pylist()))


def _numpy_table(path: Path) -> ReferenceTable:
    """A .npy array (called ``x``) or every array of a .npz, as columns.

    A 1-D array ``K`` is the column ``K``, a 2-D array ``K`` the columns ``K0``, ``K1``, ...,
    and a structured array gives one column per field.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"x": loaded}
        else:
            with loaded:
                arrays = {key: loaded[key] for key in loaded.files}
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise ReferenceInputError(
                f"reference file {path} holds Python objects, which are not loaded (that would "
                "unpickle them); save strings as a fixed-width str array (dtype 'U')"
            ) from None
        # numpy falls back to unpickling a file without the .npy header; that is refused too
        raise ReferenceInputError(f"reference file {path} is not a NumPy file") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ReferenceInputError(f"reference file {path} is not a NumPy file: {exc}") from None
    columns: dict[str, NDArray[Any]] = {}
    for key, array in arrays.items():
        if array.dtype.names:
            parts = {f: array[f] for f in array.dtype.names}
        elif array.ndim == 1:
            parts = {key: array}
        elif array.ndim == 2:
            parts = {f"{key}{j}": array[:, j] for j in range(array.shape[1])}
        else:
            raise ReferenceInputError(
                f"reference file {path}: array {key!r} has shape {array.shape}; "
                "columns come from 1-D or 2-D arrays"
            )
        for name, values in parts.items():
            if values.ndim != 1:
                raise ReferenceInputError(
                    f"reference file {path}: column {name!r} has shape {values.shape}, not 1-D"
                )
            if name in columns:
                raise ReferenceInputError(f"reference file {path} has two columns named {name!r}")
            columns[name] = values
    lengths = {name: len(v) for name, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ReferenceInputError(
            f"reference file {path}: its arrays differ in length ({lengths}); every column "
            "needs one value per row"
        )

    def read(wanted: list[str]) -> list[Column]:
        return [_from_numpy(path, n, columns[n]) for n in wanted]

    return ReferenceTable(path, list(columns), read)


def _from_numpy(path: Path, name: str, values: NDArray[Any]) -> Column:
    kind = values.dtype.kind
    if kind == "f":
        return Column(name, "float", values.astype(np.float64))
    if kind in "iu":
        return Column(name, "integer", values.astype(np.float64))
    if kind == "b":
        return Column(name, "boolean", _objects(values.tolist()))
    if kind == "U":
        return Column(name, "string", _objects(values.tolist()))
    if kind == "S":
        try:
            return Column(name, "string", _objects([v.decode() for v in values.tolist()]))
        except UnicodeDecodeError:
            raise ReferenceInputError(
                f"reference file {path}: column {name!r} holds bytes that are not UTF-8 text"
            ) from None
    raise ReferenceInputError(
        f"reference file {path}: column {name!r} has dtype {values.dtype}, which cannot be "
        "profiled (numbers, booleans and strings can); leave it out of the features"
    )


# -- the model --------------------------------------------------------------------------------
@contextlib.contextmanager
def import_path(directory: Path) -> Iterator[None]:
    """Make modules in ``directory`` importable while the model is loaded and predicts."""
    entry = str(Path(directory).resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    importlib.invalidate_caches()  # the directory's files may be newer than the finders' caches
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):  # the user's code may have removed it
                sys.path.remove(entry)


def _resolve_factory(spec: str) -> Callable[[], Any]:
    module_name, sep, attr_path = spec.partition(":")
    parts = attr_path.split(".")
    if not sep or not all(p.isidentifier() for p in [*module_name.split("."), *parts]):
        raise ReferenceInputError(
            f"model {spec!r} is not MODULE:FUNCTION (for example mypkg.models:load_model)"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ReferenceInputError(
                f"model {spec!r}: no module named {exc.name!r} (not installed, and not in the "
                "import directory)"
            ) from None
        raise ModelCodeError(f"model {spec!r}: importing {module_name} failed: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise ModelCodeError(
            f"model {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    for i, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = ".".join([module_name, *parts[:i]])
            raise ReferenceInputError(
                f"model {spec!r}: {owner} has no attribute {part!r}"
            ) from None
    if not callable(obj):
        raise ReferenceInputError(
            f"model {spec!r} is a {type(obj).__name__}, not a function; point at a function "
            "that returns the fitted model"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise ReferenceInputError(
            f"model {spec!r} needs arguments; it must be callable without any"
        ) from None
    except ValueError:
        pass  # no signature to check (some builtins): calling it will tell
    return cast(Callable[[], Any], obj)


def resolve_model(spec: str) -> Any:
    """Import ``module:function`` (dots allowed in both), call it, check it can predict."""
    factory = _resolve_factory(spec)
    try:
        model = factory()
    except (Exception, SystemExit) as exc:
        raise ModelCodeError(f"model {spec!r} failed: {type(exc).__name__}: {exc}") from None
    if not any(callable(getattr(model, m, None)) for m in ("predict_proba", "predict")):
        raise ModelCodeError(
            f"model {spec!r} returned a {type(model).__name__}, which has neither "
            "predict_proba nor predict"
        )
    return model


def _model_columns(model: Any, features: Sequence[str]) -> list[str]:
    """The columns the model is given: those it was fitted on by name, else the features."""
    fitted = getattr(model, "feature_names_in_", None)
    return list(features) if fitted is None else [str(n) for n in fitted]


def _model_input(model: Any, columns: Mapping[str, Column], features: Sequence[str]) -> Any:
    """The reference rows as the model takes them: named columns if it was fitted on a table.

    Values are those of the file (a declared type changes the profile, not what the model
    sees); missing values are NaN (or null in a pyarrow table).
    """
    names = _model_columns(model, features)
    if getattr(model, "feature_names_in_", None) is not None:
        return _named_input([columns[n] for n in names])
    expected = getattr(model, "n_features_in_", None)
    if isinstance(expected, int) and expected != len(names):
        raise ReferenceInputError(
            f"the model was fitted on {expected} features, the profile has {len(names)} "
            f"({_names(names)}); it gets the features in this order, so choose them to match"
        )
    cols = [columns[n] for n in names]
    if all(c.is_number for c in cols):
        return np.column_stack([c.values for c in cols])
    return np.column_stack([_with_nan(c) for c in cols])


def _with_nan(column: Column) -> NDArray[Any]:
    out = column.values.astype(object)
    out[column.missing] = np.nan  # what pandas-trained pipelines take as missing
    return out


def _named_input(cols: Sequence[Column]) -> Any:
    """A pandas DataFrame when pandas is installed (a model fitted by column name most likely
    saw one), else a pyarrow Table; integer columns without missing values stay integers."""
    data: dict[str, NDArray[Any]] = {}
    for c in cols:
        if c.source_type == "integer" and not c.missing.any():
            data[c.name] = c.values.astype(np.int64)
        else:
            data[c.name] = c.values if c.is_number else _with_nan(c)
    try:
        import pandas as pd
    except ImportError:
        import pyarrow as pa

        # from_pandas: NaN in an object column is a null, as pandas has it
        return pa.table({name: pa.array(v, from_pandas=True) for name, v in data.items()})
    return pd.DataFrame(data)


@dataclass(frozen=True)
class ReferencePredictions:
    """The model's labels and confidences on the reference rows."""

    labels: list[str]
    classes: list[str] | None
    confidences: NDArray[np.float64] | None


def _call(model: Any, method: str, X: Any) -> Any:
    try:
        return getattr(model, method)(X)
    except (Exception, SystemExit) as exc:
        raise ModelCodeError(
            f"{type(model).__name__}.{method} failed on the reference rows: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def reference_predictions(
    model: Any, columns: Mapping[str, Column], features: Sequence[str]
) -> ReferencePredictions:
    """Labels (``predict``, else the most probable class) and confidences (the highest
    ``predict_proba``) of the reference rows; a regressor's continuous outputs are refused."""
    X = _model_input(model, columns, features)
    n = len(columns[features[0]].values)
    raw_classes = getattr(model, "classes_", None)
    classes = None
    if raw_classes is not None and np.ndim(raw_classes) == 1:
        classes = [category_key(c) for c in np.asarray(raw_classes).tolist()]
    name = type(model).__name__
    confidences = proba = None
    if callable(getattr(model, "predict_proba", None)):
        try:
            proba = np.asarray(_call(model, "predict_proba", X), dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelCodeError(f"{name}.predict_proba did not return numbers") from None
        if proba.ndim != 2 or proba.shape[0] != n or proba.shape[1] == 0:
            raise ModelCodeError(
                f"{name}.predict_proba returned shape {proba.shape}, expected ({n}, classes)"
            )
        if not np.all(np.isfinite(proba)) or proba.min() < 0 or proba.max() > 1 + 1e-9:
            raise ModelCodeError(f"{name}.predict_proba returned values outside [0, 1]")
        if classes is not None and len(classes) != proba.shape[1]:
            raise ModelCodeError(
                f"{name}.predict_proba gives {proba.shape[1]} columns for {len(classes)} classes_"
            )
        confidences = np.minimum(proba.max(axis=1), 1.0)
    if callable(getattr(model, "predict", None)):
        raw = np.asarray(_call(model, "predict", X))
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.shape != (n,):
            raise ModelCodeError(
                f"{name}.predict returned shape {raw.shape}, expected one label per row ({n},)"
            )
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw) & (raw == np.round(raw))):
            raise ModelCodeError(
                f"{name}.predict returned continuous values (a regressor?); prediction drift "
                "is profiled for class labels only: leave the model out"
            )
        labels = [category_key(v) for v in raw.tolist()]
    else:
        assert proba is not None  # resolve_model checked that one of the two exists
        order = classes if classes is not None else [str(i) for i in range(proba.shape[1])]
        classes = order
        labels = [order[i] for i in proba.argmax(axis=1).tolist()]
    if classes is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ModelCodeError(
                f"{name}.predict returned labels that are not among its classes_ "
                f"{classes[:_SHOWN_NAMES]}: {unknown[:5]}"
            )
    return ReferencePredictions(labels, classes, confidences)


# -- identity ---------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path`` (the model artifact), streamed."""
    h = hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise ReferenceInputError(f"model artifact {path} cannot be read: {exc}") from None
    return h.hexdigest()


def parse_sha256(value: str) -> str:
    """``value`` as a lower-case hex SHA-256 (64 hex digits)."""
    digest = value.strip().lower()
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise ReferenceInputError(f"sha256 {value!r} is not 64 hexadecimal digits")
    return digest


# -- the profile ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """A profiled column: its type, why it has it, and how many of its values are missing."""

    name: str
    type: FeatureType
    reason: str
    n_missing: int


@dataclass(frozen=True)
class ReferenceBuild:
    """A built profile with what was decided on the way (shown by the CLI)."""

    profile: Profile
    features: list[Feature]
    predictions: ReferencePredictions | None


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
) -> ReferenceBuild:
    """The tabular profile of ``table``: features from ``specs`` (None: every column except
    ``target`` and ``exclude``), typed as declared or by :func:`infer_type`, predictions from
    ``model`` (see :func:`resolve_model`) when given.
    """
    chosen = _choose(table, specs, target, exclude)
    names = [s.name for s in chosen]
    for_model = [] if model is None else _model_columns(model, names)
    table.check_columns(for_model, "the model's input column")
    columns = table.read(names + for_model)
    features: list[Feature] = []
    values: list[NDArray[Any]] = []
    for spec in chosen:
        col = columns[spec.name]
        n_missing = int(col.missing.sum())
        if n_missing == len(col.values):
            raise ReferenceInputError(
                f"column {spec.name!r} has no value: all its {n_missing} rows are missing"
            )
        kind, why = (spec.type, "declared") if spec.type is not None else infer_type(col)
        values.append(_numeric_values(col) if kind == "numeric" else _categorical_values(col))
        features.append(Feature(spec.name, kind, why, n_missing))
    categorical = [f.name for f in features if f.type == "categorical"]
    # the builder takes an all-numeric table as float64 as it is; with categories, objects
    X = np.column_stack(values).astype(object if categorical else np.float64)
    predictions = None if model is None else reference_predictions(model, columns, names)
    profile = build_tabular_profile(
        X,
        names,
        categorical=categorical,
        predictions=None if predictions is None else predictions.labels,
        confidences=None if predictions is None else predictions.confidences,
        labels=None if predictions is None else predictions.classes,
        model_name=model_name,
        model_sha256=model_sha256,
        sample_size=sample_size,
        seed=seed,
    )
    return ReferenceBuild(profile, features, predictions)
