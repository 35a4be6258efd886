"""Runs NannyML 0.13.1's CBPE on a case file, inside .venv-nannyml (never imported by infertrail).

    .venv-nannyml/bin/python tests/oracle/nannyml_cbpe.py CASE.npz OUT.json [...] [--repeat N]

Several CASE/OUT pairs may follow each other (importing NannyML takes seconds). CASE.npz
(written by tests/oracle/cases.py) holds ``kind`` ("binary" or "multiclass"), ``classes``,
``metrics``, ``chunk_size``, the reference (``ref_y_true``, ``ref_y_pred``,
``ref_proba``) and the analysis (``ana_y_pred``, ``ana_proba``; ``ana_chunk_size`` when the
analysis is cut into other chunks than the reference, e.g. one 100k window for the benchmark).
Binary classes are 0/1 and the probability is class 1's; multiclass probabilities are n x k in
``classes`` order. OUT.json: per metric, the analysis chunks' value, sampling error, thresholds
and alerts; and the seconds ``fit`` and each ``estimate`` took (timed here, in this process).
"""

import json
import os
import sys
import time

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml
import numpy as np
import pandas as pd
from nannyml.chunk import SizeBasedChunker


def frames(case):
    """The reference and analysis DataFrames in NannyML's column layout."""
    kind = str(case["kind"])
    classes = [str(c) for c in case["classes"]]
    out = []
    for prefix in ("ref", "ana"):
        columns = {"y_pred": case[f"{prefix}_y_pred"]}
        if prefix == "ref":
            columns["y_true"] = case["ref_y_true"]
        proba = case[f"{prefix}_proba"]
        if kind == "binary":
            columns["proba"] = proba
            columns["y_pred"] = columns["y_pred"].astype(int)
            if "y_true" in columns:
                columns["y_true"] = columns["y_true"].astype(int)
        else:
            for j, c in enumerate(classes):
                columns[f"proba_{c}"] = proba[:, j]
            columns["y_pred"] = columns["y_pred"].astype(str)
            if "y_true" in columns:
                columns["y_true"] = columns["y_true"].astype(str)
        out.append(pd.DataFrame(columns))
    return out[0], out[1], classes


def main(argv):
    repeat = 1
    if "--repeat" in argv:
        at = argv.index("--repeat")
        repeat = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    paths = argv[1:]
    for case_path, out_path in zip(paths[::2], paths[1::2], strict=True):
        run(case_path, out_path, repeat)


def run(case_path, out_path, repeat):
    """Fit on the case's reference, estimate its analysis ``repeat`` times, write OUT.json."""
    case = np.load(case_path, allow_pickle=False)
    reference, analysis, classes = frames(case)
    kind = str(case["kind"])
    estimator = nml.CBPE(
        problem_type="classification_binary" if kind == "binary" else "classification_multiclass",
        y_pred_proba="proba" if kind == "binary" else {c: f"proba_{c}" for c in classes},
        y_pred="y_pred",
        y_true="y_true",
        metrics=[str(m) for m in case["metrics"]],
        chunk_size=int(case["chunk_size"]),
    )
    started = time.perf_counter()
    estimator.fit(reference)
    fit_s = time.perf_counter() - started
    if "ana_chunk_size" in case:
        # The thresholds are fitted; only the analysis is cut into other chunks.
        estimator.chunker = SizeBasedChunker(chunk_size=int(case["ana_chunk_size"]))
    estimate_s = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = estimator.estimate(analysis)
        estimate_s.append(time.perf_counter() - started)
    table = result.filter(period="analysis").to_df()
    metrics = {}
    for name in case["metrics"]:
        name = str(name)

        def column(field, name=name):
            return [None if pd.isna(v) else float(v) for v in table[(name, field)]]

        metrics[name] = {
            "value": column("value"),
            "sampling_error": column("sampling_error"),
            "lower_threshold": column("lower_threshold"),
            "upper_threshold": column("upper_threshold"),
            "alert": [bool(v) for v in table[(name, "alert")]],
        }
    with open(out_path, "w") as f:
        json.dump({"fit_s": fit_s, "estimate_s": estimate_s, "metrics": metrics}, f)


if __name__ == "__main__":
    main(sys.argv)
