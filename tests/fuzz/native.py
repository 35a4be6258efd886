"""Another build of infertrail._native for a test process: the sanitized one, built apart.

:func:`build_sanitized` compiles src/infertrail/_native.c as hatch_build.py does, plus
AddressSanitizer and UndefinedBehaviorSanitizer, into a directory of the caller's (never over the
normal build). A child process started with :func:`sanitized_env` imports that build in place of
the normal one: :func:`install_from_env` (run by ``python -m tests.fuzz.run`` and by the pytest
plugin ``tests.fuzz.sanitized_plugin``) registers it as ``infertrail._native`` before any audit
module imports it. tests/fuzz/README.md says why each setting is what it is.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "src" / "infertrail" / "_native.c"
#: The environment variable naming the extension module a child process must import.
NATIVE_ENV = "INFERTRAIL_FUZZ_NATIVE"
SANITIZER_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",  # a UBSan report ends the process, whatever the options
    "-fno-omit-frame-pointer",
    "-O1",
    "-g",
]


def compiler() -> list[str]:
    """$CC, else the compiler CPython was built with (as hatch_build.py chooses)."""
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def build_sanitized(out_dir: Path) -> Path:
    """Compile _native with ASan and UBSan into ``out_dir``; the module's path.

    RuntimeError with the compiler's output if it fails.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ("_native" + sysconfig.get_config_var("EXT_SUFFIX"))
    command = [
        *compiler(), *SANITIZER_FLAGS, "-fPIC", "-shared", "-Wall",
        "-Wno-deprecated-declarations", f"-I{sysconfig.get_paths()['include']}", str(SOURCE),
        "-o", str(target), "-lcrypto",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr}")
    return target


def runtime_library(name: str) -> Path:
    """The compiler's shared sanitizer runtime (``libasan.so``); RuntimeError if it has none."""
    done = subprocess.run(
        [*compiler(), f"-print-file-name={name}"], capture_output=True, text=True, check=True
    )
    path = Path(done.stdout.strip())
    if not path.is_absolute() or not path.exists():
        raise RuntimeError(
            f"{compiler()[0]} has no {name} (Debian: the gcc package brings it; "
            "scripts/test.sh installs it)"
        )
    return path.resolve()


def sanitized_env(module: Path) -> dict[str, str]:
    """The environment of a child process that runs ``module`` under ASan and UBSan.

    The ASan runtime must be the first library loaded (CPython is not linked with it), so it is
    preloaded. Leak detection is off: CPython keeps its interned objects and static types until
    exit by design. PYTHONMALLOC=malloc sends every Python allocation to malloc, where ASan puts
    its red zones; pymalloc's arenas would hide an overflow into a neighbouring object.
    """
    env = dict(os.environ)
    env.update(
        {
            NATIVE_ENV: str(module),
            # libstdc++ too: ASan finds the real __cxa_throw at start-up, and atheris (C++)
            # throws through it whenever a target raises.
            "LD_PRELOAD": f"{runtime_library('libasan.so')} {runtime_library('libstdc++.so.6')}",
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
            "PYTHONMALLOC": "malloc",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return env


def install_from_env() -> None:
    """Import the extension module named by $INFERTRAIL_FUZZ_NATIVE as ``infertrail._native``.

    Must run before any audit module is imported (they bind the C functions at import). Does
    nothing when the variable is unset, so the same entry points run the normal build.
    """
    path = os.environ.get(NATIVE_ENV)
    if not path:
        return
    if "infertrail._native" in sys.modules:
        raise RuntimeError("infertrail._native was imported before the build to test replaced it")
    spec = importlib.util.spec_from_file_location("infertrail._native", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{path} is not an extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["infertrail._native"] = module
    import infertrail

    infertrail._native = module  # type: ignore[attr-defined]  # what `from infertrail import _native` reads
