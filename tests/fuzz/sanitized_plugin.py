"""pytest plugin (``-p tests.fuzz.sanitized_plugin``): the tests import the build named by
$INFERTRAIL_FUZZ_NATIVE as ``infertrail._native`` (tests/fuzz/native.py); without it, the
installed one."""

from __future__ import annotations

import os

import pytest

from tests.fuzz.native import NATIVE_ENV, install_from_env

install_from_env()  # at plugin import: before any conftest or test module imports the audit code


def pytest_report_header(config: pytest.Config) -> str:
    """Say which build of the C module the session tests."""
    return f"infertrail._native: {os.environ.get(NATIVE_ENV) or 'the installed build'}"
