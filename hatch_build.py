"""Build hook: compile the optional C speedups (src/infertrail/_native.c) when a compiler is here.

The package works without them (every function has a pure-Python twin), so a machine without a
C compiler, the Python headers or OpenSSL's headers gets a warning and a pure-Python install,
never a failed one. The module is built next to its source, where an editable install imports
it, and a regular wheel carries it (and is then tagged for this platform).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/infertrail/_native.c")


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Compiles infertrail._native with $CC, else the compiler CPython was built with."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root) / SOURCE
        target = source.with_name("_native" + sysconfig.get_config_var("EXT_SUFFIX"))
        compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        command = [
            *compiler, "-O2", "-DNDEBUG", "-fPIC", "-shared", "-Wall", "-Wno-deprecated-declarations",
            f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(target), "-lcrypto",
        ]  # fmt: skip
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(
                f"infertrail: C speedups not built, using pure Python ({detail.strip()[:500]})"
            )
            return
        if version != "editable":
            build_data["force_include"][str(target)] = f"infertrail/{target.name}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
