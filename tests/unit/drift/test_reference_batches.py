"""Reference data larger than memory: a Parquet file or directory read in record batches, each
a partial profile merged into the others, equal to the profile of the whole table."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from infertrail.drift import load_profile
from infertrail.drift.build import build_tabular_profile
from infertrail.drift.cli import _rows_progress, drift_commands
from infertrail.drift.reference import (
    FeatureSpec,
    ReferenceInputError,
    build_reference,
    open_table,
)

from .profile_equality import profile_differences

SHA = "ab" * 32


def churn_table(n: int, seed: int) -> pa.Table:
    """Floats with nulls, a small-integer column, a wide-integer column, strings with nulls,
    booleans and the label."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n).round(1)
    plan = rng.choice(["basic", "pro", "team"], n).astype(object)
    plan[rng.random(n) < 0.05] = None
    return pa.table({
        "age": pa.array(age, mask=rng.random(n) < 0.1),
        "n_products": rng.integers(0, 15, n),
        "visits": rng.integers(0, 500, n),
        "plan": pa.array(plan.tolist(), pa.string()),
        "active": rng.random(n) < 0.3,
        "churned": (age > 45).astype(np.int64),
    })  # fmt: skip


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, pa.Table]:
    """Three Parquet files of unequal sizes (one of them nested), plus files to be skipped."""
    root = tmp_path / "train"
    (root / "part=2").mkdir(parents=True)
    tables = [churn_table(n, seed) for seed, n in enumerate((230, 90, 181))]
    for path, table in zip(
        (root / "a.parquet", root / "b.pq", root / "part=2" / "c.parquet"), tables, strict=True
    ):
        pq.write_table(table, path, row_group_size=50)
    (root / "_SUCCESS").write_text("")
    (root / ".hidden.parquet").write_text("not parquet")
    return root, pa.concat_tables(tables)


def _whole(tmp_path: Path, table: pa.Table) -> Path:
    path = tmp_path / "whole.parquet"
    pq.write_table(table, path)
    return path


def test_a_directory_built_in_batches_equals_the_whole_table_built_at_once(
    dataset: tuple[Path, pa.Table], tmp_path: Path
) -> None:
    root, table = dataset
    seen: list[int] = []
    kw: dict[str, Any] = {"model_name": "churn", "model_sha256": SHA, "target": "churned"}
    batched = build_reference(open_table(root), batch_rows=37, progress=seen.append, **kw)
    whole = build_reference(open_table(_whole(tmp_path, table)), batch_rows=10_000, **kw)
    assert seen[:3] == [37, 37, 37] and sum(seen) == table.num_rows
    assert batched.features == whole.features
    assert [(f.name, f.type) for f in whole.features] == [
        ("age", "numeric"), ("n_products", "categorical"), ("visits", "numeric"),
        ("plan", "categorical"), ("active", "categorical"),
    ]  # fmt: skip
    # every row fits in the sample, so the samples are the same rows too
    assert profile_differences(batched.profile, whole.profile, sample=True) == []
    small = build_reference(open_table(root), batch_rows=37, sample_size=40, **kw)
    assert small.profile.sample.shape == (40, 5)
    assert profile_differences(small.profile, whole.profile, sample=False) == [
        "sample_size: 40 != 5000",
        "sample shapes (40, 5) != (501, 5)",
    ]


def test_batches_equal_the_in_memory_builder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(700, 3))
    X[rng.random((700, 3)) < 0.05] = np.nan
    pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(3)}), path := tmp_path / "t.parquet")
    built = build_reference(open_table(path), model_name="m", model_sha256=SHA, batch_rows=64)
    direct = build_tabular_profile(X, ["x0", "x1", "x2"], model_name="m", model_sha256=SHA)
    assert profile_differences(built.profile, direct, sample=True) == []


def test_the_model_predicts_batch_by_batch(dataset: tuple[Path, pa.Table], tmp_path: Path) -> None:
    root, table = dataset

    class Logistic:
        """A fitted-looking model on named columns, computed value by value: its outputs do not
        depend on how the rows are batched (a BLAS product's last bits can)."""

        classes_ = np.array([0, 1])
        feature_names_in_ = np.array(["age", "visits"], dtype=object)

        def predict_proba(self, frame: Any) -> Any:
            age = np.nan_to_num(frame["age"].to_numpy(float))
            p = 1 / (1 + np.exp(-(0.2 * (age - 45) + 0.001 * frame["visits"].to_numpy(float))))
            return np.column_stack([1 - p, p])

    kw: dict[str, Any] = {
        "model_name": "churn", "model_sha256": SHA, "model": Logistic(),
        "specs": [FeatureSpec("age"), FeatureSpec("plan")],
    }  # fmt: skip
    batched = build_reference(open_table(root), batch_rows=50, **kw)
    whole = build_reference(open_table(_whole(tmp_path, table)), **kw)
    assert batched.predictions is not None and batched.predictions.confidences
    assert profile_differences(batched.profile, whole.profile, sample=True) == []
    assert batched.profile.prediction is not None
    assert batched.profile.prediction.categories == ("0", "1")


def test_types_are_inferred_from_every_batch(tmp_path: Path) -> None:
    n = 120
    ids = np.arange(n)
    table = pa.table({
        "few": ids // 10,  # 12 values, no batch of 20 rows sees more than 3: categorical
        "many": ids % 40,  # 40 values: numeric
        "word": pa.array([f"w{i % 7}" for i in range(n)]),
        "id": pa.array([f"customer-{i}" for i in range(n)]),
    })  # fmt: skip
    pq.write_table(table, path := tmp_path / "t.parquet")
    built = build_reference(
        open_table(path), model_name="m", model_sha256=SHA, exclude=["id"], batch_rows=20
    )
    assert [(f.name, f.type, f.reason) for f in built.features] == [
        ("few", "categorical", "integer column, 12 distinct values <= 20"),
        ("many", "numeric", "integer column, 40 distinct values > 20"),
        ("word", "categorical", "string column, 7 distinct values"),
    ]
    ids_table = pa.table({"id": pa.array([f"c{i}" for i in range(1500)])})
    pq.write_table(ids_table, wide := tmp_path / "ids.parquet")
    with pytest.raises(ReferenceInputError, match="'id' holds more than 1000 distinct strings"):
        build_reference(open_table(wide), model_name="m", model_sha256=SHA, batch_rows=100)


def test_numbers_that_are_no_numbers_are_named_by_their_row_in_the_whole_file(
    tmp_path: Path,
) -> None:
    table = pa.table({"x": pa.array([str(i) for i in range(30)] + ["oops"])})
    pq.write_table(table, path := tmp_path / "t.parquet")
    with pytest.raises(ReferenceInputError, match="row 31 holds 'oops'"):
        build_reference(
            open_table(path), model_name="m", model_sha256=SHA,
            specs=[FeatureSpec("x", "numeric")], batch_rows=8,
        )  # fmt: skip


def test_a_column_empty_in_every_batch_is_refused(tmp_path: Path) -> None:
    table = pa.table({"x": [1.0, 2.0, 3.0], "y": pa.array([None, None, None], pa.float64())})
    pq.write_table(table, path := tmp_path / "t.parquet")
    with pytest.raises(ReferenceInputError, match="'y' has no value: all its 3 rows are missing"):
        build_reference(open_table(path), model_name="m", model_sha256=SHA, batch_rows=2)


def test_directories_that_cannot_be_read_as_one_table_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReferenceInputError, match=r"holds no \.parquet or \.pq file"):
        open_table(empty)
    cols = tmp_path / "cols"
    cols.mkdir()
    pq.write_table(pa.table({"a": [1.0]}), cols / "1.parquet")
    pq.write_table(pa.table({"b": [1.0]}), cols / "2.parquet")
    with pytest.raises(
        ReferenceInputError, match=r"2.parquet has the columns 'b', but .*1.parquet"
    ):
        open_table(cols)
    types = tmp_path / "types"
    types.mkdir()
    pq.write_table(pa.table({"a": [1.0]}), types / "1.parquet")
    pq.write_table(pa.table({"a": ["x"]}), types / "2.parquet")
    with pytest.raises(
        ReferenceInputError, match=r"'a' holds string values in .*2\.parquet, but float"
    ):
        open_table(types)
    with pytest.raises(ReferenceInputError, match="apply to CSV/TSV files only"):
        open_table(types, na_values=["?"])


def test_a_file_whose_column_is_all_null_joins_the_others(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    pq.write_table(pa.table({"a": ["x", "y"], "b": [1.0, 2.0]}), root / "1.parquet")
    pq.write_table(pa.table({"a": pa.nulls(2), "b": [3.0, 4.0]}), root / "2.parquet")
    table = open_table(root)
    assert table.n_rows == 4 and table.source_types == {"a": "string", "b": "float"}
    built = build_reference(table, model_name="m", model_sha256=SHA, batch_rows=1)
    assert built.features[0].n_missing == 2
    assert built.profile.columns[0].categories == ("x", "y")


def test_the_command_builds_from_a_directory_quietly_when_stderr_is_a_log(
    dataset: tuple[Path, pa.Table], tmp_path: Path
) -> None:
    root, table = dataset
    out = tmp_path / "p.json"
    result = CliRunner().invoke(
        drift_commands({}),
        ["baseline", "--name", "churn", "--reference", str(root), "--target", "churned",
         "--sha256", SHA, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"reference {root}: {table.num_rows:,} rows, 5 features" in result.stderr
    assert "rows/s" not in result.stderr
    assert load_profile(out, expected_sha256=SHA).n_rows == table.num_rows


def test_the_progress_bar_shows_rows_per_second_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with _rows_progress(1000) as advance:
        assert advance is not None
        advance(400)
        advance(600)
    drawn = screen.getvalue()
    assert "profiling" in drawn and "/1000" in drawn and "rows/s" in drawn
    with _rows_progress(None) as advance:
        assert advance is None
