"""infertrail._native under AddressSanitizer and UndefinedBehaviorSanitizer (marker ``fuzz``).

The module is compiled again with both sanitizers into a temporary directory; child processes
import it in place of the installed build (tests/fuzz/native.py) and run the native tests, the
fuzz regressions and every fuzz target. Any sanitizer report fails the test with its stack.
tests/fuzz/README.md says what works here and why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.harness import FUZZ_SECONDS, SANITIZER_REPORTS, SEEDS, fuzz
from tests.fuzz.native import REPO_ROOT, build_sanitized, sanitized_env
from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.fuzz

# The tests that drive every C function, each against its twin or a reference. Left out for
# time (their hypothesis runs take minutes under ASan): test_canonical.py and
# test_canonical_parts.py, which check the Python encoders and reach C as test_native does.
NATIVE_TESTS = [
    "tests/unit/audit/test_native.py",
    "tests/unit/audit/test_subtrees.py",
    "tests/fuzz/test_regressions.py",
    "tests/fuzz/test_fuzz.py::test_seed_corpus",
]


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ASan + UBSan build of _native, in a temporary directory."""
    return build_sanitized(tmp_path_factory.mktemp("fuzz-asan"))


def run(argv: list[str], module: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=sanitized_env(module),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def reports(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(r in line for r in SANITIZER_REPORTS)]


def test_children_run_the_sanitized_build(sanitized: Path) -> None:
    probe = (
        "from tests.fuzz.native import install_from_env; install_from_env()\n"
        "from infertrail.audit import canonical, subtrees\n"
        "import infertrail._native as n\n"
        "print(n.__file__, subtrees._native_node_level is n.node_level)\n"
        "print(open('/proc/self/maps').read())\n"
    )
    done = run([sys.executable, "-c", probe], sanitized, 60)
    assert done.returncode == 0, done.stderr
    first, maps = done.stdout.split("\n", 1)
    assert first == f"{sanitized} True"
    assert "libasan.so" in maps and "libubsan.so" in maps


def test_native_tests_under_sanitizers(sanitized: Path) -> None:
    done = run(
        # --capture=sys: a sanitizer writes its report to file descriptor 2 and ends the
        # process, so pytest's capture of that descriptor would swallow it.
        [sys.executable, "-m", "pytest", "-p", "tests.fuzz.sanitized_plugin", "-p",
         "no:cacheprovider", "--capture=sys", "-m", "not fuzz", *NATIVE_TESTS],
        sanitized,
        900,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert f"infertrail._native: {sanitized}" in output
    assert done.returncode == 0 and not reports(output), output[-12000:]


@pytest.mark.parametrize("name", TARGETS)
def test_fuzz_under_sanitizers(
    sanitized: Path, name: str, tmp_path: Path, grown_corpora: Path
) -> None:
    # gcc's ASan runtime registers no coverage for atheris (README), so this run replays the
    # seeds and what the coverage-guided run of this session found, then mutates them blindly:
    # half the coverage-guided time is enough for that.
    result = fuzz(
        name,
        seconds=FUZZ_SECONDS / 2,
        corpora=[tmp_path / "new", SEEDS / name, grown_corpora / name],
        work=tmp_path,
        env=sanitized_env(sanitized),
        extra=["-rss_limit_mb=4096"],  # ASan's shadow memory and quarantine
    )
    how = "\n(to replay under the sanitizers: the environment of native.sanitized_env, README)"
    assert not result.problems(), result.report() + how
    assert "DONE" in result.output, result.report() + how
