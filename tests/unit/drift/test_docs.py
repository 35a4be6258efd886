"""The example in docs/drift.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "drift.md"


def test_drift_doc_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "docs/drift.md lost its example"
    exec(compile(blocks[0], str(DOC), "exec"), {"models_dir": tmp_path / "models"})
    assert (tmp_path / "models" / "digits" / "profile.npz").is_file()
    assert "ink_fraction" in capsys.readouterr().out
