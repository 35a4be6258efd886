"""Drift monitoring and alerting as the runtime starts them from Settings: profiles, monitors,
gauges, the alert engine, failures at start-up, and the sentiment reference."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infertrail.alerting.rules import ReceiverSecretError, RuleError
from infertrail.config import Settings
from infertrail.demo.corruptions import corrupt
from infertrail.drift import DriftConfig, ProfileError, load_profile, profile_path
from infertrail.events import ModelInfo
from infertrail.models import PROFILE_BUILDERS, digits, sentiment
from infertrail.models.digits import DigitsModel
from infertrail.monitor import Monitor
from infertrail.runtime import Runtime
from infertrail.runtime.drift import load_reference
from tests.unit.alerting.fakes import webhook_receiver

WINDOW = 50


@pytest.fixture(scope="module")
def models(trained_models: Path) -> Path:
    """Trained sentiment and digits models with their reference profiles."""
    return trained_models


@pytest.fixture
def models_copy(models: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(models, root)
    return root


def make_settings(tmp_path: Path, models: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "metric_export_interval_ms": 60_000,
        "telemetry_files": False,
        "drift_window_size": WINDOW,
        "drift_window_seconds": None,
        **overrides,
    }
    s = Settings(**values)
    s.ensure_dirs()
    shutil.copytree(models, s.models_dir, dirs_exist_ok=True)
    return s


def served(s: Settings) -> list[ModelInfo]:
    return [sentiment.SentimentModel.load(s.models_dir).info, DigitsModel.load(s.models_dir).info]


def start(s: Settings, **options: Any) -> Runtime:
    """The runtime of the sentiment and digits models, nothing else that would slow it."""
    s = s.model_copy(update={"audit_enabled": False, "cost_enabled": False})
    s = s.model_copy(update={"outcomes_enabled": False, "set_global_providers": False})
    return Runtime.start(s, served(s), profile_builders=PROFILE_BUILDERS, **options)


def monitor_of(rt: Runtime) -> Monitor:
    assert rt.monitor is not None
    return rt.monitor


def digits_gauges(monitor: Monitor) -> dict[str, float]:
    """The digits model's drift gauges on /metrics (one value per name, per-feature ones aside)."""
    text = generate_latest(monitor.telemetry.prometheus_registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("infertrail_model_name") == "digits" and "feature" not in sample.labels
    }


def classify(monitor: Monitor, model: DigitsModel, images: np.ndarray) -> None:
    for pixels in images.tolist():
        with monitor.observe(model.info, pixels, endpoint="/v1/digits") as ev:
            p = model.predict(pixels)
            ev.label, ev.score, ev.confidence = p.label, p.confidence, p.confidence


def test_each_served_model_gets_a_drift_monitor_and_gauges(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    s = make_settings(tmp_path, models)
    rt = start(s)
    monitor = monitor_of(rt)
    try:
        assert set(rt.drift) == {"sentiment", "digits"}
        assert rt.alerting is None  # no rules file configured
        for name, dm in rt.drift.items():
            assert dm.profile.model_name == name
            assert (dm.window_size, dm.window_seconds, dm.sample_rate) == (WINDOW, None, 1.0)
        model = DigitsModel.load(s.models_dir)
        classify(monitor, model, digits.split().test_images[:WINDOW])
        monitor.flush()
        assert rt.drift["digits"].flush()
        [report] = rt.drift["digits"].reports
        assert report.n_samples == WINDOW and not report.dataset_drift
        assert rt.drift["sentiment"].reports == []
        gauges = digits_gauges(monitor)
        assert gauges["infertrail_drift_share_drifted"] == report.share_drifted
        assert gauges["infertrail_drift_window_samples"] == WINDOW
    finally:
        rt.shutdown()


def rules_toml(url: str, **rule: Any) -> str:
    fields = {"for_windows": 1, "resolve_after": 1, **rule}
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
    return f"""
[receivers.hook]
type = "webhook"
url = "{url}"

[[rules]]
name = "digits-drift"
signal = "drift.share_drifted"
model = "digits"
comparison = ">"
threshold = 0.3
receivers = ["hook"]
{extra}
"""


def test_a_drifted_window_is_alerted_through_the_rules_file(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    with webhook_receiver() as hook:
        rules = tmp_path / "rules.toml"
        rules.write_text(rules_toml(hook.url))
        s = make_settings(tmp_path, models, alert_rules_file=rules)
        rt = start(s)
        monitor = monitor_of(rt)
        try:
            assert rt.alerting is not None
            model = DigitsModel.load(s.models_dir)
            clean = digits.split().test_images[:WINDOW]
            classify(monitor, model, corrupt(clean, "blur", 5, rng=0))
            monitor.flush()
            assert rt.drift["digits"].flush()
            assert [t.rule for t in rt.alerting.engine.firing()] == ["digits-drift"]
        finally:
            rt.shutdown()  # delivers what is queued
        [sent] = hook.accepted()
        assert sent.body["kind"] == "trigger" and sent.body["model"] == "digits"
        assert s.alert_state_path == s.data_dir / "alerts" / "state.json"
        assert s.alert_state_path.is_file()


def test_shutdown_judges_the_open_window_and_is_idempotent(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    s = make_settings(tmp_path, models)
    rt = start(s)
    model = DigitsModel.load(s.models_dir)
    classify(monitor_of(rt), model, digits.split().test_images[: WINDOW - 10])  # not yet full
    rt.shutdown()
    rt.shutdown()
    assert [r.n_samples for r in rt.drift["digits"].reports] == [WINDOW - 10]


def test_alert_state_path_can_be_set(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, alert_state_file=tmp_path / "elsewhere.json")
    assert s.alert_state_path == tmp_path / "elsewhere.json"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"drift_sample_rate": 0.0}, "drift_sample_rate"),
        ({"drift_sample_rate": 1.5}, "drift_sample_rate"),
        ({"drift_window_size": 0}, "drift_window_size"),
        ({"drift_window_seconds": 0}, "drift_window_seconds"),
    ],
)
def test_bad_drift_settings_are_refused(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(data_dir=tmp_path, **overrides)


# -- failures at start-up ----------------------------------------------------------------------
def test_a_bad_rules_file_fails_the_start_cleanly(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_toml("http://127.0.0.1:9/hook", for_windows=0))
    s = make_settings(tmp_path, models, alert_rules_file=rules)
    with pytest.raises(RuleError, match="rule 'digits-drift': for_windows must be >= 1"):
        start(s)
    start(s.model_copy(update={"alert_rules_file": None})).shutdown()  # nothing left held


def test_a_bad_drift_config_fails_the_start_cleanly(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    s = make_settings(tmp_path, models)
    bad = DriftConfig(thresholds={"no_such_feature": 0.2})
    with pytest.raises(ValueError, match="no_such_feature"):
        start(s, drift_config=bad)
    start(s).shutdown()


def test_a_missing_receiver_secret_is_named(
    tmp_path: Path, models: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2E_PD_KEY", raising=False)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[receivers.pd]\ntype = "pagerduty"\nrouting_key_env = "E2E_PD_KEY"\n'
        '[[rules]]\nname = "r"\nsignal = "drift.score"\ncomparison = ">"\nthreshold = 1.0\n'
        'receivers = ["pd"]\n'
    )
    s = make_settings(tmp_path, models, alert_rules_file=rules)
    with pytest.raises(ReceiverSecretError, match="E2E_PD_KEY"):
        start(s)


def test_a_missing_demo_profile_is_rebuilt_with_a_warning(
    models_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    info = DigitsModel.load(models_copy).info
    path = profile_path(models_copy, "digits")
    expected = path.with_suffix(".npz").read_bytes()
    path.unlink()
    path.with_suffix(".npz").unlink()
    with caplog.at_level(logging.WARNING, logger="infertrail.drift"):
        profile = load_reference(models_copy, info, PROFILE_BUILDERS)
    assert profile.model_sha256 == info.sha256
    assert path.with_suffix(".npz").read_bytes() == expected
    assert "is missing; rebuilding it" in caplog.text


def test_a_profile_of_an_older_artifact_is_rebuilt(
    models_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    info = DigitsModel.load(models_copy).info
    path = profile_path(models_copy, "digits")
    meta = json.loads(path.read_text())
    meta["model"]["sha256"] = "0" * 64
    path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="infertrail.drift"):
        assert load_reference(models_copy, info, PROFILE_BUILDERS).model_sha256 == info.sha256
    assert "belongs to an older artifact" in caplog.text


def test_a_damaged_profile_is_an_error_not_a_silent_rebuild(models_copy: Path) -> None:
    info = DigitsModel.load(models_copy).info
    npz = profile_path(models_copy, "digits").with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(ProfileError, match="does not match the sha256"):
        load_reference(models_copy, info, PROFILE_BUILDERS)


def test_a_model_without_a_baseline_builder_needs_its_profile(models_copy: Path) -> None:
    info = ModelInfo("credit", "1", "ab" * 32)
    with pytest.raises(ProfileError, match="'credit' has no baseline builder"):
        load_reference(models_copy, info)


# -- the sentiment reference ------------------------------------------------------------------
def test_sentiment_oov_rates_are_leave_one_out(models: Path) -> None:
    profile = load_profile(profile_path(models, "sentiment"))
    texts = sentiment.split().train_texts
    assert profile.text is not None
    assert profile.sample.shape == (len(texts), 3)  # every training sentence, in order
    tokens = [profile.text.tokens(t) for t in texts]
    for i in range(0, len(texts), 97):
        others = {t for j, toks in enumerate(tokens) if j != i for t in toks}
        mine = tokens[i]
        expected = sum(t not in others for t in mine) / len(mine) if mine else 0.0
        assert profile.sample[i, 2] == pytest.approx(expected)
        assert profile.sample[i, :2].tolist() == [len(texts[i]), len(mine)]
    # against its own vocabulary every training sentence would be 0: the point of leaving out
    assert 0.05 < float(profile.sample[:, 2].mean()) < 0.2


def test_sentiment_reference_predictions_are_out_of_fold(models: Path) -> None:
    profile = load_profile(profile_path(models, "sentiment"))
    model = sentiment.SentimentModel.load(models)
    texts = sentiment.split().train_texts[:300]
    fitted = np.array([model.predict(t).confidence for t in texts])
    assert profile.sample_confidences is not None
    assert float(profile.sample_confidences[:300].mean()) < float(fitted.mean()) - 0.02
    assert profile.prediction is not None
    assert profile.prediction.categories == sentiment.LABELS


def test_each_window_is_judged_by_the_analyzers_the_settings_name(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    s = make_settings(tmp_path, models, drift_multivariate="reconstruction,domain_classifier")
    rt = start(s)
    monitor = monitor_of(rt)
    try:
        names = {name: [a.name for a in dm.analyzers] for name, dm in rt.drift.items()}
        # digits has cbpe.json from its trainer; sentiment has none, so no estimates for it
        assert names["digits"] == [
            "data_quality",
            "estimated_performance",
            "reconstruction_drift",
            "domain_classifier_drift",
        ]
        assert "estimated_performance" not in names["sentiment"]
        model = DigitsModel.load(s.models_dir)
        for pixels in digits.split().test_images[:WINDOW].tolist():
            with monitor.observe(model.info, pixels, endpoint="/v1/digits") as ev:
                p = model.predict(pixels)
                ev.label, ev.score, ev.confidence = p.label, p.confidence, p.confidence
                ev.probabilities = dict(zip(digits.LABELS, p.probabilities, strict=True))
        monitor.flush()
        assert rt.drift["digits"].flush()
        [report] = rt.drift["digits"].reports
        assert set(report.sections) == set(names["digits"])
        assert 0.5 < report.signals["estimated.accuracy"] <= 1.0
        assert report.signals["quality.type_error_share"] == 0.0
        assert "multivariate.reconstruction_error" in report.signals
        assert rt.drift["digits"].stats.analyzer_errors == 0
        text = generate_latest(monitor.telemetry.prometheus_registry).decode()
        assert 'signal="estimated.accuracy"' in text
    finally:
        rt.shutdown()


def test_no_analyzers_when_switched_off(tmp_path: Path, models: Path, clean_env: None) -> None:
    s = make_settings(
        tmp_path, models, drift_quality=False, drift_estimates=False, drift_multivariate=""
    )
    rt = start(s)
    try:
        assert all(dm.analyzers == [] for dm in rt.drift.values())
    finally:
        rt.shutdown()


def test_a_damaged_quality_schema_or_estimator_fails_the_start(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    s = make_settings(tmp_path, models)
    schema = s.models_dir / "digits" / "quality.json"
    schema.write_text('{"format": "nonsense"}')
    with pytest.raises(ValueError, match=r"quality\.json"):
        start(s)
    schema.unlink()
    estimator = s.models_dir / "digits" / "cbpe.json"
    estimator.write_text("{")
    with pytest.raises(ValueError, match=r"cbpe\.json"):
        start(s)
    with pytest.raises(ValueError, match="drift_multivariate"):
        Settings(drift_multivariate="pca")


def test_slices_named_in_the_settings_are_judged_and_published(
    tmp_path: Path, models: Path, clean_env: None
) -> None:
    s = make_settings(
        tmp_path,
        models,
        drift_slices="endpoint;feature:ink_fraction:0.2",
        drift_min_slice_samples=5,
        drift_multivariate="",
    )
    rt = start(s)
    monitor = monitor_of(rt)
    try:
        # the feature spec applies to digits only (sentiment has no ink_fraction)
        assert [x.label for x in rt.drift["sentiment"].slicer.specs] == ["endpoint"]  # type: ignore[union-attr]
        model = DigitsModel.load(s.models_dir)
        images = digits.split().test_images[:WINDOW].tolist()
        for i, pixels in enumerate(images):
            endpoint = "/v1/digits" if i % 2 else "/v1/digits/batch"
            with monitor.observe(model.info, pixels, endpoint=endpoint) as ev:
                p = model.predict(pixels)
                ev.label, ev.score, ev.confidence = p.label, p.confidence, p.confidence
        monitor.flush()
        assert rt.drift["digits"].flush()
        [report] = rt.drift["digits"].reports
        assert report.slices["endpoint=/v1/digits"].n_samples == WINDOW // 2
        assert report.slices["endpoint=/v1/digits/batch"].n_samples == WINDOW // 2
        ink = [k for k in report.slices if k.startswith("ink_fraction=")]
        assert ink and sum(report.slices[k].n_samples for k in ink) <= WINDOW
        assert "data_quality" in report.slices["endpoint=/v1/digits"].sections
        text = generate_latest(monitor.telemetry.prometheus_registry).decode()
        assert "infertrail_drift_slice_samples{" in text and 'slice="endpoint=/v1/digits"' in text
    finally:
        rt.shutdown()


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        ("feature:", "drift_slices"),
        ("feature:no_such_feature", "no served model"),
        ("tenant;tenant", "drift_slices"),
    ],
)
def test_bad_slices_fail_the_start(
    tmp_path: Path, models: Path, clean_env: None, slices: str, message: str
) -> None:
    s = make_settings(tmp_path, models, drift_slices=slices)
    with pytest.raises(ValueError, match=message):
        start(s)


def test_a_missing_or_damaged_estimator_is_rebuilt_when_a_builder_is_given(
    tmp_path: Path, models: Path, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    from infertrail.models import ESTIMATOR_BUILDERS

    s = make_settings(tmp_path, models)
    estimator = s.models_dir / "digits" / "cbpe.json"
    good = estimator.read_bytes()
    estimator.write_text("{")
    with caplog.at_level(logging.WARNING, logger="infertrail.drift"):
        rt = start(s, estimator_builders=ESTIMATOR_BUILDERS)
    try:
        assert "estimated_performance" in [a.name for a in rt.drift["digits"].analyzers]
        assert "rebuilding the CBPE estimator of 'digits'" in caplog.text
        assert estimator.read_bytes() == good  # deterministic: the same file again
    finally:
        rt.shutdown()
    estimator.unlink()
    rt = start(s, estimator_builders=ESTIMATOR_BUILDERS)
    try:
        assert estimator.read_bytes() == good
    finally:
        rt.shutdown()
