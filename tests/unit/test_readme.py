"""The README's command table names every command the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

import click

from infertrail.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(group: click.Group, ctx: click.Context, prefix: str = "") -> set[str]:
    """Every leaf command path, e.g. 'audit verify'."""
    found = set()
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= commands(command, ctx, path + " ")
        else:
            found.add(path)
    return found


def test_the_command_table_lists_every_command() -> None:
    table = README.read_text(encoding="utf-8").split("## Command line", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| `infertrail")]
    listed = set()
    for row in rows:
        cell = row.split("|")[1]
        for code in re.findall(r"`infertrail ([^`]*)`", cell):
            words = code.split()
            head = [w for w in words if not w.startswith(("-", "[", "REQUEST_ID", "MODEL"))]
            if "/" in head:  # "audit verify / seal / ...": a group and its subcommands
                group = head[0]
                listed |= {f"{group} {w}" for w in head[1:] if w != "/"}
            else:
                listed.add(" ".join(head))
    with click.Context(main) as ctx:
        actual = commands(main, ctx)
    assert actual - listed == set(), "commands missing from the README table"
    assert listed - actual == set(), "README lists commands the CLI does not have"
