"""The outcomes database: a predictions index keyed by request id, and the outcomes joined to it.

One SQLite file (``<data_dir>/outcomes/outcomes.db``, WAL). ``predictions`` holds what the
join needs of each successful inference (time, model, version, label, score, confidence,
decision, latency); :class:`~infertrail.outcomes.index.PredictionIndex` fills it off the
request path. ``outcomes`` holds one row per (request id, kind).

:meth:`OutcomeStore.write_outcomes` is the idempotent upsert: in one transaction it looks up
every request id, refuses the whole batch if any outcome contradicts a stored one (nothing is
overwritten), skips repeats, reports ids with no prediction, inserts the rest, and lets the
caller make the audit records durable before it commits.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infertrail.config import Settings
from infertrail.outcomes.schema import Outcome

__all__ = [
    "OUTCOMES_DB",
    "Conflict",
    "JoinedRow",
    "OutcomeConflictError",
    "OutcomeStore",
    "Prediction",
    "WriteResult",
    "outcomes_db_path",
]

OUTCOMES_DB = "outcomes.db"
_CHUNK = 500  # request ids per IN (...) lookup: well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    ts_ns INTEGER NOT NULL,           -- when the inference started, Unix ns
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    label TEXT,
    score REAL,
    confidence REAL,
    decision TEXT,
    latency_ms REAL NOT NULL,
    team TEXT NOT NULL,
    endpoint TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_by_model_time ON predictions (model, version, ts_ns);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    value REAL,
    ts_ns INTEGER NOT NULL,           -- when the outcome happened (or was received)
    received_ns INTEGER NOT NULL,
    PRIMARY KEY (request_id, kind)
) WITHOUT ROWID;
"""


def outcomes_db_path(settings: Settings) -> Path:
    """Where the outcomes database of ``settings`` lives: ``<data_dir>/outcomes/outcomes.db``."""
    return settings.data_dir / "outcomes" / OUTCOMES_DB


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the join needs of one inference."""

    request_id: str
    ts_ns: int
    model: str
    version: str
    label: str | None
    score: float | None
    confidence: float | None
    decision: str | None
    latency_ms: float
    team: str = ""
    endpoint: str = ""

    def row(self) -> tuple[Any, ...]:
        """The values in table column order."""
        return (
            self.request_id,
            self.ts_ns,
            self.model,
            self.version,
            self.label,
            self.score,
            self.confidence,
            self.decision,
            self.latency_ms,
            self.team,
            self.endpoint,
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    """An outcome that contradicts the one already stored for its request id and kind."""

    request_id: str
    kind: str
    stored: dict[str, Any]
    received: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The conflict as the API reports it."""
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "stored": self.stored,
            "received": self.received,
        }


class OutcomeConflictError(ValueError):
    """Outcomes that contradict stored ones (or each other); the whole batch was refused."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        self.conflicts = list(conflicts)
        shown = ", ".join(f"{c.request_id} ({c.kind})" for c in self.conflicts[:5])
        more = f" and {len(self.conflicts) - 5} more" if len(self.conflicts) > 5 else ""
        super().__init__(
            f"{len(self.conflicts)} outcome(s) differ from the one already recorded for the same "
            f"request id and kind: {shown}{more}; nothing in this batch was written"
        )


@dataclass
class WriteResult:
    """What a batch did: new outcomes (with their predictions), repeats, unknown request ids."""

    accepted: list[tuple[Outcome, Prediction]] = field(default_factory=list)
    duplicates: list[Outcome] = field(default_factory=list)
    unknown: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class JoinedRow:
    """A prediction and its outcome of one kind."""

    prediction: Prediction
    outcome: Outcome
    received_ns: int


class OutcomeStore:
    """The predictions index and the outcomes, in one SQLite database (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) where needed.
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add_predictions(self, predictions: Iterable[Prediction]) -> None:
        """Index predictions; a request id seen before keeps its first prediction."""
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (p.row() for p in predictions),
            )

    def write_outcomes(
        self,
        outcomes: Sequence[Outcome],
        *,
        received_ns: int,
        before_commit: Callable[[list[tuple[Outcome, Prediction]]], Callable[[], None]]
        | None = None,
    ) -> WriteResult:
        """Store new outcomes atomically; OutcomeConflictError (nothing written) on a conflict.

        Inside the transaction, ``before_commit`` is called with the new (outcome, prediction)
        pairs before they are inserted and returns a function that is called after the insert,
        before the commit (so the audit log's writer works while SQLite inserts). If either
        raises (the audit log is down), nothing is written.
        """
        result = WriteResult()
        with self._transaction() as conn:
            predictions = self._predictions(conn, {o.request_id for o in outcomes})
            stored = self._stored(conn, outcomes)
            conflicts: list[Conflict] = []
            seen: dict[tuple[str, str], Outcome] = {}
            for o in outcomes:
                key = (o.request_id, o.kind)
                earlier = seen.get(key)
                have = stored.get(key)
                if earlier is not None:  # the same outcome twice in one batch
                    if not o.same_as(earlier.label, earlier.value):
                        conflicts.append(Conflict(*key, earlier.as_json(), o.as_json()))
                    else:
                        result.duplicates.append(o)
                elif have is not None:
                    if not o.same_as(*have):
                        stored_json = {"label": have[0], "value": have[1]}
                        conflicts.append(Conflict(*key, stored_json, o.as_json()))
                    else:
                        result.duplicates.append(o)
                elif o.request_id not in predictions:
                    result.unknown.append(o)
                else:
                    result.accepted.append((o, predictions[o.request_id]))
                seen.setdefault(key, o)
            if conflicts:
                raise OutcomeConflictError(conflicts)
            finish = None
            if before_commit is not None and result.accepted:
                finish = before_commit(result.accepted)
            conn.executemany(
                "INSERT INTO outcomes VALUES (?,?,?,?,?,?)",
                (
                    (o.request_id, o.kind, o.label, o.value, o.ts_ns, received_ns)
                    for o, _ in result.accepted
                ),
            )
            if finish is not None:
                finish()
        return result

    @staticmethod
    def _predictions(conn: sqlite3.Connection, ids: set[str]) -> dict[str, Prediction]:
        out: dict[str, Prediction] = {}
        listed = list(ids)
        for i in range(0, len(listed), _CHUNK):
            chunk = listed[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT * FROM predictions WHERE request_id IN ({marks})",  # noqa: S608
                chunk,
            ):
                out[row[0]] = Prediction(*row)
        return out

    @staticmethod
    def _stored(
        conn: sqlite3.Connection, outcomes: Sequence[Outcome]
    ) -> dict[tuple[str, str], tuple[str | None, float | None]]:
        by_kind: dict[str, set[str]] = {}
        for o in outcomes:
            by_kind.setdefault(o.kind, set()).add(o.request_id)
        out: dict[tuple[str, str], tuple[str | None, float | None]] = {}
        for kind, ids in by_kind.items():
            listed = list(ids)
            for i in range(0, len(listed), _CHUNK):
                chunk = listed[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for rid, label, value in conn.execute(
                    "SELECT request_id, label, value FROM outcomes "  # noqa: S608
                    f"WHERE kind = ? AND request_id IN ({marks})",
                    [kind, *chunk],
                ):
                    out[(rid, kind)] = (label, value)
        return out

    def prediction(self, request_id: str) -> Prediction | None:
        """The indexed prediction of ``request_id``, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM predictions WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else Prediction(*row)

    def joined(
        self,
        *,
        kind: str,
        model: str | None = None,
        version: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[JoinedRow]:
        """Predictions with their outcome of ``kind``, by prediction time in [start, end)."""
        where = ["o.kind = ?"]
        args: list[Any] = [kind]
        for clause, value in (
            ("p.model = ?", model),
            ("p.version = ?", version),
            ("p.ts_ns >= ?", start_ns),
            ("p.ts_ns < ?", end_ns),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        # Only the fixed clauses above are joined in; every value is a bound parameter.
        sql = (
            "SELECT p.*, o.kind, o.label, o.value, o.ts_ns, o.received_ns "  # noqa: S608
            "FROM outcomes o JOIN predictions p ON p.request_id = o.request_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.ts_ns, p.request_id"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [
            JoinedRow(Prediction(*r[:11]), Outcome(r[0], r[11], r[12], r[13], r[14]), r[15])
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        """How many predictions and outcomes are stored."""
        with self._lock:
            (p,) = self._conn.execute("SELECT COUNT(*) FROM predictions").fetchone()
            (o,) = self._conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()
        return {"predictions": p, "outcomes": o}

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._conn.close()
