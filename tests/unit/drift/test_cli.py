"""``infertrail drift baseline``: the built-in demo models, and any model from its training
table (Parquet, CSV, NumPy), schema and ``module:function``."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from infertrail.config import Settings
from infertrail.drift import DriftMonitor, Profile, load_profile, profile_path
from infertrail.drift.cli import drift_commands
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.models import PROFILE_BUILDERS


# -- built-in demo models -----------------------------------------------------------------------
@pytest.fixture
def models_copy(trained_models: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(trained_models, root)
    return root


@pytest.mark.slow
def test_baseline_rebuilds_every_trained_demo_model(models_copy: Path, tmp_path: Path) -> None:
    for name in PROFILE_BUILDERS:
        profile_path(models_copy, name).unlink()
    settings = Settings(data_dir=tmp_path / "data")
    shutil.copytree(models_copy, settings.models_dir)
    result = CliRunner().invoke(
        drift_commands(PROFILE_BUILDERS), ["baseline"], obj=SimpleNamespace(settings=settings)
    )
    assert result.exit_code == 0, result.output
    for name in ("digits", "sentiment"):
        assert f"profile {name} -> {profile_path(settings.models_dir, name)}" in result.output
        assert profile_path(settings.models_dir, name).is_file()


def test_baseline_of_one_model_reads_the_data_dir_from_the_environment(
    models_copy: Path, tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "env-data"
    shutil.copytree(models_copy, data / "models")
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(data))
    result = CliRunner().invoke(drift_commands(PROFILE_BUILDERS), ["baseline", "digits"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"profile digits -> {profile_path(data / 'models', 'digits')}"


def test_baseline_errors_are_clear(tmp_path: Path) -> None:
    obj = SimpleNamespace(settings=Settings(data_dir=tmp_path / "empty"))
    nothing = CliRunner().invoke(drift_commands(PROFILE_BUILDERS), ["baseline"], obj=obj)
    assert nothing.exit_code == 1
    assert "no trained model" in nothing.output
    untrained = CliRunner().invoke(
        drift_commands(PROFILE_BUILDERS), ["baseline", "digits"], obj=obj
    )
    assert untrained.exit_code == 1
    assert "infertrail train digits" in untrained.output
    unknown = CliRunner().invoke(drift_commands(PROFILE_BUILDERS), ["baseline", "churn"], obj=obj)
    assert unknown.exit_code == 2
    assert "'churn' is not one of" in unknown.output


def test_importing_the_drift_cli_loads_no_pyarrow() -> None:
    """The top-level CLI imports this module at start-up; reading files is paid for on use."""
    code = "import sys, infertrail.drift.cli; print('pyarrow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- your own model: a churn classifier on a synthetic table ----------------------------------
FEATURES = ["age", "income", "plan", "n_products"]
MODEL_MODULE = """
import joblib

def load_model():
    return joblib.load({path!r})
"""


def churn_table(rng: np.random.Generator, n: int, *, shifted: bool = False) -> dict[str, Any]:
    """Customers: age and income (numbers), plan (strings), n_products (small integers)."""
    age = rng.normal(55 if shifted else 40, 10, n)
    income = rng.lognormal(10.8 if shifted else 10, 0.5, n)
    income[rng.random(n) < 0.02] = np.nan  # a few unknown incomes
    plan = rng.choice(
        ["basic", "pro", "team"], n, p=[0.2, 0.3, 0.5] if shifted else [0.6, 0.3, 0.1]
    )
    n_products = rng.integers(1, 5, n)
    score = (age - 40) / 10 + (plan == "basic") - 0.3 * n_products + rng.normal(0, 1, n)
    return {
        "age": age,
        "income": income,
        "plan": plan,
        "n_products": n_products,
        "churn": np.where(score > 0, "yes", "no"),
    }


@dataclass
class Churn:
    """Training files, the fitted model, its artifact and the module that loads it."""

    dir: Path
    model: Any
    sha256: str
    module: str

    def rows(self, table: dict[str, Any]) -> Any:
        import pandas as pd

        return pd.DataFrame({name: table[name] for name in FEATURES})


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Churn]:
    pd = pytest.importorskip("pandas")  # the user's side: a model fitted on a DataFrame
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    d = tmp_path_factory.mktemp("churn")
    rng = np.random.default_rng(42)
    train = churn_table(rng, 3000)
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder=SimpleImputer()
        ),
        LogisticRegression(max_iter=1000),
    ).fit(pd.DataFrame({n: train[n] for n in FEATURES}), train["churn"])
    joblib.dump(model, d / "model.joblib")
    pq.write_table(
        pa.table({k: pa.array(v, from_pandas=True) for k, v in train.items()}),  # NaN -> null
        d / "train.parquet",
    )
    with (d / "train.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(train)
        for row in zip(*train.values(), strict=True):
            w.writerow(["" if isinstance(v, float) and np.isnan(v) else v for v in row])
    module = f"churn_model_{d.name.replace('-', '_')}"
    (d / f"{module}.py").write_text(MODEL_MODULE.format(path=str(d / "model.joblib")))
    sha = hashlib.sha256((d / "model.joblib").read_bytes()).hexdigest()
    yield Churn(d, model, sha, module)
    sys.modules.pop(module, None)


def run(args: list[str], obj: Any = None) -> Result:
    result = CliRunner().invoke(drift_commands({}), ["baseline", *args], obj=obj)
    # every failure is a message and an exit code, never a traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def own(churn: Churn, out: Path, *extra: str, reference: str = "train.parquet") -> list[str]:
    return [
        "--name", "churn", "--model-version", "1.2.0",
        "--reference", str(churn.dir / reference),
        "--artifact", str(churn.dir / "model.joblib"),
        "--out", str(out), *extra,
    ]  # fmt: skip


def feed(monitor: DriftMonitor, churn: Churn, table: dict[str, Any]) -> None:
    """Serve the rows as a user's service would: inputs by name, the model's label and
    confidence."""
    frame = churn.rows(table)
    labels = churn.model.predict(frame)
    confidences = churn.model.predict_proba(frame).max(axis=1)
    info = ModelInfo("churn", "1.2.0", churn.sha256)
    for i, inputs in enumerate(frame.to_dict("records")):
        monitor(
            InferenceEvent(
                model=info,
                request_id=str(i),
                service="churn-api",
                team="risk",
                endpoint="/",
                inputs={k: (None if v != v else v) for k, v in inputs.items()},  # NaN: missing
                input_size=1,
                label=str(labels[i]),
                confidence=float(confidences[i]),
            )
        )
    assert monitor.flush()


@pytest.mark.parametrize("reference", ["train.parquet", "train.csv"])
def test_a_profile_of_your_own_model_loads_and_detects_drift(
    churn: Churn, tmp_path: Path, reference: str
) -> None:
    out = tmp_path / "churn" / "profile.json"
    extra = ["--target", "churn", "--model", f"{churn.module}:load_model"]
    result = run(own(churn, out, *extra, "--import-dir", str(churn.dir), reference=reference))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"profile churn -> {out}\n"
    assert "age         numeric      inferred (float column)" in result.stderr
    assert "n_products  categorical  inferred (integer column, 4 distinct values <= 20)" in (
        result.stderr
    )
    assert f"model churn 1.2.0, sha256 {churn.sha256}" in result.stderr
    assert "2 labels (no, yes); confidence from predict_proba" in result.stderr

    profile = load_profile(out, expected_sha256=churn.sha256)
    assert profile.model_name == "churn" and profile.n_rows == 3000
    assert [(c.name, c.kind) for c in profile.columns] == [
        ("age", "numerical"), ("income", "numerical"), ("plan", "categorical"),
        ("n_products", "categorical"),
    ]  # fmt: skip
    assert profile.columns[1].count < 3000  # the missing incomes are skipped
    assert profile.prediction is not None and profile.prediction.categories == ("no", "yes")
    assert profile.confidence is not None

    monitor = DriftMonitor(profile, window_size=1000)
    live = np.random.default_rng(7)  # its own seed: the windows do not depend on test order
    try:
        feed(monitor, churn, churn_table(live, 1000))
        clean = monitor.latest
        feed(monitor, churn, churn_table(live, 1000, shifted=True))
        shifted = monitor.latest
    finally:
        monitor.close()
    assert monitor.stats.feature_errors == 0 and monitor.stats.windows_closed == 2
    assert clean is not None and not clean.dataset_drift, clean.to_dict()
    assert shifted is not None and shifted.dataset_drift
    assert {f.name for f in shifted.features if f.drifted} >= {"age", "income", "plan"}
    assert shifted.prediction.label is not None and shifted.prediction.label.drifted


def test_parquet_and_csv_give_the_same_profile(churn: Churn, tmp_path: Path) -> None:
    profiles: list[Profile] = []
    for reference in ("train.parquet", "train.csv"):
        out = tmp_path / reference / "profile.json"
        assert run(own(churn, out, "--target", "churn", reference=reference)).exit_code == 0
        profiles.append(load_profile(out))
    a, b = profiles
    assert a.feature_names == b.feature_names
    for fa, fb in zip(a.columns, b.columns, strict=True):
        assert (fa.count, fa.categories, fa.mean) == (fb.count, fb.categories, fb.mean)
    np.testing.assert_array_equal(a.sample, b.sample)


def test_the_default_profile_path_is_under_the_data_dir(churn: Churn, tmp_path: Path) -> None:
    obj = SimpleNamespace(settings=Settings(data_dir=tmp_path / "data"))
    args = ["--name", "churn", "--reference", str(churn.dir / "train.csv"), "--target", "churn"]
    result = run([*args, "--sha256", churn.sha256.upper()], obj=obj)
    assert result.exit_code == 0, result.output
    path = profile_path(tmp_path / "data" / "models", "churn")
    assert result.stdout == f"profile churn -> {path}\n"
    assert load_profile(path, expected_sha256=churn.sha256).prediction is None


def test_a_schema_fixes_the_features_and_their_types(churn: Churn, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "features": [
                    {"name": "n_products", "type": "numeric"},
                    {"name": "plan", "type": "categorical"},
                ]
            }
        )
    )
    out = tmp_path / "p.json"
    result = run(own(churn, out, "--schema", str(schema)))
    assert result.exit_code == 0, result.output
    assert "n_products  numeric      declared" in result.stderr
    assert "fix the types" not in result.stderr
    profile = load_profile(out)
    assert [(c.name, c.kind) for c in profile.columns] == [
        ("n_products", "numerical"), ("plan", "categorical"),
    ]  # fmt: skip


def test_columns_choose_features_and_some_of_their_types(churn: Churn, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    result = run(own(churn, out, "--columns", "age,n_products:numeric", reference="train.csv"))
    assert result.exit_code == 0, result.output
    assert "age         numeric      inferred (float column)" in result.stderr
    assert "(fix the types with --schema or --columns NAME:TYPE)" in result.stderr
    assert [c.kind for c in load_profile(out).columns] == ["numerical", "numerical"]


def test_excluded_columns_are_left_out(churn: Churn, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    args = own(churn, out, "--exclude", "churn,plan", "--exclude", "income")
    assert run(args).exit_code == 0
    assert load_profile(out).feature_names == ["age", "n_products"]


def test_a_numpy_reference_with_a_model_fitted_on_an_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 3))
    y = (X[:, 0] > 0).astype(int)
    np.savez(tmp_path / "train.npz", X=X, y=y)
    joblib.dump(LogisticRegression().fit(X, y), tmp_path / "m.joblib")
    module = f"arraymodel_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MODEL_MODULE.format(path=str(tmp_path / "m.joblib")))
    monkeypatch.chdir(tmp_path)  # --import-dir defaults to the working directory
    out = tmp_path / "p.json"
    result = run(
        ["--name", "m", "--reference", "train.npz", "--target", "y", "--model",
         f"{module}:load_model", "--artifact", "m.joblib", "--out", str(out),
         "--sample-size", "100"]
    )  # fmt: skip
    sys.modules.pop(module, None)
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    assert profile.feature_names == ["X0", "X1", "X2"] and profile.sample.shape == (100, 3)
    assert profile.prediction is not None and profile.prediction.categories == ("0", "1")


# -- every way it can go wrong: a message and an exit code --------------------------------------
@pytest.fixture(scope="module")
def user_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Model functions that fail in every way, in one module (and two that fail to import)."""
    d = tmp_path_factory.mktemp("user_code")
    tag = d.name.replace("-", "_")
    (d / f"models_{tag}.py").write_text(
        "import numpy as np\n\n"
        "NOT_CALLABLE = 42\n\n"
        "def needs_path(path):\n    pass\n\n"
        "def broken():\n    raise RuntimeError('no model in the registry')\n\n"
        "def no_predict():\n    return object()\n\n"
        "class Failing:\n    def predict(self, X):\n        raise ValueError('bad input shape')\n\n"
        "def failing():\n    return Failing()\n\n"
        "class Regressor:\n    def predict(self, X):\n        return np.full(len(X), 0.5)\n\n"
        "def regressor():\n    return Regressor()\n\n"
        "class Wide:\n    n_features_in_ = 7\n\n    def predict(self, X):\n"
        "        return np.zeros(len(X))\n\n"
        "def wide():\n    return Wide()\n"
    )
    (d / f"crashes_{tag}.py").write_text("1 / 0\n")
    (d / f"needs_dep_{tag}.py").write_text("import not_installed_dependency_q\n")
    yield d, tag
    for prefix in ("models_", "crashes_", "needs_dep_"):
        sys.modules.pop(f"{prefix}{tag}", None)


def data_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HEX = "ab" * 32
NAMED = ["--name", "m", "--reference", "{csv}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "m"], "--name needs --reference, the model's training data"),
        (["--name", " ", "--reference", "{csv}"], "--name must not be empty"),
        (["--reference", "{csv}"], "--reference is for your own model: give its --name too"),
        (["--name", "m", "--reference", "{dir}/nope.csv"], "'{dir}/nope.csv' does not exist"),
        (
            [*NAMED, "--sha256", HEX, "--schema", "{schema}", "--columns", "a"],
            "--schema and --columns both choose the features: give one",
        ),
        (NAMED, "identify the model the profile belongs to: --artifact FILE or --sha256 HEX"),
        ([*NAMED, "--sha256", HEX, "--artifact", "{csv}"], "--artifact FILE or --sha256 HEX"),
        ([*NAMED, "--artifact", "{dir}/gone.joblib"], "'{dir}/gone.joblib' does not exist"),
        ([*NAMED, "--sha256", "abc"], "sha256 'abc' is not 64 hexadecimal digits"),
        ([*NAMED, "--sha256", HEX, "--out", "{dir}/p.yaml"], "p.yaml must end in .json"),
    ],
)
def test_usage_errors_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    fill = {
        "csv": str(data_file(tmp_path, "t.csv", "a,b\n1,x\n")),
        "schema": str(data_file(tmp_path, "s.json", '{"features": []}')),
        "dir": str(tmp_path),
    }
    obj = SimpleNamespace(settings=Settings(data_dir=tmp_path / "data"))
    result = run([a.format(**fill) for a in args], obj=obj)
    assert result.exit_code == 2, result.output
    assert message.format(**fill) in result.output


def test_built_in_models_and_name_are_exclusive(tmp_path: Path) -> None:
    cmd = drift_commands({"digits": lambda root: root})
    result = CliRunner().invoke(cmd, ["baseline", "digits", "--name", "m"])
    assert result.exit_code == 2
    assert "give built-in models (digits) or --name, not both" in result.output


def test_a_name_that_is_no_folder_needs_out(tmp_path: Path) -> None:
    csv_path = data_file(tmp_path, "t.csv", "a\n1\n")
    for name in ("team/churn", ".."):
        result = run(["--name", name, "--reference", str(csv_path), "--sha256", "ab" * 32])
        assert result.exit_code == 2
        assert f"--name {name!r} cannot name a folder of its own; give --out" in result.output


@pytest.mark.parametrize(
    ("file", "content", "extra", "message"),
    [
        ("t.xlsx", "a\n1\n", [], "unknown extension '.xlsx'; use one of .parquet"),
        ("t.csv", "", [], "is empty (no header)"),
        ("t.csv", "age,plan\n", [], "has no rows"),
        ("t.csv", "age,plan\n1,x\n", ["--columns", "age,tenure"], "feature 'tenure' is not a"),
        ("t.csv", "age\n1\nabc\n", ["--columns", "age:numeric"], "row 2 holds 'abc', which is"),
        ("t.csv", "age\n1\ninf\n", [], "'age' holds an infinite value at row 2"),
        ("t.csv", "age,x\n1,\n2,NA\n", [], "'x' has no value: all its 2 rows are missing"),
        ("t.csv", "age\n1\n", ["--target", "label"], "target 'label' is not a column of"),
        ("t.csv", "a,b\n1,2\n", ["--columns", "a", "--exclude", "b"], "exclusions apply"),
        ("t.csv", "a,b\n1,2\n", ["--columns", "a", "--target", "a"], "also listed as a feature"),
        ("t.csv", "a\n1\n", ["--exclude", "z"], "excluded column 'z' is not a column"),
        ("t.csv", "a\n1\n", ["--schema", "{dir}/none.json"], "'{dir}/none.json' does not exist"),
        ("t.csv", "a\n1\n", ["--schema", "{dir}/bad.json"], "is not valid JSON"),
        ("t.csv", "a\n1\n", ["--columns", "a:number"], "type 'number' is not numeric or"),
        ("t.parquet", None, ["--na-values", "?"], "apply to CSV/TSV files only"),
        ("t.csv", "a,b\n1,x,3\n", [], "is not valid CSV"),
    ],
)
def test_bad_reference_data_is_a_usage_error(
    tmp_path: Path, file: str, content: str | None, extra: list[str], message: str
) -> None:
    path = tmp_path / file
    if content is None:
        pq.write_table(pa.table({"a": [1.0, 2.0]}), path)
    else:
        path.write_text(content)
    data_file(tmp_path, "bad.json", "{")
    extra = [a.format(dir=tmp_path) for a in extra]
    result = run(
        ["--name", "m", "--reference", str(path), "--sha256", "ab" * 32,
         "--out", str(tmp_path / "p.json"), *extra]
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message.format(dir=tmp_path) in result.output


def test_na_values_choose_what_is_missing_in_a_csv(tmp_path: Path) -> None:
    path = data_file(tmp_path, "t.csv", "age,x\n1,?\n2,3\n3,NA\n")
    base = ["--name", "m", "--reference", str(path), "--sha256", HEX]
    default = run([*base, "--out", str(tmp_path / "a.json")])
    assert "x    categorical  inferred (string column, 2 distinct values), 1 missing" in (
        default.stderr
    )
    custom = run([*base, "--out", str(tmp_path / "b.json"), "--na-values", "?,NA"])
    assert "x    categorical  inferred (integer column, 1 distinct values <= 20), 2 missing" in (
        custom.stderr
    )


def test_an_identifier_column_is_not_inferred_categorical(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},cust-{i}" for i in range(1500))
    path = data_file(tmp_path, "t.csv", f"x,id\n{rows}\n")
    base = ["--name", "m", "--reference", str(path), "--sha256", "ab" * 32]
    result = run([*base, "--out", str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert "column 'id' holds 1500 distinct strings (more than 1000)" in result.output
    assert run([*base, "--out", str(tmp_path / "p.json"), "--exclude", "id"]).exit_code == 0


def test_python_objects_in_a_numpy_file_are_not_unpickled(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    result = run(
        ["--name", "m", "--reference", str(tmp_path / "t.npy"), "--sha256", "ab" * 32,
         "--out", str(tmp_path / "p.json")]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "holds Python objects, which are not loaded" in result.output


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ("nocolon", 2, "model 'nocolon' is not MODULE:FUNCTION"),
        ("no_such_module_q:load", 2, "no module named 'no_such_module_q'"),
        ("models_{tag}:load", 2, "models_{tag} has no attribute 'load'"),
        ("models_{tag}:NOT_CALLABLE", 2, "is a int, not a function"),
        ("models_{tag}:needs_path", 2, "needs arguments; it must be callable without any"),
        ("models_{tag}:wide", 2, "the model was fitted on 7 features, the profile has 2"),
        ("crashes_{tag}:load", 1, "importing crashes_{tag} failed: ZeroDivisionError"),
        ("needs_dep_{tag}:load", 1, "No module named 'not_installed_dependency_q'"),
        ("models_{tag}:broken", 1, "failed: RuntimeError: no model in the registry"),
        ("models_{tag}:no_predict", 1, "returned a object, which has neither predict_proba"),
        ("models_{tag}:failing", 1, "Failing.predict failed on the reference rows: ValueError"),
        ("models_{tag}:regressor", 1, "returned continuous values (a regressor?)"),
    ],
)
def test_model_errors_name_the_function_with_usage_or_runtime_exit_codes(
    user_code: tuple[Path, str], tmp_path: Path, spec: str, code: int, message: str
) -> None:
    d, tag = user_code
    path = data_file(tmp_path, "t.csv", "a,b\n1.5,2.5\n")
    result = run(
        ["--name", "m", "--reference", str(path), "--sha256", "ab" * 32, "--out",
         str(tmp_path / "p.json"), "--model", spec.format(tag=tag), "--import-dir", str(d)]
    )  # fmt: skip
    assert result.exit_code == code, result.output
    assert message.format(tag=tag) in result.output
    assert not (tmp_path / "p.json").exists()


def test_an_unwritable_profile_path_is_a_runtime_error(tmp_path: Path) -> None:
    path = data_file(tmp_path, "t.csv", "a\n1\n")
    blocker = data_file(tmp_path, "file", "")
    result = run(
        ["--name", "m", "--reference", str(path), "--sha256", "ab" * 32,
         "--out", str(blocker / "p.json")]
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"cannot write the profile {blocker / 'p.json'}" in result.output
