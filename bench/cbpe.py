"""CBPE on one 100k-row window: infertrail's estimate vs NannyML 0.13.1's (issue 18, target >= 10x).

Both fit the same labelled reference (100,000 rows, chunks of 10,000 for the thresholds) and
estimate the same unlabelled 100,000-row window as one chunk: NannyML in its own venv
(.venv-nannyml, made by scripts/nannyml-venv.sh) with its chunker set to 100,000 rows after the
fit, timed inside that process; ours in this one, ``--repeat`` times before NannyML's run and
as many after it (the machine is shared: this spreads its load over both). Ours is timed from
labels (``estimate``, as NannyML is given them) and from class codes (``estimate_codes``, what
the window analyzer calls). Cases: a miscalibrated binary model and a ten-class model (the data
of tests/oracle/cases.py). Times are medians. The table also gives the largest difference
between the two estimates over the five metrics (the oracle test holds it within 0.01).

    .venv/bin/python bench/cbpe.py [--quick] [--repeat 7] [--rows 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.oracle.cases import (  # noqa: E402
    Case,
    binary_case,
    fit_ours,
    multiclass_case,
    nannyml_python,
    run_nannyml,
)

from infertrail.estimation import CbpeModel  # noqa: E402
from infertrail.estimation.cbpe import class_codes  # noqa: E402

TARGET_SPEEDUP = 10.0


def fit_timed(case: Case) -> tuple[CbpeModel, float]:
    """Our estimator fitted as NannyML's is, and the seconds the fit took."""
    started = time.perf_counter()
    model = fit_ours(case)
    return model, time.perf_counter() - started


def time_ours(case: Case, model: CbpeModel, repeat: int) -> dict[str, list[float]]:
    """Seconds per estimate of the window, from labels and from class codes."""
    codes = class_codes(case.ana_y_pred, model.classes, "y_pred")
    times: dict[str, list[float]] = {"labels": [], "codes": []}
    for _ in range(repeat):
        started = time.perf_counter()
        model.estimate(case.ana_y_pred, case.ana_proba)
        times["labels"].append(time.perf_counter() - started)
        started = time.perf_counter()
        model.estimate_codes(codes, case.ana_proba)
        times["codes"].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000-row window, 3 repeats")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    rows = 10_000 if args.quick else args.rows
    repeat = 3 if args.quick else args.repeat
    python, why = nannyml_python()
    if python is None:
        raise SystemExit(f"no NannyML oracle venv: {why}")
    chunk = rows // 10
    cases = [
        dataclasses.replace(
            binary_case(rows, rows, shift=0.5, seed=1, chunk=chunk), ana_chunk_size=rows
        ),
        dataclasses.replace(
            multiclass_case(rows, rows, k=10, shift=0.5, seed=2, chunk=chunk),
            ana_chunk_size=rows,
        ),
    ]
    print(f"load average {os.getloadavg()[0]:.1f}; {platform.processor() or platform.machine()}")
    models = [fit_timed(case) for case in cases]
    ours = [time_ours(case, model, repeat) for case, (model, _) in zip(cases, models, strict=True)]
    with tempfile.TemporaryDirectory() as workdir:
        theirs = run_nannyml(python, cases, Path(workdir), repeat=repeat)
    for before, (case, (model, _)) in zip(ours, zip(cases, models, strict=True), strict=True):
        after = time_ours(case, model, repeat)
        for key in before:
            before[key] += after[key]
    header = (
        f"{'case':<22} {'rows':>8} {'NannyML fit s':>13} {'our fit s':>9} {'NannyML ms':>11} "
        f"{'ours ms':>8} {'codes ms':>8} {'speed-up':>9} {'max |diff|':>10}"
    )
    print(header)
    print("-" * len(header))
    for case, answer, (model, fit_s), times in zip(cases, theirs, models, ours, strict=True):
        estimate = model.estimate(case.ana_y_pred, case.ana_proba)
        diff = max(
            abs((estimate.value(m) or 0.0) - (answer["metrics"][m]["value"][0] or 0.0))
            for m in case.metrics
        )
        nml_ms = statistics.median(answer["estimate_s"]) * 1000
        our_ms = statistics.median(times["labels"]) * 1000
        codes_ms = statistics.median(times["codes"]) * 1000
        print(
            f"{case.kind + ' (' + str(len(case.classes)) + ' classes)':<22} {rows:>8,} "
            f"{answer['fit_s']:>13.1f} {fit_s:>9.2f} {nml_ms:>11.1f} {our_ms:>8.1f} "
            f"{codes_ms:>8.1f} {nml_ms / our_ms:>8.1f}x {diff:>10.1e}"
        )
    print(f"target: our estimate >= {TARGET_SPEEDUP:.0f}x faster than NannyML's, same estimates")


if __name__ == "__main__":
    main()
