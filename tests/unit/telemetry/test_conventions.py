"""Every telemetry name is spelled once, in telemetry/conventions.py, and documented.

The source scan parses ``src/infertrail`` (ast: comments and docstrings do not count) and
reports, as ``file:line``, each string literal that spells a telemetry name outside
conventions.py:

- the name of an instrument (``create_counter`` ... ``create_observable_up_down_counter``) or of
  a span (``start_span``, ``start_as_current_span``), and an instrument's ``unit=``;
- a log record's ``event_name=``;
- a dict key in an attribute namespace (``infertrail.``, and the OpenTelemetry ones we reuse);
- any literal equal to a dotted name of conventions.py (a re-spelling, wherever it is), except
  as a logger name: loggers share the package's dotted names and are not telemetry.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infertrail.telemetry import conventions as c

REPO = Path(__file__).resolve().parents[3]
SRC = REPO / "src" / "infertrail"
CONVENTIONS = SRC / "telemetry" / "conventions.py"
DOC = (REPO / "docs" / "conventions.md").read_text()

INSTRUMENT_FACTORIES = frozenset(
    {
        "create_counter",
        "create_histogram",
        "create_gauge",
        "create_up_down_counter",
        "create_observable_counter",
        "create_observable_gauge",
        "create_observable_up_down_counter",
    }
)
SPAN_FACTORIES = frozenset({"start_span", "start_as_current_span"})
# Ours, and the OpenTelemetry namespaces whose stable attributes the project reuses. ("error." is
# left out: alert signal keys such as "error.rate" are dict keys too, and error.type is caught
# as a re-spelling of c.ERROR_TYPE.)
ATTRIBUTE_PREFIXES = ("infertrail.", "http.", "url.", "service.", "deployment.")
NAMES = frozenset(
    value
    for key, value in vars(c).items()
    if key.isupper() and isinstance(value, str) and "." in value
)


@dataclass(frozen=True)
class Spelling:
    """A telemetry name written as a literal: where, what, and why it counts."""

    path: str
    line: int
    literal: str
    kind: str

    def __str__(self) -> str:
        return f"src/infertrail/{self.path}:{self.line}: {self.literal!r} ({self.kind})"


def _str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _called(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def spellings(source: str, path: str) -> Iterator[Spelling]:
    """The telemetry names spelled as literals in ``source`` (one finding per literal node)."""
    tree = ast.parse(source, path)
    found: dict[int, Spelling] = {}  # by id(node): a literal may match several rules
    logger_names: set[int] = set()

    def spell(node: ast.expr | None, kind: str) -> None:
        value = _str(node)
        if node is not None and value is not None:
            found.setdefault(id(node), Spelling(path, node.lineno, value, kind))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = _called(node)
            name_arg = node.args[0] if node.args else None
            keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
            if called in INSTRUMENT_FACTORIES:
                spell(name_arg or keywords.get("name"), "instrument name")
                spell(keywords.get("unit"), "unit")
            elif called in SPAN_FACTORIES:
                spell(name_arg or keywords.get("name"), "span name")
            elif called == "getLogger":
                logger_names.update(id(a) for a in node.args)
            spell(keywords.get("event_name"), "log event name")
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                value = _str(key)
                if value is not None and value.startswith(ATTRIBUTE_PREFIXES):
                    spell(key, "attribute key")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in logger_names:
            spell(node, "re-spelled conventions name")
    yield from sorted(found.values(), key=lambda s: (s.line, s.literal))


def source_spellings() -> list[Spelling]:
    out: list[Spelling] = []
    for file in sorted(SRC.rglob("*.py")):
        if file != CONVENTIONS:
            out.extend(spellings(file.read_text(), file.relative_to(SRC).as_posix()))
    return out


def test_telemetry_names_are_spelled_in_conventions_only() -> None:
    stray = list(source_spellings())
    assert not stray, (
        "telemetry names spelled outside telemetry/conventions.py; add a constant there (and a "
        "row to docs/conventions.md) and use it:\n" + "\n".join(map(str, stray))
    )


def test_the_scan_finds_every_kind_of_spelling() -> None:
    source = """
import logging
from infertrail.telemetry import conventions as c
log = logging.getLogger("infertrail.outcomes")
meter.create_observable_gauge("x.gauge", callbacks=[], unit="{thing}")
meter.create_counter(name="x.counter", unit=c.UNIT_RATIO)
tracer.start_as_current_span("x.span")
logger.emit(body={}, event_name="x.event")
counter.add(1, {"infertrail.new.key": 1, "http.request.method": "GET", "plain": 2})
NAME = "infertrail.outcomes"
meter.create_histogram(c.METRIC_DURATION, unit=c.UNIT_SECONDS)
"""
    found = [(s.line, s.literal, s.kind) for s in spellings(source, "example.py")]
    assert found == [
        (5, "x.gauge", "instrument name"),
        (5, "{thing}", "unit"),
        (6, "x.counter", "instrument name"),
        (7, "x.span", "span name"),
        (8, "x.event", "log event name"),
        (9, "http.request.method", "attribute key"),
        (9, "infertrail.new.key", "attribute key"),
        (10, "infertrail.outcomes", "re-spelled conventions name"),
    ]


# -- docs/conventions.md -------------------------------------------------------------------


def _metric_rows() -> dict[str, list[str]]:
    """The rows of the metric tables in the Metrics section, by instrument name."""
    section = DOC.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def _constants(prefix: str) -> dict[str, str]:
    return {k: v for k, v in vars(c).items() if k.startswith(prefix) and isinstance(v, str)}


def test_every_metric_is_documented() -> None:
    rows = _metric_rows()
    missing = {k: v for k, v in _constants("METRIC_").items() if v not in rows}
    assert not missing, f"metrics missing from docs/conventions.md: {missing}"
    unknown = set(rows) - set(_constants("METRIC_").values())
    assert not unknown, f"docs/conventions.md lists metrics conventions.py lacks: {unknown}"


def test_documented_units_are_the_conventions_units() -> None:
    units = set(_constants("UNIT_").values())
    bad = {name: cells[2] for name, cells in _metric_rows().items() if cells[2] not in units}
    assert not bad, f"units in docs/conventions.md that conventions.py lacks: {bad}"
    listed = {cells[2] for cells in _metric_rows().values()}
    assert units <= listed, f"units of conventions.py no metric documents: {units - listed}"


def test_every_other_name_is_documented() -> None:
    names = {
        k: v
        for k, v in vars(c).items()
        if k.isupper() and isinstance(v, str) and not k.startswith(("METRIC_", "UNIT_"))
    }
    backticked = set(re.findall(r"`([^`]+)`", DOC))
    missing = {k: v for k, v in names.items() if v not in backticked}
    assert not missing, f"names missing from docs/conventions.md: {missing}"
