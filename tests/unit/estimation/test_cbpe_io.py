"""cbpe.json: a saved estimator reads back exactly; every kind of damage is named on load."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infertrail.estimation import CbpeFileError, CbpeModel, cbpe_path, fit_cbpe

from .conftest import calibrated_multiclass, miscalibrated_binary


@pytest.fixture(scope="module")
def binary() -> CbpeModel:
    y, pred, score = miscalibrated_binary(3000, 1)
    return fit_cbpe(y, pred, score, [0, 1], model_name="m", model_sha256="ab" * 32)


def test_a_saved_model_estimates_exactly_what_the_fitted_one_did(
    binary: CbpeModel, tmp_path: Path
) -> None:
    y, pred, score = calibrated_multiclass(2000, 3, 2)
    names = np.asarray(["x", "y", "z"])
    multiclass = fit_cbpe(names[y], names[pred], score, names)
    _, window_pred, window_score = miscalibrated_binary(500, 9, shift=0.4)
    for model, args in (
        (binary, (window_pred, window_score)),
        (multiclass, (names[pred[:300]], score[:300])),
    ):
        path = tmp_path / "cbpe.json"
        model.save(path)
        loaded = CbpeModel.load(path)
        assert loaded == model
        assert loaded.estimate(*args) == model.estimate(*args)
    assert json.loads(path.read_text())["format"] == "infertrail-cbpe"


def test_the_file_lives_beside_the_profile() -> None:
    assert cbpe_path(Path("/m"), "credit") == Path("/m/credit/cbpe.json")


def test_a_file_of_another_model_is_refused(binary: CbpeModel, tmp_path: Path) -> None:
    binary.save(tmp_path / "cbpe.json")
    assert CbpeModel.load(tmp_path / "cbpe.json", expected_sha256="ab" * 32) == binary
    with pytest.raises(CbpeFileError, match=r"fitted for model sha256 'abab.*not 'cd"):
        CbpeModel.load(tmp_path / "cbpe.json", expected_sha256="cd" * 32)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is KeyError:
            del node[last]
        else:
            node[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("format", "other"), "format is 'other'"),
        (_set("version", 2), "version 2 is not supported"),
        (_set("threshold", KeyError), r"fields missing \['threshold'\]"),
        (_set("extra", 1), r"unknown \['extra'\]"),
        (_set("classes", ["0"]), "at least two distinct"),
        (_set("classes", [0, 1]), "list of strings"),
        (_set("threshold", 1.5), r"threshold .* \[0, 1\]"),
        (_set("threshold", "0.5"), "number or null"),
        (_set("reference.rows", 0), "reference.rows must be a positive integer"),
        (_set("calibration", []), "need 1 calibration"),
        (_set("calibration.0", {"x": [0.5, 0.1], "y": [0, 1]}), r"calibration\[0\]: .*increasing"),
        (_set("calibration.0.y", "no"), r"calibration\[0\].y must be a list"),
        (_set("metrics.f2", {}), r"unknown metrics \['f2'\]"),
        (_set("metrics.accuracy.lower_threshold", 0.99), "lower_threshold 0.99 is above"),
        (_set("metrics.accuracy.sampling_error_unit", -1), "must be >= 0"),
        (_set("metrics.accuracy.chunk_values", [True]), "finite number or null"),
        (_set("metrics.accuracy.limit", 1), r"unknown \['limit'\]"),
        (_set("model", {"name": "m"}), "model must be"),
    ],
)
def test_damage_is_named_on_load(
    binary: CbpeModel,
    tmp_path: Path,
    mutate: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    data = copy.deepcopy(binary.to_dict())
    mutate(data)
    path = tmp_path / "cbpe.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CbpeFileError, match=message) as caught:
        CbpeModel.load(path)
    assert str(path) in str(caught.value)


def test_a_missing_or_unparsable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CbpeFileError, match="missing; fit one"):
        CbpeModel.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CbpeFileError, match=r"bad\.json is not JSON"):
        CbpeModel.load(tmp_path / "bad.json")
