"""Fuzz one target with atheris: ``python -m tests.fuzz.run NAME [libFuzzer options] [corpora]``.

From the repository root. The Python code the target compares the C functions with (the audit
modules and the targets' own argument builders) is instrumented for coverage, so libFuzzer keeps
inputs that reach new branches of the twins; libFuzzer's comparison hooks guide it through the
bytes they compare. With $INFERTRAIL_FUZZ_NATIVE set (tests/fuzz/native.py), the sanitized build
of the C module is fuzzed instead of the installed one. Exits 0 when ``-max_total_time`` or
``-runs`` is reached; on a mismatch or a crash libFuzzer writes the input to
``<artifact_prefix>crash-<sha1>`` and exits non-zero. Replay one input with
``python -m tests.fuzz.run NAME path/to/crash-...``.
"""

from __future__ import annotations

import shlex
import sys

import atheris

from tests.fuzz.native import install_from_env


def main(argv: list[str]) -> None:
    """Fuzz ``argv[1]`` with the rest of ``argv`` as libFuzzer's arguments."""
    if len(argv) < 2:
        raise SystemExit(f"usage: python -m tests.fuzz.run NAME [libFuzzer args]\n{__doc__}")
    install_from_env()
    with atheris.instrument_imports(include=["infertrail.audit", "tests.fuzz.targets"]):
        from tests.fuzz.targets import TARGETS
    name = argv[1]
    if name not in TARGETS:
        raise SystemExit(f"no fuzz target {name!r}; there are: {', '.join(TARGETS)}")
    # libFuzzer runs argv[0] again through the shell for -merge and -fork: make it this command.
    command = shlex.join([sys.executable, "-m", "tests.fuzz.run", name])
    atheris.Setup([command, *argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
