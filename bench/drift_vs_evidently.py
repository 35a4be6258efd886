"""infertrail drift vs Evidently's DataDriftPreset: time, peak memory and per-column agreement.

Reference N(0, 1) and current N(0.1, 1), both n rows x 20 columns, for n = 100,000 and
1,000,000. Every measurement runs in its own subprocess (so peak RSS is that run's alone):
Evidently in its own virtualenv ``bench/out/venv-evidently`` (``evidently==0.7.*``, ``pandas<3``:
Evidently 0.7 does not import with pandas 3), created on first use; infertrail in this one.
infertrail is timed twice: building the reference profile (done once per model, offline) and
comparing a window with it (what runs per window); Evidently recomputes the reference on every
run. Decisions are compared column by column with the same method forced in both (Wasserstein
normed by the reference std at 0.1, KS at p < 0.05 without correction) and with each tool's
default rule.

    .venv/bin/python bench/drift_vs_evidently.py            # 100k and 1M rows
    .venv/bin/python bench/drift_vs_evidently.py --quick    # 100k rows only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

HERE = Path(__file__).resolve().parent
VENV = HERE / "out" / "venv-evidently"
COLUMNS = 20
SHIFT = 0.1
TARGET_SPEEDUP = 20.0


def _data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    # The same generator and seed in both virtualenvs (same numpy): identical data.
    rng = np.random.default_rng(2026)
    return rng.normal(size=(rows, COLUMNS)), rng.normal(SHIFT, 1.0, size=(rows, COLUMNS))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers (run in subprocesses) ---------------------------------------------------------
def work_evidently(rows: int, method: str) -> dict[str, Any]:
    """Evidently's DataDriftPreset on the data; ``method`` 'default' keeps its own rule."""
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref, cur = _data(rows)
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


def work_infertrail(rows: int, method: str) -> dict[str, Any]:
    """Profile build and one compare; ``method`` 'default' keeps infertrail's own rule."""
    from infertrail.drift import DriftConfig, DriftDetector, DriftWindow, build_tabular_profile
    from infertrail.drift.rule import Method

    ref, cur = _data(rows)
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
    return {
        "seconds": build_s + compare_s,
        "build_s": build_s,
        "compare_s": compare_s,
        "cpu_s": build_cpu + compare_cpu,
        "compare_cpu_s": compare_cpu,
        "peak_mb": _rss_mb(),
        "base_mb": base,
        "columns": columns,
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


def run(python: Path, tool: str, rows: int, method: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), __file__, "--worker", tool, "--rows", str(rows), "--method", method],
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE.parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{tool} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _version(python: Path) -> str:
    code = "import evidently, pandas; print(evidently.__version__, pandas.__version__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    ev, pd = out.stdout.split()
    return f"evidently {ev} (pandas {pd})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 rows only")
    ap.add_argument("--worker", choices=["evidently", "infertrail"], help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--method", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work = work_evidently if args.worker == "evidently" else work_infertrail
        print(json.dumps(work(args.rows, args.method)))
        return

    ev_python = ensure_venv()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines()
                  if ln.startswith("Model name")), "unknown")  # fmt: skip
    print(f"# infertrail vs Evidently DataDriftPreset  {dt.date.today()}  CPU: {model}  "
          f"{_version(ev_python)}")  # fmt: skip
    print(f"reference N(0,1), current N({SHIFT},1), {COLUMNS} columns; one subprocess per cell\n")
    print("| rows | method | Evidently s | infertrail build s | infertrail compare s | "
          "speed-up (build+compare) | speed-up (compare) | Evidently peak MB (+work) | "
          "infertrail peak MB (+work) | columns agreeing | drifted E / i | CPU s E / i build+cmp "
          "/ i cmp |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    details = []
    for rows in sizes:
        for method in ("default", "wasserstein", "ks"):
            ev = run(ev_python, "evidently", rows, method)
            it = run(Path(sys.executable), "infertrail", rows, method)
            agree = sum(
                ev["columns"][c]["drifted"] == it["columns"][c]["drifted"] for c in ev["columns"]
            )
            n_ev = sum(c["drifted"] for c in ev["columns"].values())
            n_it = sum(c["drifted"] for c in it["columns"].values())
            print(
                f"| {rows:,} | {method} | {ev['seconds']:.2f} | {it['build_s']:.2f} | "
                f"{it['compare_s']:.3f} | {ev['seconds'] / it['seconds']:.0f}x | "
                f"{ev['seconds'] / it['compare_s']:.0f}x | "
                f"{ev['peak_mb']:.0f} (+{ev['peak_mb'] - ev['base_mb']:.0f}) | "
                f"{it['peak_mb']:.0f} (+{it['peak_mb'] - it['base_mb']:.0f}) | "
                f"{agree}/{len(ev['columns'])} | {n_ev} / {n_it} | "
                f"{ev['cpu_s']:.2f} / {it['cpu_s']:.2f} / {it['compare_cpu_s']:.3f} |"
            )
            details.append((rows, method, ev, it))
    print("\nPer-column values (Evidently vs infertrail; p-values for KS, distances otherwise):")
    for rows, method, ev, it in details:
        diffs = [abs(ev["columns"][c]["value"] - it["columns"][c]["value"]) for c in ev["columns"]]
        methods = sorted({c["method"] for c in ev["columns"].values()})
        ours = sorted({c["method"] for c in it["columns"].values()})
        lo = min(c["value"] for c in ev["columns"].values())
        hi = max(c["value"] for c in ev["columns"].values())
        print(f"- {rows:,} rows, {method}: Evidently {methods} values {lo:.4g}..{hi:.4g}; "
              f"infertrail {ours}; max |difference| {max(diffs):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
