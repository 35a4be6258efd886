"""The credit-scoring demo model: logistic regression on the German credit data (Statlog).

One artifact holds the fitted scikit-learn pipeline (one-hot categoricals, standardised
numericals, L2 logistic regression), the background for explanations (training mean of the
encoded features) and a bootstrap ensemble of the regression (B refits on resampled training
rows, same encoding). From them, :meth:`CreditModel.assess` gives for one applicant:

* ``score``: probability of a *good* credit risk (higher is better);
* a 90% bootstrap percentile interval of that score, and ``confidence``: the share of the
  bootstrap models that reach the same decision;
* exact interventional SHAP values in log-odds space per original attribute (the sum over the
  attribute's encoded columns of ``coef_j * (x_j - mean_j)``), adding up with the base value to
  the model's log-odds;
* the decision (approve / refer / decline by fixed score thresholds) and, unless approved, at
  most four principal reasons: the attributes with the most adverse attributions.

docs/credit-model.md explains the choices. Serving does not run the sklearn pipeline per row (its
per-call overhead is milliseconds); it applies the same fitted parameters with numpy, and the
unit tests hold the two to agree on every row of the data.

Training also saves, beside the model, what monitoring compares live traffic with: the drift
reference profile of the training rows (``profile.json`` + ``.npz``, docs/drift.md), with the
decisions and confidences that models refitted without each row give it, and the label-free
performance estimator (CBPE, ``cbpe.json``, docs/estimation.md), fitted on out-of-fold scores.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from infertrail.drift import Profile, build_tabular_profile, profile_path
from infertrail.estimation import CbpeModel, cbpe_path, fit_cbpe
from infertrail.events import ModelInfo
from infertrail.models.artifacts import ModelArtifactError, load_model, save_model
from infertrail.models.reason_codes import reason_for

NAME = "credit"
VERSION = "1.0.0"
ARTIFACT_FORMAT = 1
SCORE_MEANING = "probability of good credit risk"
#: Approve when the odds of good credit risk are at least 5 to 1 (score >= 5/6): the Bayes
#: decision under german.doc's cost matrix (approving a bad risk costs 5, declining a good one
#: costs 1) approves when 5 * (1 - p) < p. Thresholds are odds so that the rule is exact in the
#: log-odds space the model computes in.
APPROVE_MIN_ODDS = 5.0
#: Decline when the odds are below 1 to 1 (score < 0.5): a bad outcome is the likelier one.
DECLINE_BELOW_ODDS = 1.0
APPROVE_MIN_SCORE = APPROVE_MIN_ODDS / (1 + APPROVE_MIN_ODDS)
DECLINE_BELOW_SCORE = DECLINE_BELOW_ODDS / (1 + DECLINE_BELOW_ODDS)
EXPLANATION_METHOD = "shap-linear-interventional"
EXPLANATION_OUTPUT = "log-odds of good credit risk"
EXPLANATION_BACKGROUND = "mean of the encoded training rows"
CI_LEVEL = 0.90
BOOTSTRAP_REPLICATES = 100
MAX_REASONS = 4
REGULARIZATION_C = 1.0
SPLIT_SEED = 7
BOOTSTRAP_SEED = 20261127
TEST_SHARE = 0.2
DATA_FILE = "german.data"
LABEL_COLUMN = "CLASSIFICATION"
#: The performance estimator's classes as outcomes name them (0 bad, 1 good risk: the score is
#: the probability of "1"), its out-of-fold reference and its chunks (8 of the 800 rows).
CBPE_CLASSES = ("0", "1")
CBPE_FOLDS = 5
CBPE_CHUNK_SIZE = 100
#: The served labels, in the order the drift profile lists them.
DECISIONS = ("approve", "refer", "decline")

_APPROVE_LOGIT = math.log(APPROVE_MIN_ODDS)
_DECLINE_LOGIT = math.log(DECLINE_BELOW_ODDS)
# The decision bands of np.digitize over these edges: 0 decline, 1 refer, 2 approve (the rule of
# decide(): an edge belongs to the band above it).
_BAND_EDGES = np.array([_DECLINE_LOGIT, _APPROVE_LOGIT])
_BAND_DECISIONS = np.array(["decline", "refer", "approve"], dtype=object)
# (5.0, 95.0), rounded so that 1 - 0.9 != 0.1 in binary does not shift the interval.
_CI_PERCENTILES = (round(50 * (1 - CI_LEVEL), 9), round(50 * (1 + CI_LEVEL), 9))


def _order_statistics(n: int) -> tuple[list[int], np.ndarray]:
    """For np.percentile's default (linear) rule over n values: the order statistics each CI
    bound interpolates between, and the weights, so that serving needs one partial sort."""
    ranks, weights = [], []
    for q in _CI_PERCENTILES:
        pos = (n - 1) * q / 100
        below = math.floor(pos)
        ranks += [below, min(below + 1, n - 1)]
        weights.append(pos - below)
    return ranks, np.asarray(weights)


_CI_RANKS, _CI_WEIGHTS = _order_statistics(BOOTSTRAP_REPLICATES)


@dataclass(frozen=True, slots=True)
class Attribute:
    """One of the 20 applicant attributes: API name, data column, and what values are valid.

    Categorical attributes take german.doc's codes that occur in the data (A47 "vacation" and
    A95 "female, single" never do, so the model cannot score them); numerical ones take integers
    in the range seen in the data, since a linear model extrapolates silently beyond it.
    """

    name: str
    column: str
    label: str
    codes: tuple[str, ...] = ()
    low: int = 0
    high: int = 0
    # False for prohibited bases under ECOA / Reg B 1002.6(b) (sex, marital status, national
    # origin): validated and accepted as part of the application, never scored, so they can
    # neither move a score nor appear as a reason for a decision.
    scored: bool = True

    @property
    def categorical(self) -> bool:
        return bool(self.codes)

    def allowed(self) -> str:
        """The valid values, as an error message should state them."""
        if self.categorical:
            return "one of " + ", ".join(self.codes)
        return f"an integer from {self.low} to {self.high}"


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "checking_status",
        "STATUS_ACCOUNT",
        "Status of existing checking account",
        ("A11", "A12", "A13", "A14"),
    ),
    Attribute("duration_months", "DURATION_MONTHS", "Duration in months", low=4, high=72),
    Attribute(
        "credit_history", "CREDIT_HISTORY", "Credit history", ("A30", "A31", "A32", "A33", "A34")
    ),
    Attribute(
        "purpose",
        "PURPOSE",
        "Purpose",
        ("A40", "A41", "A42", "A43", "A44", "A45", "A46", "A48", "A49", "A410"),
    ),
    Attribute("credit_amount", "AMOUNT", "Credit amount (DM)", low=250, high=18424),
    Attribute("savings", "BONDS", "Savings account/bonds", ("A61", "A62", "A63", "A64", "A65")),
    Attribute(
        "employment_since",
        "EMPLOYMENT",
        "Present employment since",
        ("A71", "A72", "A73", "A74", "A75"),
    ),
    Attribute(
        "installment_rate",
        "INSTALLMENT_RATE",
        "Installment rate in percentage of disposable income",
        low=1,
        high=4,
    ),
    Attribute(
        "personal_status_sex",
        "PERSONAL_STATUS_AND_SEX",
        "Personal status and sex",
        ("A91", "A92", "A93", "A94"),
        scored=False,
    ),
    Attribute(
        "other_debtors", "OTHER_DEBTORS", "Other debtors / guarantors", ("A101", "A102", "A103")
    ),
    Attribute(
        "residence_since", "PRESENT_RESIDENCE_SINCE", "Present residence since", low=1, high=4
    ),
    Attribute("property", "PROPERTY", "Property", ("A121", "A122", "A123", "A124")),
    Attribute("age_years", "AGE", "Age in years", low=19, high=75),
    Attribute(
        "other_installment_plans",
        "INSTALLMENT_PLANS",
        "Other installment plans",
        ("A141", "A142", "A143"),
    ),
    Attribute("housing", "HOUSING", "Housing", ("A151", "A152", "A153")),
    # The data file's header calls this column NUMBER_OF_CREDIT_CARDS; german.doc says credits.
    Attribute(
        "existing_credits",
        "NUMBER_OF_CREDIT_CARDS",
        "Number of existing credits at this bank",
        low=1,
        high=4,
    ),
    Attribute("job", "JOB", "Job", ("A171", "A172", "A173", "A174")),
    Attribute(
        "people_liable",
        "LIABLE_PEOPLE",
        "Number of people being liable to provide maintenance for",
        low=1,
        high=2,
    ),
    Attribute("telephone", "TELEPHONE", "Telephone", ("A191", "A192")),
    Attribute("foreign_worker", "FOREIGN", "Foreign worker", ("A201", "A202"), scored=False),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
CATEGORICAL_ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES if a.categorical)
_CATEGORICAL_IDX = [i for i, a in enumerate(ATTRIBUTES) if a.categorical and a.scored]
_NUMERICAL_IDX = [i for i, a in enumerate(ATTRIBUTES) if not a.categorical and a.scored]
SCORED_ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES if a.scored)


class InvalidApplication(ValueError):
    """An application with missing, unknown or out-of-range attributes (all are listed)."""


def application_problems(application: Mapping[str, Any]) -> list[str]:
    """Every problem with ``application`` (empty when valid), each naming the allowed values."""
    problems = []
    for a in ATTRIBUTES:
        if a.name not in application:
            problems.append(f"{a.name} is missing; expected {a.allowed()}")
            continue
        v = application[a.name]
        ok = (
            v in a.codes
            if a.categorical
            else type(v) is int and a.low <= v <= a.high  # bool is not an integer here
        )
        if not ok:
            problems.append(f"{a.name} is {repr(v)[:40]}; expected {a.allowed()}")
    problems += [
        f"{k[:40]!r} is not an attribute; valid: {', '.join(ATTRIBUTE_NAMES)}"
        for k in application
        if k not in ATTRIBUTE_NAMES
    ]
    return problems


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreditData:
    """The applicants as an object matrix in ATTRIBUTES order, and 1 = good / 0 = bad risk."""

    X: np.ndarray
    y: np.ndarray
    sha256: str


def load_dataset() -> CreditData:
    """Parse the shipped german.data, checking its header and every value against ATTRIBUTES."""
    raw = (resources.files("infertrail.models") / "data" / "credit" / DATA_FILE).read_bytes()
    lines = raw.decode("ascii").splitlines()
    expected = [a.column for a in ATTRIBUTES] + [LABEL_COLUMN]
    if not lines or lines[0].split() != expected:
        raise ValueError(f"{DATA_FILE}: header {lines[:1]} is not {' '.join(expected)}")
    rows: list[list[Any]] = []
    labels: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if len(fields) != len(expected) or fields[-1] not in ("0", "1"):
            raise ValueError(f"{DATA_FILE} line {lineno}: expected 20 attributes and a 0/1 label")
        row: dict[str, Any] = {
            a.name: f if a.categorical else int(f) for a, f in zip(ATTRIBUTES, fields, strict=False)
        }
        if problems := application_problems(row):
            raise ValueError(f"{DATA_FILE} line {lineno}: {'; '.join(problems)}")
        rows.append(list(row.values()))
        labels.append(int(fields[-1]))
    X = np.empty((len(rows), len(ATTRIBUTES)), dtype=object)
    X[:] = rows
    return CreditData(X, np.asarray(labels), hashlib.sha256(raw).hexdigest())


def as_row(application: Mapping[str, Any]) -> np.ndarray:
    """One application as a 1 x 20 object matrix, the input the sklearn pipeline takes."""
    row = np.empty((1, len(ATTRIBUTES)), dtype=object)
    row[0, :] = [application[name] for name in ATTRIBUTE_NAMES]
    return row


def as_application(row: np.ndarray) -> dict[str, Any]:
    """A row of :attr:`CreditData.X` as an application dict (API field names)."""
    return {a.name: (v if a.categorical else int(v)) for a, v in zip(ATTRIBUTES, row, strict=True)}


# -- training --------------------------------------------------------------------------------


def build_pipeline() -> Pipeline:
    """Unfitted pipeline: one-hot over every known code, standardised numbers, L2 logit."""
    encode = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(
                    categories=[list(ATTRIBUTES[i].codes) for i in _CATEGORICAL_IDX],
                    sparse_output=False,
                ),
                _CATEGORICAL_IDX,
            ),
            ("numerical", StandardScaler(), _NUMERICAL_IDX),
        ]
    )
    # newton-cholesky: exact to tight tolerance in a few iterations on ~60 columns, which keeps
    # the 100 bootstrap refits to seconds.
    classify = LogisticRegression(
        C=REGULARIZATION_C, solver="newton-cholesky", tol=1e-10, max_iter=100
    )
    return Pipeline([("encode", encode), ("classify", classify)])


def split(data: CreditData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The deterministic stratified split: training rows, held-out rows, and their labels."""
    X_tr, X_te, y_tr, y_te = train_test_split(
        data.X, data.y, test_size=TEST_SHARE, random_state=SPLIT_SEED, stratify=data.y
    )
    return X_tr, X_te, y_tr, y_te


def train(models_root: Path) -> ModelInfo:
    """Train deterministically and save the artifact with its sha256, its drift reference
    profile and its performance estimator (``cbpe.json``); returns its identity."""
    data = load_dataset()
    X_tr, X_te, y_tr, y_te = split(data)
    # One BLAS thread: the same bytes on every machine, whatever its core count.
    with threadpool_limits(limits=1):
        pipe = build_pipeline().fit(X_tr, y_tr)
        encoded = pipe[:-1].transform(X_tr)
        boot_coef, boot_intercept = _bootstrap(pipe.named_steps["classify"], encoded, y_tr)
        metrics = _held_out_metrics(pipe, boot_coef, boot_intercept, X_te, y_te)
        reference_scores = out_of_fold_scores(X_tr, y_tr)
    reference_decisions, reference_confidences = out_of_fold_assessments(X_tr, y_tr)
    artifact = {
        "format": ARTIFACT_FORMAT,
        "pipeline": pipe,
        "background": encoded.mean(axis=0),
        "bootstrap_coef": boot_coef,
        "bootstrap_intercept": boot_intercept,
    }
    info = save_model(
        models_root,
        NAME,
        VERSION,
        artifact,
        task="credit risk scoring (binary: good / bad risk)",
        score=SCORE_MEANING,
        attributes=[a.name for a in ATTRIBUTES],
        not_scored=[a.name for a in ATTRIBUTES if not a.scored],
        thresholds={
            "approve_min_odds": APPROVE_MIN_ODDS,
            "decline_below_odds": DECLINE_BELOW_ODDS,
            "approve_min_score": APPROVE_MIN_SCORE,
            "decline_below_score": DECLINE_BELOW_SCORE,
        },
        explanation={
            "method": EXPLANATION_METHOD,
            "output": EXPLANATION_OUTPUT,
            "background": EXPLANATION_BACKGROUND,
        },
        confidence_interval={
            "method": "bootstrap percentile",
            "level": CI_LEVEL,
            "replicates": BOOTSTRAP_REPLICATES,
            "seed": BOOTSTRAP_SEED,
        },
        training={
            "data": DATA_FILE,
            "data_sha256": data.sha256,
            "train_rows": len(y_tr),
            "test_rows": len(y_te),
            "split_seed": SPLIT_SEED,
            "regularization_c": REGULARIZATION_C,
            "scikit_learn": sklearn.__version__,
        },
        held_out=metrics,
    )
    reference_profile(info, X_tr, reference_decisions, reference_confidences).save(
        profile_path(models_root, NAME)
    )
    reference_estimator(info, y_tr, reference_scores).save(cbpe_path(models_root, NAME))
    return info


def _reference_folds() -> StratifiedKFold:
    """The 5 stratified folds both monitoring references are computed out of."""
    return StratifiedKFold(CBPE_FOLDS, shuffle=True, random_state=SPLIT_SEED)


def out_of_fold_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each training row's score from the pipeline refitted without it (5 stratified folds).

    The performance estimator's reference must be scores of rows the model did not learn
    from, as live applicants are; a row's score from the final model would be optimistic.
    """
    proba = cross_val_predict(build_pipeline(), X, y, cv=_reference_folds(), method="predict_proba")
    return np.asarray(proba[:, 1])


def assess_rows(
    pipe: Pipeline, boot_coef: np.ndarray, boot_intercept: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The decision and the confidence of every row of ``X``, as :meth:`CreditModel.assess`
    gives them one at a time, from a fitted pipeline and its bootstrap ensemble (the sklearn
    path: for training-time references, not for serving)."""
    band = np.digitize(pipe.decision_function(X), _BAND_EDGES)
    boot = pipe[:-1].transform(X) @ boot_coef.T + boot_intercept
    agree = np.count_nonzero(np.digitize(boot, _BAND_EDGES) == band[:, None], axis=1)
    return _BAND_DECISIONS[band], agree / boot_coef.shape[0]


def out_of_fold_assessments(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each training row's decision and confidence from a model, and a bootstrap ensemble,
    fitted without it (the folds of :func:`out_of_fold_scores`).

    The drift reference must describe what the served model says of applicants it never saw:
    on its own training rows it is more confident (and more often right), and clean live
    traffic would drift against that. Training exactly as :func:`train` does, per fold, costs the
    fold's 100 bootstrap refits: about 2 s in all (with one BLAS thread, as :func:`train`, so
    that the reference is the same on every machine).
    """
    decisions = np.empty(len(y), dtype=object)
    confidences = np.empty(len(y))
    with threadpool_limits(limits=1):
        for fit_rows, held_rows in _reference_folds().split(X, y):
            pipe = build_pipeline().fit(X[fit_rows], y[fit_rows])
            encoded = pipe[:-1].transform(X[fit_rows])
            coef, intercept = _bootstrap(pipe.named_steps["classify"], encoded, y[fit_rows])
            decisions[held_rows], confidences[held_rows] = assess_rows(
                pipe, coef, intercept, X[held_rows]
            )
    return decisions, confidences


def reference_profile(
    info: ModelInfo, X: np.ndarray, decisions: np.ndarray, confidences: np.ndarray
) -> Profile:
    """The drift reference of the applicants ``X`` with the model's ``decisions`` and
    ``confidences`` on them (:func:`out_of_fold_assessments`).

    Its features are the 20 attributes under their API names, as the route hands them to the
    Monitor, the codes as categories; the unscored ones too, since a shift in them is what
    fair-lending monitoring watches. Its labels are the decisions; the scores, which CBPE
    reads, are in the estimator's reference (``cbpe.json``), not here.
    """
    return build_tabular_profile(
        X,
        ATTRIBUTE_NAMES,
        categorical=CATEGORICAL_ATTRIBUTES,
        predictions=decisions,
        confidences=confidences,
        labels=DECISIONS,
        model_name=info.name,
        model_sha256=info.sha256,
    )


def _training_rows(models_root: Path) -> tuple[ModelInfo, np.ndarray, np.ndarray]:
    """The saved model's identity and its training rows and labels, from the shipped data
    file, which must be the one its card says it was trained on."""
    loaded = load_model(models_root, NAME)
    data = load_dataset()
    trained_on = loaded.card.get("training", {}).get("data_sha256")
    if trained_on != data.sha256:
        raise ModelArtifactError(
            f"credit model {loaded.info.sha256[:12]} was trained on {DATA_FILE} with sha256 "
            f"{trained_on}, but the shipped file has {data.sha256}: retrain it with "
            "`infertrail train credit` instead of rebuilding its references"
        )
    X_tr, _, y_tr, _ = split(data)
    return loaded.info, X_tr, y_tr


def rebuild_profile(models_root: Path) -> Path:
    """Rebuild the saved model's drift reference profile from its training data, as training
    saved it (``infertrail drift baseline``); returns its path."""
    info, X_tr, y_tr = _training_rows(models_root)
    decisions, confidences = out_of_fold_assessments(X_tr, y_tr)
    path = profile_path(models_root, NAME)
    reference_profile(info, X_tr, decisions, confidences).save(path)
    return path


def reference_estimator(info: ModelInfo, y: np.ndarray, scores: np.ndarray) -> CbpeModel:
    """CBPE fitted on out-of-fold ``scores`` and outcomes ``y`` of the training rows.

    The model predicts a good risk ("1") when it does not decline, at ``score >= 0.5``: the
    threshold lets the window analyzer derive predictions from scores (the served labels are
    decisions, not classes).
    """
    return fit_cbpe(
        y,
        None,
        scores,
        CBPE_CLASSES,
        threshold=DECLINE_BELOW_SCORE,
        chunk_size=CBPE_CHUNK_SIZE,
        model_name=info.name,
        model_sha256=info.sha256,
    )


def rebuild_estimator(models_root: Path) -> Path:
    """Refit the saved model's ``cbpe.json`` from its training data; returns its path."""
    info, X_tr, y_tr = _training_rows(models_root)
    with threadpool_limits(limits=1):
        scores = out_of_fold_scores(X_tr, y_tr)
    path = cbpe_path(models_root, NAME)
    reference_estimator(info, y_tr, scores).save(path)
    return path


def _bootstrap(
    classifier: LogisticRegression, encoded: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Refit the regression on B resamples of the encoded rows (the encoding stays fixed, so
    every replicate lives in the same feature space and predicts by one matrix product)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(y)
    coef = np.empty((BOOTSTRAP_REPLICATES, encoded.shape[1]))
    intercept = np.empty(BOOTSTRAP_REPLICATES)
    for b in range(BOOTSTRAP_REPLICATES):
        idx = rng.integers(0, n, n)
        fit = clone(classifier).fit(encoded[idx], y[idx])
        coef[b], intercept[b] = fit.coef_[0], fit.intercept_[0]
    return coef, intercept


def _held_out_metrics(
    pipe: Pipeline, boot_coef: np.ndarray, boot_intercept: np.ndarray, X: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    logit = pipe.decision_function(X)
    p = expit(logit)
    boot = pipe[:-1].transform(X) @ boot_coef.T + boot_intercept
    low, high = expit(np.percentile(boot, _CI_PERCENTILES, axis=1))
    approve, decline = logit >= _APPROVE_LOGIT, logit < _DECLINE_LOGIT
    # german.doc's cost matrix: a bad risk approved costs 5, a good risk declined costs 1.
    cost = 5 * np.sum(approve & (y == 0)) + np.sum(decline & (y == 1))
    return {
        "roc_auc": round(float(roc_auc_score(y, p)), 4),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "approve_rate": round(float(approve.mean()), 4),
        "refer_rate": round(float(1 - approve.mean() - decline.mean()), 4),
        "decline_rate": round(float(decline.mean()), 4),
        "bad_rate_among_approved": round(float(1 - y[approve].mean()), 4)
        if approve.any()
        else None,
        "cost_per_applicant": round(float(cost / len(y)), 4),
        "ci_width_median": round(float(np.median(high - low)), 4),
    }


# -- serving ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    """A principal reason: reason code, consumer text, and the attribution it stems from."""

    code: str
    text: str
    attribute: str
    contribution: float


@dataclass(frozen=True, slots=True)
class CreditAssessment:
    """Everything the model says about one application."""

    decision: str
    score: float
    log_odds: float
    ci_low: float
    ci_high: float
    confidence: float
    base_value: float
    attributions: dict[str, float]
    reasons: tuple[Reason, ...]

    def explanation(self, reason_codes_version: str) -> dict[str, Any]:
        """The explanation as the audit record stores it (values add up to ``log_odds``)."""
        return {
            "method": EXPLANATION_METHOD,
            "output": EXPLANATION_OUTPUT,
            "base_value": self.base_value,
            "values": self.attributions,
            "reason_codes": [r.code for r in self.reasons],
            "reason_codes_version": reason_codes_version,
        }


def decide(log_odds: float) -> str:
    """approve / refer / decline for a log-odds of good credit risk (documented thresholds)."""
    if log_odds >= _APPROVE_LOGIT:
        return "approve"
    return "decline" if log_odds < _DECLINE_LOGIT else "refer"


class CreditModel:
    """A loaded, sha256-verified credit model, applied with numpy (one row in microseconds)."""

    def __init__(self, info: ModelInfo, artifact: Any, card: Mapping[str, Any]) -> None:
        if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
            raise ModelArtifactError(
                f"credit artifact {info.sha256[:12]} is not format {ARTIFACT_FORMAT}; retrain "
                "it with `infertrail train credit`"
            )
        self.info = info
        self.card = dict(card)
        self.pipeline: Pipeline = artifact["pipeline"]
        self.background: np.ndarray = np.asarray(artifact["background"], dtype=np.float64)
        classify = self.pipeline.named_steps["classify"]
        self._coef = np.asarray(classify.coef_[0], dtype=np.float64)
        self._intercept = float(classify.intercept_[0])
        self._boot_coef = np.asarray(artifact["bootstrap_coef"], dtype=np.float64)
        self._boot_intercept = np.asarray(artifact["bootstrap_intercept"], dtype=np.float64)
        self._layout(self.pipeline.named_steps["encode"])
        self.base_value = float(self._intercept + self._coef @ self.background)

    def _layout(self, encode: ColumnTransformer) -> None:
        """Map each attribute to its encoded column(s) exactly as the fitted encoder lays them."""
        onehot = encode.named_transformers_["categorical"]
        scaler = encode.named_transformers_["numerical"]
        self._code_column: dict[str, dict[str, int]] = {}
        self._scaling: dict[str, tuple[int, float, float]] = {}
        group: list[int] = []
        for i, categories in zip(_CATEGORICAL_IDX, onehot.categories_, strict=True):
            name = ATTRIBUTES[i].name
            self._code_column[name] = {str(c): len(group) + k for k, c in enumerate(categories)}
            group += [i] * len(categories)
        for k, i in enumerate(_NUMERICAL_IDX):
            column = len(group)
            self._scaling[ATTRIBUTES[i].name] = (
                column,
                float(scaler.mean_[k]),
                float(scaler.scale_[k]),
            )
            group.append(i)
        if len(group) != len(self._coef) or self._boot_coef.shape != (
            BOOTSTRAP_REPLICATES,
            len(group),
        ):
            raise ModelArtifactError(
                f"credit artifact {self.info.sha256[:12]}: {len(group)} encoded columns, but "
                f"coefficients {self._coef.shape} and bootstrap {self._boot_coef.shape}"
            )
        self._group = np.asarray(group)

    @classmethod
    def load(cls, models_root: Path) -> CreditModel:
        """Load and verify the trained artifact under ``models_root``."""
        loaded = load_model(models_root, NAME)
        return cls(loaded.info, loaded.model, loaded.card)

    def encode(self, application: Mapping[str, Any]) -> np.ndarray:
        """The encoded feature vector, identical to the pipeline's encoder output."""
        if problems := application_problems(application):
            raise InvalidApplication("; ".join(problems))
        x = np.zeros(len(self._coef))
        for name, columns in self._code_column.items():
            x[columns[application[name]]] = 1.0
        for name, (column, mean, scale) in self._scaling.items():
            x[column] = (application[name] - mean) / scale
        return x

    def assess(self, application: Mapping[str, Any]) -> CreditAssessment:
        """Score, interval, decision, exact attributions and reasons for one application."""
        x = self.encode(application)
        log_odds = float(x @ self._coef + self._intercept)
        per_attribute = np.bincount(
            self._group, weights=self._coef * (x - self.background), minlength=len(ATTRIBUTES)
        )
        boot = self._boot_coef @ x + self._boot_intercept
        lo0, lo1, hi0, hi1 = np.partition(boot, _CI_RANKS)[_CI_RANKS]
        low, high = expit([lo0 + (lo1 - lo0) * _CI_WEIGHTS[0], hi0 + (hi1 - hi0) * _CI_WEIGHTS[1]])
        decision = decide(log_odds)
        if decision == "approve":
            same = boot >= _APPROVE_LOGIT
        elif decision == "decline":
            same = boot < _DECLINE_LOGIT
        else:
            same = (boot >= _DECLINE_LOGIT) & (boot < _APPROVE_LOGIT)
        reasons = () if decision == "approve" else self._reasons(application, x, per_attribute)
        return CreditAssessment(
            decision=decision,
            score=float(expit(log_odds)),
            log_odds=log_odds,
            ci_low=float(low),
            ci_high=float(high),
            confidence=np.count_nonzero(same) / BOOTSTRAP_REPLICATES,
            base_value=self.base_value,
            attributions=dict(zip(ATTRIBUTE_NAMES, per_attribute.tolist(), strict=True)),
            reasons=reasons,
        )

    def _reasons(
        self, application: Mapping[str, Any], x: np.ndarray, per_attribute: np.ndarray
    ) -> tuple[Reason, ...]:
        """The (at most MAX_REASONS) attributes that lowered the score most, most adverse first."""
        reasons = []
        for i in np.argsort(per_attribute, kind="stable")[:MAX_REASONS]:
            contribution = float(per_attribute[i])
            if contribution >= 0.0:
                break
            a = ATTRIBUTES[i]
            if a.categorical:
                key = application[a.name]
            else:
                column = self._scaling[a.name][0]
                key = "high" if x[column] > self.background[column] else "low"
            r = reason_for(a.name, key)
            reasons.append(Reason(r.code, r.text, a.name, contribution))
        return tuple(reasons)
