"""The request explorer's lake lookups: one inference record, its similar requests, a model's
newest requests.

Pure functions of a :class:`~infertrail.compliance.engine.LakeQuery` (the service's, or one a
benchmark opens over a big lake), so they can be timed alone. They never return a record's
bytes or a raw subject: only typed columns, the subject as the pseudonym the lake holds.

Fast on a big lake because every lookup is bounded in time: the engine lists only the hour
partitions of the window (a compacted month: its one copy), and inside the files DuckDB prunes
row groups on ``ts`` and ``seq`` statistics and filters on the typed (dictionary-encoded)
``request_id`` / ``trace_id`` columns. A request id made by infertrail is a UUIDv7, whose first
48 bits are its creation time in milliseconds: :func:`request_window` turns it into a window of
minutes, so finding it reads the one or two hour files around it. A trace id is random: it is
found through the telemetry first (which names its request id), else in the window given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from infertrail.compliance.engine import LakeQuery
from infertrail.compliance.filters import TimeWindow

__all__ = [
    "Located",
    "RequestRow",
    "find_inference",
    "locate_seq",
    "recent_requests",
    "request_window",
    "similar_requests",
]

#: A record is written when its inference ends: allow for a slow one after the id was made,
#: and for clock steps between the machine that made the id and this one.
_BEFORE = timedelta(minutes=5)
_AFTER = timedelta(minutes=30)
_COLUMNS = (
    "seq, ts, request_id, trace_id, span_id, model_name, model_version, decision, "
    "confidence, latency_ms, status, subject"
)
_FILES_PER_STATEMENT = 512

LookupColumn = Literal["request_id", "trace_id"]


@dataclass(frozen=True, slots=True)
class Located:
    """Where one inference record is: its seq, time, ids and model; and its decision and
    confidence, which only a role that may read decisions is shown (:meth:`to_dict`)."""

    seq: int
    ts: datetime
    request_id: str | None
    trace_id: str | None
    model_name: str | None
    model_version: str | None
    decision: str | None
    confidence: float | None

    def to_dict(self, *, decisions: bool = False) -> dict[str, Any]:
        """JSON form; the decision and confidence only with ``decisions``."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
        }
        if decisions:
            out.update(decision=self.decision, confidence=self.confidence)
        return out


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One listed request (similar or recent): typed columns only, the subject as its
    pseudonym."""

    seq: int
    ts: datetime
    request_id: str | None
    decision: str | None
    confidence: float | None
    latency_ms: float | None
    status: str | None
    subject: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "request_id": self.request_id,
            "decision": self.decision,
            "confidence": self.confidence,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "subject": self.subject,
        }

    def to_dict_telemetry(self) -> dict[str, Any]:
        """The columns every role may see (what its spans say too): no decision, no subject."""
        return {
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "request_id": self.request_id,
            "latency_ms": self.latency_ms,
            "status": self.status,
        }


def request_window(request_id: str) -> TimeWindow | None:
    """The window a UUIDv7 request id's record must lie in; None for any other id."""
    try:
        parsed = uuid.UUID(request_id)
    except ValueError:
        return None
    if parsed.version != 7 or str(parsed) != request_id.lower():
        return None
    made = datetime.fromtimestamp((parsed.int >> 80) / 1000, UTC)
    return TimeWindow(made - _BEFORE, made + _AFTER)


def find_inference(
    engine: LakeQuery, column: LookupColumn, value: str, window: TimeWindow
) -> Located | None:
    """The newest inference record whose ``column`` is ``value`` in ``window``, if any."""
    if column not in ("request_id", "trace_id"):
        raise ValueError(f"column must be request_id or trace_id, got {column!r}")
    where = f"event_type = 'inference' AND {column} = ?"
    rows = list(_select(engine, window, where, [value], "seq DESC", 1))
    return _located(max(rows, key=lambda r: r["seq"])) if rows else None


def locate_seq(engine: LakeQuery, seq: int) -> Located | None:
    """Where record ``seq`` is (None if it is not an inference record); LookupError if the
    latest checkpoint does not cover ``seq``."""
    tree_size = engine.checkpoint().size
    row = engine.record(seq, tree_size)
    if row.fields.get("event_type") != "inference":
        return None
    return _located({"seq": row.seq, **row.fields})


def similar_requests(
    engine: LakeQuery,
    *,
    model_name: str,
    decision: str | None,
    confidence: float | None,
    window: TimeWindow,
    exclude_seq: int,
    radius: float = 0.05,
    limit: int = 20,
) -> list[RequestRow]:
    """Inferences of ``model_name`` in ``window`` with the same decision and a confidence
    within ``radius``, nearest confidence first (then newest), at most ``limit``."""
    if not 0 < radius <= 1:
        raise ValueError(f"radius must be in (0, 1], got {radius}")
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be 1 to 1000, got {limit}")
    clauses = ["event_type = 'inference'", "model_name = ?", "seq <> ?"]
    params: list[Any] = [model_name, exclude_seq]
    if decision is None:
        clauses.append("decision IS NULL")
    else:
        clauses.append("decision = ?")
        params.append(decision)
    order, order_params = "seq DESC", []
    if confidence is not None:
        clauses.append("confidence BETWEEN ? AND ?")
        params += [confidence - radius, confidence + radius]
        order, order_params = "abs(confidence - ?), seq DESC", [confidence]
    where = " AND ".join(clauses)
    rows = list(_select(engine, window, where, params, order, limit, order_params))
    if confidence is not None:
        rows.sort(key=lambda r: (abs(r["confidence"] - confidence), -r["seq"]))
    else:
        rows.sort(key=lambda r: -r["seq"])
    return [_request_row(r) for r in rows[:limit]]


def recent_requests(
    engine: LakeQuery,
    *,
    model_name: str,
    model_version: str | None,
    window: TimeWindow,
    limit: int = 50,
) -> list[RequestRow]:
    """The newest ``limit`` inferences of ``model_name`` (of ``model_version`` when given) in
    ``window``, newest first."""
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be 1 to 1000, got {limit}")
    clauses = ["event_type = 'inference'", "model_name = ?"]
    params: list[Any] = [model_name]
    if model_version is not None:
        clauses.append("model_version = ?")
        params.append(model_version)
    rows = list(_select(engine, window, " AND ".join(clauses), params, "seq DESC", limit))
    rows.sort(key=lambda r: -r["seq"])
    return [_request_row(r) for r in rows[:limit]]


# -- the scan ------------------------------------------------------------------------------


def _located(row: dict[str, Any]) -> Located:
    return Located(
        row["seq"],
        row["ts"],
        row["request_id"],
        row["trace_id"],
        row["model_name"],
        row["model_version"],
        row["decision"],
        row["confidence"],
    )


def _request_row(r: dict[str, Any]) -> RequestRow:
    return RequestRow(
        r["seq"],
        r["ts"],
        r["request_id"],
        r["decision"],
        r["confidence"],
        r["latency_ms"],
        r["status"],
        r["subject"],
    )


def _select(
    engine: LakeQuery,
    window: TimeWindow,
    where: str,
    params: list[Any],
    order: str,
    limit: int,
    order_params: list[Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows matching ``where`` among the sealed files of ``window`` and the unsealed tail,
    up to ``limit`` per statement, best first by ``order`` (the caller merges statements).

    Only records below the latest signed checkpoint are read: what the page shows is what
    the log has committed to.
    """
    tree_size = engine.checkpoint().size
    frontier, files = engine.files.snapshot(window)
    head: list[Any] = [window.start, window.end, tree_size]
    rest = [*params, *(order_params or [])]
    clause = f"WHERE ts >= ? AND ts < ? AND seq < ? AND {where} ORDER BY {order} LIMIT {limit:d}"
    # The engine's own in-memory DuckDB (its Parquet metadata cache warm from the compliance
    # queries, its filesystem registered, closed with it); a cursor per call, as the engine's.
    cur = engine._db.cursor()
    try:
        for start in range(0, len(files), _FILES_PER_STATEMENT):
            paths = [f.path for f in files[start : start + _FILES_PER_STATEMENT]]
            sql = f"SELECT {_COLUMNS} FROM read_parquet(?) {clause}"  # noqa: S608
            yield from cur.sql(sql, params=[paths, *head, *rest]).to_arrow_table().to_pylist()
        if frontier < tree_size:
            # The engine's cached decode of the unsealed records, extended as the log grows
            # (decoding the whole tail on every page view would cost more than the lookup).
            tail: pa.Table = engine._tail_table(frontier, tree_size)
            cur.register("tail_rows", tail)
            sql = f"SELECT {_COLUMNS} FROM tail_rows {clause}"  # noqa: S608
            yield from cur.sql(sql, params=[*head, *rest]).to_arrow_table().to_pylist()
    finally:
        cur.close()
