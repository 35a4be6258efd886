"""Fixtures shared by every test: settings under a temp dir and a trained demo model."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from infertrail.config import Settings
from infertrail.models import train_all


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models trained once per test session (deterministic, a few seconds)."""
    root = tmp_path_factory.mktemp("models")
    train_all(root)
    return root


@pytest.fixture(autouse=True)
def _own_config_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test its own $XDG_CONFIG_HOME: `audit verify` and `audit monitor` remember the
    checkpoints they verified there (the verifier state), which must neither leak from one test
    into another nor touch the real home directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))


@pytest.fixture
def settings(tmp_path: Path, trained_models: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings rooted in a fresh temp dir holding a copy of the trained models."""
    for var in list(os.environ):
        if var.startswith(("OTEL_", "INFERTRAIL_")) and var != "OTEL_SEMCONV_STABILITY_OPT_IN":
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # no stray ./infertrail.toml is picked up
    # A test process is shared by many runtimes: none takes the global OpenTelemetry providers.
    s = Settings(
        data_dir=tmp_path / "data", metric_export_interval_ms=60_000, set_global_providers=False
    )
    s.ensure_dirs()
    shutil.copytree(trained_models, s.models_dir, dirs_exist_ok=True)
    return s


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No INFERTRAIL_* / OTEL_* variables and no config file in the working directory."""
    for var in list(os.environ):
        if var.startswith(("INFERTRAIL_", "OTEL_")):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    yield
