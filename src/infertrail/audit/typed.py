"""Typed columns of audit records: derived from their canonical bytes, for querying the lake.

Lake files hold each record's exact bytes (``canonical``), its leaf hash, and these columns
copied out of it. They are derived by one vectorised DuckDB query (a JSON parse per record),
which the sealer runs to write them and ``verify`` runs again to check them.
"""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from infertrail.audit import merkle

__all__ = [
    "FILE_SCHEMA",
    "FLOAT_FIELDS",
    "STRING_FIELDS",
    "TYPED_SCHEMA",
    "typed_columns",
]

# Typed columns copied out of the record for querying. Strings take any JSON value's text (a
# non-string value gives its JSON text), numbers must be JSON numbers, anything else is null.
STRING_FIELDS = (
    "record_id", "event_type", "request_id", "trace_id", "span_id", "service", "team",
    "endpoint", "subject", "model_name", "model_version", "model_sha256", "decision",
    "decision_mode", "status", "retention_class",
)  # fmt: skip
FLOAT_FIELDS = ("score", "confidence", "ci_low", "ci_high", "latency_ms")
TYPED_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        *(pa.field(name, pa.string()) for name in STRING_FIELDS),
        *(pa.field(name, pa.float64()) for name in FLOAT_FIELDS),
        pa.field("retention_until", pa.date32()),
    ]
)
FILE_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("canonical", pa.binary(), nullable=False),
        pa.field("leaf_hash", pa.binary(merkle.HASH_SIZE), nullable=False),
        *TYPED_SCHEMA,
    ]
)


def _typed_query() -> str:
    """The DuckDB query deriving typed columns from ``canonical_input(canonical BLOB)``.

    json_transform parses each document once. Strings take any value's text; numbers are taken
    as raw JSON and cast, so a quoted "0.5" stays null. TRY: damaged bytes give nulls.
    """
    shape = {name: "VARCHAR" for name in ("ts", *STRING_FIELDS, "retention_until")}
    shape |= {name: "JSON" for name in ("seq", *FLOAT_FIELDS)}
    structure = "{" + ", ".join(f'"{k}": "{v}"' for k, v in shape.items()) + "}"
    cols = [
        "TRY_CAST(CAST(r.seq AS VARCHAR) AS BIGINT) AS seq",
        "TRY_CAST(r.ts AS TIMESTAMPTZ) AS ts",
        *(f"r.{name} AS {name}" for name in STRING_FIELDS),
        *(f"TRY_CAST(CAST(r.{name} AS VARCHAR) AS DOUBLE) AS {name}" for name in FLOAT_FIELDS),
        "TRY_CAST(r.retention_until AS DATE) AS retention_until",
    ]
    # Built only from the constant field names above, never from input: no injection surface.
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT "  # noqa: S608
        f"TRY(json_transform(TRY(decode(canonical)), '{structure}')) AS r FROM canonical_input)"
    )


_TYPED_QUERY = _typed_query()
_duck = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """One single-threaded DuckDB connection per thread (connections are not thread-safe)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_duck, "con", None)
    if con is None:
        con = duckdb.connect(config={"threads": 1})
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # it would write to the CLI's stderr
        _duck.con = con
    return con


def typed_columns(canonical: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Derive ``seq`` and the TYPED_SCHEMA columns from canonical record bytes, row for row.

    The sealer writes these columns and the verifier recomputes them; vectorised in DuckDB because
    parsing each record in Python would be the slowest step of sealing and verifying.
    """
    con = _connection()
    con.register("canonical_input", pa.table({"canonical": canonical}))
    try:
        out = con.sql(_TYPED_QUERY).to_arrow_table()
    finally:
        con.unregister("canonical_input")
    return out.cast(pa.schema([pa.field("seq", pa.int64()), *TYPED_SCHEMA]))
