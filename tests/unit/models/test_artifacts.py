from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from infertrail.models import sentiment
from infertrail.models.artifacts import ModelArtifactError, load_model, sha256_file


def test_training_is_deterministic(tmp_path: Path, trained_models: Path) -> None:
    info = sentiment.train(tmp_path)
    card = json.loads((trained_models / "sentiment" / "model.json").read_text())
    assert info.sha256 == card["sha256"]
    assert card["test_accuracy"] > 0.75


def test_load_checks_sha256(tmp_path: Path, trained_models: Path) -> None:
    shutil.copytree(trained_models, tmp_path, dirs_exist_ok=True)
    loaded = load_model(tmp_path, "sentiment")
    assert loaded.info.sha256 == sha256_file(loaded.path)


def test_missing_model_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match=r"model\.joblib is missing.*infertrail train"):
        load_model(tmp_path, "sentiment")


def test_corrupt_model_is_refused_before_unpickling(tmp_path: Path, trained_models: Path) -> None:
    shutil.copytree(trained_models, tmp_path, dirs_exist_ok=True)
    artifact = tmp_path / "sentiment" / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match=rf"{artifact}.*corrupt or was replaced"):
        load_model(tmp_path, "sentiment")


def test_unreadable_card(tmp_path: Path, trained_models: Path) -> None:
    shutil.copytree(trained_models, tmp_path, dirs_exist_ok=True)
    (tmp_path / "sentiment" / "model.json").write_text("{}")
    with pytest.raises(ModelArtifactError, match=r"model card .* is unreadable"):
        load_model(tmp_path, "sentiment")


def test_unknown_sentence_source() -> None:
    with pytest.raises(ValueError, match="unknown source 'reddit'; valid: amazon, yelp, imdb"):
        sentiment.load_sentences("reddit")
