"""The example in docs/estimation.md runs as written, and says what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "estimation.md"


def test_the_estimation_doc_example_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "docs/estimation.md lost its example"
    exec(compile(blocks[0], str(DOC), "exec"), {"models_dir": tmp_path / "models"})
    assert (tmp_path / "models" / "my-model" / "cbpe.json").is_file()
    value, low, high = (float(v) for v in capsys.readouterr().out.splitlines()[0].split())
    assert low < value < high
