"""Fixtures of the fuzz tests: the corpus each target grows in this session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def grown_corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the coverage-guided runs put the inputs they found, one directory per target.

    The sanitizer runs replay them (after the committed seeds) when both run in one session.
    """
    return tmp_path_factory.mktemp("fuzz-grown")
