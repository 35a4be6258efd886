"""The outcomes database: a predictions index keyed by request id, and the outcomes joined to it.

One SQLite file (``<data_dir>/outcomes/outcomes.db``, WAL). ``predictions`` holds what the
join needs of each successful inference (time, model, version, label, score, confidence,
decision, latency) and what label-free estimates need besides (the artifact's sha256, every
class's probability when the service reported them);
:class:`~infertrail.outcomes.index.PredictionIndex` fills it off the request path. ``outcomes``
holds one row per (request id, kind).

Probabilities are kept compact: the class labels once per distinct label set
(``probability_labels``), the values as float64 bytes beside each prediction (80 bytes for the
ten digits), at most :data:`MAX_PROBABILITY_CLASSES` classes. The schema version is SQLite's
``user_version``; a database of an older version is migrated forward when opened (its old
predictions have neither sha256 nor probabilities), one of a newer version is refused.

:meth:`OutcomeStore.write_outcomes` is the idempotent upsert: in one transaction it looks up
every request id, refuses the whole batch if any outcome contradicts a stored one (nothing is
overwritten), skips repeats, reports ids with no prediction, inserts the rest, and lets the
caller make the audit records durable before it commits.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infertrail.config import Settings
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

#: The database's layout version (SQLite ``user_version``): 0 had no sha256 nor probabilities.
SCHEMA_VERSION = 1
#: Most classes whose probabilities are kept with a prediction (8 KiB of values); a service
#: reporting more keeps its predictions without them.
MAX_PROBABILITY_CLASSES = 1024
#: Longest class label kept with probabilities (as an outcome label may be).
MAX_CLASS_LABEL = 256

_TABLES = (
    """CREATE TABLE IF NOT EXISTS predictions (
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
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS predictions_by_model_time ON predictions (model, version, ts_ns)",
    """CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    value REAL,
    ts_ns INTEGER NOT NULL,           -- when the outcome happened (or was received)
    received_ns INTEGER NOT NULL,
    PRIMARY KEY (request_id, kind)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS probability_labels (
    id INTEGER PRIMARY KEY,
    labels TEXT NOT NULL UNIQUE       -- JSON list: the classes of a probabilities blob, in order
)""",
)
#: Columns added by schema version 1, appended to version 0's predictions table.
_V1_COLUMNS = (
    ("model_sha256", "TEXT"),  # the artifact that predicted
    ("probability_labels", "INTEGER"),  # probability_labels.id of the blob's classes
    ("probabilities", "BLOB"),  # float64 little-endian, one per class
)
_PREDICTION_COLUMNS = (
    "request_id, ts_ns, model, version, label, score, confidence, decision, latency_ms, team, "
    "endpoint, model_sha256, probability_labels, probabilities"
)
_JOINED_COLUMNS = ", ".join(f"p.{c.strip()}" for c in _PREDICTION_COLUMNS.split(","))


def outcomes_db_path(settings: Settings) -> Path:
    """Where the outcomes database of ``settings`` lives: ``<data_dir>/outcomes/outcomes.db``."""
    return settings.data_dir / "outcomes" / OUTCOMES_DB


def check_probabilities(probabilities: Any) -> None:
    """ValueError unless ``probabilities`` maps at most MAX_PROBABILITY_CLASSES class labels
    (non-empty strings of at most MAX_CLASS_LABEL characters) to numbers.

    Values are not required to lie in [0, 1]: what a service reported is kept as it was, and the
    estimator counts the rows it cannot read (``invalid_probability``).
    """
    if not isinstance(probabilities, Mapping):
        raise ValueError(
            f"probabilities must map class labels to numbers, got {type(probabilities).__name__}"
        )
    if not 0 < len(probabilities) <= MAX_PROBABILITY_CLASSES:
        raise ValueError(
            f"probabilities must name 1 to {MAX_PROBABILITY_CLASSES} classes, got "
            f"{len(probabilities)}"
        )
    for label, p in probabilities.items():
        if not isinstance(label, str) or not 0 < len(label) <= MAX_CLASS_LABEL:
            raise ValueError(
                f"probability labels must be strings of 1 to {MAX_CLASS_LABEL} characters, got "
                f"{str(label)[:40]!r}"
            )
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise ValueError(f"the probability of {label!r} must be a number, got {p!r}")


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the join needs of one inference, and what label-free estimates need besides.

    ``model_sha256``: the artifact that predicted (None for predictions indexed before the
    store kept it). ``probabilities``: every class's probability (label -> p), when the service
    reported them (:func:`check_probabilities` says what the store accepts).
    """

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
    model_sha256: str | None = None
    probabilities: Mapping[str, float] | None = field(default=None, hash=False)


def _pack(values: Iterable[float]) -> bytes:
    """Probabilities as float64 little-endian bytes (the ``probabilities`` column)."""
    packed = array("d", (float(v) for v in values))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack(blob: bytes) -> list[float]:
    values = array("d")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


class OutcomeStoreError(RuntimeError):
    """The outcomes database cannot be used by this version of infertrail."""


@dataclass(frozen=True)
class ScoredPredictions:
    """Every prediction of one model version in a period, column by column, with what CBPE
    reads and the ``label`` outcome, if any (None where there is none yet).

    ``probability_labels``: per row the id of its probabilities' class labels (None where
    there are none) and ``labels_of`` those ids' labels; ``probabilities`` the float64
    little-endian bytes, one value per label.
    """

    ts_ns: list[int]
    model_sha256: list[str | None]
    label: list[str | None]
    score: list[float | None]
    confidence: list[float | None]
    probability_labels: list[int | None]
    probabilities: list[bytes | None]
    outcome_label: list[str | None]
    labels_of: dict[int, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.ts_ns)

    def subset(self, rows: Iterable[int]) -> ScoredPredictions:
        """The predictions at positions ``rows``, in that order."""
        at = list(rows)

        def take(column: list[Any]) -> list[Any]:
            return [column[i] for i in at]

        return ScoredPredictions(
            take(self.ts_ns),
            take(self.model_sha256),
            take(self.label),
            take(self.score),
            take(self.confidence),
            take(self.probability_labels),
            take(self.probabilities),
            take(self.outcome_label),
            self.labels_of,
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
        self._lock = threading.Lock()
        # probability label sets both ways, as committed (filled lazily)
        self._label_set_ids: dict[tuple[str, ...], int] = {}
        self._label_sets: dict[int, tuple[str, ...]] = {}
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        """Create the tables, or bring an older database to SCHEMA_VERSION (in one transaction,
        so two processes opening it at once migrate it once)."""
        with self._transaction() as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise OutcomeStoreError(
                    f"outcomes database {self.path} has schema version {version}, newer than "
                    f"this infertrail's {SCHEMA_VERSION}: open it with the version that wrote it"
                )
            if version == SCHEMA_VERSION:
                return
            for statement in _TABLES:
                conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
            for name, kind in _V1_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE predictions ADD COLUMN {name} {kind}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
                    blob = _pack(p.probabilities.values())
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
                f"INSERT OR IGNORE INTO predictions ({_PREDICTION_COLUMNS}) "  # noqa: S608
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
        """A Prediction of a row of _PREDICTION_COLUMNS."""
        set_id, blob = row[12], row[13]
        probabilities = None
        if set_id is not None and blob is not None:
            labels = self._label_sets.get(set_id) or self._labels(conn, [set_id])[set_id]
            probabilities = dict(zip(labels, _unpack(blob), strict=True))
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
                f"SELECT {_PREDICTION_COLUMNS} FROM predictions "  # noqa: S608
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
                f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE request_id = ?",  # noqa: S608
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
            f"SELECT {_JOINED_COLUMNS}, o.kind, o.label, o.value, o.ts_ns, o.received_ns "  # noqa: S608
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
