"""The cost report: attributed cost per chosen dimensions, and the shared remainder, stated.

Rows group the hourly sums of ``usage`` by any of team, model, version, endpoint, tenant and
hour over whole UTC hours ``[start, end)``; each shows the input and output tokens, their cost
and the token cost per thousand tokens (LLM traffic: ``--by team,tenant,model``). Beside them
the report states what the process itself consumed in the same hours (sampled by the sink) and
lists the difference as its own rows: the *unattributed* CPU (framework, exporters, audit
writer, idle polling: process CPU minus the request threads' CPU) with the process's RAM, and,
when reserved cores are given, the *idle capacity* (reserved core-hours the process did not
use). The allocation rule is one of two, named in the report:

- ``separate`` (default): shared rows stay separate; team rows show only what they consumed.
- ``proportional``: the shared cost is spread over the rows in proportion to their direct
  compute cost (CPU + GPU; by requests when that is zero), shown in a ``shared_cost`` column.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from infertrail.cost.attribution import open_db

__all__ = [
    "ALLOCATIONS",
    "DIMENSIONS",
    "CostReport",
    "CostRow",
    "cost_report",
    "parse_dimensions",
    "render",
]

Allocation = Literal["separate", "proportional"]
ALLOCATIONS: tuple[Allocation, ...] = ("separate", "proportional")
DIMENSIONS = ("team", "model", "version", "endpoint", "tenant", "hour")
UNATTRIBUTED = "(unattributed: framework and idle threads)"
IDLE = "(idle reserved capacity)"
RULES = {
    "separate": "Shared costs (unattributed process CPU, process RAM, idle reserved capacity) are "
    "listed as their own rows and not charged to any group.",
    "proportional": "Shared costs are charged to groups in proportion to each group's direct "
    "compute cost (CPU + GPU), or to its requests when no group has compute cost.",
}


@dataclass
class CostRow:
    """One line of the report: a group (or a shared line) and what it consumed and costs."""

    group: dict[str, str]
    requests: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    accelerator_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cpu_cost: float = 0.0
    gpu_cost: float = 0.0
    token_cost: float = 0.0
    request_cost: float = 0.0
    ram_cost: float = 0.0
    shared_cost: float = 0.0

    @property
    def token_cost_per_1k(self) -> float | None:
        """Token cost per thousand tokens (input and output together); None without tokens.

        What the group's LLM traffic costs per unit of text, comparable across models and
        providers whose input and output prices differ."""
        tokens = self.tokens_in + self.tokens_out
        return self.token_cost / tokens * 1000 if tokens else None

    @property
    def direct_cost(self) -> float:
        """Cost of what the group itself consumed (no shared part)."""
        return self.cpu_cost + self.gpu_cost + self.token_cost + self.request_cost + self.ram_cost

    @property
    def total(self) -> float:
        """Direct cost plus the shared cost allocated to it."""
        return self.direct_cost + self.shared_cost


@dataclass
class CostReport:
    """The report over ``[start, end)``; ``rows`` by group, ``shared`` the stated remainder."""

    start: datetime
    end: datetime
    by: tuple[str, ...]
    allocation: Allocation
    currency: str | None
    rows: list[CostRow]
    shared: list[CostRow]
    process_cpu_seconds: float
    process_wall_seconds: float
    attributed_cpu_seconds: float
    price_versions: list[str] = field(default_factory=list)

    @property
    def rule(self) -> str:
        """The allocation rule in words."""
        return RULES[self.allocation]

    @property
    def total(self) -> float:
        """Everything the period cost: groups plus shared lines not allocated to them."""
        total = sum(r.total for r in self.rows)
        if self.allocation == "separate":
            total += sum(r.total for r in self.shared)
        return total

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the CLI's ``--format json``)."""

        def row(r: CostRow) -> dict[str, Any]:
            return {
                **asdict(r),
                "token_cost_per_1k": r.token_cost_per_1k,
                "direct_cost": r.direct_cost,
                "total": r.total,
            }

        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "by": list(self.by),
            "currency": self.currency,
            "allocation": self.allocation,
            "allocation_rule": self.rule,
            "price_versions": self.price_versions,
            "process_cpu_seconds": self.process_cpu_seconds,
            "process_wall_seconds": self.process_wall_seconds,
            "attributed_cpu_seconds": self.attributed_cpu_seconds,
            "rows": [row(r) for r in self.rows],
            "shared": [row(r) for r in self.shared],
            "total": self.total,
        }


def parse_dimensions(text: str) -> tuple[str, ...]:
    """``"team,model"`` -> ``("team", "model")``; ValueError names a bad or repeated one."""
    dims = tuple(d.strip() for d in text.split(",") if d.strip())
    if not dims:
        raise ValueError(f"--by needs at least one of {', '.join(DIMENSIONS)}, got {text!r}")
    for d in dims:
        if d not in DIMENSIONS:
            raise ValueError(f"unknown dimension {d!r}; valid: {', '.join(DIMENSIONS)}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"a dimension is repeated in {text!r}")
    return dims


def _hour_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(t: datetime) -> datetime:
    floor = _hour_floor(t)
    return floor if floor == t.astimezone(UTC) else floor + timedelta(hours=1)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cost_report(
    db_path: Path,
    *,
    start: datetime,
    end: datetime,
    by: Sequence[str] = ("team", "model"),
    allocation: Allocation = "separate",
    reserved_cores: float | None = None,
) -> CostReport:
    """Read the cost database and build the report over whole hours covering [start, end)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC)")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; valid: {', '.join(ALLOCATIONS)}")
    if reserved_cores is not None and not reserved_cores > 0:
        raise ValueError(f"reserved_cores must be > 0, got {reserved_cores}")
    dims = tuple(by)
    for d in dims:
        if d not in DIMENSIONS:
            raise ValueError(f"unknown dimension {d!r}; valid: {', '.join(DIMENSIONS)}")
    lo, hi = _hour_floor(start), _hour_ceil(end)
    if hi <= lo:
        raise ValueError(f"end {_iso(end)} must be after start {_iso(start)}")
    span = (int(lo.timestamp()), int(hi.timestamp()))
    conn = open_db(db_path)
    try:
        usage = conn.execute(
            "SELECT * FROM usage WHERE hour >= ? AND hour < ? ORDER BY hour", span
        ).fetchall()
        usage_cols = _columns(conn, "usage")
        process = conn.execute(
            "SELECT hour, currency, price_version, cpu_core_hour, SUM(cpu_ns), SUM(wall_ns), "
            "SUM(cpu_cost), SUM(ram_cost) FROM process WHERE hour >= ? AND hour < ? "
            "GROUP BY hour, currency, price_version, cpu_core_hour, process",
            span,
        ).fetchall()
    finally:
        conn.close()

    currencies = {r[usage_cols["currency"]] for r in usage} | {p[1] for p in process}
    if len(currencies) > 1:
        raise ValueError(
            f"the period mixes currencies {sorted(currencies)}; report periods with one currency"
        )
    groups: dict[tuple[str, ...], CostRow] = {}
    versions: set[str] = set()
    for r in usage:
        values = {d: _dim(r, usage_cols, d) for d in dims}
        key = tuple(values[d] for d in dims)
        row = groups.get(key)
        if row is None:
            row = groups[key] = CostRow(group=values)
        row.requests += r[usage_cols["requests"]]
        row.errors += r[usage_cols["errors"]]
        row.cpu_seconds += r[usage_cols["cpu_ns"]] / 1e9
        row.wall_seconds += r[usage_cols["wall_ns"]] / 1e9
        row.accelerator_seconds += r[usage_cols["accelerator_seconds"]]
        row.tokens_in += r[usage_cols["tokens_in"]]
        row.tokens_out += r[usage_cols["tokens_out"]]
        row.cpu_cost += r[usage_cols["cpu_cost"]]
        row.gpu_cost += r[usage_cols["gpu_cost"]]
        row.token_cost += r[usage_cols["token_cost"]]
        row.request_cost += r[usage_cols["request_cost"]]
        versions.add(r[usage_cols["price_version"]])
    rows = sorted(groups.values(), key=lambda g: tuple(g.group[d] for d in dims))

    attributed_cpu = sum(g.cpu_seconds for g in rows)
    attributed_cpu_cost = sum(g.cpu_cost for g in rows)
    process_cpu = sum(p[4] for p in process) / 1e9
    versions |= {p[2] for p in process}
    blank = dict.fromkeys(dims, "")
    unattributed = CostRow(
        group={**blank, dims[0]: UNATTRIBUTED},
        cpu_seconds=process_cpu - attributed_cpu,
        cpu_cost=sum(p[6] for p in process) - attributed_cpu_cost,
        ram_cost=sum(p[7] for p in process),
    )
    shared = [unattributed]
    if reserved_cores is not None:
        # Per process and hour: reserved core-seconds it could have used, minus what it used.
        idle_s = sum(max(reserved_cores * p[5] - p[4], 0) for p in process) / 1e9
        idle_cost = sum(max(reserved_cores * p[5] - p[4], 0) / 1e9 / 3600 * p[3] for p in process)
        shared.append(
            CostRow(group={**blank, dims[0]: IDLE}, cpu_seconds=idle_s, cpu_cost=idle_cost)
        )
    if allocation == "proportional" and rows:
        _allocate(rows, sum(s.total for s in shared))
    return CostReport(
        start=lo,
        end=hi,
        by=dims,
        allocation=allocation,
        currency=currencies.pop() if currencies else None,
        rows=rows,
        shared=shared,
        process_cpu_seconds=process_cpu,
        process_wall_seconds=sum(p[5] for p in process) / 1e9,
        attributed_cpu_seconds=attributed_cpu,
        price_versions=sorted(versions),
    )


def _allocate(rows: list[CostRow], shared_total: float) -> None:
    weights = [r.cpu_cost + r.gpu_cost for r in rows]
    if sum(weights) <= 0:
        weights = [float(r.requests) for r in rows]
    total = sum(weights)
    for r, w in zip(rows, weights, strict=True):
        r.shared_cost = shared_total * w / total if total > 0 else shared_total / len(rows)


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, int]:
    return {row[1]: i for i, row in enumerate(conn.execute(f"PRAGMA table_info({table})"))}


def _dim(row: tuple[Any, ...], cols: dict[str, int], dim: str) -> str:
    if dim == "hour":
        return _iso(datetime.fromtimestamp(row[cols["hour"]], UTC))
    return str(row[cols[dim]])


# -- rendering ------------------------------------------------------------------------------------

_NUMBERS = (
    ("requests", "requests"),
    ("errors", "errors"),
    ("cpu_s", "cpu_seconds"),
    ("wall_s", "wall_seconds"),
    ("accel_s", "accelerator_seconds"),
    ("tokens_in", "tokens_in"),
    ("tokens_out", "tokens_out"),
    ("cpu_cost", "cpu_cost"),
    ("gpu_cost", "gpu_cost"),
    ("token_cost", "token_cost"),
    ("cost_per_1k_tok", "token_cost_per_1k"),
    ("request_cost", "request_cost"),
    ("ram_cost", "ram_cost"),
    ("shared_cost", "shared_cost"),
    ("total", "total"),
)


def _cells(report: CostReport, r: CostRow) -> list[str]:
    out = [r.group.get(d, "") or ("(none)" if d == "tenant" else "") for d in report.by]
    return out + [_number(name, getattr(r, name)) for _, name in _NUMBERS]


def _number(name: str, v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:.6f}" if "cost" in name or name == "total" else f"{v:.3f}"


def render(report: CostReport, fmt: Literal["table", "csv", "json"]) -> str:
    """The report as an aligned text table, CSV (one row per line, shared rows last) or JSON."""
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2) + "\n"
    header = [*report.by, *(h for h, _ in _NUMBERS)]
    body = [_cells(report, r) for r in [*report.rows, *report.shared]]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*header, "kind"])
        kinds = ["attributed"] * len(report.rows) + ["shared"] * len(report.shared)
        w.writerows([*cells, kind] for cells, kind in zip(body, kinds, strict=True))
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; valid: table, csv, json")
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < len(report.by) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    n = len(report.rows)
    lines = [
        f"cost {_iso(report.start)} .. {_iso(report.end)} ({report.currency or 'no data'}), "
        f"prices: {', '.join(report.price_versions) or 'none'}",
        line(header),
        rule,
        *(line(cells) for cells in body[:n]),
        rule,
        *(line(cells) for cells in body[n:]),
        rule,
        f"total {report.total:.6f} {report.currency or ''}".rstrip(),
        f"process CPU {report.process_cpu_seconds:.3f} s over "
        f"{report.process_wall_seconds:.3f} s sampled, attributed to requests "
        f"{report.attributed_cpu_seconds:.3f} s "
        f"({_share(report.attributed_cpu_seconds, report.process_cpu_seconds)})",
        f"allocation: {report.allocation}. {report.rule}",
    ]
    return "\n".join(lines) + "\n"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole > 0 else "n/a"
