"""Data-quality checks (issue 18, item 3): the schema inferred from a profile, its JSON file and
validation, the per-window checks and their signals, and ``drift schema`` / ``check-schema``."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.alerting import parse_rules
from infertrail.config import Settings
from infertrail.drift import DriftMonitor, Profile, build_tabular_profile, profile_path
from infertrail.drift.analysis import Analysis
from infertrail.drift.cli import drift_commands
from infertrail.drift.detector import DriftWindow
from infertrail.drift.quality import SIGNALS, DataQualityAnalyzer
from infertrail.drift.quality_schema import (
    FeatureQuality,
    QualitySchema,
    QualitySchemaError,
    quality_schema_for,
    quality_schema_path,
)
from infertrail.events import InferenceEvent, ModelInfo

from .conftest import synthetic_texts

NAMES = ["a", "b", "c", "color", "flag"]
N_REF = 2000


def _reference(n: int = N_REF, seed: int = 3) -> list[dict[str, Any]]:
    """a ~ N(0, 1); b uniform 0..10 with 20% missing; c always 1; color 3 ways; flag 90/10."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.uniform(0, 10, size=n)
    b_missing = rng.random(n) < 0.2
    color = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    flag = rng.choice(["y", "n"], size=n, p=[0.9, 0.1])
    return [
        {
            "a": float(a[i]),
            "b": None if b_missing[i] else float(b[i]),
            "c": 1.0,
            "color": str(color[i]),
            "flag": str(flag[i]),
        }
        for i in range(n)
    ]


REFERENCE = _reference()


@pytest.fixture(scope="module")
def profile() -> Profile:
    table = [[row[k] for k in NAMES] for row in REFERENCE]
    return build_tabular_profile(
        table, NAMES, categorical=["color", "flag"], model_name="shop", model_sha256="ef" * 32
    )


@pytest.fixture(scope="module")
def analyzer(profile: Profile) -> DataQualityAnalyzer:
    return DataQualityAnalyzer(profile)


def _window(
    profile: Profile, inputs: list[Any], rejected: tuple[Any, ...] = (), *, with_inputs: bool = True
) -> DriftWindow:
    rows = profile.features_batch(inputs) if inputs else np.empty((0, len(profile.columns)))
    return DriftWindow(rows, inputs=tuple(inputs) if with_inputs else (), rejected=tuple(rejected))


def _clean(n: int, seed: int) -> list[dict[str, Any]]:
    return _reference(n, seed)


def _feature(analysis: Analysis, name: str) -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = analysis.section["features"]
    return features[name]


# -- the schema inferred from the profile --------------------------------------------------------
def test_the_inferred_schema_lets_every_reference_value_pass(profile: Profile) -> None:
    schema = QualitySchema.infer(profile)
    assert schema.model_name == "shop"
    assert [f.name for f in schema.features] == NAMES
    a, b, c, color, flag = schema.features
    values = np.array([r["a"] for r in REFERENCE])
    assert (a.low, a.high) == (values.min(), values.max())
    assert (a.nullable, a.reference_missing_share, a.expect_constant) == (False, 0.0, False)
    missing = sum(r["b"] is None for r in REFERENCE) / N_REF
    assert b.nullable and b.reference_missing_share == pytest.approx(missing)
    assert b.allowed_missing_share == b.reference_missing_share
    assert c.expect_constant and (c.low, c.high) == (1.0, 1.0)
    assert color.kind == "categorical" and set(color.categories) == {"red", "green", "blue"}
    assert flag.categories == ("n", "y") and not flag.expect_constant


def test_image_and_text_schemas_cover_the_derived_features_only(
    digits_profile: Profile,
) -> None:
    assert [f.name for f in QualitySchema.infer(digits_profile).features] == [
        "mean_intensity",
        "intensity_std",
        "ink_fraction",
    ]
    from infertrail.drift import build_text_profile

    texts = synthetic_texts(300, seed=0)
    text_profile = build_text_profile(texts, None, ["pos"] * 300, None, model_name="t")
    assert [f.name for f in QualitySchema.infer(text_profile).features] == [
        "n_chars",
        "n_tokens",
        "oov_rate",
    ]


# -- the checks on reference-like data: nothing fires --------------------------------------------
def test_reference_like_windows_raise_nothing(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    for seed in range(5):
        result = analyzer.analyze(_window(profile, _clean(1000, seed=100 + seed)))
        s = result.signals
        assert set(s) == set(SIGNALS)
        assert s["quality.type_error_share"] == 0.0
        assert s["quality.constant_columns"] == 0.0
        assert s["quality.unseen_category_share_max"] == 0.0
        # about 2 / (N_REF + 1) of fresh values fall beyond the reference extremes
        assert s["quality.out_of_range_share_max"] < 0.01
        # b's missing values come at the reference rate: only sampling noise is excess
        assert s["quality.missing_share_max"] < 0.05
        assert result.section["constant_columns"] == []


@settings(max_examples=40, deadline=None)
@given(rows=st.sets(st.integers(0, N_REF - 1), min_size=1, max_size=300))
def test_reference_rows_themselves_pass_every_check(
    profile: Profile, analyzer: DataQualityAnalyzer, rows: set[int]
) -> None:
    inputs = [REFERENCE[i] for i in sorted(rows)]
    result = analyzer.analyze(_window(profile, inputs))
    for name in NAMES:
        feature = _feature(result, name)
        assert feature["type_error_share"] == 0.0
        assert feature.get("out_of_range_share", 0.0) == 0.0
        assert feature.get("unseen_share", 0.0) == 0.0
    assert result.signals["quality.type_error_share"] == 0.0
    # distinct reference rows: a, b are never stuck on one value (c is constant by design)
    assert not set(result.section["constant_columns"]) & {"a", "b", "c"}


# -- each check fires on a window made to break it -----------------------------------------------
def test_missing_values_count_none_nan_empty_strings_and_absent_keys(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    inputs = _clean(100, seed=1)
    for row in inputs:
        row["b"] = 5.0
    inputs[0]["a"] = None
    inputs[1]["a"] = math.nan
    inputs[2]["color"] = math.nan  # a NaN category would be the category "nan"
    inputs[3]["color"] = ""  # "" is the code of no category
    inputs[4]["flag"] = None
    absent = {k: v for k, v in _clean(1, seed=2)[0].items() if k != "a"}
    empty = {**_clean(1, seed=3)[0], "a": ""}  # float("") fails: a rejected input
    result = analyzer.analyze(_window(profile, inputs, (absent, empty)))
    n_inputs = 102
    assert _feature(result, "a")["missing_share"] == pytest.approx(4 / n_inputs)
    assert _feature(result, "color")["missing_share"] == pytest.approx(2 / n_inputs)
    assert _feature(result, "color")["unseen_share"] == 0.0  # NaN and "" are not categories
    assert _feature(result, "flag")["missing_share"] == pytest.approx(1 / n_inputs)
    assert result.section["worst"]["missing_share"] == {
        "feature": "a",
        "value": pytest.approx(4 / n_inputs),
    }
    assert result.signals["quality.missing_share_max"] == pytest.approx(4 / n_inputs)
    assert result.signals["quality.type_error_share"] == 0.0  # missing is not mistyped
    assert result.section["n_rejected"] == 2


def test_a_nullable_feature_counts_only_missing_values_beyond_the_reference_share(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    allowed = QualitySchema.infer(profile).feature("b").reference_missing_share
    inputs = _clean(1000, seed=4)
    for i, row in enumerate(inputs):
        row["b"] = None if i < 600 else 5.0
    b = _feature(analyzer.analyze(_window(profile, inputs)), "b")
    assert b["missing_share"] == pytest.approx(0.6)
    assert b["missing_excess"] == pytest.approx(0.6 - allowed)
    strict = _edited(profile, "b", nullable=False)
    b = _feature(DataQualityAnalyzer(profile, strict).analyze(_window(profile, inputs)), "b")
    assert b["missing_excess"] == pytest.approx(0.6)


def test_out_of_range_values_are_counted_with_inclusive_bounds(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    rule = QualitySchema.infer(profile).feature("a")
    assert rule.low is not None and rule.high is not None
    inputs = _clean(200, seed=5)
    for row in inputs:
        row["a"] = 0.0
    inputs[0]["a"] = rule.low  # on the bounds: inside
    inputs[1]["a"] = rule.high
    inputs[2]["a"] = rule.high + 1e-9
    inputs[3]["a"] = rule.low - 5
    inputs[4]["a"] = math.inf
    inputs[5]["a"] = None  # missing: not out of range
    result = analyzer.analyze(_window(profile, inputs))
    assert _feature(result, "a")["out_of_range_share"] == pytest.approx(3 / 200)
    assert result.signals["quality.out_of_range_share_max"] == pytest.approx(3 / 200)
    assert result.section["worst"]["out_of_range_share"]["feature"] == "a"


def test_an_edited_range_is_the_one_checked(profile: Profile) -> None:
    schema = _edited(profile, "a", low=0.0, high=None)
    inputs = _clean(100, seed=6)
    for i, row in enumerate(inputs):
        row["a"] = -1.0 if i < 10 else 1e9
    result = DataQualityAnalyzer(profile, schema).analyze(_window(profile, inputs))
    assert _feature(result, "a")["out_of_range_share"] == pytest.approx(0.1)


def test_unseen_categories_are_counted_and_named(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    inputs = _clean(100, seed=7)
    for row in inputs[:5]:
        row["color"] = "purple"
    inputs[5]["color"] = "x" * 500
    for i, row in enumerate(inputs[6:20]):
        row["color"] = f"new-{i}"
    result = analyzer.analyze(_window(profile, inputs))
    color = _feature(result, "color")
    assert color["unseen_share"] == pytest.approx(20 / 100)
    values = color["unseen_values"]
    assert len(values) == 10 and values["purple"] == 5  # the most frequent, bounded
    assert result.signals["quality.unseen_category_share_max"] == pytest.approx(0.2)
    assert result.section["worst"]["unseen_category_share"]["feature"] == "color"
    only_long = _clean(10, seed=7)
    only_long[0]["color"] = "x" * 500
    named = _feature(analyzer.analyze(_window(profile, only_long)), "color")["unseen_values"]
    assert list(named) == ["x" * 64]


def test_edited_categories_allow_new_values_and_refuse_old_ones(profile: Profile) -> None:
    schema = _edited(profile, "color", categories=("red", "green", "purple"))
    inputs = _clean(100, seed=8)
    for i, row in enumerate(inputs):
        row["color"] = ["purple", "blue", "red", "green"][i % 4]
    color = _feature(
        DataQualityAnalyzer(profile, schema).analyze(_window(profile, inputs)), "color"
    )
    assert color["unseen_share"] == pytest.approx(0.25)
    assert color["unseen_values"] == {"blue": 25}


def test_type_errors_in_accepted_and_rejected_inputs(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    inputs = _clean(100, seed=9)
    inputs[0]["a"] = "3.5"  # extraction takes it (float("3.5")), yet it is a string
    inputs[1]["color"] = ["red"]  # a list is no category
    inputs[2]["flag"] = {"v": 1}
    inputs[2]["a"] = "1e3"  # one input, two errors: counted once in the overall share
    rejected = (
        {**_clean(1, seed=10)[0], "a": "abc"},  # mistyped
        {**_clean(1, seed=10)[0], "a": 10**400, "b": math.nan},  # a number, if not a float
        [1.0, 2.0],  # a sequence of the wrong length: malformed
        "not an input",
    )
    result = analyzer.analyze(_window(profile, inputs, rejected))
    n_inputs = 104
    assert _feature(result, "a")["type_error_share"] == pytest.approx(3 / n_inputs)
    assert _feature(result, "a")["out_of_range_share"] == 0.0  # "1e3" is not judged as 1000
    assert _feature(result, "color")["type_error_share"] == pytest.approx(1 / n_inputs)
    assert _feature(result, "color")["unseen_share"] == 0.0
    assert _feature(result, "flag")["type_error_share"] == pytest.approx(1 / n_inputs)
    assert result.section["inputs_with_type_errors"] == 6
    assert result.section["malformed_inputs"] == 2
    assert result.signals["quality.type_error_share"] == pytest.approx(6 / n_inputs)
    assert result.section["worst"]["type_error_share"]["feature"] == "a"


def test_numbers_of_any_kind_are_no_type_error(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    inputs = _clean(20, seed=11)
    inputs[0]["a"] = np.float32(0.5)
    inputs[1]["a"] = np.int64(1)
    inputs[2]["a"] = True
    inputs[3]["color"] = 3  # an unseen category, not a type error
    result = analyzer.analyze(_window(profile, inputs))
    assert result.signals["quality.type_error_share"] == 0.0
    assert _feature(result, "color")["unseen_values"] == {"3": 1}


def test_a_column_stuck_on_one_value_is_flagged_when_the_reference_makes_it_unlikely(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    inputs = _clean(200, seed=12)
    for row in inputs:
        row["a"] = 0.25
        row["color"] = "green"
        row["flag"] = "y"  # 90% in the reference: 200 in a row has chance 0.9^199 ~ 1e-9
    result = analyzer.analyze(_window(profile, inputs))
    assert result.section["constant_columns"] == ["a", "color", "flag"]  # c is constant by design
    assert result.signals["quality.constant_columns"] == 3.0
    assert _feature(result, "a")["constant"] and not _feature(result, "c")["constant"]
    few = _clean(20, seed=12)
    for row in few:
        row["flag"] = "y"  # 0.9^19 = 0.14: a clean window does this
    assert "flag" not in analyzer.analyze(_window(profile, few)).section["constant_columns"]


def test_expect_constant_silences_a_feature(profile: Profile) -> None:
    inputs = _clean(200, seed=13)
    for row in inputs:
        row["a"] = 0.25
    schema = _edited(profile, "a", expect_constant=True)
    result = DataQualityAnalyzer(profile, schema).analyze(_window(profile, inputs))
    assert "a" not in result.section["constant_columns"]


def test_sequence_inputs_are_read_in_column_order(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    dicts = _clean(50, seed=14)
    dicts[0]["a"] = "3.5"
    dicts[1]["color"] = "purple"
    dicts[2]["b"] = None
    lists = [[row[k] for k in NAMES] for row in dicts]
    mixed = [*dicts[:25], *lists[25:]]
    by_dict = analyzer.analyze(_window(profile, dicts))
    assert analyzer.analyze(_window(profile, lists)).section == by_dict.section
    assert analyzer.analyze(_window(profile, mixed)).section == by_dict.section


def test_without_raw_inputs_the_rows_still_give_missing_range_and_unseen(
    profile: Profile, analyzer: DataQualityAnalyzer
) -> None:
    inputs = _clean(100, seed=15)
    inputs[0]["a"] = None
    inputs[1]["a"] = 1e6
    inputs[2]["color"] = "purple"
    result = analyzer.analyze(_window(profile, inputs, with_inputs=False))
    assert _feature(result, "a")["missing_share"] == pytest.approx(0.01)
    assert _feature(result, "a")["out_of_range_share"] == pytest.approx(0.01)
    assert _feature(result, "color")["unseen_share"] == pytest.approx(0.01)
    assert _feature(result, "color")["unseen_values"] == {}  # the value itself is not known


def test_a_window_of_rejected_inputs_only(profile: Profile, analyzer: DataQualityAnalyzer) -> None:
    result = analyzer.analyze(_window(profile, [], ({"a": "x"}, 7)))
    assert result.section["n_rows"] == 0
    assert result.signals["quality.type_error_share"] == 1.0
    assert "quality.out_of_range_share_max" not in result.signals  # no row to judge
    assert _feature(result, "a")["out_of_range_share"] is None
    json.dumps(result.section, allow_nan=False)


def test_the_section_is_json_ready(profile: Profile, analyzer: DataQualityAnalyzer) -> None:
    inputs = _clean(30, seed=16)
    inputs[0]["color"] = "purple"
    text = json.dumps(analyzer.analyze(_window(profile, inputs)).section, allow_nan=False)
    assert "purple" in text


def test_text_and_image_windows_check_their_derived_features(digits_profile: Profile) -> None:
    from infertrail.drift import build_text_profile

    texts = synthetic_texts(400, seed=1)
    text_profile = build_text_profile(texts, None, ["pos"] * 400, None, model_name="t")
    analyzer = DataQualityAnalyzer(text_profile)
    live = [*texts[:99], "good " * 5000]  # reference texts pass; the long one does not
    result = analyzer.analyze(
        DriftWindow(text_profile.features_batch(live), inputs=tuple(live), rejected=(None, 3))
    )
    assert _feature(result, "n_chars")["out_of_range_share"] == pytest.approx(1 / 100)
    assert result.section["malformed_inputs"] == 2
    assert result.signals["quality.type_error_share"] == pytest.approx(2 / 102)
    assert "quality.unseen_category_share_max" not in result.signals  # no category to judge

    images = np.full((50, 64), 16.0)  # every pixel full on: more ink than any digit has
    img = DataQualityAnalyzer(digits_profile).analyze(
        DriftWindow(digits_profile.features_batch(images), inputs=tuple(images))
    )
    assert _feature(img, "ink_fraction")["out_of_range_share"] == 1.0
    assert _feature(img, "mean_intensity")["out_of_range_share"] == 1.0
    assert set(img.section["constant_columns"]) == {
        "mean_intensity",
        "intensity_std",
        "ink_fraction",
    }


def test_the_analyzer_runs_in_a_drift_monitor(profile: Profile) -> None:
    model = ModelInfo("shop", "1", "ef" * 32)

    def event(inputs: Any) -> InferenceEvent:
        return InferenceEvent(
            model=model, request_id="r", service="s", team="t", endpoint="e",
            inputs=inputs, input_size=1, label="x",
        )  # fmt: skip

    monitor = DriftMonitor(profile, window_size=100, analyzers=[DataQualityAnalyzer(profile)])
    try:
        for i, row in enumerate(_clean(104, seed=17)):
            monitor(event({**row, "a": "bad"} if i < 4 else row))
        monitor.flush()
        report = monitor.latest
    finally:
        monitor.close()
    assert report is not None
    assert "data_quality" in report.sections
    # 4 inputs with "bad" were rejected by the extraction; 100 accepted rows
    assert report.sections["data_quality"]["n_rejected"] == 4
    assert report.signals["quality.type_error_share"] == pytest.approx(4 / 104)


# -- the schema file -----------------------------------------------------------------------------
def _edited(profile: Profile, name: str, **changes: Any) -> QualitySchema:
    schema = QualitySchema.infer(profile)
    doc = schema.to_dict()
    entry = doc["features"][name]
    for key, value in changes.items():
        if key in ("low", "high"):
            entry["range"][0 if key == "low" else 1] = value
        elif key == "categories":
            entry["categories"] = list(value)
        else:
            entry[key] = value
    return QualitySchema.from_dict(doc)


def test_the_schema_survives_save_and_load(profile: Profile, tmp_path: Path) -> None:
    schema = QualitySchema.infer(profile)
    path = tmp_path / "m" / "quality.json"
    schema.save(path)
    assert QualitySchema.load(path) == schema
    assert QualitySchema.from_dict(json.loads(path.read_text())) == schema
    assert not list(path.parent.glob(".*.tmp"))


_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
_bound = st.none() | st.floats(-1e12, 1e12, allow_nan=False) | st.integers(-(2**60), 2**60)


@st.composite
def _rules(draw: st.DrawFn, name: str) -> FeatureQuality:
    kind = draw(st.sampled_from(["numerical", "categorical"]))
    low = high = None
    categories: tuple[str, ...] = ()
    if kind == "numerical":
        x, y = draw(_bound), draw(_bound)
        low, high = (x, y) if x is None or y is None or x <= y else (y, x)
        low = None if low is None else float(low)
        high = None if high is None else float(high)
    else:
        categories = tuple(draw(st.lists(_names, min_size=1, max_size=5, unique=True)))
    return FeatureQuality(
        name=name,
        kind=kind,
        nullable=draw(st.booleans()),
        reference_missing_share=draw(st.floats(0, 1)),
        expect_constant=draw(st.booleans()),
        low=low,
        high=high,
        categories=categories,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_names, max_size=6, unique=True).flatmap(
    lambda names: st.tuples(*(_rules(n) for n in names))
))  # fmt: skip
def test_any_schema_round_trips_through_json(rules: tuple[FeatureQuality, ...]) -> None:
    schema = QualitySchema("m", rules)
    assert QualitySchema.loads(schema.dumps()) == schema


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), "unknown keys ['extra']"),
        (lambda d: d.pop("model"), "missing keys ['model']"),
        (lambda d: d.update(format="x"), "format must be 'infertrail-quality-schema'"),
        (lambda d: d.update(format_version=2), "format_version 2 is not supported"),
        (lambda d: d.update(model=""), "model must be a non-empty string"),
        (lambda d: d.update(features=[]), "features must be an object keyed by feature name"),
        (lambda d: d["features"].update(a=3), "feature 'a': must be an object, got int"),
        (lambda d: d["features"]["a"].update(kind="text"), "feature 'a': kind must be"),
        (lambda d: d["features"]["a"].update(rnage=[0, 1]), "feature 'a': unknown keys ['rnage']"),
        (
            lambda d: d["features"]["a"].update(categories=["x"]),
            "unknown keys ['categories'] for a numerical feature",
        ),
        (lambda d: d["features"]["a"].pop("nullable"), "feature 'a': missing keys ['nullable']"),
        (lambda d: d["features"]["a"].update(nullable="yes"), "nullable must be true or false"),
        (lambda d: d["features"]["a"].update(expect_constant=0), "expect_constant must be true"),
        (
            lambda d: d["features"]["a"].update(reference_missing_share=1.5),
            "reference_missing_share must be a number in [0, 1], got 1.5",
        ),
        (
            lambda d: d["features"]["a"].update(reference_missing_share=True),
            "reference_missing_share must be a number in [0, 1], got True",
        ),
        (lambda d: d["features"]["a"].update(range=[0]), "range must be [low, high]"),
        (lambda d: d["features"]["a"].update(range="0..1"), "range must be [low, high]"),
        (
            lambda d: d["features"]["a"].update(range=["0", 1]),
            "range low must be a finite number or null, got '0'",
        ),
        (
            lambda d: d["features"]["a"].update(range=[0, math.inf]),
            "range high must be a finite number or null, got inf",
        ),
        (lambda d: d["features"]["a"].update(range=[5, 1]), "range [5, 1]: low exceeds high"),
        (lambda d: d["features"]["color"].update(categories=[]), "categories must be a non-empty"),
        (
            lambda d: d["features"]["color"].update(categories=["red", 1]),
            'categories must be strings, as the profile stores them (write "1", not 1)',
        ),
        (
            lambda d: d["features"]["color"].update(categories=["red", "red"]),
            "categories repeat ['red']",
        ),
        (lambda d: d["features"].update({"": d["features"]["a"]}), "non-empty string"),
    ],
)
def test_every_mistake_is_named(profile: Profile, mutate: Any, message: str) -> None:
    doc = QualitySchema.infer(profile).to_dict()
    mutate(doc)
    with pytest.raises(QualitySchemaError) as caught:
        QualitySchema.from_dict(doc, "q.json")
    assert message in str(caught.value)
    assert str(caught.value).startswith("q.json: ")


def test_all_mistakes_are_reported_at_once(profile: Profile) -> None:
    doc = QualitySchema.infer(profile).to_dict()
    doc["features"]["a"]["range"] = [3, 1]
    doc["features"]["color"]["categories"] = [1]
    with pytest.raises(QualitySchemaError) as caught:
        QualitySchema.from_dict(doc, "q.json")
    assert caught.value.problems == [
        "feature 'a': range [3, 1]: low exceeds high",
        "feature 'color': categories must be strings, as the profile stores them "
        '(write "1", not 1), got [1]',
    ]
    assert str(caught.value).startswith("q.json: 2 problems:\n  - feature 'a'")


def test_a_document_that_is_no_object_or_no_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QualitySchemaError, match="must be a JSON object, got list"):
        QualitySchema.loads("[]")
    with pytest.raises(QualitySchemaError, match="not valid JSON"):
        QualitySchema.loads("{")
    with pytest.raises(QualitySchemaError, match="key 'a' appears twice"):
        QualitySchema.loads('{"features": {"a": {}, "a": {}}}')
    with pytest.raises(QualitySchemaError, match="file does not exist"):
        QualitySchema.load(tmp_path / "none.json")


def test_a_schema_must_fit_the_profile(profile: Profile) -> None:
    doc = QualitySchema.infer(profile).to_dict()
    doc["model"] = "other"
    doc["features"]["zzz"] = doc["features"]["a"]
    doc["features"]["color"] = {**doc["features"]["a"]}
    schema = QualitySchema.from_dict(doc)
    with pytest.raises(QualitySchemaError) as caught:
        DataQualityAnalyzer(profile, schema)
    assert caught.value.problems == [
        "model 'other': the profile is of model 'shop'",
        "feature 'color': kind 'numerical', but the profile's is 'categorical'",
        "feature 'zzz': unknown feature; the profile has 'a', 'b', 'c', 'color', 'flag'",
    ]


def test_a_feature_left_out_is_not_checked(profile: Profile) -> None:
    doc = QualitySchema.infer(profile).to_dict()
    del doc["features"]["a"]
    analyzer = DataQualityAnalyzer(profile, QualitySchema.from_dict(doc))
    inputs = _clean(50, seed=19)
    inputs[0]["a"] = "3.5"  # a type error, were "a" checked
    result = analyzer.analyze(_window(profile, inputs))
    assert "a" not in result.section["features"]
    assert result.signals["quality.type_error_share"] == 0.0


def test_the_schema_file_next_to_the_model_wins(profile: Profile, tmp_path: Path) -> None:
    assert quality_schema_for(tmp_path, profile) == QualitySchema.infer(profile)
    edited = _edited(profile, "a", low=-100.0)
    path = quality_schema_path(tmp_path, "shop")
    assert path == tmp_path / "shop" / "quality.json"
    edited.save(path)
    assert quality_schema_for(tmp_path, profile) == edited
    doc = edited.to_dict()
    doc["features"]["zzz"] = doc["features"]["a"]
    path.write_text(json.dumps(doc))
    with pytest.raises(QualitySchemaError, match=f"^{path}: feature 'zzz': unknown feature"):
        quality_schema_for(tmp_path, profile)


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture
def cli_settings(profile: Profile, tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    profile.save(profile_path(settings.models_dir, "shop"))
    return settings


def _run(settings: Settings, args: list[str]) -> Any:
    return CliRunner().invoke(drift_commands({}), args, obj=SimpleNamespace(settings=settings))


def test_drift_schema_writes_the_inferred_schema(
    cli_settings: Settings, profile: Profile, tmp_path: Path
) -> None:
    shown = _run(cli_settings, ["schema", "--model", "shop"])
    assert shown.exit_code == 0, shown.output
    assert QualitySchema.loads(shown.output) == QualitySchema.infer(profile)
    out = quality_schema_path(cli_settings.models_dir, "shop")
    written = _run(cli_settings, ["schema", "--model", "shop", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert f"quality schema shop -> {out}" in written.output
    assert QualitySchema.load(out) == QualitySchema.infer(profile)
    again = _run(cli_settings, ["schema", "--model", "shop", "--out", str(out)])
    assert again.exit_code == 2 and "exists; give --force" in again.output
    forced = _run(cli_settings, ["schema", "--model", "shop", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    unknown = _run(cli_settings, ["schema", "--model", "nope"])
    assert unknown.exit_code == 1 and "model 'nope' has no reference profile" in unknown.output


def test_drift_check_schema_validates_against_the_profile(
    cli_settings: Settings, profile: Profile, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    QualitySchema.infer(profile).save(good)
    ok = _run(cli_settings, ["check-schema", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "valid quality schema of model 'shop', 5 features (checked against" in ok.output

    doc = QualitySchema.infer(profile).to_dict()
    doc["features"]["zzz"] = doc["features"]["a"]
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(doc))
    bad = _run(cli_settings, ["check-schema", str(unknown)])
    assert bad.exit_code == 1 and "feature 'zzz': unknown feature" in bad.output

    doc["model"] = "elsewhere"  # no profile: the file is checked on its own
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps(doc))
    checked = _run(cli_settings, ["check-schema", str(alone)])
    assert checked.exit_code == 0, checked.output
    assert "features and kinds not checked" in checked.output
    named = _run(cli_settings, ["check-schema", str(alone), "--model", "shop"])
    assert named.exit_code == 1 and "model 'elsewhere': the profile is of model 'shop'" in (
        named.output
    )
    missing = _run(cli_settings, ["check-schema", str(alone), "--model", "nope"])
    assert missing.exit_code == 1 and "model 'nope' has no reference profile" in missing.output

    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "infertrail-quality-schema"}')
    result = _run(cli_settings, ["check-schema", str(broken)])
    assert result.exit_code == 1 and "missing keys ['features', 'format_version', 'model']" in (
        result.output
    )


# -- docs/data-quality.md: its examples run and load as written ----------------------------------
DOC = Path(__file__).resolve().parents[3] / "docs" / "data-quality.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_doc_example_runs_and_prints_what_the_doc_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(_blocks("python")[0], str(DOC), "exec"), {"models_dir": tmp_path})
    text = DOC.read_text(encoding="utf-8")
    shown = text.split("prints\n\n```\n", 1)[1].split("```", 1)[0].strip()
    assert capsys.readouterr().out.strip() == shown


def test_the_doc_rules_load() -> None:
    rules = parse_rules(tomllib.loads(_blocks("toml")[0]), source="docs/data-quality.md")
    assert {r.signal for r in rules.rules} == set(SIGNALS)


def test_the_doc_schema_fits_the_doc_profile() -> None:
    schema = QualitySchema.loads(_blocks("json")[0], "docs/data-quality.md")
    reference = [
        [34, 1200.0, "basic"],
        [51, 3400.0, "pro"],
        [29, None, "basic"],
        [45, 2100.0, "pro"],
    ]
    profile = build_tabular_profile(
        reference, ["age", "income", "plan"], categorical=["plan"], model_name="churn"
    )
    schema.check(profile)
    assert schema.feature("income").high is None
    assert "enterprise" in schema.feature("plan").categories
