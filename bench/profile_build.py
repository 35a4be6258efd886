"""Speed of building a reference profile (issue 18: >= 1M rows x 20 features per second per core).

A table of 1,000,000 rows x 20 features: 16 numerical (normal floats; floats rounded to 2
decimals, so with ties; integers 0..999) and 4 categorical (5 to 200 categories, given as codes),
profiled three ways:

1. ``whole``: one :func:`~infertrail.drift.build.tabular_partial` of every row, then the profile;
2. ``batched``: batches of 131,072 rows (``reference.BATCH_ROWS``), one partial profile each,
   merged, then the profile (what ``drift baseline`` does with a large Parquet reference);
3. ``parquet``: ``build_reference`` on a Parquet file of the same table, read in those batches
   (file reading and Arrow conversion included; the categories are strings there);
4. ``continuous``: the worst case, ``build_tabular_profile`` of 20 normal float columns, every
   value distinct, so every column is sorted whole and compacted (1M > 131,072 values).

Each case runs in this process, single-threaded (numpy's sort and the rest are; BLAS is not
used), ``--runs`` times; the table gives the median wall and CPU seconds and the rate per core,
rows x features per CPU second. The load average is printed before and after: the machine's 2
cores are shared, and wall times move with it.

    .venv/bin/python bench/profile_build.py             # 1M rows, 5 runs
    .venv/bin/python bench/profile_build.py --quick     # 200k rows, 2 runs
    .venv/bin/python bench/profile_build.py --profile   # cProfile of one batched build
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import platform
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infertrail.drift.build import CategoryCodes, build_tabular_profile, tabular_partial
from infertrail.drift.partial import PartialProfile
from infertrail.drift.reference import BATCH_ROWS, build_reference, open_table
from machine import cpu_model

TARGET = 1_000_000 * 20  # rows x features per CPU second
N_FEATURES = 20


def make_table(n: int, seed: int = 0) -> dict[str, Any]:
    """16 numerical and 4 categorical columns of ``n`` rows."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for j in range(16):
        if j % 4 == 2:
            columns[f"x{j}"] = rng.normal(size=n).round(2)  # ties
        elif j % 4 == 3:
            columns[f"x{j}"] = rng.integers(0, 1000, n).astype(np.float64)
        else:
            columns[f"x{j}"] = rng.normal(j, 1 + j, n)
    for j, k in enumerate((5, 20, 50, 200)):
        columns[f"c{j}"] = rng.integers(0, k, n)
    return columns


def _coded(columns: dict[str, Any], rows: slice) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in columns.items():
        part = values[rows]
        if name.startswith("c"):
            k = int(values.max()) + 1
            out[name] = CategoryCodes(part, [f"v{i:03d}" for i in range(k)])
        else:
            out[name] = part
    return out


def build_whole(columns: dict[str, Any]) -> None:
    n = len(next(iter(columns.values())))
    tabular_partial(_coded(columns, slice(0, n))).profile()


def build_batched(columns: dict[str, Any]) -> None:
    n = len(next(iter(columns.values())))
    rng = np.random.default_rng(0)
    merged: PartialProfile | None = None
    for start in range(0, n, BATCH_ROWS):
        part = tabular_partial(_coded(columns, slice(start, start + BATCH_ROWS)), seed=rng)
        merged = part if merged is None else merged.merge(part, rng)
    assert merged is not None
    merged.profile()


def parquet_builder(columns: dict[str, Any], directory: Path) -> Callable[[], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = directory / "reference.parquet"
    table = pa.table({n: v if n.startswith("x") else v.astype(str) for n, v in columns.items()})
    pq.write_table(table, path)
    from infertrail.drift.reference import FeatureSpec

    specs = [FeatureSpec(n, "numeric" if n.startswith("x") else "categorical") for n in columns]

    def build() -> None:
        build_reference(open_table(path), model_name="m", model_sha256="ab" * 32, specs=specs)

    return build


def measure(fn: Callable[[], None], runs: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--profile", action="store_true", help="cProfile one batched build")
    args = parser.parse_args()
    n = args.rows or (200_000 if args.quick else 1_000_000)
    runs = args.runs or (2 if args.quick else 5)
    columns = make_table(n)
    if args.profile:
        cProfile.runctx("build_batched(columns)", globals(), {"columns": columns}, "/tmp/pb.prof")
        pstats.Stats("/tmp/pb.prof").sort_stats("cumulative").print_stats(25)
        return
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}")  # fmt: skip
    print(f"load average at start: {os.getloadavg()}")
    print(f"{n:,} rows x {N_FEATURES} features (16 numerical, 4 categorical), {runs} runs\n")
    print("| case | median wall s | median CPU s | rows x features per CPU s | target |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        continuous = np.random.default_rng(1).normal(size=(n, N_FEATURES))
        names = [f"x{j}" for j in range(N_FEATURES)]
        cases = {
            "whole": lambda: build_whole(columns),
            f"batched ({BATCH_ROWS:,} rows)": lambda: build_batched(columns),
            "parquet file, batched": parquet_builder(columns, Path(tmp)),
            "continuous: 20 normal columns, whole": lambda: build_tabular_profile(
                continuous, names
            ),
        }
        for name, fn in cases.items():
            wall, cpu = measure(fn, runs)
            rate = n * N_FEATURES / cpu
            ok = "met" if rate >= TARGET else "missed"
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rate / 1e6:.1f}M | {ok} |")
    numerical = [v for k, v in columns.items() if k.startswith("x")]
    _, sort_cpu = measure(lambda: [np.sort(v) for v in numerical], runs)
    print(f"\nthe floor, np.sort of the 16 numerical columns alone: {sort_cpu:.2f} CPU s")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
