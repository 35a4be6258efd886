"""Reference data of a user's own model: schemas, files as typed columns, type inference, the
model's ``module:function`` and its reference predictions (infertrail.drift.reference)."""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.drift.reference import (
    DEFAULT_NA_VALUES,
    INT_CATEGORICAL_MAX_UNIQUE,
    STRING_MAX_CATEGORIES,
    Column,
    FeatureSpec,
    ModelCodeError,
    ReferenceInputError,
    build_reference,
    file_sha256,
    import_path,
    infer_type,
    load_schema,
    open_table,
    parse_column_specs,
    parse_schema,
    parse_sha256,
    reference_predictions,
    resolve_model,
)


def write_csv(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_all(path: Path, **kwargs: Any) -> dict[str, Column]:
    table = open_table(path, **kwargs)
    return table.read(table.names)


def values(col: Column) -> list[Any]:
    """Column values with every missing one as None."""
    return [None if m else v for v, m in zip(col.values.tolist(), col.missing, strict=True)]


# -- schema and --columns ---------------------------------------------------------------------
def test_a_schema_names_each_feature_and_its_type(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(
        json.dumps(
            {
                "features": [
                    {"name": "age", "type": "numeric"},
                    {"name": "plan", "type": "categorical"},
                    {"name": "score", "type": "numerical"},  # the profile's own word
                ]
            }
        )
    )
    assert load_schema(path) == [
        FeatureSpec("age", "numeric"),
        FeatureSpec("plan", "categorical"),
        FeatureSpec("score", "numeric"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", 'one key "features", found list'),
        ('{"features": [], "target": "y"}', "found ['features', 'target']"),
        ('{"features": []}', "must be a non-empty list"),
        ('{"features": {"age": "numeric"}}', "must be a non-empty list"),
        ('{"features": ["age"]}', 'features[0] must be an object with the keys "name" and'),
        ('{"features": [{"name": "age"}]}', "found ['name']"),
        ('{"features": [{"name": "age", "type": "numeric", "min": 0}]}', "found"),
        ('{"features": [{"name": "", "type": "numeric"}]}', "non-empty string, got ''"),
        ('{"features": [{"name": 3, "type": "numeric"}]}', "non-empty string, got 3"),
        ('{"features": [{"name": "age", "type": "number"}]}', "('age'): type 'number' is not"),
        (
            '{"features": [{"name": "a", "type": "numeric"}, {"name": "a", "type": "numeric"}]}',
            "names column 'a' twice",
        ),
    ],
)
def test_a_bad_schema_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ReferenceInputError, match=re.escape(message)):
        parse_schema(text)


def test_a_missing_or_unreadable_schema_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReferenceInputError, match=r"schema file .*nope\.json does not exist"):
        load_schema(tmp_path / "nope.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"features": "\xe9"}')
    with pytest.raises(ReferenceInputError, match="cannot be read"):
        load_schema(bad)


def test_columns_name_features_with_optional_types() -> None:
    assert parse_column_specs("age, income:numeric,plan:categorical") == [
        FeatureSpec("age"),
        FeatureSpec("income", "numeric"),
        FeatureSpec("plan", "categorical"),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("age,,plan", "expected NAME or NAME:TYPE separated by commas, got ''"),
        (":numeric", "got ':numeric'"),
        ("age:number", "type 'number' is not numeric or categorical"),
        ("age,age:numeric", "names column 'age' twice"),
    ],
)
def test_bad_columns_are_refused(value: str, message: str) -> None:
    with pytest.raises(ReferenceInputError, match=message):
        parse_column_specs(value)


# -- files ------------------------------------------------------------------------------------
def test_parquet_columns_keep_their_types_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "i": pa.array([1, None, 3], pa.int32()),
                "f": pa.array([1.5, float("nan"), None]),
                "b": pa.array([True, None, False]),
                "s": pa.array(["x", None, "y"]),
                "d": pa.array(["u", "v", None]).dictionary_encode(),
                "ts": pa.array([1, 2, 3], pa.timestamp("s")),
            }
        ),
        path,
    )
    table = open_table(path)
    assert table.names == ["i", "f", "b", "s", "d", "ts"]
    cols = table.read(["i", "f", "b", "s", "d"])
    assert [c.source_type for c in cols.values()] == [
        "integer", "float", "boolean", "string", "string",
    ]  # fmt: skip
    assert values(cols["i"]) == [1.0, None, 3.0]
    assert values(cols["f"]) == [1.5, None, None]  # NaN and null are both missing
    assert values(cols["b"]) == [True, None, False]
    assert values(cols["d"]) == ["u", "v", None]
    with pytest.raises(ReferenceInputError, match="column 'ts' has type timestamp"):
        table.read(["ts"])  # only a column that is used must be of a profilable type


def test_csv_columns_are_typed_from_all_their_values(tmp_path: Path) -> None:
    rows = [
        ["1", "1.5", "true", "x", " 7 ", "NA"],
        ["", "2", "False", " y ", "8", "?"],
        ["-3", "NaN", "TRUE", "z", "N/A", "1"],
    ]
    cols = read_all(write_csv(tmp_path / "t.csv", ["i", "f", "b", "s", "w", "q"], rows))
    assert {n: c.source_type for n, c in cols.items()} == {
        "i": "integer", "f": "float", "b": "boolean", "s": "string", "w": "integer",
        "q": "string",
    }  # fmt: skip
    assert values(cols["i"]) == [1.0, None, -3.0]
    assert values(cols["f"]) == [1.5, 2.0, None]
    assert values(cols["b"]) == [True, False, True]
    assert values(cols["s"]) == ["x", "y", "z"]  # surrounding whitespace is stripped
    assert values(cols["w"]) == [7.0, 8.0, None]
    custom = read_all(tmp_path / "t.csv", na_values=["?", "NA"])
    assert custom["q"].source_type == "integer" and values(custom["q"]) == [None, None, 1.0]
    assert values(read_all(tmp_path / "t.csv", na_values=[""])["f"]) == [1.5, 2.0, None]


def test_a_late_non_number_makes_a_csv_column_text(tmp_path: Path) -> None:
    """pyarrow's own inference reads the first block only; the whole column decides here."""
    rows = [[str(i)] for i in range(300_000)] + [["oops"]]
    path = write_csv(tmp_path / "big.csv", ["n"], rows)
    col = read_all(path)["n"]
    assert col.source_type == "string" and col.values[-1] == "oops"


def test_tsv_and_gzipped_csv_are_read(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.tsv", ["a", "b"], [["1", "x,y"]], delimiter="\t")
    assert values(read_all(tmp_path / "t.tsv")["b"]) == ["x,y"]
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n"))
    assert values(read_all(gz)["b"]) == [2.0, 4.0]


def test_numpy_arrays_become_named_columns(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(6.0).reshape(3, 2))
    assert list(read_all(tmp_path / "x.npy")) == ["x0", "x1"]
    np.save(tmp_path / "one.npy", np.arange(3))
    assert list(read_all(tmp_path / "one.npy")) == ["x"]
    rec = np.array([(1, "a", True), (2, "b", False)], dtype=[("n", "i4"), ("s", "U3"), ("b", "?")])
    np.save(tmp_path / "rec.npy", rec)
    cols = read_all(tmp_path / "rec.npy")
    assert [c.source_type for c in cols.values()] == ["integer", "string", "boolean"]
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=np.array([b"no", b"yes"]))
    cols = read_all(tmp_path / "d.npz")
    assert list(cols) == ["X0", "X1", "y"] and values(cols["y"]) == ["no", "yes"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.save(p / "r.npy", np.array([{"a": 1}])), "holds Python objects"),
        (lambda p: np.save(p / "r.npy", np.zeros((2, 2, 2))), r"array 'x' has shape \(2, 2, 2\)"),
        (lambda p: np.savez(p / "r.npz", a=np.ones(2), b=np.ones(3)), "differ in length"),
        (lambda p: np.savez(p / "r.npz", x0=np.ones(2), x=np.ones((2, 1))), "two columns named"),
        (lambda p: (p / "r.npy").write_bytes(b"not numpy"), "is not a NumPy file"),
        (lambda p: np.save(p / "r.npy", np.array([b"\xff"])), "bytes that are not UTF-8"),
        (lambda p: np.save(p / "r.npy", np.array([1 + 2j])), "dtype complex128"),
    ],
)
def test_bad_numpy_files_are_refused(tmp_path: Path, make: Any, message: str) -> None:
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(ReferenceInputError, match=message):
        read_all(path)


def test_bad_files_are_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(ReferenceInputError, match=r"missing\.csv does not exist"):
        open_table(tmp_path / "missing.csv")
    (tmp_path / "t.xlsx").write_text("")
    with pytest.raises(ReferenceInputError, match=r"unknown extension '\.xlsx'; use one of"):
        open_table(tmp_path / "t.xlsx")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ReferenceInputError, match="is not a file"):
        open_table(tmp_path / "dir.csv")
    (tmp_path / "fake.parquet").write_text("a,b\n")
    with pytest.raises(ReferenceInputError, match="is not readable Parquet"):
        open_table(tmp_path / "fake.parquet")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ReferenceInputError, match="is empty"):
        open_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(ReferenceInputError, match="has no rows"):
        read_all(tmp_path / "header.csv")
    (tmp_path / "twice.csv").write_text("a,a\n1,2\n")
    with pytest.raises(ReferenceInputError, match="two columns named 'a'"):
        open_table(tmp_path / "twice.csv")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(ReferenceInputError, match=r"is not valid CSV: .*Expected 2 columns"):
        read_all(tmp_path / "ragged.csv")
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    with pytest.raises(ReferenceInputError, match="apply to CSV/TSV files only"):
        open_table(tmp_path / "x.npy", na_values=["?"])
    with pytest.raises(ReferenceInputError, match=r"requested column 'z' is not a column"):
        open_table(tmp_path / "x.npy").read(["z"])


# -- type inference ---------------------------------------------------------------------------
def number_column(source_type: str, numbers: list[float | None]) -> Column:
    return Column("c", source_type, np.array([math.nan if v is None else v for v in numbers]))  # type: ignore[arg-type]


def object_column(source_type: str, items: list[Any]) -> Column:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return Column("c", source_type, out)  # type: ignore[arg-type]


ints = st.lists(st.integers(-40, 40), min_size=1, max_size=80)


@given(ints)
def test_integers_are_categorical_when_they_take_few_values(numbers: list[int]) -> None:
    kind, why = infer_type(number_column("integer", [float(v) for v in numbers]))
    few = len(set(numbers)) <= INT_CATEGORICAL_MAX_UNIQUE
    assert kind == ("categorical" if few else "numeric")
    assert f"{len(set(numbers))} distinct values" in why


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_floats_are_numeric_whatever_their_values(numbers: list[float]) -> None:
    assert infer_type(number_column("float", numbers))[0] == "numeric"


@given(
    st.one_of(
        st.tuples(st.just("boolean"), st.lists(st.booleans(), min_size=1, max_size=30)),
        st.tuples(st.just("string"), st.lists(st.text(max_size=5), min_size=1, max_size=30)),
    )
)
def test_booleans_and_strings_are_categorical(case: tuple[str, list[Any]]) -> None:
    assert infer_type(object_column(*case))[0] == "categorical"


@given(ints, st.randoms(use_true_random=False), st.integers(0, 20))
def test_inference_ignores_row_order_and_missing_values(
    numbers: list[int], rnd: Any, n_missing: int
) -> None:
    base = infer_type(number_column("integer", [float(v) for v in numbers]))
    shuffled: list[float | None] = [float(v) for v in numbers] + [None] * n_missing
    rnd.shuffle(shuffled)
    assert infer_type(number_column("integer", shuffled)) == base


def test_a_string_column_with_too_many_values_is_not_inferred() -> None:
    many = object_column("string", [f"id-{i}" for i in range(STRING_MAX_CATEGORIES + 1)])
    with pytest.raises(ReferenceInputError, match="1001 distinct strings"):
        infer_type(many)
    assert infer_type(object_column("string", many.values[:-1].tolist()))[0] == "categorical"


def _read_as_text(s: str) -> bool:
    """Text the CSV reader keeps as a string: no surrounding space, no number, boolean or NA."""
    if s != s.strip() or s in DEFAULT_NA_VALUES or s.lower() in ("true", "false"):
        return False
    try:
        pa.compute.cast(pa.array([s]), pa.float64())
    except pa.ArrowInvalid:
        return True
    return False


def with_missing(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(st.none(), values), min_size=1).filter(
        lambda xs: any(x is not None for x in xs)
    )


column_cases = st.one_of(
    st.tuples(st.just("integer"), with_missing(st.integers(-(2**53), 2**53))),
    st.tuples(st.just("float"), with_missing(st.floats(allow_nan=False, allow_infinity=False))),
    st.tuples(st.just("boolean"), with_missing(st.booleans())),
    st.tuples(
        st.just("string"),
        with_missing(
            st.text(st.characters(codec="utf-8", exclude_categories=["C", "Z"]), min_size=1).filter(
                _read_as_text
            )
        ),
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(column_cases, min_size=1, max_size=4))
def test_csv_and_parquet_read_back_the_types_and_values_written(
    cases: list[tuple[str, list[Any]]],
) -> None:
    n = max(len(vals) for _, vals in cases)
    cases = [(kind, (vals * n)[:n]) for kind, vals in cases]
    names = [f"c{j}" for j in range(len(cases))]
    with tempfile.TemporaryDirectory() as d:
        rows = [["" if vals[i] is None else vals[i] for _, vals in cases] for i in range(n)]
        csv_path = write_csv(Path(d) / "t.csv", names, rows)
        pq_path = Path(d) / "t.parquet"
        pq.write_table(
            pa.table({nm: vals for nm, (_, vals) in zip(names, cases, strict=True)}), pq_path
        )
        for path in (csv_path, pq_path):
            cols = read_all(path)
            for nm, (kind, vals) in zip(names, cases, strict=True):
                assert cols[nm].source_type == kind, (path.suffix, nm, vals)
                numbers = kind in ("integer", "float")
                assert values(cols[nm]) == [
                    v if v is None or not numbers else float(v) for v in vals
                ]


# -- building the profile ---------------------------------------------------------------------
@pytest.fixture
def churn_csv(tmp_path: Path) -> Path:
    rows = [
        [
            30 + i % 7,
            1000.0 + i * 3.5 if i % 10 else "",
            ["basic", "pro"][i % 2],
            i % 3,
            "ab"[i % 2],
        ]
        for i in range(60)
    ]
    return write_csv(tmp_path / "churn.csv", ["age", "income", "plan", "kids", "label"], rows)


def test_build_reference_types_features_and_reports_missing_values(churn_csv: Path) -> None:
    built = build_reference(
        open_table(churn_csv), model_name="churn", model_sha256="ab" * 32, target="label"
    )
    kinds = {f.name: (f.type, f.n_missing) for f in built.features}
    assert kinds == {
        "age": ("categorical", 0),  # 7 distinct integers
        "income": ("numeric", 6),
        "plan": ("categorical", 0),
        "kids": ("categorical", 0),
    }
    p = built.profile
    assert p.feature_names == ["age", "income", "plan", "kids"] and p.n_rows == 60
    assert p.columns[1].count == 54  # missing values are skipped, not zeros
    assert p.columns[0].categories == tuple(str(v) for v in range(30, 37))
    assert p.prediction is None and built.predictions is None


def test_declared_types_override_inference_and_values_must_fit(churn_csv: Path) -> None:
    table = open_table(churn_csv)
    built = build_reference(
        table,
        model_name="m",
        model_sha256="",
        specs=[FeatureSpec("age", "numeric"), FeatureSpec("income", "categorical")],
    )
    assert [c.kind for c in built.profile.columns] == ["numerical", "categorical"]
    assert built.profile.columns[1].categories[0] == "1003.5"
    with pytest.raises(ReferenceInputError, match="'plan' is numeric, but row 1 holds 'basic'"):
        build_reference(
            table, model_name="m", model_sha256="", specs=[FeatureSpec("plan", "numeric")]
        )


def test_an_all_numeric_reference_is_a_float_table(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)))
    built = build_reference(open_table(tmp_path / "x.npy"), model_name="m", model_sha256="")
    assert built.profile.sample.dtype == np.float64
    assert [c.kind for c in built.profile.columns] == ["numerical"] * 3


def test_booleans_declared_numeric_are_zero_and_one(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.array([True, False, True, True]))
    built = build_reference(
        open_table(tmp_path / "b.npy"),
        model_name="m",
        model_sha256="",
        specs=[FeatureSpec("x", "numeric")],
    )
    assert built.profile.columns[0].mean == 0.75


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "y"}, "target 'y' is not a column of"),
        ({"exclude": ["nope"]}, "excluded column 'nope' is not a column"),
        ({"specs": [FeatureSpec("a"), FeatureSpec("q")]}, "feature 'q' is not a column"),
        ({"specs": [FeatureSpec("q"), FeatureSpec("r")]}, "features 'q', 'r' are not columns"),
        ({"specs": [FeatureSpec("a")], "target": "a"}, "target 'a' is also listed as a feature"),
        ({"specs": [FeatureSpec("a")], "exclude": ["b"]}, "exclusions apply to inferred"),
        ({"exclude": ["a", "b", "gone", "inf"]}, "has no column left as a feature"),
        ({"specs": [FeatureSpec("gone")]}, "'gone' has no value: all its 3 rows are missing"),
        ({"specs": [FeatureSpec("inf")]}, "'inf' holds an infinite value at row 2"),
    ],
)
def test_bad_feature_choices_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        ["a", "b", "gone", "inf"],
        [[1, "x", "", 1], [2, "y", "", "inf"], [3, "x", "NA", 2]],
    )
    with pytest.raises(ReferenceInputError, match=message):
        build_reference(open_table(path), model_name="m", model_sha256="", **kwargs)


# -- the model --------------------------------------------------------------------------------
@pytest.fixture
def user_code(tmp_path: Path) -> Iterator[Path]:
    """A directory of user modules, importable under unique names, removed afterwards."""
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("usermod_"):
            del sys.modules[name]


def write_module(directory: Path, source: str) -> str:
    name = f"usermod_{directory.name.replace('-', '_')}_{len(list(directory.glob('*.py')))}"
    (directory / f"{name}.py").write_text(source)
    return name


class Proba:
    """A model with predict_proba only (classes_ optional)."""

    def __init__(self, p: np.ndarray, classes: list[Any] | None = None) -> None:
        self.p = p
        if classes is not None:
            self.classes_ = np.array(classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.p


class Predict:
    def __init__(self, out: Any, classes: list[Any] | None = None) -> None:
        self.out = out
        if classes is not None:
            self.classes_ = np.array(classes)

    def predict(self, X: Any) -> Any:
        return self.out


def test_resolve_model_imports_and_calls_a_function(user_code: Path) -> None:
    name = write_module(
        user_code,
        "class M:\n    def predict(self, X):\n        return X\n\n"
        "class Holder:\n    @staticmethod\n    def make():\n        return M()\n\n"
        "def load():\n    return M()\n",
    )
    with import_path(user_code):
        assert type(resolve_model(f"{name}:load")).__name__ == "M"
        assert type(resolve_model(f"{name}:Holder.make")).__name__ == "M"
    assert str(user_code.resolve()) not in sys.path


@pytest.mark.parametrize(
    ("source", "attr", "error", "message"),
    [
        ("", "nocolon", ReferenceInputError, "is not MODULE:FUNCTION"),
        ("", "{m}:", ReferenceInputError, "is not MODULE:FUNCTION"),
        ("", "no_such_module_xyz:f", ReferenceInputError, "no module named 'no_such_module_xyz'"),
        ("x = 1\n", "{m}:load", ReferenceInputError, "has no attribute 'load'"),
        ("x = 1\n", "{m}:x", ReferenceInputError, "is a int, not a function"),
        ("def f(path):\n    pass\n", "{m}:f", ReferenceInputError, "needs arguments"),
        ("1 / 0\n", "{m}:f", ModelCodeError, "failed: ZeroDivisionError: division by zero"),
        ("import not_installed_dep_q\n", "{m}:f", ModelCodeError, "'not_installed_dep_q'"),
        ("import sys\nsys.exit(3)\n", "{m}:f", ModelCodeError, "failed: SystemExit: 3"),
        ("def f():\n    raise OSError('gone')\n", "{m}:f", ModelCodeError, "OSError: gone"),
        ("def f():\n    return 42\n", "{m}:f", ModelCodeError, "returned a int, which has"),
    ],
)
def test_resolve_model_errors_name_the_value(
    user_code: Path, source: str, attr: str, error: type[Exception], message: str
) -> None:
    spec = attr.format(m=write_module(user_code, source))
    with import_path(user_code), pytest.raises(error, match=message) as info:
        resolve_model(spec)
    assert repr(spec) in str(info.value)


def columns_of(**cols: list[Any]) -> dict[str, Column]:
    out = {}
    for name, vals in cols.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[name] = Column(name, "float", np.array(vals, dtype=float))
        else:
            out[name] = Column(name, "string", object_column("string", vals).values)
    return out


def test_labels_come_from_predict_or_the_most_probable_class() -> None:
    cols = columns_of(a=[1.0, 2.0, 3.0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    by_class = reference_predictions(Proba(p, ["no", "yes"]), cols, ["a"])
    assert by_class.labels == ["no", "yes", "no"] and by_class.classes == ["no", "yes"]
    assert by_class.confidences is not None and by_class.confidences.tolist() == [0.9, 0.8, 0.5]
    by_index = reference_predictions(Proba(p), cols, ["a"])
    assert by_index.labels == ["0", "1", "0"] and by_index.classes == ["0", "1"]
    plain = reference_predictions(Predict(np.array([1.0, 0.0, 1.0])), cols, ["a"])
    assert plain.labels == ["1", "0", "1"] and plain.classes is None and plain.confidences is None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Predict(np.array([0.5, 1.5, 2.0])), "continuous values"),
        (Predict(np.array([[1, 2], [3, 4], [5, 6]])), r"returned shape \(3, 2\)"),
        (Predict(np.array(["a", "b", "c"]), ["a", "b"]), r"not among its classes_ .*\['c'\]"),
        (Proba(np.ones((2, 2))), r"predict_proba returned shape \(2, 2\), expected \(3, classes\)"),
        (Proba(np.full((3, 2), 1.5)), r"outside \[0, 1\]"),
        (Proba(np.array([["a"], ["b"], ["c"]])), "did not return numbers"),
        (Proba(np.full((3, 2), 0.5), ["x", "y", "z"]), "2 columns for 3 classes_"),
    ],
)
def test_unusable_model_outputs_are_refused(model: Any, message: str) -> None:
    with pytest.raises(ModelCodeError, match=message):
        reference_predictions(model, columns_of(a=[1.0, 2.0, 3.0]), ["a"])


class Named(Predict):
    """Fitted on a table: it names its columns."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(np.array(["x", "y", "x"]))
        self.feature_names_in_ = np.array(names, dtype=object)
        self.seen: Any = None

    def predict(self, X: Any) -> Any:
        self.seen = X
        return self.out


def test_a_model_fitted_by_column_name_gets_a_dataframe_in_its_order() -> None:
    pd = pytest.importorskip("pandas")
    model = Named(["b", "a"])
    cols = columns_of(a=[1.0, math.nan, 3.0], b=["u", None, "w"])
    reference_predictions(model, cols, ["a"])  # b is not profiled, the model still gets it
    assert isinstance(model.seen, pd.DataFrame) and list(model.seen.columns) == ["b", "a"]
    assert model.seen["b"].isna().tolist() == [False, True, False]


def test_without_pandas_a_named_model_gets_a_pyarrow_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    model = Named(["a", "n"])
    cols = columns_of(a=["u", None, "w"])
    cols["n"] = Column("n", "integer", np.array([1.0, 2.0, 3.0]))
    reference_predictions(model, cols, ["a", "n"])
    assert isinstance(model.seen, pa.Table)
    assert model.seen.column("a").null_count == 1 and model.seen.column("n").type == pa.int64()


def test_an_unnamed_model_gets_the_features_as_an_array_in_profile_order() -> None:
    model = Predict(np.array([0, 1, 0]))
    seen: list[Any] = []
    model.predict = lambda X: seen.append(X) or model.out  # type: ignore[method-assign]
    reference_predictions(model, columns_of(a=[1.0, 2.0, 3.0], b=[4.0, 5.0, 6.0]), ["b", "a"])
    assert seen[0].dtype == np.float64 and seen[0][:, 0].tolist() == [4.0, 5.0, 6.0]
    reference_predictions(model, columns_of(a=[1.0, 2.0, 3.0], s=["x", None, "z"]), ["a", "s"])
    assert seen[1].dtype == object and math.isnan(seen[1][1, 1])
    model.n_features_in_ = 3  # type: ignore[attr-defined]
    with pytest.raises(ReferenceInputError, match="fitted on 3 features, the profile has 2"):
        reference_predictions(model, columns_of(a=[1.0, 2.0, 3.0], b=[4.0, 5.0, 6.0]), ["a", "b"])


def test_columns_a_named_model_needs_must_be_in_the_file(churn_csv: Path) -> None:
    with pytest.raises(ReferenceInputError, match="the model's input column 'tenure' is not a"):
        build_reference(
            open_table(churn_csv), model_name="m", model_sha256="", model=Named(["age", "tenure"])
        )


# -- identity ---------------------------------------------------------------------------------
def test_sha256_of_a_file_or_given_as_hex(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(tmp_path / "m.bin") == digest
    assert parse_sha256(digest.upper()) == digest
    for bad in ("abc", digest + "0", "g" * 64):
        with pytest.raises(ReferenceInputError, match="is not 64 hexadecimal digits"):
            parse_sha256(bad)
    with pytest.raises(ReferenceInputError, match="cannot be read"):
        file_sha256(tmp_path / "none.bin")
