"""Aggregates over the audit lake for the console's pages and the reports.

Everything here reads the typed columns of audit records (``ts``, ``model_name``,
``model_version``, ``status``, ``latency_ms``, ``confidence``, ...), never the record bytes, and
returns counts, rates and quantiles only: no single decision leaves this module, so every role
may see what it computes.

Two steps, so the reports and the bench can call the second without a running service:

1. :func:`lake_slice` asks the compliance engine (:class:`~infertrail.compliance.LakeQuery`)
   which sealed Parquet files can hold records of the range (its partition pruning: only the
   ``dt=/hour=`` partitions overlapping the range; a compacted month by its one copy) and for
   the unsealed tail (committed records not sealed yet, decoded into the same typed columns).
2. The aggregate functions are pure over that :class:`LakeSlice` and a :class:`TimeRange`:
   DuckDB scans the listed files (row groups pruned on their ``ts`` statistics) plus the tail.

Only ``inference`` records count as traffic (access queries, erasures and the other privileged
events are audit records too, but not model calls).
"""

from __future__ import annotations

import atexit
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from infertrail.audit.typed import FILE_SCHEMA
from infertrail.compliance.engine import LakeQuery
from infertrail.compliance.filters import QueryError, TimeWindow, parse_instant

__all__ = [
    "MAX_RANGE",
    "RANGES",
    "LakeSlice",
    "ModelStats",
    "RangeError",
    "SeriesPoint",
    "TimeRange",
    "bucket_seconds",
    "lake_slice",
    "model_series",
    "model_stats",
    "parse_range",
]

#: The named ranges a page offers, ending now.
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
#: The longest range a page may ask for (a bound on what one request scans).
MAX_RANGE = timedelta(days=31)
#: Chart buckets: the smallest of these giving at most ~120 points over the range.
_BUCKETS_S = (60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400)
_MAX_POINTS = 120
_EPOCH = re.compile(r"\d{9,11}(\.\d{1,6})?")


class RangeError(ValueError):
    """A time range parameter is wrong: ``param`` names it, ``message`` says how."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class TimeRange:
    """The half-open interval [start, end) of record times, UTC; ``name`` when it is one of
    :data:`RANGES` (ending at the time it was asked for), else ``""``."""

    start: datetime
    end: datetime
    name: str = ""

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name or None, "from": self.start, "to": self.end}


def _instant(value: str, param: str) -> datetime:
    """Epoch seconds (the charts' zoom links) or a date / RFC 3339 time with a zone."""
    if _EPOCH.fullmatch(value):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        return parse_instant(value, param)
    except QueryError as exc:
        raise RangeError(param, exc.message) from None


def parse_range(range_name: str, start: str, end: str, now: datetime) -> TimeRange:
    """The range a page was asked for: ``from``/``to`` when given (``to`` defaults to now),
    else ``range`` (one of :data:`RANGES`, default ``24h``) ending at ``now``.

    RangeError names the parameter: an unknown range name, a time that is not one, ``to`` not
    after ``from``, a range longer than :data:`MAX_RANGE`, or ``range`` together with ``from``.
    """
    if start or end:
        if range_name:
            raise RangeError("range", "give either range or from/to, not both")
        if not start:
            raise RangeError("from", "is required with to (epoch seconds or RFC 3339 time)")
        lo = _instant(start, "from")
        hi = _instant(end, "to") if end else now
        if hi <= lo:
            raise RangeError(
                "to", f"{hi:%Y-%m-%dT%H:%M:%SZ} is not after from={lo:%Y-%m-%dT%H:%M:%SZ}"
            )
        if hi - lo > MAX_RANGE:
            days = (hi - lo) / timedelta(days=1)
            raise RangeError(
                "to", f"the range is {days:.4g} days long; the limit is {MAX_RANGE.days}"
            )
        return TimeRange(lo, hi)
    name = range_name or "24h"
    if name not in RANGES:
        raise RangeError("range", f"{name[:20]!r} is not one of {', '.join(RANGES)}")
    return TimeRange(now - RANGES[name], now, name)


def bucket_seconds(span: TimeRange) -> int:
    """The chart bucket width for ``span``: whole minutes to days, at most ~120 buckets."""
    return next((b for b in _BUCKETS_S if span.seconds / b <= _MAX_POINTS), _BUCKETS_S[-1])


@dataclass(frozen=True)
class LakeSlice:
    """What holds the records of a range: sealed Parquet ``files`` (paths DuckDB opens) and the
    unsealed ``tail`` (a table of the lake's file schema, possibly empty)."""

    files: tuple[str, ...]
    tail: pa.Table
    #: The lake's filesystem when it is not the local disk (the paths then carry its protocol).
    fs: AbstractFileSystem | None = None

    @classmethod
    def of_files(cls, files: Sequence[str]) -> LakeSlice:
        """Only sealed files on the local disk (the bench's and the reports' case: a lake,
        no writer)."""
        return cls(tuple(files), FILE_SCHEMA.empty_table())


def lake_slice(engine: LakeQuery, span: TimeRange) -> LakeSlice:
    """The sealed files overlapping ``span`` and the unsealed tail, from the engine.

    The tail is every committed record past the sealed frontier (at most about one seal interval
    of traffic); the engine keeps it decoded between calls, so this costs a read of what was
    committed since the last call.
    """
    frontier, files = engine.files.snapshot(TimeWindow(span.start, span.end))
    # The engine's tail cache is the only decoded copy of the unsealed records; LakeQuery has
    # no public accessor for it yet (a missing piece, reported to the lead).
    tail = engine._tail_table(frontier, engine.log.size)
    fs = None if isinstance(engine.lake.fs, LocalFileSystem) else engine.lake.fs
    return LakeSlice(tuple(f.path for f in files), tail, fs)


_db_lock = threading.Lock()
_db: duckdb.DuckDBPyConnection | None = None
_filesystems: set[str] = set()


def _cursor(fs: AbstractFileSystem | None) -> duckdb.DuckDBPyConnection:
    """A cursor (its own connection) on the module's one in-memory DuckDB database: page
    functions run in a thread pool, each query gets a cursor, and the database's Parquet
    metadata cache is shared between them. ``fs``: a remote lake's filesystem, registered
    once."""
    global _db
    with _db_lock:
        if _db is None:
            db = duckdb.connect()
            db.execute("SET TimeZone = 'UTC'")
            db.execute("SET enable_progress_bar = false")
            db.execute("SET parquet_metadata_cache = true")
            _db = db
            atexit.register(_close)
        if fs is not None and _fs_name(fs) not in _filesystems:
            _db.register_filesystem(fs)
            _filesystems.add(_fs_name(fs))
        return _db.cursor()


def _fs_name(fs: AbstractFileSystem) -> str:
    """The protocol(s) DuckDB knows a registered filesystem by."""
    return str(fs.protocol)


def _close() -> None:
    """Close the database before the interpreter tears down: left to finalization, DuckDB
    aborted the process ("terminate called ... exception not rethrown") after a page error."""
    global _db
    with _db_lock:
        if _db is not None:
            _db.close()
            _db = None
            _filesystems.clear()


_COLUMNS = "ts, event_type, model_name, model_version, status, latency_ms, confidence"


def _query(
    source: LakeSlice, span: TimeRange, select: str, params: list[Any]
) -> list[tuple[Any, ...]]:
    """Run ``select`` (which reads the relation ``r``: inference records of the range) over
    the slice's files and tail; ``params`` are the statement's own, after the range's."""
    parts = []
    args: list[Any] = []
    if source.files:
        parts.append(f"SELECT {_COLUMNS} FROM read_parquet(?)")  # noqa: S608 -- constants
        args.append(list(source.files))
    if source.tail.num_rows:
        parts.append(f"SELECT {_COLUMNS} FROM tail_rows")  # noqa: S608 -- constants
    if not parts:
        return []
    union = " UNION ALL ".join(parts)
    sql = (
        f"WITH r AS (SELECT * FROM ({union}) "  # noqa: S608 -- constant text, values are params
        "WHERE ts >= ? AND ts < ? AND event_type = 'inference') " + select
    )
    cur = _cursor(source.fs)
    try:
        if source.tail.num_rows:
            cur.register("tail_rows", source.tail)
        return cur.execute(sql, [*args, span.start, span.end, *params]).fetchall()
    finally:
        cur.close()


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ModelStats:
    """One model version's inference traffic over a range.

    ``p50_ms``/``p99_ms``: exact quantiles of ``latency_ms`` (linear interpolation between
    the two nearest records, as NumPy's default percentile); ``mean_confidence`` over the
    records that carry one (None when none does, never 0); ``error_rate`` = errors / requests.
    """

    model: str
    version: str
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    mean_confidence: float | None
    with_confidence: int
    first: datetime | None
    last: datetime | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "mean_confidence": self.mean_confidence,
            "with_confidence": self.with_confidence,
            "first": self.first,
            "last": self.last,
        }


def model_stats(source: LakeSlice, span: TimeRange) -> list[ModelStats]:
    """Traffic, errors, latency quantiles and mean confidence per (model, version) in ``span``,
    ordered by model then version."""
    rows = _query(
        source,
        span,
        "SELECT model_name, model_version, count(*), count(*) FILTER (WHERE status = 'error'), "
        "quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.99), avg(confidence), "
        "count(confidence), min(ts), max(ts) FROM r GROUP BY ALL ORDER BY 1, 2",
        [],
    )
    return [
        ModelStats(
            model=str(name),
            version=str(version),
            requests=int(n),
            errors=int(errors),
            p50_ms=_finite(p50),
            p99_ms=_finite(p99),
            mean_confidence=_finite(conf),
            with_confidence=int(n_conf),
            first=first,
            last=last,
        )
        for name, version, n, errors, p50, p99, conf, n_conf, first, last in rows
    ]


@dataclass(frozen=True)
class SeriesPoint:
    """One chart bucket of one model: its start (epoch seconds), requests, errors, p99."""

    at: float
    requests: int
    errors: int
    p99_ms: float | None


def model_series(source: LakeSlice, span: TimeRange, bucket_s: int) -> dict[str, list[SeriesPoint]]:
    """Per model (all versions together), one point per ``bucket_s`` bucket aligned to the
    epoch that holds records in ``span``; buckets without records are absent (a gap, not 0:
    the chart and the page decide how to show them)."""
    if bucket_s < 1:
        raise ValueError(f"bucket_s must be at least 1, got {bucket_s}")
    rows = _query(
        source,
        span,
        "SELECT model_name, CAST(floor(epoch(ts) / ?) AS BIGINT) * ? AS b, count(*), "
        "count(*) FILTER (WHERE status = 'error'), quantile_cont(latency_ms, 0.99) "
        "FROM r GROUP BY ALL ORDER BY 1, 2",
        [bucket_s, bucket_s],
    )
    out: dict[str, list[SeriesPoint]] = {}
    for name, at, n, errors, p99 in rows:
        out.setdefault(str(name), []).append(
            SeriesPoint(float(at), int(n), int(errors), _finite(p99))
        )
    return out
