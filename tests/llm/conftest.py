"""The demo LLM's tests need the [llm] extra: run them with .venv-llm (scripts/llm-venv.sh).

Without torch every test here is skipped, with the reason; the rest of the suite is untouched.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from infertrail.models import llm

HERE = Path(__file__).parent
NO_TORCH = (
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not NO_TORCH:
        return
    skip = pytest.mark.skip(
        reason="the demo LLM needs infertrail[llm] (torch, transformers): "
        "run tests/llm with $(scripts/llm-venv.sh) -m pytest tests/llm"
    )
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo LLM trained once per session on a short budget (15 s, one thread)."""
    return llm.train(tmp_path_factory.mktemp("llm") / "demo-llm", seconds=15.0)


@pytest.fixture(scope="session")
def model(llm_dir: Path) -> llm.DemoLLM:
    return llm.load(llm_dir)
