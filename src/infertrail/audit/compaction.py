"""Subject-clustered monthly compaction of the lake: one read-optimised copy per closed month.

The sealer writes one file per UTC hour, in seq order, so one subject's quarter touches every
row group of ~2,200 files. Once a month is closed (its end plus a grace period is past), the
:class:`Compactor` writes ONE derived copy of its sealed records,
``<lake>/compacted/month=YYYY-MM/<first>-<last>.parquet``, sorted by ``(subject, seq)`` in row
groups small enough that ``subject`` statistics admit one or two of them, then a signed
compaction manifest ``<lake>/_compactions/YYYY-MM.json.note``
(:class:`~infertrail.audit.manifest.CompactionManifest`) listing the hour files it covers.

The hour files stay: they remain the primary record that ``verify`` and ``record(seq)`` read,
so a compacted month takes its storage twice. Records sealed into a month after its compaction
(late timestamps) stay in hour files only; queries read them next to the compacted copy. Writing
follows the sealer: file first, then manifest, each write-once; a re-run after a crash between
the two adopts the file only if it holds exactly the same records.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.lake import (
    ORIGIN_METADATA_KEY,
    PARQUET_OPTIONS,
    ROW_GROUP_ROWS,
    LakeReader,
    SealError,
    write_file_once,
    write_once,
)
from infertrail.audit.manifest import (
    COMPACTED_DIR,
    COMPACTION_DIR,
    MANIFEST_DIR,
    MANIFEST_SUFFIX,
    MONTH_RE,
    CompactionManifest,
    Manifest,
    ManifestError,
    month_of,
    open_compaction,
    open_manifest,
    range_name,
)
from infertrail.audit.typed import FILE_SCHEMA

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_RETRY",
    "CompactedMonth",
    "CompactionError",
    "Compactor",
    "compaction_names",
    "month_bounds",
]

_log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(days=1)
DEFAULT_RETRY = timedelta(hours=1)
DEFAULT_MEMORY_MB = 1024  # DuckDB's budget for sorting a month; beyond it, it spills to disk
_MAX_RETRY_S = 86_400.0


class CompactionError(RuntimeError):
    """A month cannot be compacted without risking the lake's integrity; the message says why."""


@dataclass(frozen=True)
class CompactedMonth:
    """A compacted copy the compactor wrote, with its manifest (paths relative to the lake)."""

    manifest: CompactionManifest
    manifest_path: str

    @property
    def path(self) -> str:
        return self.manifest.file


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a ``YYYY-MM`` month in UTC; ValueError names a bad month."""
    if not MONTH_RE.fullmatch(month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, end


def compaction_names(reader: LakeReader) -> list[str]:
    """Compaction manifest names (``YYYY-MM.json.note``) by month; unrelated names skipped."""
    directory = reader.path(COMPACTION_DIR)
    if not reader.fs.exists(directory):
        return []
    names = [p.rsplit("/", 1)[-1] for p in reader.fs.ls(directory, detail=False)]
    return sorted(
        n for n in names
        if n.endswith(MANIFEST_SUFFIX) and MONTH_RE.fullmatch(n[: -len(MANIFEST_SUFFIX)])
    )  # fmt: skip


def _utcnow() -> datetime:
    return datetime.now(UTC)


_monotonic = time.monotonic  # the retry clock (tests replace it)


def _exact_groups(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The rows of ``batches`` regrouped into tables of exactly ``rows`` rows (the last: fewer)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


def _same_rows(data: bytes, other: bytes) -> bool:
    """Whether two Parquet files hold the same seqs and record bytes in the same order."""
    try:
        files = [pq.ParquetFile(pa.BufferReader(d)) for d in (data, other)]
        if files[0].metadata.num_rows != files[1].metadata.num_rows:
            return False
        columns = ["seq", "canonical"]
        groups = [
            _exact_groups(
                f.iter_batches(batch_size=ROW_GROUP_ROWS, columns=columns), ROW_GROUP_ROWS
            )
            for f in files
        ]
        return all(a.equals(b) for a, b in zip(*groups, strict=True))
    except (pa.ArrowException, OSError, ValueError):
        return False


class Compactor:
    """Writes the compacted copy of every closed month that has hour files and no copy yet.

    ``grace``: how long after a month's end it counts as closed (late records sealed after that
    stay in hour files). ``clock`` gives "now" (tests inject one). Thread-safe.
    """

    def __init__(
        self,
        lake_url: str,
        signer: NoteSigner,
        origin: str,
        *,
        grace: timedelta = DEFAULT_GRACE,
        row_group_rows: int = ROW_GROUP_ROWS,
        clock: Callable[[], datetime] = _utcnow,
        retry_after: timedelta = DEFAULT_RETRY,
        memory_mb: int = DEFAULT_MEMORY_MB,
    ) -> None:
        if grace < timedelta(0):
            raise ValueError(f"grace must be >= 0, got {grace}")
        if retry_after < timedelta(0):
            raise ValueError(f"retry_after must be >= 0, got {retry_after}")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64, got {memory_mb}")
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows}")
        self._reader = LakeReader(lake_url)
        self._signer = signer
        self._verifier = NoteVerifier.from_key(signer.verifier_key)
        self._origin = origin
        self._grace = grace
        self._rows = row_group_rows
        self._clock = clock
        self._lock = threading.Lock()
        self._manifests: dict[str, Manifest] = {}  # hour manifests verified so far, by name
        self._retry = retry_after
        self._memory_mb = memory_mb
        # month -> (monotonic time before which it is not tried again, the wait that set it)
        self._backoff: dict[str, tuple[float, float]] = {}

    def pending(self) -> dict[str, list[Manifest]]:
        """Closed months with hour files and no compaction yet, each with its hour manifests."""
        names = self._reader.manifest_names()
        for name in names:
            if name not in self._manifests:
                self._manifests[name] = self._open_hour_manifest(name)
        compacted = {n[: -len(MANIFEST_SUFFIX)] for n in compaction_names(self._reader)}
        now = self._clock()
        months: dict[str, list[Manifest]] = {}
        for name in names:
            manifest = self._manifests[name]
            months.setdefault(month_of(manifest.file), []).append(manifest)
        return {
            month: sources
            for month, sources in sorted(months.items())
            if month not in compacted and month_bounds(month)[1] + self._grace <= now
        }

    def compact(self, on_progress: Callable[[int], None] | None = None) -> list[CompactedMonth]:
        """Compact every pending month, oldest first; return what was written (none: no-op).

        A month that fails does not stop the later ones; the first failure is raised once they
        are done. A failed month is not tried again for ``retry_after``, doubling with each
        failure up to a day: reading a whole month every seal round would only fail again.
        ``on_progress`` is called with the records of each month compacted (a progress bar over
        the records of :meth:`pending`).
        """
        with self._lock:
            written, failures = [], []
            for month, sources in self.pending().items():
                retry_at, wait = self._backoff.get(month, (0.0, 0.0))
                if _monotonic() < retry_at:
                    continue
                try:
                    written.append(self._compact_month(month, sources))
                except (CompactionError, OSError, MemoryError, pa.ArrowException) as exc:
                    wait = min(max(2 * wait, self._retry.total_seconds()), _MAX_RETRY_S)
                    self._backoff[month] = (_monotonic() + wait, wait)
                    _log.error("compacting %s failed, next try in %.0f s: %s", month, wait, exc)
                    failures.append(exc)
                else:
                    self._backoff.pop(month, None)
                    if on_progress is not None:
                        on_progress(written[-1].manifest.count)
            if failures:
                raise failures[0]
            return written

    def _open_hour_manifest(self, name: str) -> Manifest:
        path = f"{MANIFEST_DIR}/{name}"
        try:
            manifest = open_manifest(self._reader.read_bytes(path), self._verifier)
        except (ManifestError, FileNotFoundError) as exc:
            raise CompactionError(f"{path}: {exc}; run 'infertrail audit verify'") from exc
        if manifest.name != name or manifest.origin != self._origin:
            raise CompactionError(
                f"{path} describes {manifest.name} of log {manifest.origin!r}, "
                f"not of {self._origin!r}; run 'infertrail audit verify'"
            )
        return manifest

    def _compact_month(self, month: str, sources: list[Manifest]) -> CompactedMonth:
        t0 = time.perf_counter()
        first, last = sources[0].first_seq, sources[-1].last_seq
        rel = f"{COMPACTED_DIR}/month={month}/{range_name(first, last)}.parquet"
        planned = CompactionManifest(
            origin=self._origin,
            month=month,
            file=rel,
            sources=tuple(m.name[: -len(MANIFEST_SUFFIX)] for m in sources),
            count=sum(m.count for m in sources),
            sha256="0" * 64,
            created="",
        )
        # Before writing anything: what will be signed must read back (disjoint sources, count).
        try:
            CompactionManifest.parse(planned.text())
        except ManifestError as exc:
            raise CompactionError(f"cannot compact {month}: {exc}") from exc
        data = self._write_copy(month, sources, rel)
        pa.default_memory_pool().release_unused()  # the copy and its row groups: give them back
        manifest = replace(
            planned,
            sha256=hashlib.sha256(data).hexdigest(),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        manifest_rel = f"{COMPACTION_DIR}/{manifest.name}"
        try:
            write_once(
                self._reader.fs,
                self._reader.path(manifest_rel),
                self._signer.sign(manifest.text()),
            )
        except FileExistsError:
            manifest = self._adopt_manifest(manifest_rel, manifest)
        seconds = time.perf_counter() - t0
        _log.info("compacted %s: %d records -> %s in %.1f s", month, manifest.count, rel, seconds)
        return CompactedMonth(manifest, manifest_rel)

    def _write_copy(self, month: str, sources: list[Manifest], rel: str) -> bytes:
        """Write the sorted copy (or adopt an identical leftover); return its bytes.

        Each source is checked on its own (sha256 against its manifest, its seq range); DuckDB
        then sorts the month out of core, within ``memory_mb`` and spilling to a temporary
        directory, and the copy is encoded one row group at a time: memory holds a row group and
        the compressed copy, not the month. A source changed between its check and the sort
        makes a copy that verify reports (``compaction_mismatch``).
        """
        for manifest in sources:
            self._check_source(month, manifest)
        with tempfile.TemporaryDirectory(prefix="infertrail-compact-") as tmp:
            sorted_path = f"{tmp}/sorted.parquet"
            self._sort(month, [self._engine_path(m.file) for m in sources], sorted_path, tmp)
            data = self._encode(pq.ParquetFile(sorted_path))
        try:
            return write_file_once(self._reader, rel, data, lambda old: _same_rows(data, old))
        except SealError as exc:
            raise CompactionError(f"cannot compact {month}: {exc}") from exc

    def _check_source(self, month: str, manifest: Manifest) -> None:
        """One hour file must match its manifest's sha256 and hold exactly its seq range."""
        try:
            table = self._reader.read_table(manifest)
        except (ManifestError, FileNotFoundError) as exc:
            raise CompactionError(f"cannot compact {month}: {exc}") from exc
        if not table.schema.remove_metadata().equals(FILE_SCHEMA):
            raise CompactionError(f"cannot compact {month}: {manifest.file} has another schema")
        seqs = table.column("seq").combine_chunks()
        expected = np.arange(manifest.first_seq, manifest.last_seq + 1, dtype=np.int64)
        if seqs.null_count or not np.array_equal(seqs.to_numpy(), expected):
            raise CompactionError(
                f"cannot compact {month}: {manifest.file} does not hold exactly seqs "
                f"{manifest.first_seq}..{manifest.last_seq}; run 'infertrail audit verify'"
            )

    def _engine_path(self, relative: str) -> str:
        path = self._reader.path(relative)
        if isinstance(self._reader.fs, LocalFileSystem):
            return path
        return str(self._reader.fs.unstrip_protocol(path))

    def _sort(self, month: str, paths: list[str], out: str, tmp: str) -> None:
        """Write the rows of ``paths`` sorted by (subject, seq), nulls last, to ``out``."""
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": f"{self._memory_mb}MB",
            "temp_directory": tmp,
            # The ORDER BY still orders the output; without this DuckDB also buffers to keep
            # the order it read rows in, and runs out of memory instead of spilling.
            "preserve_insertion_order": False,
            "threads": 1,  # each thread has its own sort buffers within the memory limit
        }
        con = duckdb.connect(config=config)
        try:
            if not isinstance(self._reader.fs, LocalFileSystem):
                con.register_filesystem(self._reader.fs)
            rows = con.read_parquet(paths).order("subject ASC NULLS LAST, seq ASC")
            rows.write_parquet(out, compression="zstd")
        except duckdb.Error as exc:
            raise CompactionError(f"cannot compact {month}: sorting failed: {exc}") from exc
        finally:
            con.close()

    def _encode(self, parquet: pq.ParquetFile) -> bytes:
        """The copy's Parquet bytes: lake schema and origin, one row group per row_group_rows."""
        schema = FILE_SCHEMA.with_metadata({ORIGIN_METADATA_KEY: self._origin.encode()})
        buf = pa.BufferOutputStream()
        with pq.ParquetWriter(buf, schema, **PARQUET_OPTIONS) as writer:
            for group in _exact_groups(parquet.iter_batches(batch_size=self._rows), self._rows):
                writer.write_table(group.cast(schema), row_group_size=self._rows)
        data: bytes = buf.getvalue().to_pybytes()
        return data

    def _adopt_manifest(self, rel: str, ours: CompactionManifest) -> CompactionManifest:
        """Another compactor signed this month meanwhile: fine if it describes the same copy."""
        try:
            theirs = open_compaction(self._reader.read_bytes(rel), self._verifier)
        except ManifestError as exc:
            raise CompactionError(f"{rel} exists and does not verify: {exc}") from exc
        if (theirs.file, theirs.sources, theirs.sha256) != (ours.file, ours.sources, ours.sha256):
            raise CompactionError(f"{rel} exists and describes another copy; not overwriting it")
        return theirs
