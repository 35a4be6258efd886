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

from infertrail.drift.build import CategoryCodes, tabular_partial
from infertrail.drift.partial import PartialProfile
from infertrail.drift.profile import DEFAULT_SAMPLE_SIZE, Profile, category_key

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
#: What a column holds as read: integers and floats are kept as float64 (NaN = missing),
#: booleans and strings as Python objects (None = missing).
SourceType = Literal["integer", "float", "boolean", "string"]

#: An integer column with at most this many distinct values is inferred categorical (codes,
#: small counts); with more, numeric.
INT_CATEGORICAL_MAX_UNIQUE = 20
#: A string column with more distinct values than this is not inferred at all: it is an
#: identifier or free text, and profiling it as categories would store every value.
STRING_MAX_CATEGORIES = 1000
#: Rows of a Parquet reference read at a time: memory holds one batch (and the model's input
#: for it) besides the profile's bounded state, whatever the size of the data.
BATCH_ROWS = 1 << 18
#: CSV fields read as missing besides the empty field (pandas' most common ones).
DEFAULT_NA_VALUES = ("NA", "N/A", "NaN", "nan", "null", "NULL")

_TYPE_NAMES: dict[str, FeatureType] = {
    "numeric": "numeric",
    "numerical": "numeric",
    "categorical": "categorical",
}
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_SUFFIXES = (
    ".parquet, .pq, .csv, .tsv (either optionally .gz), .npy, .npz, or a directory of Parquet files"
)
_PARQUET_SUFFIXES = (".parquet", ".pq")
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
    """One column of a reference file, as read (see :data:`SourceType` for ``values``).

    ``encoded``: for booleans and strings read through pyarrow, its dictionary encoding (codes,
    -1 for missing, and the distinct values), so that profiling them as categories needs no
    Python per value.
    """

    name: str
    source_type: SourceType
    values: NDArray[Any]
    encoded: tuple[NDArray[np.int64], list[Any]] | None = None

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


# -- reading files ----------------------------------------------------------------------------
BatchReader = Callable[[list[str], int], Iterator[list[Column]]]


class ReferenceTable:
    """A reference file's column names; :meth:`read` converts the columns asked for, and
    :meth:`batches` reads them a batch of rows at a time.

    Parquet data is read in batches (``n_rows`` and ``source_types`` are known from the files'
    footers before any row is read); the other formats are read whole, as one batch.
    """

    def __init__(
        self,
        path: Path,
        names: list[str],
        reader: Callable[[list[str]], list[Column]],
        *,
        batch_reader: BatchReader | None = None,
        n_rows: int | None = None,
        source_types: Mapping[str, SourceType | None] | None = None,
    ) -> None:
        self.path = path
        self.names = names
        self._reader = reader
        self._batch_reader = batch_reader
        self.n_rows = n_rows
        self.source_types = source_types

    @property
    def batched(self) -> bool:
        """True when :meth:`batches` reads the data in several batches (Parquet)."""
        return self._batch_reader is not None

    def batches(
        self, names: Sequence[str], batch_rows: int = BATCH_ROWS
    ) -> Iterator[dict[str, Column]]:
        """The columns ``names`` for consecutive batches of at most ``batch_rows`` rows."""
        if self._batch_reader is None:
            yield self.read(names)
            return
        self.check_columns(names, "requested column")
        empty = True
        for columns in self._batch_reader(list(dict.fromkeys(names)), batch_rows):
            if len(columns[0].values):
                empty = False
                yield {c.name: c for c in columns}
        if empty:
            raise ReferenceInputError(f"reference {self.path} has no rows")

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
    """The reference file at ``path``, by its extension, or the Parquet files of the directory
    ``path``; ``na_values`` are CSV/TSV only.

    Missing values: Parquet nulls, NaN in float columns, and in CSV/TSV empty fields and
    ``na_values`` (default :data:`DEFAULT_NA_VALUES`), compared after stripping whitespace.
    """
    path = Path(path)
    other_format = path.name.lower().endswith((".csv", ".tsv", ".gz", ".npy", ".npz"))
    if path.is_dir() and not other_format:  # Spark and others write foo.parquet/ directories
        if na_values is not None:
            raise ReferenceInputError(
                "missing-value tokens apply to CSV/TSV files only, not to the Parquet files "
                f"of {path}"
            )
        return _parquet_table(path)
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


def _source_type(arrow_type: Any) -> SourceType | None:
    """What a Parquet column of ``arrow_type`` holds; None when it cannot be profiled."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_integer(t) or pa.types.is_null(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None


def _from_arrow(name: str, array: Any, as_type: SourceType | None = None) -> Column:
    """A Column from a pyarrow (chunked) array of a Parquet file's column; ``as_type`` is the
    type other files give the column (a column of nulls only takes it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_dictionary(t):
        array, t = pc.cast(array, t.value_type), t.value_type
    kind = _source_type(t)
    if kind is None:
        raise ReferenceInputError(
            f"column {name!r} has type {t}, which cannot be profiled (numbers, booleans and "
            "strings can); leave it out of the features"
        )
    if pa.types.is_null(t) and as_type is not None:
        kind = as_type
    if kind in ("integer", "float"):
        return Column(name, kind, _arrow_floats(array))
    return _arrow_objects(name, kind, array)


def _arrow_objects(name: str, kind: SourceType, array: Any) -> Column:
    """A boolean or string Column of a pyarrow array, with its dictionary encoding."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_null(array.type):  # nothing but nulls: no category
        return Column(name, kind, _objects([None] * len(array)), (np.full(len(array), -1), []))
    encoded = pc.dictionary_encode(array)  # nulls stay out of the dictionary
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return Column(name, kind, _objects(array.to_pylist()), (codes, encoded.dictionary.to_pylist()))


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


def _parquet_files(path: Path) -> list[Path]:
    """``path`` itself, or the Parquet files under the directory ``path`` in name order
    (hidden ones and those starting with ``_``, such as ``_SUCCESS``, left out)."""
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(_PARQUET_SUFFIXES)
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise ReferenceInputError(f"reference directory {path} holds no .parquet or .pq file")
    return files


def _parquet_table(path: Path) -> ReferenceTable:
    """A Parquet file, or a directory of Parquet files with the same columns, read in batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _parquet_files(path)
    n_rows = 0
    names: list[str] = []
    kinds: dict[str, str | None] = {}  # "null": only nulls so far, None: cannot be profiled
    for f in files:
        try:
            meta = pq.read_metadata(f)
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise ReferenceInputError(
                f"reference file {f} is not readable Parquet: {exc}"
            ) from None
        n_rows += meta.num_rows
        found = _unique(list(schema.names), f)
        if not names:
            names = found
        elif found != names:
            raise ReferenceInputError(
                f"reference file {f} has the columns {_names(found)}, but {files[0]} has "
                f"{_names(names)}: the files of a reference directory need the same columns"
            )
        for n in names:
            t = schema.field(n).type
            kind = "null" if pa.types.is_null(t) else _source_type(t)
            known = kinds.get(n, "null")
            if known == "null":
                kinds[n] = kind
            elif kind not in ("null", known):
                raise ReferenceInputError(
                    f"column {n!r} holds {kind or t} values in {f}, but {known} values in an "
                    "earlier file: the files of a reference directory need the same column types"
                )
    # a column of nulls only in every file is read as integers, as pyarrow's null type is
    types = {n: cast(SourceType | None, "integer" if k == "null" else k) for n, k in kinds.items()}

    def read_batches(wanted: list[str], batch_rows: int) -> Iterator[list[Column]]:
        for f in files:
            try:
                reader = pq.ParquetFile(f)
                for batch in reader.iter_batches(batch_size=batch_rows, columns=wanted):
                    yield [_from_arrow(n, batch.column(n), types[n]) for n in wanted]
            except (pa.ArrowException, OSError) as exc:
                raise ReferenceInputError(f"reference file {f}: {exc}") from None

    def read(wanted: list[str]) -> list[Column]:
        parts = list(read_batches(wanted, BATCH_ROWS))
        if not parts:
            return [Column(n, types[n] or "integer", np.empty(0)) for n in wanted]
        return [
            Column(n, parts[0][j].source_type, np.concatenate([p[j].values for p in parts]))
            for j, n in enumerate(wanted)
        ]

    return ReferenceTable(
        path, names, read, batch_reader=read_batches, n_rows=n_rows, source_types=types
    )


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
        return _arrow_objects(name, "boolean", pc.equal(lowered, "true"))
    return _arrow_objects(name, "string", text)


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
    for_model = [] if model is None else _model_columns(model, names)
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
