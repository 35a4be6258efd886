"""The outcomes database's layout, its version and the migration of older databases.

The version is SQLite's ``user_version``. Version 0 had ``predictions`` and ``outcomes``;
version 1 adds each prediction's artifact sha256 and class probabilities (columns appended to
``predictions``, whose old rows have none) and the ``probability_labels`` table (the classes of
each distinct probabilities layout). :func:`migrate` brings an older database forward and
refuses a newer one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["JOINED_COLUMNS", "PREDICTION_COLUMNS", "SCHEMA_VERSION", "OutcomeStoreError", "migrate"]

#: The database's layout version (SQLite ``user_version``): 0 had no sha256 nor probabilities.
SCHEMA_VERSION = 1
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
PREDICTION_COLUMNS = (
    "request_id, ts_ns, model, version, label, score, confidence, decision, latency_ms, team, "
    "endpoint, model_sha256, probability_labels, probabilities"
)
JOINED_COLUMNS = ", ".join(f"p.{c.strip()}" for c in PREDICTION_COLUMNS.split(","))


class OutcomeStoreError(RuntimeError):
    """The outcomes database cannot be used by this version of infertrail."""


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables, or bring an older database at ``path`` to SCHEMA_VERSION; inside the
    caller's write transaction, so two processes opening it at once migrate it once.

    OutcomeStoreError for a database of a newer version (left untouched).
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise OutcomeStoreError(
            f"outcomes database {path} has schema version {version}, newer than "
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
