"""The core install: no extra's modules importable, and infertrail still instruments a process.

Each scenario runs in a fresh interpreter whose import system refuses the extras' top-level
modules (what ``pip install infertrail`` without extras leaves out), so nothing imported by
this test process can mask a missing dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infertrail.runtime.extras import EXTRAS

#: What the core install lacks: every extra's modules, and the web stack of [server].
BLOCKED = sorted(
    {
        *EXTRAS["lake"],
        *EXTRAS["monitoring"],
        *EXTRAS["timestamps"],
        "fastapi",
        "starlette",
        "uvicorn",
    }
)

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
"""


def run_core(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = BLOCKER + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[3] / "src")},
    )


@pytest.mark.slow
def test_a_core_install_instruments_a_batch_job(tmp_path: Path) -> None:
    done = run_core(
        """
        import json, logging
        import infertrail
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        model = infertrail.ModelInfo("churn", "1", "ab" * 32)
        settings = infertrail.Settings(service_name="batch", data_dir="data")
        with infertrail.start(settings, models=[model]) as rt:
            seqs = []
            for i in range(5):
                with rt.observe(model, {"x": i}, subject=f"s{i}") as ev:
                    ev.score = 0.5
                seqs.append(rt.audit_receipt(ev).seq)
            parts = {
                "audit": rt.audit is not None, "sealer": rt.audit.sealer is not None,
                "cost": rt.cost is not None, "drift": bool(rt.drift),
                "outcomes": rt.outcomes is not None, "compliance": rt.compliance is not None,
            }
        print(json.dumps({"seqs": seqs, "parts": parts}))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["seqs"] == [0, 1, 2, 3, 4]
    assert result["parts"] == {
        "audit": True,
        "sealer": False,
        "cost": True,
        "drift": False,
        "outcomes": False,
        "compliance": False,
    }
    for feature, extra in (
        ("sealing the audit log into the Parquet lake", "lake"),
        ("the compliance query service", "lake"),
        ("drift monitoring", "monitoring"),
        ("outcomes", "monitoring"),
    ):
        assert f"{feature} is off: it needs infertrail[{extra}]" in done.stderr
    assert (tmp_path / "data" / "audit" / "log" / "checkpoints" / "latest").is_file()


def test_the_command_starts_and_names_the_extra_it_lacks(tmp_path: Path) -> None:
    done = run_core(
        """
        import sys
        from infertrail.cli import main
        for args in (["--help"], ["drift", "--help"], ["demo"]):
            try:
                main(args, prog_name="infertrail")
            except SystemExit as exit:
                print("exit", args[0], exit.code, file=sys.stderr)
        """,
        tmp_path,
    )
    assert "Commands:" in done.stdout and "audit" in done.stdout
    assert "exit --help 0" in done.stderr
    assert "exit drift 2" in done.stderr
    assert "exit demo 2" in done.stderr
    assert "the demo needs infertrail[demo]" in done.stderr
    assert "infertrail drift needs infertrail[monitoring]" in done.stderr


def test_an_unrelated_missing_module_is_not_mistaken_for_an_extra(tmp_path: Path) -> None:
    done = run_core(
        """
        from infertrail.runtime.extras import optional
        try:
            optional("a feature", "infertrail.no_such_module")
        except ModuleNotFoundError as exc:
            print("raised", exc.name)
        """,
        tmp_path,
    )
    assert done.stdout.strip() == "raised infertrail.no_such_module", done.stderr
