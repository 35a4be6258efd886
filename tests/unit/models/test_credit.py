"""The credit model: data, deterministic training, exact SHAP, bootstrap interval, reasons."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit

from infertrail.models import credit
from infertrail.models.artifacts import ModelArtifactError, save_model
from infertrail.models.credit import (
    ATTRIBUTES,
    MAX_REASONS,
    CreditModel,
    InvalidApplication,
    as_application,
    decide,
    load_dataset,
)
from infertrail.models.reason_codes import (
    REASON_CODES_VERSION,
    reason_for,
    reason_table,
    table_digest,
)

# The data file as shipped (see /src/infertrail/models/data/ATTRIBUTION.md).
GERMAN_DATA_SHA256 = "d4d07316a7b3dd7271bb9903dd992cd7437735211f3d75db7f8e5a56c1440984"
# Pinned per version: editing a text or code without bumping REASON_CODES_VERSION fails here.
REASON_TABLE_DIGESTS = {
    "credit-reasons/1": "4e2baeb813409590287e164b04d40b75716cfd427d5cf9d534ec2df5f2fee478",
}


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("credit-models")
    credit.train(root)
    return root


@pytest.fixture(scope="module")
def model(models_root: Path) -> CreditModel:
    return CreditModel.load(models_root)


@pytest.fixture(scope="module")
def data() -> credit.CreditData:
    return load_dataset()


applications = st.fixed_dictionaries(
    {
        a.name: st.sampled_from(a.codes) if a.categorical else st.integers(a.low, a.high)
        for a in ATTRIBUTES
    }
)


def encoded_groups(model: CreditModel) -> np.ndarray:
    """Attribute index of each encoded column, read from sklearn's own feature names."""
    names = model.pipeline.named_steps["encode"].get_feature_names_out()
    return np.array([int(re.search(r"__x(\d+)", n).group(1)) for n in names])  # type: ignore[union-attr]


# -- data and training -----------------------------------------------------------------------


def test_dataset_is_the_shipped_copy(data: credit.CreditData) -> None:
    assert data.sha256 == GERMAN_DATA_SHA256
    assert data.X.shape == (1000, 20)
    assert int(data.y.sum()) == 700  # 700 good, 300 bad risks
    first = as_application(data.X[0])
    assert first["checking_status"] == "A11" and first["duration_months"] == 6


def test_card_records_identity_thresholds_and_held_out_metrics(
    models_root: Path, model: CreditModel
) -> None:
    card = json.loads((models_root / "credit" / "model.json").read_text())
    assert card["sha256"] == model.info.sha256 and card["version"] == credit.VERSION
    assert card["training"]["data_sha256"] == GERMAN_DATA_SHA256
    assert card["training"]["train_rows"] == 800 and card["training"]["test_rows"] == 200
    assert card["thresholds"]["approve_min_odds"] == 5.0  # score 5/6
    assert card["thresholds"]["decline_below_odds"] == 1.0  # score 1/2
    assert card["thresholds"]["approve_min_score"] == pytest.approx(5 / 6)
    held_out = card["held_out"]
    assert 0.7 < held_out["roc_auc"] <= 1.0  # the literature reports ~0.75-0.80 on this data
    assert 0.0 < held_out["brier"] < 0.21  # 0.21 = always predicting the base rate 0.7
    rates = held_out["approve_rate"] + held_out["refer_rate"] + held_out["decline_rate"]
    assert rates == pytest.approx(1.0)


@pytest.mark.slow
def test_artifact_sha256_is_identical_in_another_process(
    tmp_path: Path, model: CreditModel
) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = "import sys; from pathlib import Path; from infertrail.models import credit; "
    code += "print(credit.train(Path(sys.argv[1])).sha256)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    assert out.stdout.strip() == model.info.sha256


def test_an_artifact_of_another_format_is_refused(tmp_path: Path) -> None:
    save_model(tmp_path, credit.NAME, credit.VERSION, {"format": 99})
    with pytest.raises(ModelArtifactError, match=r"is not format 1.*infertrail train credit"):
        CreditModel.load(tmp_path)


def test_a_missing_model_names_the_training_command(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match="infertrail train credit"):
        CreditModel.load(tmp_path)


# -- the numpy serving path equals the sklearn pipeline --------------------------------------


def test_encoding_and_log_odds_match_the_pipeline_on_every_row(
    model: CreditModel, data: credit.CreditData
) -> None:
    encoded = model.pipeline.named_steps["encode"].transform(data.X)
    decision = model.pipeline.decision_function(data.X)
    for i, row in enumerate(data.X):
        application = as_application(row)
        np.testing.assert_allclose(model.encode(application), encoded[i], rtol=0, atol=1e-12)
        assert model.assess(application).log_odds == pytest.approx(decision[i], abs=1e-9)


# -- exact SHAP ------------------------------------------------------------------------------


def test_attributions_add_up_to_the_model_output_on_every_row(
    model: CreditModel, data: credit.CreditData
) -> None:
    decision = model.pipeline.decision_function(data.X)
    for i, row in enumerate(data.X):
        a = model.assess(as_application(row))
        assert list(a.attributions) == [attr.name for attr in ATTRIBUTES]
        assert a.base_value + math.fsum(a.attributions.values()) == pytest.approx(
            decision[i], abs=1e-6
        )
        assert a.score == pytest.approx(expit(decision[i]), abs=1e-12)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(application=applications)
def test_attributions_add_up_for_any_valid_applicant(
    model: CreditModel, application: dict[str, Any]
) -> None:
    a = model.assess(application)
    reference = model.pipeline.decision_function(credit.as_row(application))[0]
    assert a.base_value + math.fsum(a.attributions.values()) == pytest.approx(reference, abs=1e-6)


def test_attributions_agree_with_shap_linear_explainer(
    model: CreditModel, data: credit.CreditData
) -> None:
    import shap  # test-only dependency (the dev extra); imported here: it takes a second

    classify = model.pipeline.named_steps["classify"]
    encoded = model.pipeline.named_steps["encode"].transform(data.X)
    background = model.background.reshape(1, -1)  # the pinned background: training mean
    explainer = shap.LinearExplainer(classify, background)
    explained = explainer(encoded)
    groups = encoded_groups(model)
    assert float(np.ravel(explainer.expected_value)[0]) == pytest.approx(model.base_value, abs=1e-9)
    for i, row in enumerate(data.X):
        by_attribute = np.bincount(groups, weights=explained.values[i], minlength=len(ATTRIBUTES))
        ours = np.array(list(model.assess(as_application(row)).attributions.values()))
        np.testing.assert_allclose(ours, by_attribute, rtol=0, atol=1e-6)


# -- bootstrap confidence interval -----------------------------------------------------------


def test_interval_is_the_bootstrap_percentile_interval_and_contains_the_score(
    model: CreditModel, data: credit.CreditData
) -> None:
    encoded = model.pipeline.named_steps["encode"].transform(data.X)
    boot = encoded @ model._boot_coef.T + model._boot_intercept
    low, high = expit(np.percentile(boot, [5, 95], axis=1))
    for i, row in enumerate(data.X):
        a = model.assess(as_application(row))
        assert a.ci_low == pytest.approx(low[i], abs=1e-12)
        assert a.ci_high == pytest.approx(high[i], abs=1e-12)
        assert a.ci_low <= a.score <= a.ci_high


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(application=applications)
def test_interval_contains_the_score_for_any_valid_applicant(
    model: CreditModel, application: dict[str, Any]
) -> None:
    a = model.assess(application)
    assert 0.0 < a.ci_low <= a.score <= a.ci_high < 1.0
    assert 0.0 <= a.confidence <= 1.0


def logit_width(a: credit.CreditAssessment) -> float:
    # Compared on the log-odds scale: in probability the sigmoid squeezes intervals near 0 or 1.
    return float(logit(a.ci_high) - logit(a.ci_low))


def test_interval_is_narrower_for_typical_applicants_than_for_outliers(
    model: CreditModel, data: credit.CreditData
) -> None:
    typical: dict[str, Any] = {}
    outlier: dict[str, Any] = {}
    for j, a in enumerate(ATTRIBUTES):
        column = data.X[:, j]
        if a.categorical:
            counts = {code: int(np.sum(column == code)) for code in a.codes}
            typical[a.name] = max(counts, key=counts.__getitem__)
            outlier[a.name] = min(counts, key=counts.__getitem__)
        else:
            typical[a.name] = int(np.median(column.astype(int)))
            outlier[a.name] = a.high
    assert logit_width(model.assess(typical)) < logit_width(model.assess(outlier))
    # and on average: real applicants versus random (implausible) attribute combinations
    rng = np.random.default_rng(0)
    random_widths = []
    for _ in range(300):
        random_app = {
            a.name: (
                str(rng.choice(a.codes)) if a.categorical else int(rng.integers(a.low, a.high + 1))
            )
            for a in ATTRIBUTES
        }
        random_widths.append(logit_width(model.assess(random_app)))
    real_widths = [logit_width(model.assess(as_application(r))) for r in data.X[:300]]
    assert np.median(real_widths) < np.median(random_widths)


def test_confidence_is_the_share_of_bootstrap_models_with_the_same_decision(
    model: CreditModel, data: credit.CreditData
) -> None:
    encoded = model.pipeline.named_steps["encode"].transform(data.X[:200])
    boot = encoded @ model._boot_coef.T + model._boot_intercept
    for i, row in enumerate(data.X[:200]):
        a = model.assess(as_application(row))
        same = [decide(float(z)) == a.decision for z in boot[i]]
        assert a.confidence == pytest.approx(sum(same) / len(same))


# -- decision and reasons --------------------------------------------------------------------


def test_decision_thresholds() -> None:
    assert decide(math.log(5)) == "approve"  # score 5/6
    assert decide(math.log(5) - 1e-9) == "refer"
    assert decide(0.0) == "refer"  # score 0.5
    assert decide(-1e-9) == "decline"


def test_reasons_are_the_most_adverse_attributions_mapped_through_the_table(
    model: CreditModel, data: credit.CreditData
) -> None:
    seen = set()
    for row in data.X:
        application = as_application(row)
        a = model.assess(application)
        seen.add(a.decision)
        assert a.decision == decide(a.log_odds)
        if a.decision == "approve":
            assert a.reasons == ()
            continue
        adverse = sorted((v, k) for k, v in a.attributions.items() if v < 0)[:MAX_REASONS]
        assert [(r.contribution, r.attribute) for r in a.reasons] == adverse
        assert 0 < len(a.reasons) <= MAX_REASONS
        for r in a.reasons:
            attribute = next(x for x in ATTRIBUTES if x.name == r.attribute)
            if attribute.categorical:  # the text names the applicant's own value
                assert reason_for(r.attribute, application[r.attribute]).code == r.code
            else:
                assert r.code.endswith(("-HIGH", "-LOW"))
        record = a.explanation(REASON_CODES_VERSION)
        assert record["reason_codes"] == [r.code for r in a.reasons]
    assert seen == {"approve", "refer", "decline"}


def test_numerical_reason_direction_follows_the_value() -> None:
    assert reason_for("duration_months", "high").code == "DUR-HIGH"
    assert reason_for("duration_months", "low").text == "Duration of credit: shorter than typical"


def test_reason_table_covers_every_value_the_model_can_score() -> None:
    table = reason_table()
    expected = {
        (a.name, v) for a in ATTRIBUTES for v in (a.codes if a.categorical else ("high", "low"))
    }
    assert set(table) == expected
    codes = [r.code for r in table.values()]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[A-Z]+-[A-Z0-9]+", c) for c in codes)
    assert (
        reason_for("checking_status", "A14").text == "Checking account status: no checking account"
    )


def test_reason_table_digest_is_pinned_for_its_version() -> None:
    assert table_digest() == REASON_TABLE_DIGESTS[REASON_CODES_VERSION]


def test_unknown_reason_key_names_what_is_known() -> None:
    with pytest.raises(LookupError, match=r"'A15'.*known values: \['A11', 'A12', 'A13', 'A14'\]"):
        reason_for("checking_status", "A15")
    with pytest.raises(LookupError, match="unknown attribute"):
        reason_for("income", "high")


# -- invalid applications --------------------------------------------------------------------


def valid(data: credit.CreditData) -> dict[str, Any]:
    return as_application(data.X[0])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"checking_status": "A15"},
            "checking_status is 'A15'; expected one of A11, A12, A13, A14",
        ),
        ({"purpose": "A47"}, "purpose is 'A47'; expected one of A40"),  # documented, never seen
        ({"duration_months": 73}, "duration_months is 73; expected an integer from 4 to 72"),
        ({"age_years": 18}, "age_years is 18; expected an integer from 19 to 75"),
        ({"people_liable": True}, "people_liable is True; expected an integer from 1 to 2"),
        ({"credit_amount": 1000.0}, "credit_amount is 1000.0; expected an integer"),
        ({"housing": None}, "housing is None; expected one of A151, A152, A153"),
        ({"income": 5}, "'income' is not an attribute; valid: checking_status"),
    ],
)
def test_invalid_applications_name_the_field_and_the_allowed_values(
    model: CreditModel, data: credit.CreditData, change: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidApplication) as err:
        model.assess({**valid(data), **change})
    assert needle in str(err.value)


def test_missing_attributes_are_all_listed(model: CreditModel, data: credit.CreditData) -> None:
    application = valid(data)
    del application["job"], application["telephone"]
    with pytest.raises(
        InvalidApplication, match=r"job is missing; expected one of A171.*telephone"
    ):
        model.assess(application)


def test_prohibited_bases_are_accepted_but_never_scored(
    model: CreditModel, data: credit.CreditData
) -> None:
    """Sex / marital status and national origin (Reg B 1002.6(b)) cannot move a score or be
    given as a reason: flipping them leaves everything about the assessment unchanged."""
    unscored = [a for a in credit.ATTRIBUTES if not a.scored]
    assert {a.name for a in unscored} == {"personal_status_sex", "foreign_worker"}
    for row in data.X[:50]:
        application = credit.as_application(row)
        base = model.assess(application)
        for a in unscored:
            assert base.attributions[a.name] == 0.0
            for code in a.codes:
                other = model.assess({**application, a.name: code})
                assert other.score == base.score
                assert other.decision == base.decision
        assert not {r.attribute for r in base.reasons} & {a.name for a in unscored}
