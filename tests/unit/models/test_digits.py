"""The digits demo model: deterministic training, its artifact, its reference profile."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from infertrail.drift import DriftDetector, DriftWindow, ProfileError, load_profile
from infertrail.drift import profile_path as monitoring_profile_path
from infertrail.events import ModelInfo
from infertrail.models import digits
from infertrail.models.artifacts import LoadedModel, ModelArtifactError
from infertrail.models.digits import DigitsModel


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits-models")
    digits.train(root)
    return root


@pytest.fixture(scope="module")
def model(root: Path) -> DigitsModel:
    return DigitsModel.load(root)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    a, b = digits.split(), digits.split()
    assert np.array_equal(a.train_images, b.train_images)
    assert np.array_equal(a.test_labels, b.test_labels)
    assert (a.train_images.shape, a.test_images.shape) == ((1347, 64), (450, 64))
    # every digit is in both parts in about the same share
    shares = np.bincount(a.test_labels, minlength=10) / np.bincount(a.train_labels, minlength=10)
    assert np.all(np.abs(shares - 1 / 3) < 0.02)
    train_rows = {row.tobytes() for row in a.train_images}
    # load_digits has a few duplicate images; nearly all held-out ones are unseen
    assert sum(row.tobytes() in train_rows for row in a.test_images) < 5


def test_training_twice_gives_the_same_artifact_and_profile(
    root: Path, tmp_path: Path, model: DigitsModel
) -> None:
    info = digits.train(tmp_path)
    assert info == model.info
    assert sha(tmp_path / "digits" / "model.joblib") == model.info.sha256
    profile = monitoring_profile_path(tmp_path, "digits")
    assert sha(profile.with_suffix(".npz")) == sha(
        monitoring_profile_path(root, "digits").with_suffix(".npz")
    )


def test_the_card_records_identity_and_held_out_accuracy(root: Path, model: DigitsModel) -> None:
    card = json.loads((root / "digits" / "model.json").read_text())
    assert card["name"] == "digits" and card["version"] == digits.VERSION
    assert card["sha256"] == model.info.sha256
    assert card["labels"] == [str(d) for d in range(10)]
    assert card["train_rows"] == 1347
    assert card["test_accuracy"] >= 0.95


def test_predict_gives_a_label_its_confidence_and_all_probabilities(model: DigitsModel) -> None:
    data = digits.split()
    hits = 0
    for image, truth in zip(data.test_images[:100], data.test_labels[:100], strict=True):
        p = model.predict(image.tolist())
        assert p.label in digits.LABELS
        assert len(p.probabilities) == 10
        assert sum(p.probabilities) == pytest.approx(1.0)
        assert p.confidence == max(p.probabilities)
        assert p.probabilities[int(p.label)] == p.confidence
        hits += p.label == str(truth)
    assert hits >= 93
    labels, confidences = model.predict_batch(data.test_images[:100])
    assert labels == [model.predict(x).label for x in data.test_images[:100]]
    assert np.all((confidences > 0.1) & (confidences <= 1.0))


@pytest.mark.parametrize("n", [0, 63, 65, 128])
def test_predict_refuses_an_image_of_the_wrong_size(model: DigitsModel, n: int) -> None:
    with pytest.raises(ValueError, match=f"64 pixels, got {n}"):
        model.predict([0.0] * n)


def test_the_profile_is_saved_next_to_the_model_and_belongs_to_it(
    root: Path, model: DigitsModel
) -> None:
    path = monitoring_profile_path(root, "digits")
    assert path == root / "digits" / "profile.json"
    profile = load_profile(path, expected_sha256=model.info.sha256)
    assert profile.kind == "image" and profile.model_name == "digits"
    assert profile.n_rows == 1347
    assert len(profile.columns) == 64 + 3
    assert profile.pooled is not None and profile.prediction is not None
    assert profile.prediction.categories == digits.LABELS
    with pytest.raises(ProfileError, match="rebuild the profile"):
        load_profile(path, expected_sha256="0" * 64)


def test_profile_confidences_are_out_of_fold_not_from_the_fitted_model(
    root: Path, model: DigitsModel
) -> None:
    profile = load_profile(monitoring_profile_path(root, "digits"))
    assert profile.sample_confidences is not None
    _, fitted = model.predict_batch(digits.split().train_images)
    # the fitted model is more confident on its own training images than on new ones
    assert float(np.mean(profile.sample_confidences)) < float(np.mean(fitted)) - 0.01
    _, held_out = model.predict_batch(digits.split().test_images)
    assert abs(float(np.mean(profile.sample_confidences)) - float(np.mean(held_out))) < 0.03


def test_held_out_digits_do_not_drift_against_the_profile(root: Path, model: DigitsModel) -> None:
    profile = load_profile(monitoring_profile_path(root, "digits"))
    images = digits.split().test_images
    labels, confidences = model.predict_batch(images)
    codes = np.array([profile.label_code(x) for x in labels])
    report = DriftDetector(profile).compare(
        DriftWindow(profile.features_batch(images), codes, confidences)
    )
    assert report.share_drifted < 0.05
    assert not report.dataset_drift
    assert report.prediction.label is not None and not report.prediction.label.drifted
    assert report.prediction.confidence is not None and not report.prediction.confidence.drifted


def test_rebuild_profile_reproduces_the_training_time_profile(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    (copy / "digits").mkdir(parents=True)
    for name in ("model.joblib", "model.json"):
        (copy / "digits" / name).write_bytes((root / "digits" / name).read_bytes())
    path = digits.rebuild_profile(copy)
    assert path == monitoring_profile_path(copy, "digits")
    assert sha(path.with_suffix(".npz")) == sha(
        monitoring_profile_path(root, "digits").with_suffix(".npz")
    )


def test_a_tampered_artifact_is_refused(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    (copy / "digits").mkdir(parents=True)
    (copy / "digits" / "model.json").write_bytes((root / "digits" / "model.json").read_bytes())
    (copy / "digits" / "model.joblib").write_bytes(b"not the model")
    with pytest.raises(ModelArtifactError, match="corrupt or was replaced"):
        DigitsModel.load(copy)
    with pytest.raises(ModelArtifactError, match="corrupt or was replaced"):
        digits.rebuild_profile(copy)


def test_a_missing_model_says_how_to_train_it(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match="infertrail train digits"):
        DigitsModel.load(tmp_path)


def test_a_model_for_other_classes_is_refused(tmp_path: Path) -> None:
    data = digits.split()
    keep = data.train_labels < 3
    three = digits.build_pipeline().fit(data.train_images[keep], data.train_labels[keep])
    info = ModelInfo("digits", digits.VERSION, "ab" * 32)
    loaded = LoadedModel(info, three, {}, tmp_path / "model.joblib")
    with pytest.raises(ModelArtifactError, match=r"has classes \['0', '1', '2'\], not 0..9"):
        DigitsModel(loaded)
