"""The cost of estimates beside realized metrics in the outcomes report, and of storing
per-class probabilities with each prediction.

Run: .venv/bin/python bench/outcomes_estimates.py [--quick] [--rounds 3]

Set-up (not timed): a fresh outcomes database with N predictions of one model version, a
quarter of them with a ``label`` outcome, and a CBPE estimator fitted on 5,000 synthetic
labelled rows, for two models:

  - binary: a score per prediction (as the credit demo), estimator with a 0.5 threshold;
  - 10 classes: every class's probability per prediction (as the digits demo: 80 bytes).

Timed: ``performance_report`` without estimators (the join and the realized metrics only) and
with them (plus one read of every prediction of the period, their layout as a drift window and
CBPE over all of them, realized metrics by the estimator's definitions), median over rounds.
Also reported: the database's bytes per prediction, and ``add_predictions`` throughput.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from infertrail.estimation import cbpe_path, fit_cbpe
from infertrail.outcomes import Estimators, OutcomeSpec, OutcomeStore, Prediction
from infertrail.outcomes.join import performance_report
from infertrail.outcomes.schema import Outcome

SHA = "e" * 64
K = 10


def fit(models: Path, name: str, k: int, rng: np.random.Generator) -> None:
    """A CBPE estimator for ``name`` fitted on calibrated synthetic scores."""
    n = 5000
    if k == 2:
        scores = rng.uniform(size=n)
        y = (rng.uniform(size=n) < scores).astype(int)
        model = fit_cbpe(y, None, scores, ["0", "1"], threshold=0.5, model_sha256=SHA)
    else:
        proba = rng.dirichlet(np.full(k, 0.3), size=n)
        y = np.array([rng.choice(k, p=p) for p in proba])
        classes = [str(j) for j in range(k)]
        model = fit_cbpe(
            [str(v) for v in y], [str(v) for v in proba.argmax(1)], proba, classes, model_sha256=SHA
        )
    model.save(cbpe_path(models, name))


def predictions(name: str, k: int, n: int, rng: np.random.Generator) -> list[Prediction]:
    out = []
    if k == 2:
        for i, s in enumerate(rng.uniform(size=n)):
            out.append(
                Prediction(f"r{i}", i, name, "1", None, float(s), None, None, 1.0, model_sha256=SHA)
            )
        return out
    proba = rng.dirichlet(np.full(k, 0.3), size=n)
    labels = [str(j) for j in range(k)]
    for i, p in enumerate(proba):
        top = int(p.argmax())
        out.append(
            Prediction(
                f"r{i}",
                i,
                name,
                "1",
                labels[top],
                float(p[top]),
                float(p[top]),
                None,
                1.0,
                model_sha256=SHA,
                probabilities=dict(zip(labels, p.tolist(), strict=True)),
            )
        )
    return out


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, k: int, n: int, rng: np.random.Generator, rounds: int) -> str:
    """One row of the table: N predictions of a binary (k=2) or multiclass model."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fit(root / "models", name, k, rng)
        preds = predictions(name, k, n, rng)
        store = OutcomeStore(root / "o.db")
        t = time.perf_counter()
        store.add_predictions(preds)
        index_rate = n / (time.perf_counter() - t)
        truth = []
        for p in preds[: n // 4]:
            if k == 2:
                y = str(int(rng.uniform() < (p.score or 0.0)))
            else:
                probs = np.array(list((p.probabilities or {}).values()))
                y = str(rng.choice(k, p=probs / probs.sum()))
            truth.append(Outcome(p.request_id, "label", y, None, 0))
        store.write_outcomes(truth, received_ns=0)
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (root / "o.db").stat().st_size
        spec = OutcomeSpec(positive="1" if k == 2 else None)
        estimators = Estimators(root / "models")

        def report(with_estimates: bool) -> object:
            chosen = estimators if with_estimates else None
            return performance_report(store, lambda _m: spec, estimators=chosen)

        plain = timed(lambda: report(False), rounds)
        both = timed(lambda: report(True), rounds)
        [group] = performance_report(store, lambda _m: spec, estimators=estimators).groups
        assert group.estimated is not None
        acc = next(m for m in group.estimated.metrics if m.name == "accuracy")
        store.close()
    return (
        f"{name:<10} {n:>11,} {size / n:>10.0f} {index_rate:>9,.0f} {plain:>9.3f} "
        f"{both:>12.3f} {acc.estimate.value or 0:>13.4f} {acc.realized or 0:>9.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 and 50,000 predictions")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [10_000, 50_000] if args.quick else [10_000, 100_000, 300_000]
    rng = np.random.default_rng(1)
    print(
        f"{'model':<10} {'predictions':>11} {'bytes/pred':>10} {'index/s':>9} "
        f"{'report s':>9} {'+estimates s':>12} {'estimated acc':>13} {'realized':>9}"
    )
    for name, k in (("binary", 2), ("multiclass", K)):
        for n in sizes:
            print(measure(name, k, n, rng, args.rounds))


if __name__ == "__main__":
    main()
