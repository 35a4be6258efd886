"""Running a fuzz target in a child process, bounded in time, and judging what it left.

Time per target: $INFERTRAIL_FUZZ_SECONDS (default 10, what the test command runs; raise it for
a longer local campaign). New inputs go to a scratch corpus, never to the committed seeds.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.native import REPO_ROOT

SEEDS = Path(__file__).resolve().parent / "corpus"
#: Seconds each target is fuzzed for (per run: once with coverage, once under the sanitizers).
FUZZ_SECONDS = float(os.environ.get("INFERTRAIL_FUZZ_SECONDS", "10"))
_MAX_LEN = 8192  # bytes per input: enough for strings past the C encoder's 4 KiB first buffer
_INPUT_TIMEOUT_S = 20  # one input running longer than this is a finding (a hang)
# What the sanitizers write when they find something (UBSan's "runtime error" lines, ASan's
# "ERROR: AddressSanitizer" and its SUMMARY).
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: UndefinedBehavior")


@dataclass
class FuzzRun:
    """What one fuzzing process did."""

    target: str
    returncode: int
    output: str
    artifacts: list[Path]

    def problems(self) -> list[str]:
        """Why the run failed: exit status, sanitizer reports, inputs libFuzzer saved."""
        found = [f"exit status {self.returncode}"] if self.returncode != 0 else []
        found += [
            line for line in self.output.splitlines() if any(r in line for r in SANITIZER_REPORTS)
        ]
        for artifact in self.artifacts:
            found.append(
                f"{artifact.name} (base64 {base64.b64encode(artifact.read_bytes()).decode()})"
            )
        return found

    def report(self) -> str:
        """A failure message: what went wrong, how to replay it, the end of the fuzzer's output."""
        replay = (
            " ".join(f"python -m tests.fuzz.run {self.target} {a}" for a in self.artifacts)
            or f"python -m tests.fuzz.run {self.target} tests/fuzz/corpus/{self.target}"
        )
        return (
            f"fuzz target {self.target}: " + "; ".join(self.problems()) + f"\nreplay: {replay}\n"
            f"--- end of the fuzzer's output ---\n{self.output[-8000:]}"
        )


def fuzz(
    target: str,
    *,
    seconds: float,
    corpora: Sequence[Path],
    work: Path,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> FuzzRun:
    """Fuzz ``target`` for ``seconds``: new inputs go to ``corpora[0]``, artifacts to ``work``.

    Every input of the other corpora is run first. The child is killed if it outlives its time
    by a wide margin (libFuzzer stops itself at ``-max_total_time``).
    """
    work.mkdir(parents=True, exist_ok=True)
    for corpus in corpora:
        corpus.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "tests.fuzz.run", target,
        f"-max_total_time={max(1, round(seconds))}", f"-max_len={_MAX_LEN}",
        f"-timeout={_INPUT_TIMEOUT_S}", f"-artifact_prefix={work}/", "-print_final_stats=1",
        *extra, *map(str, corpora),
    ]  # fmt: skip
    log = work / f"{target}.log"
    with log.open("wb") as out:
        done = subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=seconds + 240,  # corpus replay and a slow start under ASan included
            check=False,
        )
    artifacts = sorted(
        p for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))
    )
    return FuzzRun(target, done.returncode, log.read_text(errors="replace"), artifacts)
