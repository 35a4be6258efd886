"""Model artifacts on disk: a joblib file plus a JSON card holding its sha256 and version.

Loading checks the sha256 *before* unpickling, so a swapped or corrupted file fails with a clear
error naming it instead of executing whatever it contains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from infertrail.events import ModelInfo

ARTIFACT_FILE = "model.joblib"
CARD_FILE = "model.json"


class ModelArtifactError(RuntimeError):
    """The model file is missing, unreadable, or does not match its recorded sha256."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    """A verified model object with its identity and card."""

    info: ModelInfo
    model: Any
    card: dict[str, Any]
    path: Path


def model_dir(models_root: Path, name: str) -> Path:
    return models_root / name


def save_model(models_root: Path, name: str, version: str, model: Any, **card: Any) -> ModelInfo:
    """Write the artifact and its card atomically; returns its identity (sha256 of the file)."""
    d = model_dir(models_root, name)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{ARTIFACT_FILE}.tmp"
    joblib.dump(model, tmp, compress=3)
    digest = sha256_file(tmp)
    tmp.replace(d / ARTIFACT_FILE)
    info = ModelInfo(name=name, version=version, sha256=digest)
    card_tmp = d / f".{CARD_FILE}.tmp"
    card_tmp.write_text(
        json.dumps({"name": name, "version": version, "sha256": digest, **card}, indent=2) + "\n"
    )
    card_tmp.replace(d / CARD_FILE)
    return info


def load_model(models_root: Path, name: str) -> LoadedModel:
    """Load a model after checking its sha256 against its card; clear errors otherwise."""
    d = model_dir(models_root, name)
    artifact, card_path = d / ARTIFACT_FILE, d / CARD_FILE
    for p in (artifact, card_path):
        if not p.is_file():
            raise ModelArtifactError(
                f"model file {p} is missing; train it first with `infertrail train {name}`"
            )
    try:
        card = json.loads(card_path.read_text())
        expected = card["sha256"]
        version = card["version"]
    except (ValueError, KeyError) as exc:
        raise ModelArtifactError(f"model card {card_path} is unreadable: {exc!r}") from exc
    actual = sha256_file(artifact)
    if actual != expected:
        raise ModelArtifactError(
            f"model file {artifact} has sha256 {actual}, but its card {card_path} records "
            f"{expected}: the artifact is corrupt or was replaced"
        )
    try:
        model = joblib.load(artifact)
    except Exception as exc:
        raise ModelArtifactError(f"model file {artifact} cannot be loaded: {exc!r}") from exc
    return LoadedModel(ModelInfo(name, version, actual), model, card, artifact)
