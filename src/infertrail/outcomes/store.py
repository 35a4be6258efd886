"""The outcomes database: a predictions index keyed by request id, and the outcomes joined to it.

One SQLite file (``<data_dir>/outcomes/outcomes.db``, WAL). ``predictions`` holds what the
join needs of each successful inference (time, model, version, label, score, confidence,
decision, latency) and what label-free estimates need besides (the artifact's sha256, every
class's probability when the service reported them);
:class:`~infertrail.outcomes.index.PredictionIndex` fills it off the request path. ``outcomes``
holds one row per (request id, kind).

Probabilities are kept compact: the class labels once per distinct label set
(``probability_labels``), the values as float64 bytes beside each prediction (80 bytes for the
ten digits), at most :data:`MAX_PROBABILITY_CLASSES` classes (:mod:`.prediction`). A database
of an older layout is migrated forward when opened (its old predictions have neither sha256 nor
probabilities), one of a newer layout is refused (:mod:`.layout`).

:meth:`OutcomeStore.write_outcomes` is the idempotent upsert: in one transaction it looks up
every request id, refuses the whole batch if any outcome contradicts a stored one (nothing is
overwritten), skips repeats, reports ids with no prediction, inserts the rest, and lets the
caller make the audit records durable before it commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infertrail.config import Settings
from infertrail.outcomes.layout import (
    JOINED_COLUMNS,
    PREDICTION_COLUMNS,
    SCHEMA_VERSION,
    OutcomeStoreError,
    migrate,
)
from infertrail.outcomes.prediction import (
    MAX_PROBABILITY_CLASSES,
    Prediction,
    ScoredPredictions,
    check_probabilities,
    pack_probabilities,
    unpack_probabilities,
)
from infertrail.outcomes.schema import Outcome

__all__ = [
    "MAX_PROBABILITY_CLASSES",
    "OUTCOMES_DB",
    "SCHEMA_VERSION",
    "Conflict",
    "JoinedRow",
    "OutcomeConflictError",
    "OutcomeStore",
    "OutcomeStoreError",
    "Prediction",
    "ScoredPredictions",
    "WriteResult",
    "check_probabilities",
    "outcomes_db_path",
]

OUTCOMES_DB = "outcomes.db"
_CHUNK = 500  # request ids per IN (...) lookup: well under SQLite's variable limit


def outcomes_db_path(settings: Settings) -> Path:
    """Where the outcomes database of ``settings`` lives: ``<data_dir>/outcomes/outcomes.db``."""
    return settings.data_dir / "outcomes" / OUTCOMES_DB


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
        self._lock = threading.Lock()
        # probability label sets both ways, as committed (filled lazily)
        self._label_set_ids: dict[tuple[str, ...], int] = {}
        self._label_sets: dict[int, tuple[str, ...]] = {}
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._transaction() as conn:
                migrate(conn, path)
        except BaseException:
            self._conn.close()
            raise

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
        """Index predictions; a request id seen before keeps its first prediction.

        ValueError (nothing written) naming the request id whose probabilities
        :func:`check_probabilities` refuses.
        """
        batch = list(predictions)
        for p in batch:
            if p.probabilities is not None:
                try:
                    check_probabilities(p.probabilities)
                except ValueError as exc:
                    raise ValueError(f"prediction {p.request_id!r}: {exc}") from None
        new_sets: dict[tuple[str, ...], int] = {}
        with self._transaction() as conn:

            def label_set(labels: tuple[str, ...]) -> int:
                known = self._label_set_ids.get(labels, new_sets.get(labels))
                if known is not None:
                    return known
                text = json.dumps(labels, ensure_ascii=False, separators=(",", ":"))
                conn.execute("INSERT OR IGNORE INTO probability_labels (labels) VALUES (?)", [text])
                (found,) = conn.execute(
                    "SELECT id FROM probability_labels WHERE labels = ?", [text]
                ).fetchone()
                new_sets[labels] = found
                return int(found)

            def row(p: Prediction) -> tuple[Any, ...]:
                set_id = blob = None
                if p.probabilities is not None:
                    set_id = label_set(tuple(p.probabilities))
                    blob = pack_probabilities(p.probabilities.values())
                return (
                    p.request_id,
                    p.ts_ns,
                    p.model,
                    p.version,
                    p.label,
                    p.score,
                    p.confidence,
                    p.decision,
                    p.latency_ms,
                    p.team,
                    p.endpoint,
                    p.model_sha256,
                    set_id,
                    blob,
                )

            conn.executemany(
                f"INSERT OR IGNORE INTO predictions ({PREDICTION_COLUMNS}) "  # noqa: S608
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (row(p) for p in batch),
            )
        # Only once committed: a rolled-back id may be handed to another label set later.
        self._label_set_ids.update(new_sets)
        self._label_sets.update({i: labels for labels, i in new_sets.items()})

    def _labels(self, conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """The class labels of probability label set ``ids`` (read from the table if unseen)."""
        wanted = set(ids)
        if not wanted <= self._label_sets.keys():
            for set_id, text in conn.execute("SELECT id, labels FROM probability_labels"):
                labels = tuple(json.loads(text))
                self._label_sets[set_id] = labels
                self._label_set_ids[labels] = set_id
        return {i: self._label_sets[i] for i in wanted}

    def _prediction(self, conn: sqlite3.Connection, row: Sequence[Any]) -> Prediction:
        """A Prediction of a row of PREDICTION_COLUMNS."""
        set_id, blob = row[12], row[13]
        probabilities = None
        if set_id is not None and blob is not None:
            labels = self._label_sets.get(set_id) or self._labels(conn, [set_id])[set_id]
            probabilities = dict(zip(labels, unpack_probabilities(blob), strict=True))
        rid, ts_ns, model, version, label, score, confidence, decision, latency_ms = row[:9]
        return Prediction(
            rid,
            ts_ns,
            model,
            version,
            label,
            score,
            confidence,
            decision,
            latency_ms,
            team=row[9],
            endpoint=row[10],
            model_sha256=row[11],
            probabilities=probabilities,
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

    def _predictions(self, conn: sqlite3.Connection, ids: set[str]) -> dict[str, Prediction]:
        out: dict[str, Prediction] = {}
        listed = list(ids)
        for i in range(0, len(listed), _CHUNK):
            chunk = listed[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {PREDICTION_COLUMNS} FROM predictions "  # noqa: S608
                f"WHERE request_id IN ({marks})",
                chunk,
            ).fetchall():
                out[row[0]] = self._prediction(conn, row)
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
                f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE request_id = ?",  # noqa: S608
                (request_id,),
            ).fetchone()
            return None if row is None else self._prediction(self._conn, row)

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
            f"SELECT {JOINED_COLUMNS}, o.kind, o.label, o.value, o.ts_ns, o.received_ns "  # noqa: S608
            "FROM outcomes o JOIN predictions p ON p.request_id = o.request_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.ts_ns, p.request_id"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
            return [
                JoinedRow(
                    self._prediction(self._conn, r[:14]),
                    Outcome(r[0], r[14], r[15], r[16], r[17]),
                    r[18],
                )
                for r in rows
            ]

    def scored_predictions(
        self,
        *,
        model: str,
        version: str,
        kind: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> ScoredPredictions:
        """Every prediction of ``model`` ``version`` made in [start, end), labelled or not, in
        time order, with its outcome of ``kind`` where there is one."""
        where = ["p.model = ?", "p.version = ?"]
        args: list[Any] = [kind, model, version]
        for clause, value in (("p.ts_ns >= ?", start_ns), ("p.ts_ns < ?", end_ns)):
            if value is not None:
                where.append(clause)
                args.append(value)
        # Only the fixed clauses above are joined in; every value is a bound parameter.
        sql = (
            "SELECT p.ts_ns, p.model_sha256, p.label, p.score, p.confidence, "  # noqa: S608
            "p.probability_labels, p.probabilities, o.label FROM predictions p "
            "LEFT JOIN outcomes o ON o.request_id = p.request_id AND o.kind = ? "
            f"WHERE {' AND '.join(where)} ORDER BY p.ts_ns, p.request_id"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
            columns: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)] or [
                [] for _ in range(8)
            ]
            labels = self._labels(self._conn, {i for i in columns[5] if i is not None})
        ts_ns, sha256, label, score, confidence, set_ids, blobs, outcome_label = columns
        return ScoredPredictions(
            ts_ns=ts_ns,
            model_sha256=sha256,
            label=label,
            score=score,
            confidence=confidence,
            probability_labels=set_ids,
            probabilities=blobs,
            outcome_label=outcome_label,
            labels_of=labels,
        )

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
