"""Progress bars and tables for the ``infertrail`` command, drawn with rich only for a person.

A long command (``audit verify``, ``audit compact``, ``drift baseline``, ``train``, ...) shows a
bar with its rate and time left on stderr when stderr is a terminal; in a log (CI, cron, a pipe),
with ``--json``, or with ``INFERTRAIL_NO_PROGRESS`` set, it draws nothing at all, so the output a
program reads stays exactly what it was. Tables are drawn with rich on a terminal and as plain
aligned columns otherwise (greppable, stable for scripts).

The work itself never imports this module: the feature packages take an optional
``on_progress`` callback (``Callable[[int], None]``, called with the units just done), and the
command passes :meth:`Bar.advance`. rich is imported only when something is drawn, so merely
importing this module (and starting the CLI) costs nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Column

__all__ = ["NO_PROGRESS_ENV", "Bar", "print_table", "progress", "wanted"]

#: Set (to anything but "", "0", "false" or "no") to draw no progress bars, even on a terminal.
NO_PROGRESS_ENV = "INFERTRAIL_NO_PROGRESS"


class Bar:
    """What a command advances; draws nothing unless :func:`progress` gave it a rich bar."""

    def __init__(self, drawn: Progress | None = None, task: TaskID | None = None) -> None:
        self._drawn = drawn
        self._task = task
        self.done = 0

    @property
    def drawn(self) -> bool:
        """Whether anything is shown (False: a no-op, as in a log)."""
        return self._drawn is not None

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done (thread-safe: rich locks its own update)."""
        self.done += n
        if self._drawn is not None and self._task is not None:
            self._drawn.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        """The total once it is known (None: unknown, a pulsing bar without time left)."""
        if self._drawn is not None and self._task is not None:
            self._drawn.update(self._task, total=total)


def wanted(stream: TextIO | None = None, *, enabled: bool = True) -> bool:
    """Whether to draw progress on ``stream`` (default stderr): a terminal, not switched off."""
    if not enabled:
        return False
    if os.environ.get(NO_PROGRESS_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


@contextmanager
def progress(
    total: int | None,
    description: str,
    unit: str = "",
    *,
    enabled: bool = True,
    console: Console | None = None,
) -> Iterator[Bar]:
    """A :class:`Bar` for ``total`` units (None: unknown) of work described by ``description``.

    Drawn on stderr with bar, count, rate (``unit``/s), elapsed time and time left (eta) when
    :func:`wanted` (``enabled=False`` for ``--json``); ``console``: draw there instead, if it
    is a terminal (tests inject ``Console(force_terminal=True)``). The bar is removed when the
    work ends (``transient``): the command's own summary line is what stays.
    """
    if console is None and not wanted(enabled=enabled):
        yield Bar()
        return
    if console is not None and not (enabled and console.is_terminal):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    # ~80 columns with a 6-digit count: a wrapped rate or time would draw two lines per update.
    drawn = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        _rate_column(unit, Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        TextColumn("eta", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(table_column=Column(no_wrap=True)),
        console=console or Console(stderr=True),
        transient=True,
    )
    with drawn:
        yield Bar(drawn, drawn.add_task(description, total=total))


def _rate_column(unit: str, column: Column) -> Any:
    """A column showing ``task.speed`` as ``1,234 unit/s`` (rich's own is bytes/s)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("", style="progress.data.speed")
            label = f"{speed:,.0f}" if speed >= 10 else f"{speed:.2f}"
            return Text(f"{label} {unit}/s".replace(" /s", "/s"), style="progress.data.speed")

    return RateColumn(table_column=column)


def print_table(
    rows: Sequence[Sequence[object]],
    columns: Sequence[str],
    *,
    console: Console | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print ``rows`` under ``columns``: a rich table on a terminal, else aligned plain text.

    The plain form (used in pipes and logs) is columns left-aligned, two spaces apart, a header
    line first, ``None`` as ``-``; it never wraps or truncates a cell. ``console``: draw there
    (tests); ``stream``: where the plain form goes (default stdout).
    """
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns: {row!r}")
    cells = [[_cell(v) for v in row] for row in rows]
    out = sys.stdout if stream is None else stream
    if console is None and not (hasattr(out, "isatty") and out.isatty()):
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        for line in ([*columns], *cells):
            out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
            out.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row_cells in cells:
        table.add_row(*row_cells)
    (console or Console(file=out)).print(table)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)
