"""Cases both CBPE implementations run: ours in this process, NannyML in .venv-nannyml.

A :class:`Case` is a labelled reference and an unlabelled analysis set. :func:`run_nannyml`
writes it as an ``.npz`` and runs ``tests/oracle/nannyml_cbpe.py`` in the oracle venv;
:func:`run_ours` fits :func:`infertrail.estimation.fit_cbpe` the same way and estimates the
same analysis chunks. Used by tests/oracle/test_cbpe_nannyml.py and bench/cbpe.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from infertrail.estimation import CLASSIFICATION_METRICS, CbpeModel, Estimate, fit_cbpe

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("nannyml_cbpe.py")
VENV_SCRIPT = ROOT / "scripts" / "nannyml-venv.sh"


@dataclass(frozen=True)
class Case:
    """Reference (with truth) and analysis rows; binary classes are 0/1 (p = class 1's)."""

    name: str
    kind: str
    classes: tuple[str, ...]
    chunk_size: int
    ref_y_true: np.ndarray
    ref_y_pred: np.ndarray
    ref_proba: np.ndarray
    ana_y_pred: np.ndarray
    ana_proba: np.ndarray
    ana_chunk_size: int | None = None
    metrics: tuple[str, ...] = CLASSIFICATION_METRICS

    def analysis_chunks(self) -> list[slice]:
        """The analysis chunks NannyML cuts: consecutive, a shorter tail kept."""
        size = self.ana_chunk_size or self.chunk_size
        n = len(self.ana_y_pred)
        return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]


def binary_case(n_ref: int, n_ana: int, *, shift: float, seed: int, chunk: int) -> Case:
    """A miscalibrated logistic score (calibration is needed); the analysis shifted by
    ``shift`` in the latent feature (covariate shift: CBPE's premise holds)."""
    rng = np.random.default_rng(seed)

    def draw(n: int, mean: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(mean, 1.0, n)
        y = (rng.random(n) < expit(2.0 * x - 0.5)).astype(np.int64)
        score = expit(1.4 * x - 0.1)
        return y, (score >= 0.5).astype(np.int64), score

    y, pred, score = draw(n_ref, 0.0)
    _, ana_pred, ana_score = draw(n_ana, shift)
    return Case(f"binary-{n_ref}", "binary", ("0", "1"), chunk, y, pred, score, ana_pred, ana_score)


def multiclass_case(n_ref: int, n_ana: int, *, k: int, shift: float, seed: int, chunk: int) -> Case:
    """k classes from a softmax of latent features; the model's probabilities are a tempered,
    biased version (miscalibrated); the analysis shifts the first latent feature."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 1.5, (4, k))
    bias = rng.normal(0.0, 0.3, k)
    classes = tuple(f"c{j}" for j in range(k))

    def draw(n: int, mean: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(0.0, 1.0, (n, 4))
        x[:, 0] += mean
        logits = x @ weights
        truth = softmax(logits, axis=1)
        y = np.minimum((rng.random((n, 1)) > np.cumsum(truth, axis=1)).sum(axis=1), k - 1)
        proba = softmax(0.7 * logits + bias, axis=1)
        return np.asarray(classes)[y], np.asarray(classes)[proba.argmax(axis=1)], proba

    y, pred, proba = draw(n_ref, 0.0)
    _, ana_pred, ana_proba = draw(n_ana, shift)
    return Case(
        f"multiclass-{k}-{n_ref}", "multiclass", classes, chunk, y, pred, proba, ana_pred, ana_proba
    )


def nannyml_python() -> tuple[Path | None, str]:
    """The oracle venv's python (created or updated by scripts/nannyml-venv.sh), or None and
    why it could not be made."""
    try:
        done = subprocess.run(
            [str(VENV_SCRIPT)], capture_output=True, text=True, timeout=1800, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{VENV_SCRIPT.name} could not run: {exc}"
    if done.returncode != 0:
        return None, f"{VENV_SCRIPT.name} failed: {done.stderr.strip()[-1000:]}"
    return ROOT / done.stdout.strip().splitlines()[-1], ""


def run_nannyml(
    python: Path, cases: list[Case], workdir: Path, repeat: int = 1
) -> list[dict[str, Any]]:
    """NannyML's estimates of each case (per metric, per analysis chunk) and its timings, all
    in one run of the oracle venv's python."""
    files: list[str] = []
    for case in cases:
        case_file, out_file = workdir / f"{case.name}.npz", workdir / f"{case.name}.json"
        arrays: dict[str, Any] = {
            "kind": case.kind,
            "classes": np.asarray(case.classes),
            "metrics": np.asarray(case.metrics),
            "chunk_size": case.chunk_size,
            "ref_y_true": case.ref_y_true,
            "ref_y_pred": case.ref_y_pred,
            "ref_proba": case.ref_proba,
            "ana_y_pred": case.ana_y_pred,
            "ana_proba": case.ana_proba,
        }
        if case.ana_chunk_size is not None:
            arrays["ana_chunk_size"] = case.ana_chunk_size
        np.savez(case_file, **arrays)
        files += [str(case_file), str(out_file)]
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [str(python), str(WORKER), *files, "--repeat", str(repeat)],
        check=True,
        env=env,
        timeout=1800,
    )
    return [json.loads(Path(out).read_text()) for out in files[1::2]]


def fit_ours(case: Case) -> CbpeModel:
    """Our estimator fitted as NannyML is: the same reference, chunk size and metrics."""
    return fit_cbpe(
        case.ref_y_true,
        case.ref_y_pred,
        case.ref_proba,
        case.classes,
        metrics=case.metrics,
        chunk_size=case.chunk_size,
    )


def run_ours(case: Case, model: CbpeModel | None = None) -> list[Estimate]:
    """Our estimate of every analysis chunk."""
    model = model or fit_ours(case)
    return [model.estimate(case.ana_y_pred[s], case.ana_proba[s]) for s in case.analysis_chunks()]
