"""infertrail drift vs Evidently's DataDriftPreset: time, peak memory and per-column agreement.

Reference N(0, 1) and current N(shift, 1), both n rows x 20 columns: shift 0.1 at n = 100,000 and
1,000,000, and the small shift 0.01 at 100,000 (issue 15), where KS decides column by column.
Every measurement runs in its own subprocess (so peak RSS is that run's alone): Evidently in its
own virtualenv ``bench/out/venv-evidently`` (``evidently==0.7.*``, ``pandas<3``: Evidently 0.7
does not import with pandas 3), created on first use; infertrail in this one. infertrail is timed
twice: building the reference profile (done once per model, offline) and comparing a window with
it (what runs per window); Evidently recomputes the reference on every run. Each cell runs
``--repeat`` times, the tools alternating; times are medians, speed-ups ratios of medians.
Decisions are compared column by column with the same method forced in both (Wasserstein normed
by the reference std at 0.1, KS at p < 0.05 without correction) and with each tool's default
rule. For KS, the infertrail worker also runs ``scipy.stats.ks_2samp`` on the full reference
(untimed) and the test version 1 profiles ran, against the profile's 5,000-row sample.

    .venv/bin/python bench/drift_vs_evidently.py                # 100k and 1M rows
    .venv/bin/python bench/drift_vs_evidently.py --quick        # 100k rows only
    .venv/bin/python bench/drift_vs_evidently.py --quick --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

HERE = Path(__file__).resolve().parent
VENV = HERE / "out" / "venv-evidently"
COLUMNS = 20
SHIFT = 0.1
SMALL_SHIFT = 0.01
ALPHA = 0.05
TARGET_SPEEDUP = 20.0


def _data(rows: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    # The same generator and seed in both virtualenvs (same numpy): identical data.
    rng = np.random.default_rng(2026)
    return rng.normal(size=(rows, COLUMNS)), rng.normal(shift, 1.0, size=(rows, COLUMNS))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers (run in subprocesses) ---------------------------------------------------------
def work_evidently(rows: int, method: str, shift: float) -> dict[str, Any]:
    """Evidently's DataDriftPreset on the data; ``method`` 'default' keeps its own rule."""
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref, cur = _data(rows, shift)
    names = [f"c{i}" for i in range(COLUMNS)]
    ref_df, cur_df = pd.DataFrame(ref, columns=names), pd.DataFrame(cur, columns=names)
    del ref, cur
    base = _rss_mb()
    preset = DataDriftPreset() if method == "default" else DataDriftPreset(method=method)
    t0, c0 = time.perf_counter(), time.process_time()
    snapshot = Report([preset]).run(current_data=cur_df, reference_data=ref_df)
    result = snapshot.dict()
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    columns = {}
    for metric in result["metrics"]:
        cfg = metric["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            value, used = float(metric["value"]), cfg["method"]
            threshold = float(cfg["threshold"])
            # p-value methods drift below the threshold, distances at or above it
            is_test = "p_value" in used or used in ("ks", "chisquare", "z")
            drifted = value < threshold if is_test else value >= threshold
            columns[cfg["column"]] = {"method": used, "value": value, "drifted": drifted}
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "peak_mb": _rss_mb(),
        "base_mb": base,
        "columns": columns,
    }


def _ks_references(ref: np.ndarray, cur: np.ndarray, sample: np.ndarray) -> dict[str, Any]:
    """Per column, scipy's KS p-value on the full reference and the version-1 test's on the
    profile's sample (run after the timed part: they are the yardsticks, not the tool)."""
    from scipy import stats as sps

    from infertrail.drift import stats

    return {
        "scipy": [float(sps.ks_2samp(ref[:, j], cur[:, j]).pvalue) for j in range(COLUMNS)],
        "sample": [stats.ks_test(sample[:, j], cur[:, j]).p_value for j in range(COLUMNS)],
    }


def work_infertrail(rows: int, method: str, shift: float) -> dict[str, Any]:
    """Profile build and one compare; ``method`` 'default' keeps infertrail's own rule."""
    from infertrail.drift import DriftConfig, DriftDetector, DriftWindow, build_tabular_profile
    from infertrail.drift.rule import Method

    ref, cur = _data(rows, shift)
    names = [f"c{i}" for i in range(COLUMNS)]
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    profile = build_tabular_profile(ref, names)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    config = DriftConfig()
    if method != "default":
        config = DriftConfig(method=cast(Method, method), correction="none")
    detector = DriftDetector(profile, config)
    t1, c1 = time.perf_counter(), time.process_time()
    report = detector.compare(DriftWindow(cur))
    compare_s, compare_cpu = time.perf_counter() - t1, time.process_time() - c1
    columns = {
        f.name: {
            "method": f.method,
            "value": f.p_value if f.p_value is not None else f.statistic,
            "drifted": f.drifted,
        }
        for f in report.features
    }
    peak = _rss_mb()
    with tempfile.TemporaryDirectory(prefix="ks-bench-") as tmp:
        path = Path(tmp) / "profile.json"
        profile.save(path)
        profile_mb = (path.stat().st_size + path.with_suffix(".npz").stat().st_size) / 1e6
    return {
        "seconds": build_s + compare_s,
        "build_s": build_s,
        "compare_s": compare_s,
        "cpu_s": build_cpu + compare_cpu,
        "compare_cpu_s": compare_cpu,
        "peak_mb": peak,
        "base_mb": base,
        "profile_mb": profile_mb,
        "columns": columns,
        **(_ks_references(ref, cur, profile.sample) if method == "ks" else {}),
    }


# -- driver --------------------------------------------------------------------------------
def ensure_venv() -> Path:
    """The Evidently virtualenv's python, created (and Evidently installed) on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} with evidently==0.7.* and pandas<3 ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "evidently==0.7.*", "pandas<3"],
            check=True,
        )
    return python


def run(python: Path, tool: str, rows: int, method: str, shift: float) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), __file__, "--worker", tool, "--rows", str(rows), "--method", method,
         "--shift", str(shift)],
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE.parent,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{tool} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _version(python: Path) -> str:
    code = "import evidently, pandas; print(evidently.__version__, pandas.__version__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    ev, pd = out.stdout.split()
    return f"evidently {ev} (pandas {pd})"


def measure(
    ev_python: Path, rows: int, method: str, shift: float, repeat: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``repeat`` runs of each tool, alternating; the first run's values, median timings.

    The data are seeded, so every run must reach the same verdicts (checked).
    """
    evs, its = [], []
    for _ in range(repeat):
        evs.append(run(ev_python, "evidently", rows, method, shift))
        its.append(run(Path(sys.executable), "infertrail", rows, method, shift))
    for runs in (evs, its):
        verdicts = [{c: v["drifted"] for c, v in r["columns"].items()} for r in runs]
        if any(v != verdicts[0] for v in verdicts):
            raise RuntimeError(f"verdicts changed between runs: {rows} rows, {method}, {shift}")
    keys = ("seconds", "cpu_s", "build_s", "compare_s", "compare_cpu_s", "peak_mb")
    ev, it = dict(evs[0]), dict(its[0])
    for merged, runs in ((ev, evs), (it, its)):
        for k in keys:
            if k in merged:
                merged[k] = statistics.median(r[k] for r in runs)
    return ev, it


def _row(rows: int, shift: float, method: str, ev: dict[str, Any], it: dict[str, Any]) -> str:
    agree = sum(ev["columns"][c]["drifted"] == it["columns"][c]["drifted"] for c in ev["columns"])
    n_ev = sum(c["drifted"] for c in ev["columns"].values())
    n_it = sum(c["drifted"] for c in it["columns"].values())
    return (
        f"| {rows:,} | {shift} | {method} | {ev['seconds']:.2f} | {it['build_s']:.2f} | "
        f"{it['compare_s']:.3f} | {ev['seconds'] / it['seconds']:.0f}x | "
        f"{ev['seconds'] / it['compare_s']:.0f}x | "
        f"{ev['cpu_s'] / (it['cpu_s']):.0f}x | "
        f"{ev['peak_mb']:.0f} (+{ev['peak_mb'] - ev['base_mb']:.0f}) | "
        f"{it['peak_mb']:.0f} (+{it['peak_mb'] - it['base_mb']:.0f}) | {it['profile_mb']:.1f} | "
        f"{agree}/{len(ev['columns'])} | {n_ev} / {n_it} |"
    )


def _ks_columns(ev: dict[str, Any], it: dict[str, Any]) -> list[str]:
    """Per-column KS p-values: Evidently, scipy on the full reference, infertrail, v1 sample."""
    names = list(ev["columns"])
    lines = [
        "| column | Evidently p | scipy full-reference p | infertrail p | infertrail / scipy | "
        "version-1 sample p | drifted E / scipy / i / v1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for j, c in enumerate(names):
        e, i = ev["columns"][c]["value"], it["columns"][c]["value"]
        sp, v1 = it["scipy"][j], it["sample"][j]
        flags = " / ".join("yes" if p < ALPHA else "no" for p in (e, sp, i, v1))
        ratio = f"{i / sp:.4f}" if sp > 0 else "-"  # both underflow to 0 on large shifts
        lines.append(f"| {c} | {e:.4g} | {sp:.4g} | {i:.4g} | {ratio} | {v1:.3g} | {flags} |")
    drifted = [it["columns"][c]["drifted"] for c in names]
    agree_ev = sum(
        (ev["columns"][c]["value"] < ALPHA) == d for c, d in zip(names, drifted, strict=True)
    )
    agree_sp = sum((p < ALPHA) == d for p, d in zip(it["scipy"], drifted, strict=True))
    ratio = [it["columns"][c]["value"] / p for c, p in zip(names, it["scipy"], strict=True) if p]
    ratio = ratio or [math.nan]
    lines.append(
        f"\nverdicts agree with Evidently on {agree_ev}/{len(names)} columns and with scipy's "
        f"full-reference KS on {agree_sp}/{len(names)}; infertrail p / scipy p in "
        f"{min(ratio):.4f}..{max(ratio):.4f}; drifted: Evidently "
        f"{sum(ev['columns'][c]['value'] < ALPHA for c in names)}, scipy "
        f"{sum(p < ALPHA for p in it['scipy'])}, infertrail "
        f"{sum(it['columns'][c]['drifted'] for c in names)}, version-1 sample "
        f"{sum(p < ALPHA for p in it['sample'])}"
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 rows only")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (medians)")
    ap.add_argument("--worker", choices=["evidently", "infertrail"], help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--method", default="default", help=argparse.SUPPRESS)
    ap.add_argument("--shift", type=float, default=SHIFT, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work = work_evidently if args.worker == "evidently" else work_infertrail
        print(json.dumps(work(args.rows, args.method, args.shift)))
        return

    ev_python = ensure_venv()
    cases = [(100_000, SHIFT, m) for m in ("default", "wasserstein", "ks")]
    cases += [(100_000, SMALL_SHIFT, m) for m in ("default", "ks")]
    if not args.quick:
        cases += [(1_000_000, SHIFT, m) for m in ("default", "wasserstein", "ks")]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines()
                  if ln.startswith("Model name")), "unknown")  # fmt: skip
    print(f"# infertrail vs Evidently DataDriftPreset  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} "
          f"UTC  CPU: {model} ({os.cpu_count()} CPUs)  {_version(ev_python)}")  # fmt: skip
    print(f"reference N(0,1), current N(shift,1), {COLUMNS} columns; one subprocess per run; "
          f"{args.repeat} run(s) per cell, medians; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")  # fmt: skip
    print("| rows | shift | method | Evidently s | infertrail build s | infertrail compare s | "
          "speed-up (build+compare) | speed-up (compare) | CPU speed-up (build+compare) | "
          "Evidently peak MB (+work) | infertrail peak MB (+work) | profile MB | "
          "columns agreeing | drifted E / i |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    details = []
    for rows, shift, method in cases:
        ev, it = measure(ev_python, rows, method, shift, args.repeat)
        print(_row(rows, shift, method, ev, it), flush=True)
        details.append((rows, shift, method, ev, it))
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\nPer-column values (Evidently vs infertrail; p-values for KS, distances otherwise):")
    for rows, shift, method, ev, it in details:
        diffs = [abs(ev["columns"][c]["value"] - it["columns"][c]["value"]) for c in ev["columns"]]
        methods = sorted({c["method"] for c in ev["columns"].values()})
        ours = sorted({c["method"] for c in it["columns"].values()})
        lo = min(c["value"] for c in ev["columns"].values())
        hi = max(c["value"] for c in ev["columns"].values())
        print(f"- {rows:,} rows, shift {shift}, {method}: Evidently {methods} values "
              f"{lo:.4g}..{hi:.4g}; infertrail {ours}; max |diff| {max(diffs):.2e}")  # fmt: skip
    for rows, shift, method, ev, it in details:
        if method == "ks":
            print(f"\nKS, {rows:,} rows, shift {shift}:\n")
            print("\n".join(_ks_columns(ev, it)))


if __name__ == "__main__":
    main()
