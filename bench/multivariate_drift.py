"""Cost, false alarms and power of the multivariate drift analyzers (issue 18, item 2).

1. Fit time of ``ReconstructionDrift`` and ``DomainClassifierDrift`` on a profile's 5,000-row
   sample, and the time to judge one window of 1,000 x 20 and 10,000 x 64, beside the
   univariate ``DriftDetector.compare`` of the same window (its target: 10,000 x 64 in
   <= 50 ms; the multivariate statistics are reported apart from it). Wall and CPU time of the
   measuring thread (the classifier runs on one OpenMP thread).
2. False alarms on clean windows: fresh reference per trial (the band's estimate varies with
   it), numerical data with correlated pairs, and the same with log-normal (skewed) features.
3. Power: windows whose joint distribution changed while every marginal stayed (a flipped
   correlation, a weakened one, a dependence without correlation), judged by both statistics
   and by the univariate detector; and a logistic regression in the classifier's place.
4. Why the classifier is judged on a held-out half: the spread of its AUC on clean windows
   against the permutation null, and the same for NannyML's pooled out-of-fold AUC.

    .venv/bin/python bench/multivariate_drift.py            # ~4 min on 2 shared cores
    .venv/bin/python bench/multivariate_drift.py --quick    # ~40 s
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy
import sklearn
from sklearn.linear_model import LogisticRegression

from infertrail.drift import DriftDetector, DriftWindow, Profile, build_tabular_profile
from infertrail.drift.multivariate import DomainClassifierDrift, ReconstructionDrift
from infertrail.drift.multivariate_stats import auc_null_std, rank_auc
from machine import cpu_model

REFERENCE_ROWS = 20_000
SHAPES = ((1_000, 20), (10_000, 64))

Generator = Callable[[np.random.Generator, int, int], np.ndarray]


def clean(rng: np.random.Generator, n: int, d: int, rho: float = 0.8) -> np.ndarray:
    """Standard normal features; each pair (0, 1), (2, 3), ... correlated ``rho``."""
    x = rng.normal(size=(n, d))
    x[:, 1::2] = rho * x[:, 0 : d - 1 : 2] + math.sqrt(1 - rho * rho) * x[:, 1::2]
    return x


def skewed(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``clean`` with every fourth feature exponentiated (log-normal: a long right tail)."""
    x = clean(rng, n, d)
    x[:, 3::4] = np.exp(x[:, 3::4])
    return x


def flipped(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """The first pair's correlation turned from 0.8 to -0.8: every marginal unchanged."""
    x = clean(rng, n, d)
    x[:, 1] = -x[:, 1]
    return x


def weakened(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """The first pair's correlation lowered from 0.8 to 0.5."""
    x = clean(rng, n, d)
    x[:, :2] = clean(rng, n, 2, rho=0.5)
    return x


def sign_coupled(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Standard normal features with x1 = +-x0 (random sign): dependent, yet uncorrelated."""
    x = rng.normal(size=(n, d))
    x[:, 1] = x[:, 0] * rng.choice([-1.0, 1.0], n)
    return x


def independent(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Independent standard normal features: ``sign_coupled`` with the dependence gone."""
    return rng.normal(size=(n, d))


def profile_of(rows: np.ndarray) -> Profile:
    names = [f"f{j}" for j in range(rows.shape[1])]
    return build_tabular_profile(rows, names, model_name="bench", model_sha256="b" * 64)


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Median and max wall ms, median CPU ms of the calling thread."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return statistics.median(wall), max(wall), statistics.median(cpu)


def costs(runs: int) -> None:
    print(f"\n## 1. Cost (reference {REFERENCE_ROWS:,} rows, sample 5,000; {runs} runs)\n")
    print("| window | step | median ms | max ms | median CPU ms |")
    print("|---|---|---|---|---|")
    for n, d in SHAPES:
        for step, (med, worst, cpu) in shape_costs(n, d, runs):
            print(f"| {n:,} x {d} | {step} | {med:.1f} | {worst:.1f} | {cpu:.1f} |")


def shape_costs(n: int, d: int, runs: int) -> list[tuple[str, tuple[float, float, float]]]:
    rng = np.random.default_rng(n + d)
    profile = profile_of(clean(rng, REFERENCE_ROWS, d))
    window = DriftWindow(clean(rng, n, d))
    detector = DriftDetector(profile)
    rec = ReconstructionDrift(profile).fit()
    dom = DomainClassifierDrift(profile).fit()
    return [
        ("fit reconstruction (PCA + band)", timed(lambda: ReconstructionDrift(profile).fit(), 5)),
        ("fit domain classifier", timed(lambda: DomainClassifierDrift(profile).fit(), 5)),
        ("univariate DriftDetector.compare", timed(lambda: detector.compare(window), runs)),
        ("reconstruction drift", timed(lambda: rec.analyze(window), runs)),
        ("domain classifier drift", timed(lambda: dom.analyze(window), max(3, runs // 3))),
    ]


def false_alarms(trials: int, windows: int, domain_windows: int) -> None:
    print(f"\n## 2. False alarms on clean windows (alpha 0.01; {trials} references)\n")
    print("| data | window | reconstruction: windows flagged | domain classifier: flagged |")
    print("|---|---|---|---|")
    for name, gen in (("normal, correlated pairs", clean), ("log-normal features", skewed)):
        for n, d in ((30, 20), (1_000, 20), (10_000, 64)):
            rec_alarms: list[bool] = []
            dom_alarms: list[bool] = []
            for t in range(trials):
                rng = np.random.default_rng(1_000 * t + n + d)
                ref = gen(rng, 5_000, d)
                rec = ReconstructionDrift(ref, seed=t).fit()
                rec_alarms += [rec.judge(gen(rng, n, d)).drifted for _ in range(windows)]
                dom = DomainClassifierDrift(ref, seed=t)
                per = max(1, domain_windows // trials)
                dom_alarms += [dom.judge(gen(rng, n, d)).drifted for _ in range(per)]
            print(
                f"| {name} | {n:,} x {d} | {np.mean(rec_alarms):.2%} of {len(rec_alarms)} "
                f"| {np.mean(dom_alarms):.1%} of {len(dom_alarms)} |"
            )


def power(windows: int) -> None:
    print(f"\n## 3. Power: windows flagged ({windows} windows per cell, 1,000 x 20)\n")
    print("| change | reconstruction | domain classifier (mean AUC) | logistic regression AUC "
          "| univariate: any feature / dataset drift |")  # fmt: skip
    print("|---|---|---|---|---|")
    n, d = 1_000, 20
    cases: list[tuple[str, Generator, Generator]] = [
        ("none (clean)", clean, clean),
        ("correlation 0.8 -> -0.8 (one pair)", clean, flipped),
        ("correlation 0.8 -> 0.5 (one pair)", clean, weakened),
        ("x1 = +-x0 -> x1 independent of x0", sign_coupled, independent),
    ]
    for name, ref_gen, win_gen in cases:
        rng = np.random.default_rng(7)
        profile = profile_of(ref_gen(rng, REFERENCE_ROWS, d))
        rec = ReconstructionDrift(profile).fit()
        dom = DomainClassifierDrift(profile, seed=1)
        detector = DriftDetector(profile)
        r_hits, d_hits, aucs, lr_aucs, any_f, dataset = [], [], [], [], [], []
        for _ in range(windows):
            x = win_gen(rng, n, d)
            r_hits.append(rec.judge(x).drifted)
            v = dom.judge(x)
            d_hits.append(v.drifted)
            aucs.append(v.statistic)
            lr_aucs.append(logistic_auc(profile.sample, x, rng))
            report = detector.compare(DriftWindow(x))
            any_f.append(report.n_drifted > 0)
            dataset.append(report.dataset_drift)
        print(
            f"| {name} | {np.mean(r_hits):.0%} | {np.mean(d_hits):.0%} ({np.mean(aucs):.3f}) "
            f"| {np.mean(lr_aucs):.3f} | {np.mean(any_f):.0%} / {np.mean(dataset):.0%} |"
        )


def logistic_auc(reference: np.ndarray, window: np.ndarray, rng: np.random.Generator) -> float:
    """The held-out AUC of a logistic regression in the classifier's place (same split)."""
    n = len(window)
    ref = reference[rng.choice(len(reference), n, replace=False)]
    half = n // 2
    train = np.vstack([ref[:half], window[:half]])
    test = np.vstack([ref[half:], window[half:]])
    y_train = np.repeat([0, 1], half)
    y_test = np.repeat(np.array([0, 1], np.int64), n - half)
    model = LogisticRegression(max_iter=200).fit(train, y_train)
    return rank_auc(model.predict_proba(test)[:, 1], y_test)


def out_of_fold(windows: int) -> None:
    """The null the domain classifier does not use: NannyML's pooled out-of-fold AUC."""
    n, d, k = 100, 5, 3
    print(f"\n## 4. Null spread of the AUC ({windows} clean windows of {n} x {d})\n")
    print("| design | sd of (AUC - 0.5) / permutation sd (1 if exact) | flagged at alpha 1% |")
    print("|---|---|---|")
    rng = np.random.default_rng(17)
    ref = clean(rng, 5_000, d)
    dom = DomainClassifierDrift(ref, seed=2)
    held, pooled = [], []
    for _ in range(windows):
        v = dom.judge(clean(rng, n, d))
        held.append((v.statistic - 0.5) / v.null_std)
        sample = ref[rng.choice(len(ref), n, replace=False)]
        x = np.vstack([sample, clean(rng, n, d)])
        y = np.repeat(np.array([0, 1], np.int64), n)
        folds = np.concatenate([rng.permutation(n) % k, rng.permutation(n) % k])
        scores = np.empty(2 * n)
        for f in range(k):
            test = folds == f
            scores[test] = dom.held_out_scores(x[~test], y[~test], x[test])
        pooled.append((rank_auc(scores, y) - 0.5) / auc_null_std(scores, y))
    z = 2.326  # one-sided 1%
    for name, values in (("held-out half (used)", held), (f"out-of-fold, {k} folds", pooled)):
        print(f"| {name} | {np.std(values):.2f} | {np.mean(np.array(values) > z):.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and windows")
    args = ap.parse_args()
    runs, trials, windows, dom_windows, power_windows, oof_windows = (
        (5, 4, 20, 20, 5, 40) if args.quick else (30, 20, 50, 200, 20, 400)
    )
    print(
        f"# multivariate drift benchmark  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
        f"CPU: {cpu_model()}  load {os.getloadavg()[0]:.1f}  Python {platform.python_version()}  "
        f"numpy {np.__version__}  scipy {scipy.__version__}  scikit-learn {sklearn.__version__}"
    )
    costs(runs)
    false_alarms(trials, windows, dom_windows)
    power(power_windows)
    out_of_fold(oof_windows)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
