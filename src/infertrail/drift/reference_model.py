"""The user's model behind a reference profile: ``module:function`` imported and called, its
predictions and confidences on the reference rows, and the sha256 that identifies it.

:class:`ModelCodeError` is the user's own code failing or returning something unusable (the
CLI's runtime error, exit 1); what the user pointed at and does not exist is a
:class:`~infertrail.drift.reference_files.ReferenceInputError` (usage, exit 2).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from infertrail.drift.profile import category_key
from infertrail.drift.reference_files import Column, ReferenceInputError, names_shown

__all__ = [
    "ModelCodeError",
    "ReferencePredictions",
    "file_sha256",
    "import_path",
    "model_columns",
    "parse_sha256",
    "reference_predictions",
    "resolve_model",
]

_SHOWN_CLASSES = 20


class ModelCodeError(RuntimeError):
    """The user's model code failed, or returned something that cannot give predictions."""


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


def model_columns(model: Any, features: Sequence[str]) -> list[str]:
    """The columns the model is given: those it was fitted on by name, else the features."""
    fitted = getattr(model, "feature_names_in_", None)
    return list(features) if fitted is None else [str(n) for n in fitted]


def _model_input(model: Any, columns: Mapping[str, Column], features: Sequence[str]) -> Any:
    """The reference rows as the model takes them: named columns if it was fitted on a table.

    Values are those of the file (a declared type changes the profile, not what the model
    sees); missing values are NaN (or null in a pyarrow table).
    """
    names = model_columns(model, features)
    if getattr(model, "feature_names_in_", None) is not None:
        return _named_input([columns[n] for n in names])
    expected = getattr(model, "n_features_in_", None)
    if isinstance(expected, int) and expected != len(names):
        raise ReferenceInputError(
            f"the model was fitted on {expected} features, the profile has {len(names)} "
            f"({names_shown(names)}); it gets the features in this order, so choose them to match"
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
                f"{classes[:_SHOWN_CLASSES]}: {unknown[:5]}"
            )
    return ReferencePredictions(labels, classes, confidences)


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
