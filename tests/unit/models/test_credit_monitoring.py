"""The credit model's monitoring references: the drift profile the route's inputs are judged
against, its out-of-fold decisions and confidences, the estimator, and their rebuilds."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from infertrail.config import Settings
from infertrail.drift import DriftMonitor, DriftReport, Profile, ProfileError, load_profile
from infertrail.drift import profile_path as drift_profile_path
from infertrail.models import ESTIMATOR_BUILDERS, PROFILE_BUILDERS, credit, digits, sentiment
from infertrail.models.artifacts import ModelArtifactError, load_model
from infertrail.models.credit import ATTRIBUTE_NAMES, ATTRIBUTES, DECISIONS, CreditModel
from infertrail.monitor import Monitor
from infertrail.runtime.drift import load_reference, window_analyzers
from infertrail.server.credit import CREDIT_SCORE_PATH, credit_router
from infertrail.web.responses import install_error_handlers


@pytest.fixture(scope="module")
def profile(trained_models: Path) -> Profile:
    info = load_model(trained_models, credit.NAME).info
    return load_profile(
        drift_profile_path(trained_models, credit.NAME), expected_sha256=info.sha256
    )


@pytest.fixture(scope="module")
def model(trained_models: Path) -> CreditModel:
    return CreditModel.load(trained_models)


@pytest.fixture
def models_copy(trained_models: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(trained_models / credit.NAME, root / credit.NAME)
    return root


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the profile -------------------------------------------------------------------------------


def test_the_profile_has_the_served_attributes_and_decisions(
    trained_models: Path, profile: Profile
) -> None:
    assert (
        drift_profile_path(trained_models, "credit") == trained_models / "credit" / "profile.json"
    )
    assert profile.kind == "tabular" and profile.model_name == "credit"
    assert profile.n_rows == 800  # the training rows
    assert profile.feature_names == list(ATTRIBUTE_NAMES)  # the unscored ones too
    for f, a in zip(profile.columns, ATTRIBUTES, strict=True):
        assert f.kind == ("categorical" if a.categorical else "numerical"), a.name
        if a.categorical:  # every code the API accepts occurs among the training rows
            assert f.categories == tuple(sorted(a.codes)), a.name
    assert profile.prediction is not None and profile.prediction.categories == DECISIONS
    with pytest.raises(ProfileError, match="rebuild the profile"):
        load_profile(drift_profile_path(trained_models, "credit"), expected_sha256="0" * 64)


applications = st.fixed_dictionaries(
    {
        a.name: st.sampled_from(a.codes) if a.categorical else st.integers(a.low, a.high)
        for a in ATTRIBUTES
    }
)


@given(applications)
def test_any_valid_application_is_a_row_of_known_values(
    profile: Profile, application: dict[str, Any]
) -> None:
    row = profile.features(application)
    for value, f in zip(row, profile.columns, strict=True):
        given_value = application[f.name]
        if f.kind == "categorical":
            assert f.categories[int(value)] == given_value  # never the 'unseen' code
        else:
            assert value == given_value


def test_an_application_without_an_attribute_names_it(profile: Profile) -> None:
    application = credit.as_application(credit.load_dataset().X[0])
    del application["age_years"]
    with pytest.raises(ValueError, match="no value for feature 'age_years'"):
        profile.features(application)


def test_assess_rows_gives_what_the_served_model_gives_one_at_a_time(
    trained_models: Path, model: CreditModel
) -> None:
    artifact = load_model(trained_models, credit.NAME).model
    X = credit.load_dataset().X
    decisions, confidences = credit.assess_rows(
        model.pipeline, artifact["bootstrap_coef"], artifact["bootstrap_intercept"], X
    )
    served = [model.assess(credit.as_application(row)) for row in X]
    assert decisions.tolist() == [a.decision for a in served]
    assert confidences.tolist() == [a.confidence for a in served]


@pytest.fixture(scope="module")
def out_of_fold() -> tuple[np.ndarray, np.ndarray]:
    X_tr, _, y_tr, _ = credit.split(credit.load_dataset())
    return credit.out_of_fold_assessments(X_tr, y_tr)


def test_the_profile_holds_out_of_fold_decisions_and_confidences(
    profile: Profile, model: CreditModel, out_of_fold: tuple[np.ndarray, np.ndarray]
) -> None:
    decisions, confidences = out_of_fold
    assert profile.sample_labels is not None and profile.sample_confidences is not None
    # 800 rows < the sample size: the sample is every training row, in order
    assert [DECISIONS[c] for c in profile.sample_labels] == decisions.tolist()
    assert profile.sample_confidences.tolist() == confidences.tolist()
    X_tr, *_ = credit.split(credit.load_dataset())
    fitted = [model.assess(credit.as_application(row)) for row in X_tr]
    # not the served model on its own training rows (it learnt them)
    assert sum(d != a.decision for d, a in zip(decisions, fitted, strict=True)) > 20
    assert set(np.round(confidences * 100, 9)) <= set(range(101))  # shares of 100 replicates


# -- live traffic through the route ------------------------------------------------------------


@pytest.fixture
def judged_window(
    models_copy: Path, model: CreditModel, tmp_path: Path, clean_env: None
) -> Iterator[tuple[DriftReport, DriftMonitor, np.ndarray, np.ndarray]]:
    """The 200 held-out applicants through POST /v1/credit/score, one drift window judged by
    the analyzers the runtime wires, with each answer's score and the applicant's outcome."""
    settings = Settings(data_dir=tmp_path / "data", metric_export_interval_ms=60_000)
    settings.ensure_dirs()
    shutil.copytree(models_copy, settings.models_dir, dirs_exist_ok=True)
    reference = load_reference(settings.models_dir, model.info)
    analyzers = window_analyzers(settings, reference)
    assert [a.name for a in analyzers] == [
        "data_quality",
        "estimated_performance",
        "reconstruction_drift",
    ]
    _, X_te, _, y_te = credit.split(credit.load_dataset())
    drift = DriftMonitor(reference, window_size=len(y_te), window_seconds=None, analyzers=analyzers)
    monitor = Monitor(settings)
    monitor.add_sink(drift)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(credit_router(monitor, model, settings))
    scores = []
    try:
        with TestClient(app) as client:
            for i, row in enumerate(X_te):
                body = {"applicant_id": f"held-out-{i}", **credit.as_application(row)}
                r = client.post(CREDIT_SCORE_PATH, json=body)
                assert r.status_code == 200, r.text
                scores.append(r.json()["score"])
        monitor.flush()
        assert drift.flush()
        assert drift.latest is not None
        yield drift.latest, drift, np.array(scores), y_te
    finally:
        monitor.shutdown()
        drift.close()


def test_held_out_applicants_through_the_route_are_a_clean_window(
    judged_window: tuple[DriftReport, DriftMonitor, np.ndarray, np.ndarray],
) -> None:
    report, drift, _, _ = judged_window
    assert drift.stats.feature_errors == 0  # the profile read every input the route handed over
    assert report.n_samples == 200
    assert report.n_drifted == 0 and not report.dataset_drift
    assert report.prediction.label is not None and not report.prediction.label.drifted
    assert report.prediction.confidence is not None and not report.prediction.confidence.drifted
    quality = report.sections["data_quality"]
    assert quality["worst"] == dict.fromkeys(quality["worst"])  # no check found anything
    assert quality["constant_columns"] == [] and quality["n_rejected"] == 0
    assert report.signals["quality.type_error_share"] == 0.0
    assert report.sections["reconstruction_drift"]["drifted"] is False


def test_estimates_hold_the_realized_performance_within_their_bands(
    judged_window: tuple[DriftReport, DriftMonitor, np.ndarray, np.ndarray],
) -> None:
    report, _, scores, truth = judged_window
    section = report.sections["estimated_performance"]
    assert section["n"] == 200 and section["alert"] is False
    realized = {
        "accuracy": float(np.mean((scores >= credit.DECLINE_BELOW_SCORE) == truth)),
        "roc_auc": float(roc_auc_score(truth, scores)),
    }
    for name, value in realized.items():
        m = section["metrics"][name]
        assert m["lower_band"] <= value <= m["upper_band"], (name, m, value)
        assert abs(m["value"] - value) < 0.05, name  # measured: 0.001 and 0.026


# -- rebuilding ----------------------------------------------------------------------------


def test_every_demo_model_has_its_rebuilds_registered() -> None:
    profiles = {
        "sentiment": sentiment.rebuild_profile,
        "credit": credit.rebuild_profile,
        "digits": digits.rebuild_profile,
    }
    assert profiles == PROFILE_BUILDERS
    estimators = {"credit": credit.rebuild_estimator, "digits": digits.rebuild_estimator}
    assert estimators == ESTIMATOR_BUILDERS


def test_the_runtime_rebuilds_a_missing_profile_as_training_saved_it(
    trained_models: Path, models_copy: Path, model: CreditModel, caplog: pytest.LogCaptureFixture
) -> None:
    path = drift_profile_path(models_copy, "credit")
    path.unlink()
    path.with_suffix(".npz").unlink()
    returned = []

    def rebuild(root: Path) -> Path:
        returned.append(PROFILE_BUILDERS["credit"](root))
        return returned[-1]

    with caplog.at_level("WARNING", logger="infertrail.drift"):
        rebuilt = load_reference(models_copy, model.info, {"credit": rebuild})
    assert returned == [path]
    assert rebuilt.model_sha256 == model.info.sha256
    assert "is missing; rebuilding it" in caplog.text
    trained = drift_profile_path(trained_models, "credit")
    assert sha(path.with_suffix(".npz")) == sha(trained.with_suffix(".npz"))
    assert json.loads(path.read_text())["model"] == json.loads(trained.read_text())["model"]


def test_references_are_not_rebuilt_for_a_model_trained_on_other_data(
    models_copy: Path,
) -> None:
    card_path = models_copy / "credit" / "model.json"
    card = json.loads(card_path.read_text())
    card["training"]["data_sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    for rebuild in (credit.rebuild_profile, credit.rebuild_estimator):
        with pytest.raises(ModelArtifactError, match="retrain it with `infertrail train credit`"):
            rebuild(models_copy)


def test_references_are_not_rebuilt_for_a_tampered_or_missing_model(
    models_copy: Path, tmp_path: Path
) -> None:
    (models_copy / "credit" / "model.joblib").write_bytes(b"not the model")
    with pytest.raises(ModelArtifactError, match="corrupt or was replaced"):
        credit.rebuild_profile(models_copy)
    with pytest.raises(ModelArtifactError, match="infertrail train credit"):
        credit.rebuild_profile(tmp_path / "empty")
