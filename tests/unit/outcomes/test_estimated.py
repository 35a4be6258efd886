"""Estimated beside realized performance: the credit and digits demos' held-out traffic in the
store, outcomes for part of it, CBPE over all of it; the cases without estimates."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from infertrail.estimation import CbpeModel, cbpe_path
from infertrail.estimation.analyzer import CbpeAnalyzer
from infertrail.models import credit, digits
from infertrail.models.credit import CreditModel, as_application, load_dataset
from infertrail.models.digits import DigitsModel
from infertrail.outcomes.estimated import EstimatedPerformance, Estimators, prediction_window
from infertrail.outcomes.join import OutcomeSpec, performance_report
from infertrail.outcomes.schema import Outcome
from infertrail.outcomes.store import OutcomeStore, Prediction

from .helpers import NS, T0

CREDIT_SPEC = OutcomeSpec(positive="1")


@dataclass(frozen=True)
class Traffic:
    """A demo model's held-out rows as stored predictions, and their true labels."""

    predictions: list[Prediction]
    truth: list[str]


@pytest.fixture(scope="module")
def credit_traffic(trained_models: Path) -> Traffic:
    model = CreditModel.load(trained_models)
    _, x_te, _, y_te = credit.split(load_dataset())
    predictions = []
    for i, row in enumerate(x_te):
        a = model.assess(as_application(row))
        predictions.append(
            Prediction(
                f"c{i}",
                T0 + i * NS,
                "credit",
                model.info.version,
                a.decision,
                a.score,
                a.confidence,
                a.decision,
                2.0,
                model_sha256=model.info.sha256,
            )
        )
    return Traffic(predictions, [str(int(y)) for y in y_te])


@pytest.fixture(scope="module")
def digits_traffic(trained_models: Path) -> Traffic:
    model = DigitsModel.load(trained_models)
    data = digits.split()
    predictions = []
    for i, image in enumerate(data.test_images):
        p = model.predict(image)
        predictions.append(
            Prediction(
                f"d{i}",
                T0 + i * NS,
                "digits",
                model.info.version,
                p.label,
                p.confidence,
                p.confidence,
                None,
                1.0,
                model_sha256=model.info.sha256,
                probabilities=dict(zip(digits.LABELS, p.probabilities, strict=True)),
            )
        )
    return Traffic(predictions, [str(y) for y in data.test_labels])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OutcomeStore]:
    s = OutcomeStore(tmp_path / "outcomes.db")
    yield s
    s.close()


def load(store: OutcomeStore, traffic: Traffic, labelled: list[int]) -> None:
    store.add_predictions(traffic.predictions)
    store.write_outcomes(
        [
            Outcome(traffic.predictions[i].request_id, "label", traffic.truth[i], None, T0)
            for i in labelled
        ],
        received_ns=T0,
    )


def only_group(
    store: OutcomeStore, models: Path, spec: OutcomeSpec, **kw: int
) -> EstimatedPerformance:
    report = performance_report(store, lambda _m: spec, estimators=Estimators(models), **kw)
    [group] = report.groups
    assert group.estimated is not None
    return group.estimated


def test_credit_estimates_every_prediction_beside_the_labelled(
    store: OutcomeStore, trained_models: Path, credit_traffic: Traffic
) -> None:
    n = len(credit_traffic.predictions)
    labelled = [i for i in range(n) if i % 4]  # three in four outcomes have arrived
    load(store, credit_traffic, labelled)
    report = performance_report(
        store, lambda _m: CREDIT_SPEC, estimators=Estimators(trained_models)
    )
    [group] = report.groups
    e = group.estimated
    assert e is not None and e.status == "estimated", e
    assert (e.n_predictions, e.n_estimated, e.n_realized) == (n, n, len(labelled))
    assert e.classes == ("0", "1") and e.threshold == 0.5 and e.skipped["total"] == 0
    metrics = {m.name: m for m in e.metrics}
    assert list(metrics) == ["roc_auc", "accuracy", "f1", "precision", "recall"]
    # realized by the estimator's definitions on the labelled rows = the report's own metrics
    y = np.array([int(credit_traffic.truth[i]) for i in labelled])
    score = np.array([credit_traffic.predictions[i].score for i in labelled])
    assert metrics["accuracy"].realized == pytest.approx(accuracy_score(y, score >= 0.5))
    assert metrics["accuracy"].realized == pytest.approx(group.performance.accuracy)
    assert metrics["roc_auc"].realized == pytest.approx(roc_auc_score(y, score))
    # In distribution: the realized accuracy lies in the estimate's band, and the gap is within
    # 3 standard errors of the difference (estimate on n rows, realized on the labelled ones).
    acc = metrics["accuracy"]
    assert acc.estimate.lower_band is not None and acc.estimate.upper_band is not None
    assert acc.estimate.lower_band <= acc.realized <= acc.estimate.upper_band
    assert acc.beyond_sampling_error is False
    assert acc.difference == pytest.approx(acc.estimate.value - acc.realized)
    assert not any(m.beyond_sampling_error for m in e.metrics)


def test_digits_estimates_match_the_estimator_on_the_same_rows(
    store: OutcomeStore, trained_models: Path, digits_traffic: Traffic
) -> None:
    n = len(digits_traffic.predictions)
    labelled = [i for i in range(n) if i % 3]
    load(store, digits_traffic, labelled)
    e = only_group(store, trained_models, OutcomeSpec())
    assert e.status == "estimated" and (e.n_estimated, e.n_realized) == (n, len(labelled))
    # the stored probabilities give exactly what the estimator says of the arrays themselves
    cbpe = CbpeModel.load(cbpe_path(trained_models, "digits"))
    proba = np.array([list((p.probabilities or {}).values()) for p in digits_traffic.predictions])
    direct = cbpe.estimate([p.label for p in digits_traffic.predictions], proba)
    metrics = {m.name: m for m in e.metrics}
    for name, m in metrics.items():
        assert m.estimate == direct.metrics[name]
    # multiclass ROC AUC is realized too, from the stored probabilities
    truth = np.array([int(digits_traffic.truth[i]) for i in labelled])
    auc = np.mean([roc_auc_score(truth == k, proba[labelled, k]) for k in range(10)])
    assert metrics["roc_auc"].realized == pytest.approx(auc)
    acc = metrics["accuracy"]
    lo, hi = acc.estimate.lower_band, acc.estimate.upper_band
    assert lo is not None and hi is not None and acc.realized is not None
    assert lo <= acc.realized <= hi
    assert acc.beyond_sampling_error is False


def test_concept_shift_shows_as_a_gap(
    store: OutcomeStore, trained_models: Path, digits_traffic: Traffic
) -> None:
    """Outcomes that contradict the model (P(y | score) moved): the estimate cannot see it, the
    realized column does, and the gap is flagged as more than sampling error."""
    rng = np.random.default_rng(5)
    shifted = [str((int(t) + 1) % 10) if rng.random() < 0.3 else t for t in digits_traffic.truth]
    load(store, Traffic(digits_traffic.predictions, shifted), list(range(len(shifted))))
    e = only_group(store, trained_models, OutcomeSpec())
    acc = next(m for m in e.metrics if m.name == "accuracy")
    assert acc.estimate.value is not None and acc.estimate.value > 0.9
    assert acc.realized is not None and acc.realized < 0.75
    assert acc.beyond_sampling_error is True


def test_windows_estimate_their_own_predictions(
    store: OutcomeStore, trained_models: Path, credit_traffic: Traffic
) -> None:
    """With every_s, each window's estimate covers every prediction made in it; a window
    without outcomes is no group; the report's bounds bound the estimate too."""
    # predictions one second apart from T0: 100-second windows of 100 predictions
    labelled = list(range(0, 60)) + list(range(100, 200))  # the first window partly
    load(store, credit_traffic, labelled)
    report = performance_report(
        store, lambda _m: CREDIT_SPEC, every_s=100, estimators=Estimators(trained_models)
    )
    assert [g.window_start_ns for g in report.groups] == [T0, T0 + 100 * NS]
    first, second = (g.estimated for g in report.groups)
    assert first is not None and second is not None
    assert (first.n_predictions, first.n_realized) == (100, 60)
    assert (second.n_predictions, second.n_realized) == (100, 100)
    bounded = performance_report(
        store,
        lambda _m: CREDIT_SPEC,
        start_ns=T0 + 50 * NS,
        end_ns=T0 + 150 * NS,
        estimators=Estimators(trained_models),
    )
    [group] = bounded.groups
    assert group.estimated is not None and group.estimated.n_predictions == 100
    assert group.estimated.n_realized == 10 + 50


def test_kpi_kinds_and_reports_without_estimators_have_none(
    store: OutcomeStore, trained_models: Path, credit_traffic: Traffic
) -> None:
    load(store, credit_traffic, [0, 1])
    store.write_outcomes([Outcome("c0", "revenue", None, 12.5, T0)], received_ns=T0)
    kpi = performance_report(
        store, lambda _m: CREDIT_SPEC, kind="revenue", estimators=Estimators(trained_models)
    )
    assert [g.estimated for g in kpi.groups] == [None]
    assert [g.estimated for g in performance_report(store, lambda _m: CREDIT_SPEC).groups] == [None]


def test_a_model_without_an_estimator(store: OutcomeStore, tmp_path: Path) -> None:
    store.add_predictions(
        Prediction(f"r{i}", T0, "credit", "1", "approve", 0.8, 0.9, None, 1.0) for i in range(40)
    )
    store.write_outcomes([Outcome("r0", "label", "1", 1.0, T0)], received_ns=T0)
    e = only_group(store, tmp_path / "no-models", CREDIT_SPEC)
    assert e.status == "no_estimator" and e.n_predictions == 40 and e.metrics == ()
    assert e.reason is not None and e.reason.startswith("no estimator fitted")
    assert e.alert is None and e.as_dict()["metrics"] == {}


def copy_models(trained_models: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(trained_models, models)
    return models


def test_an_estimator_of_another_artifact(
    store: OutcomeStore, trained_models: Path, credit_traffic: Traffic, tmp_path: Path
) -> None:
    """Predictions of another artifact are not estimated: none at all is "no estimator fitted
    for this artifact"; a mix estimates the matching ones and counts the rest."""
    models = copy_models(trained_models, tmp_path)
    mine = credit_traffic.predictions[:100]
    others = [
        Prediction(
            f"x{i}",
            T0,
            "credit",
            p.version,
            p.label,
            p.score,
            p.confidence,
            None,
            1.0,
            model_sha256="f" * 64,
        )
        for i, p in enumerate(credit_traffic.predictions[100:140])
    ]
    unrecorded = [
        Prediction(f"u{i}", T0, "credit", mine[0].version, None, 0.7, None, None, 1.0)
        for i in range(5)
    ]
    store.add_predictions([*others, *unrecorded])
    store.write_outcomes([Outcome("x0", "label", "1", 1.0, T0)], received_ns=T0)
    e = only_group(store, models, CREDIT_SPEC)
    assert e.status == "no_estimator" and e.reason is not None
    assert "no estimator fitted for this artifact" in e.reason and "ffffffffffff" in e.reason
    assert e.skipped == {"total": 45, "other_artifact": 40, "unknown_artifact": 5}
    store.add_predictions(mine)
    e = only_group(store, models, CREDIT_SPEC)
    assert e.status == "estimated" and (e.n_predictions, e.n_estimated) == (145, 100)
    assert e.skipped["other_artifact"] == 40 and e.skipped["unknown_artifact"] == 5


def test_a_damaged_estimator_is_reported_and_a_refit_is_read(
    store: OutcomeStore, trained_models: Path, credit_traffic: Traffic, tmp_path: Path
) -> None:
    models = copy_models(trained_models, tmp_path)
    load(store, credit_traffic, [0, 1, 2])
    path = cbpe_path(models, "credit")
    good = path.read_text()
    estimators = Estimators(models)
    path.write_text('{"format": "infertrail-cbpe", "version": 99}')
    [group] = performance_report(store, lambda _m: CREDIT_SPEC, estimators=estimators).groups
    e = group.estimated
    assert e is not None and e.status == "estimator_unusable"
    assert e.reason is not None and "version 99 is not supported" in e.reason
    assert str(models) not in e.reason  # the API client learns no server paths
    path.write_text(good)  # refitted: the next report reads it again
    [group] = performance_report(store, lambda _m: CREDIT_SPEC, estimators=estimators).groups
    assert group.estimated is not None and group.estimated.status == "estimated"


def test_too_few_predictions(
    store: OutcomeStore, trained_models: Path, credit_traffic: Traffic
) -> None:
    few = Traffic(credit_traffic.predictions[:20], credit_traffic.truth[:20])
    load(store, few, list(range(20)))
    e = only_group(store, trained_models, CREDIT_SPEC)
    assert e.status == "too_few_predictions" and e.n_estimated == 20 and e.metrics == ()
    assert e.reason == "20 predictions could be estimated, fewer than the 30 an estimate needs"
    with pytest.raises(ValueError, match="min_rows must be at least 1, got 0"):
        Estimators(trained_models, min_rows=0)
    small = Estimators(trained_models, min_rows=10)
    [group] = performance_report(store, lambda _m: CREDIT_SPEC, estimators=small).groups
    assert group.estimated is not None and group.estimated.status == "estimated"


def test_rows_cbpe_cannot_read_are_counted(
    store: OutcomeStore, trained_models: Path, digits_traffic: Traffic
) -> None:
    """Digits predictions without probabilities, with a digit missing from them, or with an
    outcome that is no digit: skipped or unmatched, by reason."""
    base = digits_traffic.predictions[:40]

    def without(p: Prediction, rid: str, probabilities: dict[str, float] | None) -> Prediction:
        return Prediction(
            rid,
            p.ts_ns,
            p.model,
            p.version,
            p.label,
            p.score,
            p.confidence,
            None,
            1.0,
            model_sha256=p.model_sha256,
            probabilities=probabilities,
        )

    store.add_predictions(base)
    store.add_predictions(without(p, f"n{i}", None) for i, p in enumerate(base[:3]))
    partial = {k: v for k, v in (base[0].probabilities or {}).items() if k != "9"}
    store.add_predictions([without(base[0], "part", partial)])
    store.write_outcomes(
        [
            Outcome("d0", "label", "cat", None, T0),
            Outcome("d1", "label", digits_traffic.truth[1], None, T0),
        ],
        received_ns=T0,
    )
    e = only_group(store, trained_models, OutcomeSpec())
    assert e.status == "estimated" and (e.n_predictions, e.n_estimated) == (44, 40)
    assert e.skipped["no_probabilities"] == 4 and e.skipped["total"] == 4
    assert (e.n_realized, e.unmatched_outcomes) == (1, 1)


def test_prediction_window_lays_rows_out_as_the_drift_windows(
    store: OutcomeStore, trained_models: Path, digits_traffic: Traffic
) -> None:
    load(store, digits_traffic, [0])
    rows = store.scored_predictions(model="digits", version="1.0.0", kind="label")
    assert rows.outcome_label[:2] == [digits_traffic.truth[0], None]
    cbpe = CbpeModel.load(cbpe_path(trained_models, "digits"))
    window = prediction_window(rows, cbpe.classes)
    assert window.n_samples == len(digits_traffic.predictions)
    assert window.probabilities is not None and window.labels is not None
    first = digits_traffic.predictions[0]
    assert window.probabilities[0].tolist() == list((first.probabilities or {}).values())
    assert cbpe.classes[window.labels[0]] == first.label
    # the drift analyzer reads the same window into the same estimate as the report
    section = CbpeAnalyzer(cbpe, cbpe.classes).analyze(window).section
    e = only_group(store, trained_models, OutcomeSpec())
    assert section["n"] == e.n_estimated
    assert {m.name: m.estimate.as_dict() for m in e.metrics} == section["metrics"]
