"""Cost of the data-quality checks of one drift window (issue 18, item 3).

``DataQualityAnalyzer.analyze`` runs on the drift thread once per closed window, after the
univariate detector; target: a 1,000-row window of 20 features in a few milliseconds. Cases:
tabular windows of 20 features (16 numerical, 4 categorical) whose raw inputs are dicts or
lists, clean or with 5% of the values broken (missing, numeric strings, unseen categories,
out of range) and 50 rejected inputs, a window without raw inputs (rows only), 10,000 rows,
and the digits and text profiles' derived features.

    .venv/bin/python bench/data_quality.py            # 200 runs per case
    .venv/bin/python bench/data_quality.py --quick    # 20 runs
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

from infertrail.drift import build_image_profile, build_tabular_profile, build_text_profile
from infertrail.drift.detector import DriftWindow
from infertrail.drift.quality import DataQualityAnalyzer
from machine import cpu_model

TARGET_MS = 5.0
N_NUM, N_CAT = 16, 4
NAMES = [f"x{i}" for i in range(N_NUM)] + [f"c{i}" for i in range(N_CAT)]
LEVELS = ["a", "b", "c", "d", "e", "f"]
WORDS = ("good", "bad", "great", "awful", "service", "food", "place", "price", "staff", "movie",
         "plot", "fine", "slow", "tasty")  # fmt: skip


def _time_ms(fn: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (this thread) milliseconds of each run, after one warm-up run."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return wall, cpu


def _table(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    num = rng.normal(size=(n, N_NUM))
    cat = rng.choice(LEVELS, size=(n, N_CAT))
    return [
        {**dict(zip(NAMES[:N_NUM], map(float, num[i]), strict=True)),
         **dict(zip(NAMES[N_NUM:], map(str, cat[i]), strict=True))}
        for i in range(n)
    ]  # fmt: skip


def _broken(rng: np.random.Generator, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """5% of the values broken: a quarter each missing, mistyped, unseen or out of range."""
    out = [dict(r) for r in rows]
    n = len(out)
    for i, j in zip(rng.integers(0, n, n), rng.integers(0, len(NAMES), n), strict=True):
        if rng.random() >= 0.05:
            continue
        name = NAMES[j]
        fault = rng.integers(0, 4)
        numerical = j < N_NUM
        if fault == 0:
            out[i][name] = None
        elif fault == 1:
            out[i][name] = str(out[i][name]) if numerical else ["list"]
        elif fault == 2:
            out[i][name] = 1e6 if numerical else f"new-{rng.integers(0, 50)}"
        else:
            out[i][name] = float("nan") if numerical else ""
    return out


def cases(rng: np.random.Generator) -> list[tuple[str, int, DataQualityAnalyzer, DriftWindow]]:
    reference = _table(rng, 20_000)
    profile = build_tabular_profile(
        [[r[k] for k in NAMES] for r in reference], NAMES, categorical=NAMES[N_NUM:]
    )
    analyzer = DataQualityAnalyzer(profile)
    out = []
    for n in (1_000, 10_000):
        clean = _table(rng, n)
        rows = profile.features_batch(clean)
        out.append((f"tabular {n:,} rows, dict inputs, clean", 20, analyzer,
                    DriftWindow(rows, inputs=tuple(clean))))  # fmt: skip
    clean = _table(rng, 1_000)
    rows = profile.features_batch(clean)
    lists = tuple([r[k] for k in NAMES] for r in clean)
    out.append(("tabular 1,000 rows, list inputs, clean", 20, analyzer,
                DriftWindow(rows, inputs=lists)))  # fmt: skip
    broken = _broken(rng, clean)
    accepted, rejected = [], []
    for x in broken:
        try:
            profile.features(x)
            accepted.append(x)
        except ValueError:
            rejected.append(x)
    rejected += [{**x, "x0": "abc"} for x in clean[:50]]
    out.append((f"tabular 1,000 rows, 5% broken (+{len(rejected)} rejected)", 20, analyzer,
                DriftWindow(profile.features_batch(accepted), inputs=tuple(accepted),
                            rejected=tuple(rejected))))  # fmt: skip
    out.append(("tabular 1,000 rows, rows only (no raw inputs)", 20, analyzer, DriftWindow(rows)))

    digits = load_digits()
    img = build_image_profile(digits.data)
    pick = rng.integers(0, len(digits.data), 1_000)
    out.append(("digits 1,000 images: 3 derived features", 3, DataQualityAnalyzer(img),
                DriftWindow(img.features_batch(digits.data[pick]),
                            inputs=tuple(digits.data[pick]))))  # fmt: skip
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 15))) for _ in range(3_000)]
    txt = build_text_profile(texts[:2_000])
    live = texts[2_000:]
    out.append(("text 1,000 sentences: 3 derived features", 3, DataQualityAnalyzer(txt),
                DriftWindow(txt.features_batch(live), inputs=tuple(live))))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 runs per case")
    args = ap.parse_args()
    runs = 20 if args.quick else 200
    rng = np.random.default_rng(0)
    print(f"# data-quality benchmark  {dt.date.today()}  CPU: {cpu_model()}  Python "
          f"{platform.python_version()}  numpy {np.__version__}  "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"\n## DataQualityAnalyzer.analyze, one window ({runs} runs)\n")
    print(f"| case | features | median ms | p99 ms | median CPU ms | "
          f"target <= {TARGET_MS:.0f} ms (1,000 rows) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, n_feat, analyzer, window in cases(rng):
        ms, cpu = _time_ms(lambda a=analyzer, w=window: a.analyze(w), runs)  # type: ignore[misc]
        med = statistics.median(ms)
        ok = "-" if "10,000" in name else ("yes" if med <= TARGET_MS else "NO")
        print(f"| {name} | {n_feat} | {med:.2f} | {float(np.percentile(ms, 99)):.2f} "
              f"| {statistics.median(cpu):.2f} | {ok} |")  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
