"""``cbpe.json``: a fitted CBPE estimator as versioned JSON, validated field by field on load.

The file names its format and version, the model (name, sha256) it was fitted for, the classes,
the binary threshold, the reference's size and chunking, each isotonic calibration as its
breakpoints (``x``, ``y``: all that applying it needs) and each metric's thresholds, sampling
error unit and reference chunk values. Floats are written with ``repr`` precision, so a model
read back estimates exactly what the saved one did. Every problem found on load is a
:class:`CbpeFileError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infertrail.estimation.calibration import FloatArray, IsotonicMap
from infertrail.estimation.estimate import MetricReference
from infertrail.estimation.metrics import CLASSIFICATION_METRICS

if TYPE_CHECKING:
    from infertrail.estimation.cbpe import CbpeModel

FORMAT = "infertrail-cbpe"
FORMAT_VERSION = 1
#: Where a served model's estimator lives, beside its drift profile.
CBPE_FILE = "cbpe.json"
_FIELDS = {
    "format",
    "version",
    "model",
    "classes",
    "threshold",
    "reference",
    "calibration",
    "metrics",
}


class CbpeFileError(ValueError):
    """A cbpe.json that is missing, malformed, of another version or of another model."""


def cbpe_path(models_dir: str | os.PathLike[str], model_name: str) -> Path:
    """Where a model's estimator lives: ``<models_dir>/<name>/cbpe.json`` (beside profile.json)."""
    return Path(models_dir) / model_name / CBPE_FILE


def encode(model: CbpeModel) -> dict[str, Any]:
    """The JSON-ready form of ``model``."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": {"name": model.model_name, "sha256": model.model_sha256},
        "classes": list(model.classes),
        "threshold": model.threshold,
        "reference": {"rows": model.reference_rows, "chunk_size": model.chunk_size},
        "calibration": [
            None if m is None else {"x": m.x.tolist(), "y": m.y.tolist()}
            for m in model.calibrations
        ],
        "metrics": {name: ref.as_dict() for name, ref in model.metrics.items()},
    }


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")
    return value


def _numbers(value: Any, where: str) -> FloatArray:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ValueError(f"{where} must be a list of finite numbers")
    return np.asarray(value, dtype=np.float64)


def decode(data: Any) -> dict[str, Any]:
    """The :class:`~infertrail.estimation.cbpe.CbpeModel` fields of :func:`encode`'s form.

    ValueError naming the field that is missing, unknown or wrong.
    """
    top = _object(data, "the file")
    if top.get("format") != FORMAT:
        raise ValueError(f"format is {top.get('format')!r}, not {FORMAT!r}")
    if top.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"version {top.get('version')!r} is not supported (this infertrail reads "
            f"{FORMAT_VERSION}); refit the estimator"
        )
    if set(top) != _FIELDS:
        missing, extra = sorted(_FIELDS - set(top)), sorted(set(top) - _FIELDS)
        raise ValueError(f"fields missing {missing}, unknown {extra}")
    model = _object(top["model"], "model")
    name, sha = model.get("name"), model.get("sha256")
    if set(model) != {"name", "sha256"} or not isinstance(name, str) or not isinstance(sha, str):
        raise ValueError("model must be {'name': str, 'sha256': str}")
    classes = top["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError("classes must be a list of strings")
    threshold = top["threshold"]
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float)
    ):
        raise ValueError(f"threshold must be a number or null, got {threshold!r}")
    reference = _object(top["reference"], "reference")
    if set(reference) != {"rows", "chunk_size"}:
        raise ValueError("reference must be {'rows': int, 'chunk_size': int}")
    calibration = top["calibration"]
    if not isinstance(calibration, list):
        raise ValueError("calibration must be a list (one entry per calibrated class)")
    maps: list[IsotonicMap | None] = []
    for i, entry in enumerate(calibration):
        if entry is None:
            maps.append(None)
            continue
        where = f"calibration[{i}]"
        fitted = _object(entry, where)
        if set(fitted) != {"x", "y"}:
            raise ValueError(f"{where} must be {{'x': [...], 'y': [...]}} or null")
        try:
            maps.append(
                IsotonicMap(
                    _numbers(fitted["x"], f"{where}.x"), _numbers(fitted["y"], f"{where}.y")
                )
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    metrics = _object(top["metrics"], "metrics")
    unknown = [m for m in metrics if m not in CLASSIFICATION_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(CLASSIFICATION_METRICS)}")
    return {
        "classes": tuple(classes),
        "calibrations": tuple(maps),
        "metrics": {m: MetricReference.from_dict(m, v) for m, v in metrics.items()},
        "reference_rows": _count(reference["rows"], "reference.rows"),
        "chunk_size": _count(reference["chunk_size"], "reference.chunk_size"),
        "threshold": None if threshold is None else float(threshold),
        "model_name": name,
        "model_sha256": sha,
    }


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON at ``path`` atomically (a temp file, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(target)


def read_json(path: str | os.PathLike[str]) -> Any:
    """The parsed JSON at ``path``; CbpeFileError when it is missing or not JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CbpeFileError(
            f"estimator file {path} is missing; fit one with fit_cbpe(...).save(path)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CbpeFileError(f"estimator file {path} cannot be read: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CbpeFileError(f"estimator file {path} is not JSON: {exc}") from None
