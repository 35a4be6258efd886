"""What every ``infertrail`` command group shares: the settings of the enclosing command.

The top-level command (:mod:`infertrail.cli`) puts a :class:`CliContext` on the click context;
each feature's command group reads the settings through :func:`settings_of`, which also works
when a group is run on its own (tests, embedding), with fresh settings from the environment.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from infertrail.config import Settings

__all__ = ["CliContext", "UsageProblem", "settings_of"]


class UsageProblem(click.ClickException):
    """Bad settings, options or input files: exit code 2, like click's own usage errors."""

    exit_code = 2


class CliContext:
    """Settings built lazily, once, with the command-line overrides applied."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self._overrides = {k: v for k, v in overrides.items() if v is not None}
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings: command-line overrides, then the environment and the config file."""
        if self._settings is None:
            self._settings = _build(**self._overrides)
        return self._settings


def _build(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except (ValidationError, FileNotFoundError) as exc:
        raise UsageProblem(f"invalid settings: {exc}") from exc


def settings_of(ctx: click.Context) -> Settings:
    """The settings of the enclosing ``infertrail`` command (at any level), or fresh ones."""
    current: click.Context | None = ctx
    while current is not None:
        found = getattr(current.obj, "settings", None)
        if isinstance(found, Settings):
            return found
        current = current.parent
    return _build()
