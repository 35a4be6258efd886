"""``infertrail cost report``: attributed cost by team, model, ... over a period.

A click group for the main command to add (``main.add_command(cost)``); it reads options and
calls :func:`infertrail.cost.report.cost_report`, the same function a web page would call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import click

from infertrail.commandline import settings_of
from infertrail.cost.attribution import cost_db_path
from infertrail.cost.report import ALLOCATIONS, Allocation, cost_report, parse_dimensions, render

__all__ = ["cost", "parse_time"]


def parse_time(text: str, option: str) -> datetime:
    """An RFC 3339 time (offset required) or a YYYY-MM-DD day (UTC midnight), as UTC."""
    try:
        if len(text) == 10:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        t = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-11-26) or an RFC 3339 time (2026-11-26T20:00:00Z)",
            param_hint=option,
        ) from None
    if t.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no UTC offset; add Z or +hh:mm", param_hint=option)
    return t.astimezone(UTC)


@click.group("cost")
def cost() -> None:
    """Cost attribution per model and team (docs/cost.md)."""


@cost.command("report")
@click.option(
    "--by",
    "by",
    default="team,model",
    show_default=True,
    help="Comma-separated: team, model, version, endpoint, tenant, hour.",
)
@click.option("--from", "start", help="Start (RFC 3339 or YYYY-MM-DD); default: 24 h before --to.")
@click.option("--to", "end", help="End, exclusive (RFC 3339 or YYYY-MM-DD); default: now.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--allocation",
    type=click.Choice(ALLOCATIONS),
    default="separate",
    show_default=True,
    help="separate: shared costs on their own rows; proportional: spread by compute cost.",
)
@click.option(
    "--reserved-cores",
    type=click.FloatRange(min=0, min_open=True),
    help="Cores reserved for the service (default: settings.cost_reserved_cores); "
    "the unused part is reported as idle capacity.",
)
@click.pass_context
def report_cmd(
    ctx: click.Context,
    by: str,
    start: str | None,
    end: str | None,
    fmt: str,
    allocation: str,
    reserved_cores: float | None,
) -> None:
    """Attributed cost over whole UTC hours, with the shared remainder as its own rows."""
    settings = settings_of(ctx)
    try:
        dims = parse_dimensions(by)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--by") from None
    t_end = parse_time(end, "--to") if end else datetime.now(UTC)
    t_start = parse_time(start, "--from") if start else t_end - timedelta(hours=24)
    if t_start >= t_end:
        raise click.BadParameter(f"--from {start} is not before --to {end}", param_hint="--from")
    path = cost_db_path(settings)
    if not path.exists():
        raise click.ClickException(f"no cost data yet: {path} does not exist")
    try:
        report = cost_report(
            path,
            start=t_start,
            end=t_end,
            by=dims,
            allocation=cast(Allocation, allocation),
            reserved_cores=reserved_cores or settings.cost_reserved_cores,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(report, cast(Literal["table", "csv", "json"], fmt)), nl=False)
