"""Reference files as typed columns: Parquet (a file or a directory, read in batches), CSV/TSV
and NumPy, without pandas (pyarrow and numpy, imported when a file is read).

:func:`open_table` gives a :class:`ReferenceTable`: the file's column names, and the columns
asked for as :class:`Column` values, whole (:meth:`ReferenceTable.read`) or a batch of rows at a
time (:meth:`ReferenceTable.batches`, Parquet). What the user pointed at and cannot be read is a
:class:`ReferenceInputError` naming the file and the problem. :mod:`infertrail.drift.reference`
builds profiles from these columns.
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BATCH_ROWS",
    "DEFAULT_NA_VALUES",
    "Column",
    "ReferenceInputError",
    "ReferenceTable",
    "SourceType",
    "open_table",
]

#: What a column holds as read: integers and floats are kept as float64 (NaN = missing),
#: booleans and strings as Python objects (None = missing).
SourceType = Literal["integer", "float", "boolean", "string"]

#: Rows of a Parquet reference read at a time: memory holds one batch (and the model's input
#: for it) besides the profile's bounded state, whatever the size of the data.
BATCH_ROWS = 1 << 18
#: CSV fields read as missing besides the empty field (pandas' most common ones).
DEFAULT_NA_VALUES = ("NA", "N/A", "NaN", "nan", "null", "NULL")

_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_SUFFIXES = (
    ".parquet, .pq, .csv, .tsv (either optionally .gz), .npy, .npz, or a directory of Parquet files"
)
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SHOWN_NAMES = 20


class ReferenceInputError(ValueError):
    """A reference file, schema, column choice or ``module:function`` that cannot be used."""


def names_shown(names: Sequence[str]) -> str:
    """Column names for a message: the first 20, then how many more."""
    shown = ", ".join(repr(n) for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def first_repeat(names: Sequence[str]) -> str | None:
    """The first name that ``names`` lists twice, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


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
                f"{what}{'' if one else 's'} {names_shown(absent)} "
                f"{'is not a column' if one else 'are not columns'} of {self.path} "
                f"(its columns: {names_shown(self.names)})"
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
                f"reference file {f} has the columns {names_shown(found)}, but {files[0]} has "
                f"{names_shown(names)}: the files of a reference directory need the same columns"
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
    twice = first_repeat(names)
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
