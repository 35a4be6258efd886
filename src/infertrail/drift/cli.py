"""``infertrail drift ...``: reference profiles.

The group is built by :func:`drift_commands` so that the top-level command can hand it the
baseline builders of the models it knows (the served demo models) without this package
importing them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import click

from infertrail.commandline import settings_of

__all__ = ["BaselineBuilder", "drift_commands"]

#: Rebuilds a known model's reference profile under a models root; returns the profile path.
BaselineBuilder = Callable[[Path], Path]


def drift_commands(known: Mapping[str, BaselineBuilder]) -> click.Group:
    """The ``drift`` command group; ``known`` maps model names to their baseline builders."""

    @click.group("drift")
    def drift() -> None:
        """Drift reference profiles."""

    @drift.command("baseline")
    @click.argument("models", nargs=-1, type=click.Choice(sorted(known)))
    @click.pass_context
    def baseline(ctx: click.Context, models: tuple[str, ...]) -> None:
        """Rebuild the reference profiles of trained models (default: every one trained)."""
        settings = settings_of(ctx)
        chosen = list(models) or [
            name for name in sorted(known) if (settings.models_dir / name).is_dir()
        ]
        if not chosen:
            raise click.ClickException(
                f"no trained model in {settings.models_dir}; run `infertrail train` first"
            )
        for name in chosen:
            try:
                path = known[name](settings.models_dir)
            except (OSError, ValueError, RuntimeError) as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"profile {name} -> {path}")

    return drift
