"""Coverage-guided fuzzing of infertrail._native's entry points against their Python twins.

``test_seed_corpus`` replays the committed corpus in-process (fast, every run: it holds the
inputs that once found a bug). ``test_fuzz`` (marker ``fuzz``) fuzzes each target with atheris for
$INFERTRAIL_FUZZ_SECONDS in a child process and fails on any mismatch, crash or hang, naming the
saved input and how to replay it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.harness import FUZZ_SECONDS, SEEDS, fuzz
from tests.fuzz.targets import TARGETS


def test_every_target_has_seeds() -> None:
    assert {p.name for p in SEEDS.iterdir()} == set(TARGETS)
    assert all(any((SEEDS / name).iterdir()) for name in TARGETS)


@pytest.mark.parametrize("name", TARGETS)
def test_seed_corpus(name: str) -> None:
    target = TARGETS[name]
    for path in sorted((SEEDS / name).iterdir()):
        try:
            target(path.read_bytes())
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from exc


@pytest.mark.fuzz
@pytest.mark.parametrize("name", TARGETS)
def test_fuzz(name: str, tmp_path: Path, grown_corpora: Path) -> None:
    run = fuzz(
        name,
        seconds=FUZZ_SECONDS,
        corpora=[grown_corpora / name, SEEDS / name],
        work=tmp_path,
    )
    assert not run.problems(), run.report()
    assert "DONE" in run.output, run.report()  # it ran to its time limit, not stopped early
