"""The demo models' estimators: saved at training, deterministic, and right on held-out rows.

The held-out rows were never part of the estimator's reference (out-of-fold scores of the
training rows), so realized metrics on them are a fair check: each must lie within the
estimate's sampling-error band (3 standard errors).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from infertrail.drift import load_profile, profile_path
from infertrail.drift.detector import DriftWindow
from infertrail.estimation import CbpeAnalyzer, CbpeModel, Estimate, cbpe_path
from infertrail.models import credit, digits


def _card_sha(root: Path, name: str) -> str:
    sha: str = json.loads((root / name / "model.json").read_text())["sha256"]
    return sha


def _assert_within_band(estimate: Estimate, realized: dict[str, float]) -> None:
    for name, value in realized.items():
        metric = estimate.metrics[name]
        assert metric.lower_band is not None and metric.upper_band is not None
        assert metric.lower_band <= value <= metric.upper_band, (name, metric, value)


def test_credit_estimates_hold_on_the_held_out_applicants(trained_models: Path) -> None:
    model = CbpeModel.load(
        cbpe_path(trained_models, "credit"), expected_sha256=_card_sha(trained_models, "credit")
    )
    assert model.classes == ("0", "1") and model.threshold == credit.DECLINE_BELOW_SCORE
    _, X_te, _, y_te = credit.split(credit.load_dataset())
    served = credit.CreditModel.load(trained_models)
    scores = np.array([served.assess(credit.as_application(row)).score for row in X_te])
    pred = (scores >= 0.5).astype(int)
    _assert_within_band(
        model.estimate(None, scores),
        {
            "roc_auc": roc_auc_score(y_te, scores),
            "accuracy": accuracy_score(y_te, pred),
            "f1": f1_score(y_te, pred),
            "precision": precision_score(y_te, pred),
            "recall": recall_score(y_te, pred),
        },
    )


def test_digits_estimates_hold_on_the_held_out_images(trained_models: Path) -> None:
    model = CbpeModel.load(
        cbpe_path(trained_models, "digits"), expected_sha256=_card_sha(trained_models, "digits")
    )
    data = digits.split()
    served = digits.DigitsModel.load(trained_models)
    proba = np.array([served.predict(image).probabilities for image in data.test_images])
    pred = proba.argmax(axis=1)
    y = data.test_labels
    realized = {
        "roc_auc": roc_auc_score(y, proba, multi_class="ovr"),
        "accuracy": accuracy_score(y, pred),
        "f1": f1_score(y, pred, average="macro"),
        "precision": precision_score(y, pred, average="macro"),
        "recall": recall_score(y, pred, average="macro"),
    }
    _assert_within_band(model.estimate([str(p) for p in pred], proba), realized)
    # the same through the window analyzer, as the drift monitor would call it
    profile = load_profile(profile_path(trained_models, "digits"))
    assert profile.prediction is not None
    labels = profile.prediction.categories
    window = DriftWindow(
        rows=np.zeros((len(y), 1)),
        labels=np.array([labels.index(str(p)) for p in pred]),
        probabilities=proba[:, [int(label) for label in labels]],
    )
    analysis = CbpeAnalyzer(model, labels).analyze(window)
    assert analysis.signals["estimated.accuracy"] == pytest.approx(
        model.estimate([str(p) for p in pred], proba).value("accuracy")
    )


@pytest.mark.parametrize("module", [credit, digits])
def test_rebuilding_gives_the_training_time_file(
    module: object, trained_models: Path, tmp_path: Path
) -> None:
    name = module.NAME  # type: ignore[attr-defined]
    shutil.copytree(trained_models / name, tmp_path / name)
    trained = (tmp_path / name / "cbpe.json").read_bytes()
    (tmp_path / name / "cbpe.json").unlink()
    assert module.rebuild_estimator(tmp_path) == cbpe_path(tmp_path, name)  # type: ignore[attr-defined]
    assert (tmp_path / name / "cbpe.json").read_bytes() == trained
