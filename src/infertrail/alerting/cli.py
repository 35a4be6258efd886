"""``infertrail export ...``: the alert rules as Prometheus rules and a Grafana dashboard.

A click group for the main ``infertrail`` command to add (``main.add_command(export)``); each
command only reads options and calls the functions in ``alerting.export``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from infertrail.alerting.export import ExportError, grafana_dashboard, prometheus_rules
from infertrail.alerting.rules import RuleError, RuleSet, load_rules
from infertrail.alerting.signals import UnknownSignalError

_RULES = click.option(
    "--rules",
    "rules_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Alert rules file (.toml, .yaml or .yml).",
)
_OUT = click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=Path("-"),
    show_default=True,
    help="Where to write; - for standard output.",
)


@click.group("export")
def export() -> None:
    """Export the alert rules for Prometheus and Grafana."""


@export.command("prometheus-rules")
@_RULES
@_OUT
@click.option(
    "--window-seconds",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Length of one evaluation window; for: = for_windows x this.",
)
def export_prometheus_rules_cmd(rules_path: Path, out_path: Path, window_seconds: int) -> None:
    """Write a Prometheus rule file (check it with `promtool check rules`)."""
    rules = _load(rules_path)
    try:
        text = prometheus_rules(rules, window_seconds, source=rules_path.name)
    except (ExportError, UnknownSignalError) as exc:
        raise click.ClickException(str(exc)) from None
    write_output(out_path, text)


@export.command("grafana-dashboard")
@_RULES
@_OUT
@click.option(
    "--datasource-uid",
    default="prometheus",
    show_default=True,
    help="UID of the Prometheus data source in Grafana.",
)
def export_grafana_cmd(rules_path: Path, out_path: Path, datasource_uid: str) -> None:
    """Write a Grafana dashboard (JSON) with the rules' thresholds drawn on their panels."""
    rules = _load(rules_path)
    dashboard = grafana_dashboard(rules, datasource_uid=datasource_uid)
    write_output(out_path, json.dumps(dashboard, indent=2, sort_keys=True) + "\n")


def _load(path: Path) -> RuleSet:
    try:
        return load_rules(path)
    except RuleError as exc:
        raise click.ClickException(str(exc)) from None


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (write, then rename), or to stdout for ``-``."""
    if str(path) == "-":
        click.echo(text, nl=False)
        return
    # Write-then-rename: Prometheus may reload the file at any moment and must not see half.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).chmod(0o644)  # mkstemp makes it 0600; the Prometheus user must read it
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    click.echo(f"wrote {path}", err=True)
