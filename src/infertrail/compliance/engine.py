"""DuckDB over the sealed Parquet lake plus the unsealed tail, with inclusion proofs per row.

The lake side reads only the hour partitions (``dt=YYYY-MM-DD/hour=HH/``) that overlap the
query's window, and only files that have a manifest (so a half-sealed leftover is never read
twice); a compacted month is read from its one subject-sorted copy instead of the hour files it
covers (:class:`~infertrail.compliance.lakefiles.LakeFiles`); inside the files, DuckDB prunes row
groups on ``ts``, ``seq`` and (in compacted copies) ``subject`` statistics. The tail
(records committed to the WAL but not sealed yet) comes from the writer's
:meth:`~infertrail.audit.ledger.AuditLog.read`, decoded into the same typed columns by
:func:`~infertrail.audit.lake.typed_columns`, so results are complete up to the latest signed
checkpoint, which covers every committed record (the engine asks the log to flush first).
Proofs come from the log's hash store through memoized subtree roots
(:class:`~infertrail.compliance.roots.SubtreeRootCache`), never from a recomputed tree.
Each row says whether the record is past its ``retention_until`` (``expired``): retention then
shreds the keys that linked it (docs/retention.md), while the row itself stays provable.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from infertrail.audit import merkle
from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.evidence import PROOF_FORMAT
from infertrail.audit.lake import FILE_SCHEMA, TYPED_SCHEMA, LakeReader, build_table, typed_columns
from infertrail.compliance.filters import QueryFilters
from infertrail.compliance.lakefiles import LakeFile, LakeFiles, LakeIntegrityError, sealed_frontier
from infertrail.compliance.roots import SubtreeRootCache

__all__ = [
    "ROW_FIELDS",
    "CheckpointView",
    "LakeIntegrityError",
    "LakeQuery",
    "LogView",
    "Row",
]

#: Typed fields of a result row, in output order (CSV columns follow this order).
ROW_FIELDS: tuple[str, ...] = tuple(TYPED_SCHEMA.names)
_SELECT = ["seq", *ROW_FIELDS, "canonical", "leaf_hash"]
_FILES_PER_STATEMENT = 512  # bounded statement size; files are visited in seq order
_TAIL_RETRIES = 5  # the sealer may retire WAL segments between listing and reading


class LogView(Protocol):
    """What the engine needs from the writer's :class:`~infertrail.audit.ledger.AuditLog`."""

    origin: str
    log_dir: Path

    @property
    def size(self) -> int: ...

    @property
    def latest_checkpoint(self) -> bytes: ...

    def read(self, start: int, end: int) -> Iterator[tuple[int, bytes]]: ...

    def flush(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckpointView:
    """A signed checkpoint note and what it says: results are proven against it."""

    note: bytes
    origin: str
    size: int
    root: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "checkpoint": self.note.decode(),
        }


def _utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True, slots=True)
class Row:
    """One result record: its seq, typed fields, canonical bytes, leaf hash and proof.

    ``expired``: the record's ``retention_until`` is before the day of the query (UTC); its
    month's linking keys are shredded once every record of that month has expired.
    """

    seq: int
    fields: dict[str, Any]
    canonical: bytes
    leaf_hash: bytes
    proof: list[bytes] | None
    expired: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form: typed fields flat, the record as its canonical JSON text, base64 proof."""
        out: dict[str, Any] = {"seq": self.seq}
        for name, value in self.fields.items():
            if isinstance(value, datetime):
                value = value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            elif isinstance(value, date):
                value = value.isoformat()
            out[name] = value
        out["expired"] = self.expired
        out["record"] = self.canonical.decode("utf-8")
        out["leaf_hash"] = self.leaf_hash.hex()
        out["inclusion_proof"] = (
            None if self.proof is None else [base64.b64encode(h).decode() for h in self.proof]
        )
        return out

    def evidence(self, checkpoint: CheckpointView) -> dict[str, Any]:
        """The row as inclusion evidence (``infertrail-proof/1``), checkable offline."""
        if self.proof is None:
            raise ValueError(f"row {self.seq} was fetched without its proof")
        return {
            "format": PROOF_FORMAT,
            "origin": checkpoint.origin,
            "seq": self.seq,
            "record": self.canonical.decode("utf-8"),
            "leaf_hash": self.leaf_hash.hex(),
            "tree_size": checkpoint.size,
            "inclusion_proof": [base64.b64encode(h).decode() for h in self.proof],
            "checkpoint": checkpoint.note.decode(),
        }


class _Tail:
    """Decoded unsealed records [start, end), extended and trimmed as the log grows and seals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = 0
        self._table = FILE_SCHEMA.empty_table()

    def table(self, log: LogView, start: int, end: int) -> pa.Table:
        """Rows with seq in [start, end); LookupError if the WAL no longer holds ``start``."""
        with self._lock:
            have_end = self._start + self._table.num_rows
            if start < self._start or start > have_end:
                self._start, self._table = start, FILE_SCHEMA.empty_table()
                have_end = start
            elif start > self._start:
                self._table = self._table.slice(start - self._start)
                self._start = start
            if end > have_end:
                seqs, canonicals = [], []
                for seq, payload in log.read(have_end, end):
                    seqs.append(seq)
                    canonicals.append(payload)
                leaves = [merkle.leaf_hash(c) for c in canonicals]
                added = build_table(seqs, canonicals, leaves)
                self._table = pa.concat_tables([self._table, added])
            return self._table.slice(0, end - self._start)


class LakeQuery:
    """Runs filtered, seq-ordered scans over lake + tail and attaches proofs.

    Thread-safe: each call uses its own DuckDB cursor on one shared in-memory database, whose
    Parquet metadata cache makes repeated queries over the same files cheap.
    """

    def __init__(
        self,
        log: LogView,
        lake_url: str,
        verifier: NoteVerifier | None = None,
        *,
        root_cache: int = 1 << 16,
        today: Callable[[], date] = _utc_today,
    ) -> None:
        self.log = log
        self._today = today
        self._roots = SubtreeRootCache(log.log_dir / "tree", root_cache)
        self.lake = LakeReader(lake_url)
        self._verifier = verifier
        self.files = LakeFiles(self.lake, verifier)
        self._db = duckdb.connect()
        self._db.execute("SET TimeZone = 'UTC'")
        self._db.execute("SET enable_progress_bar = false")
        self._db.execute("SET parquet_metadata_cache = true")
        if not isinstance(self.lake.fs, LocalFileSystem):
            self._db.register_filesystem(self.lake.fs)
        self._tail = _Tail()

    # ---- checkpoint ----------------------------------------------------------------------

    def checkpoint(self, flush_timeout: float = 10.0) -> CheckpointView:
        """The latest signed checkpoint, after making it cover every committed record."""
        note = self.log.latest_checkpoint
        cp = self._parse(note)
        if cp.size < self.log.size:
            self.log.flush(flush_timeout)
            note = self.log.latest_checkpoint
            cp = self._parse(note)
        return CheckpointView(note, cp.origin, cp.size, cp.root)

    def _parse(self, note: bytes) -> Checkpoint:
        try:
            if self._verifier is not None:
                return open_checkpoint(note, self._verifier, expected_origin=self.log.origin)
            return Checkpoint.parse(note[: note.rfind(b"\n\n") + 1])
        except NoteError as exc:
            raise LakeIntegrityError(f"the log's latest checkpoint does not verify: {exc}") from exc

    # ---- scanning ------------------------------------------------------------------------

    def rows(
        self,
        filters: QueryFilters,
        tree_size: int,
        *,
        after: int = -1,
        limit: int | None = None,
        proofs: bool = True,
    ) -> Iterator[list[Row]]:
        """Matching records with after < seq < tree_size, in seq order, in batches.

        Stops after ``limit`` rows when given. Each batch is checked (leaf hash and typed
        columns recomputed from the canonical bytes) and, with ``proofs``, carries proofs
        against the tree of ``tree_size`` records.
        """
        remaining = limit
        for table in self._tables(filters, tree_size, after, limit):
            if remaining is not None:
                table = table.slice(0, remaining)
                remaining -= table.num_rows
            if table.num_rows:
                yield self._rows(table, tree_size if proofs else None)
            if remaining == 0:
                return

    def prove(self, rows: list[Row], tree_size: int) -> list[Row]:
        """The rows with inclusion proofs against the tree of ``tree_size`` records."""
        return [replace(r, proof=self._proof(r.seq, tree_size)) for r in rows]

    def _proof(self, seq: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of ``seq`` in the tree of ``tree_size`` records."""
        return self._roots.inclusion_proof(seq, tree_size)

    def record(self, seq: int, tree_size: int) -> Row:
        """Record ``seq`` with its proof (LookupError if it is not below ``tree_size``)."""
        if not 0 <= seq < tree_size:
            raise LookupError(
                f"seq {seq} is not covered by the latest checkpoint (tree size {tree_size}); "
                f"valid seqs are 0..{tree_size - 1}"
            )
        frontier = sealed_frontier(self.files.manifest_names())
        columns = ", ".join(_SELECT)
        if seq >= frontier:
            tail = self._tail_table(frontier, tree_size)
            sql = f"SELECT {columns} FROM tail_rows WHERE seq = ?"  # noqa: S608
            table = self._arrow(sql, [seq], tail)
        else:
            path = self.files.path(self.files.manifest_of(seq).file)
            sql = f"SELECT {columns} FROM read_parquet(?) WHERE seq = ?"  # noqa: S608
            table = self._arrow(sql, [path, seq])
        if table.num_rows != 1:
            raise LakeIntegrityError(
                f"seq {seq} is missing from the lake: run 'infertrail audit verify'"
            )
        return self._rows(table, tree_size)[0]

    def count(self, filters: QueryFilters, tree_size: int) -> int:
        """How many records match (what an export of these filters will hold)."""
        frontier, files = self.files.snapshot(filters.window)
        where, params = _where(filters, -1, tree_size)
        total = 0
        for group in _groups(files):
            sql = f"SELECT count(*) FROM read_parquet(?) WHERE {where}"  # noqa: S608
            total += self._scalar(sql, [[f.path for f in group], *params])
        if frontier < tree_size:
            tail = self._tail_table(frontier, tree_size)
            total += self._scalar(f"SELECT count(*) FROM tail_rows WHERE {where}", params, tail)  # noqa: S608
        return total

    def _scalar(self, sql: str, params: list[Any], tail: pa.Table | None = None) -> int:
        cur = self._db.cursor()
        try:
            if tail is not None:
                cur.register("tail_rows", tail)
            row = cur.execute(sql, params).fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def _tables(
        self, filters: QueryFilters, tree_size: int, after: int, limit: int | None
    ) -> Iterator[pa.Table]:
        frontier, files = self.files.snapshot(filters.window)
        files = [f for f in files if f.last > after]
        where, params = _where(filters, after, tree_size)
        order = " ORDER BY seq" + ("" if limit is None else f" LIMIT {int(limit)}")
        columns = ", ".join(_SELECT)
        for group in _groups(files):
            sql = f"SELECT {columns} FROM read_parquet(?) WHERE {where}{order}"  # noqa: S608
            yield self._arrow(sql, [[f.path for f in group], *params])
        if frontier < tree_size:
            tail = self._tail_table(frontier, tree_size)
            sql = f"SELECT {columns} FROM tail_rows WHERE {where}{order}"  # noqa: S608
            yield self._arrow(sql, params, tail)

    def _arrow(self, sql: str, params: list[Any], tail: pa.Table | None = None) -> pa.Table:
        cur = self._db.cursor()
        try:
            if tail is not None:
                cur.register("tail_rows", tail)
            return cur.sql(sql, params=params).to_arrow_table()
        finally:
            cur.close()

    def _tail_table(self, frontier: int, tree_size: int) -> pa.Table:
        """The unsealed records [frontier, tree_size), retrying if the sealer moved on."""
        for _ in range(_TAIL_RETRIES):
            if frontier >= tree_size:
                return FILE_SCHEMA.empty_table()
            try:
                return self._tail.table(self.log, frontier, tree_size)
            except LookupError:
                frontier = sealed_frontier(self.files.manifest_names())
        raise LakeIntegrityError(
            f"the WAL kept moving past the lake frontier {frontier} during {_TAIL_RETRIES} reads"
        )

    def _rows(self, table: pa.Table, proof_size: int | None) -> list[Row]:
        canonical = table.column("canonical")
        recomputed = typed_columns(canonical)
        stored = table.select(list(ROW_FIELDS)).cast(TYPED_SCHEMA)
        if not recomputed.select(list(ROW_FIELDS)).equals(stored):
            raise LakeIntegrityError(
                f"typed columns disagree with the canonical record bytes among seqs "
                f"{table.column('seq')[0]}..{table.column('seq')[-1]}: "
                "run 'infertrail audit verify'"
            )
        out = []
        today = self._today()
        for item in table.to_pylist():
            seq = item["seq"]
            leaf = merkle.leaf_hash(item["canonical"])
            if leaf != item["leaf_hash"]:
                raise LakeIntegrityError(
                    f"seq {seq}: stored leaf hash is not the hash of its record bytes: "
                    "run 'infertrail audit verify'"
                )
            proof = None if proof_size is None else self._proof(seq, proof_size)
            fields = {name: item[name] for name in ROW_FIELDS}
            until = fields["retention_until"]
            expired = until is not None and until < today
            out.append(Row(seq, fields, item["canonical"], leaf, proof, expired))
        return out

    def close(self) -> None:
        """Close the DuckDB database and the hash store handle."""
        self._db.close()
        self._roots.close()


def _groups(files: list[LakeFile]) -> Iterator[list[LakeFile]]:
    """Files (sorted by first seq) in statements of about _FILES_PER_STATEMENT, in seq order.

    Results are concatenated statement by statement, so no two statements may share a seq
    range: a compacted month spans seqs that hour files of other months (or late ones of its
    own) fall between, and files whose ranges overlap stay in one statement (ORDER BY seq).
    """
    group: list[LakeFile] = []
    end = -1
    for f in files:
        if len(group) >= _FILES_PER_STATEMENT and f.first > end:
            yield group
            group = []
        group.append(f)
        end = max(end, f.last)
    if group:
        yield group


def _where(filters: QueryFilters, after: int, tree_size: int) -> tuple[str, list[Any]]:
    """SQL predicate and parameters: window, seq bounds and the exact-match fields.

    Column names come from QueryFilters.equalities (a fixed set), values are parameters.
    """
    clauses = ["ts >= ?", "ts < ?", "seq > ?", "seq < ?"]
    params: list[Any] = [filters.window.start, filters.window.end, after, tree_size]
    for column, value in filters.equalities().items():
        clauses.append(f"{column} = ?")
        params.append(value)
    return " AND ".join(clauses), params
