"""Immutable Parquet lake: the sealer that moves committed records out of the WAL, and its reader.

Layout (see docs of the audit log): ``<lake>/dt=YYYY-MM-DD/hour=HH/<first>-<last>.parquet``,
written once, each followed by a signed manifest ``<lake>/_manifests/<first>-<last>.json.note``
(:mod:`infertrail.audit.manifest`). The sealed frontier is derived from the manifest names alone,
so there is no mutable state to corrupt or lose. Files hold the exact WAL payload
(``canonical``), its leaf hash and typed columns for querying (:mod:`infertrail.audit.typed`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import fsspec.core
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from infertrail.audit import merkle
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.manifest import (
    MANIFEST_DIR,
    MANIFEST_SUFFIX,
    RANGE_RE,
    Manifest,
    ManifestError,
    open_manifest,
    range_name,
    range_of,
)
from infertrail.audit.subtrees import leaf_hashes
from infertrail.audit.supervisor import retry_delay
from infertrail.audit.typed import FILE_SCHEMA, STRING_FIELDS, TYPED_SCHEMA, typed_columns

# Manifests and typed columns used to live here: their names stay importable from this module.
__all__ = [
    "FILE_SCHEMA",
    "MANIFEST_DIR",
    "MANIFEST_SUFFIX",
    "ORIGIN_METADATA_KEY",
    "PARQUET_OPTIONS",
    "ROW_GROUP_ROWS",
    "TYPED_SCHEMA",
    "LakeReader",
    "Manifest",
    "ManifestError",
    "SealError",
    "SealableLog",
    "SealedFile",
    "Sealer",
    "build_table",
    "hour_runs",
    "open_manifest",
    "range_name",
    "typed_columns",
    "write_file_once",
    "write_once",
]

_log = logging.getLogger(__name__)

ORIGIN_METADATA_KEY = b"infertrail.origin"
_HOUR_MICROS = 3_600_000_000
# Row groups of ~10 MB of records: DuckDB scans a file with several threads, verify holds one
# group in memory at a time, and fetching one record (for a proof) decodes at most the part of
# one group before it: a few ms (16K-row groups took ~25 ms, 4K-row ones slowed queries down).
ROW_GROUP_ROWS = 8 * 1024
#: How lake files are encoded (hour files and compacted copies alike). Record bytes and leaf
#: hashes are unique: dictionaries and min/max statistics on them would only cost.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": list(STRING_FIELDS),
    "write_statistics": [n for n in FILE_SCHEMA.names if n not in ("canonical", "leaf_hash")],
}


class SealError(RuntimeError):
    """Sealing cannot proceed without risking the lake's integrity; the message says why."""


class SealableLog(Protocol):
    """What the sealer needs of the writer's log (an AuditLog or a SupervisedLog)."""

    origin: str

    @property
    def size(self) -> int: ...

    def read(self, start: int, end: int) -> Iterator[tuple[int, bytes]]: ...

    def root(self, tree_size: int | None = None) -> bytes: ...

    def retire_through(self, seq: int) -> None: ...


@dataclass(frozen=True)
class SealedFile:
    """A file the sealer wrote, with its manifest (paths relative to the lake root)."""

    manifest: Manifest
    manifest_path: str

    @property
    def path(self) -> str:
        return self.manifest.file


class LakeReader:
    """Read-only access to a lake: manifest listing, file bytes, and records in seq order."""

    def __init__(self, lake_url: str) -> None:
        fs, root = fsspec.core.url_to_fs(lake_url)
        self.fs: AbstractFileSystem = fs
        self.root: str = root.rstrip("/")

    def path(self, relative: str) -> str:
        """Full filesystem path of a lake-relative path."""
        return f"{self.root}/{relative}"

    def manifest_names(self) -> list[str]:
        """Manifest file names sorted by first seq (not verified; unrelated names are skipped)."""
        directory = self.path(MANIFEST_DIR)
        if not self.fs.exists(directory):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(directory, detail=False)]
        found = [
            n for n in names
            if n.endswith(MANIFEST_SUFFIX) and RANGE_RE.fullmatch(n[: -len(MANIFEST_SUFFIX)])
        ]  # fmt: skip
        return sorted(found)

    def read_bytes(self, relative: str) -> bytes:
        """The whole content of a lake file (FileNotFoundError if absent)."""
        with self.fs.open(self.path(relative), "rb") as f:
            data: bytes = f.read()
        return data

    def manifests(self, verifier: NoteVerifier) -> list[Manifest]:
        """All manifests, each verified against ``verifier``; ManifestError names a bad one."""
        out = []
        for name in self.manifest_names():
            try:
                manifest = open_manifest(self.read_bytes(f"{MANIFEST_DIR}/{name}"), verifier)
            except ManifestError as exc:
                raise ManifestError(f"{MANIFEST_DIR}/{name}: {exc}") from exc
            if manifest.name != name:
                raise ManifestError(f"{MANIFEST_DIR}/{name} describes {manifest.name}")
            out.append(manifest)
        return out

    def read_table(self, manifest: Manifest) -> pa.Table:
        """The rows of a manifest's file, after checking its sha256 against the manifest."""
        data = self.read_bytes(manifest.file)
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.sha256:
            raise ManifestError(
                f"{manifest.file}: sha256 {digest} does not match its manifest ({manifest.sha256})"
            )
        return pq.read_table(pa.BufferReader(data))

    def iter_records(
        self, verifier: NoteVerifier, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
        """Yield ``(seq, canonical, typed row)`` for sealed records in [start, end), in seq order.

        Only files with a valid manifest and matching sha256 are read; use verify for a full check.
        """
        for manifest in self.manifests(verifier):
            if manifest.last_seq < start or (end is not None and manifest.first_seq >= end):
                continue
            table = self.read_table(manifest)
            typed_names = TYPED_SCHEMA.names
            for row in table.to_pylist():
                seq = row["seq"]
                if seq >= start and (end is None or seq < end):
                    yield seq, row["canonical"], {k: row[k] for k in typed_names}


def build_table(seqs: list[int], canonicals: list[bytes], leaves: list[bytes]) -> pa.Table:
    """The lake table for consecutive records: identity columns plus typed columns."""
    canonical = pa.array(canonicals, pa.binary())
    typed = typed_columns(canonical)
    derived_seq = typed.column("seq").to_pylist()
    if derived_seq != seqs:
        bad = next(i for i, (a, b) in enumerate(zip(derived_seq, seqs, strict=True)) if a != b)
        raise SealError(f"record at seq {seqs[bad]} carries seq {derived_seq[bad]!r} in its bytes")
    columns = [pa.array(seqs, pa.int64()), canonical, pa.array(leaves, pa.binary(merkle.HASH_SIZE))]
    columns += [typed.column(name) for name in TYPED_SCHEMA.names]
    return pa.Table.from_arrays(columns, schema=FILE_SCHEMA)


def hour_runs(table: pa.Table) -> list[tuple[int, int]]:
    """Split rows into [begin, end) runs of the same UTC hour of ``ts`` (raising on a null ts)."""
    ts = table.column("ts")
    if ts.null_count:
        bad = ts.is_null().to_pylist().index(True)
        seq = table.column("seq")[bad].as_py()
        raise SealError(f"record at seq {seq} has no valid RFC 3339 'ts'; cannot partition it")
    hours = [v // _HOUR_MICROS for v in ts.cast(pa.int64()).to_pylist()]
    runs, begin = [], 0
    for i in range(1, len(hours)):
        if hours[i] != hours[i - 1]:
            runs.append((begin, i))
            begin = i
    if hours:
        runs.append((begin, len(hours)))
    return runs


def same_records(data: bytes, table: pa.Table) -> bool:
    """Whether Parquet ``data`` holds exactly the seqs and record bytes of ``table``, in order."""
    try:
        existing = pq.read_table(pa.BufferReader(data), columns=["seq", "canonical"])
    except (pa.ArrowException, OSError):
        return False
    return bool(existing.equals(table.select(["seq", "canonical"])))


def write_file_once(
    reader: LakeReader, relative: str, data: bytes, same: Callable[[bytes], bool]
) -> bytes:
    """Write a lake file once; after a crash, adopt an existing one only if ``same`` says so.

    A crash between a file and its manifest leaves a complete file without a manifest: it is
    adopted (its bytes returned) only if it holds exactly the intended records, never replaced.
    """
    try:
        write_once(reader.fs, reader.path(relative), data)
    except FileExistsError:
        existing = reader.read_bytes(relative)
        if not same(existing):
            raise SealError(
                f"lake file {relative} exists with other content; not overwriting it"
            ) from None
        return existing
    return data


def write_once(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Create ``path`` with ``data``; FileExistsError if it exists (never overwrite).

    Locally the bytes go to a temporary file that is fsynced and then hard-linked into place, so
    the final name only ever holds complete, durable content; object stores get an exclusive put.
    The temporary file is removed whatever happens: one left by a write that filled the disk
    would keep it full after the space is freed elsewhere.
    """
    if isinstance(fs, LocalFileSystem):
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, final)
        finally:
            tmp.unlink()
        dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "xb") as f:
        f.write(data)


class Sealer:
    """Moves committed-but-unsealed records of an AuditLog into the lake, then retires the WAL.

    ``after_round`` runs on the background thread after each successful seal round (the service
    compacts closed months there: :mod:`infertrail.audit.compaction`). A failed seal (the lake
    unreachable, a full disk, the log down) is never final: the background thread tries again
    after ``retry_s``, doubling up to ``max_retry_s`` (both within the seal interval), and the
    records wait in the WAL meanwhile. ``last_seal_error`` is the newest seal's failure (None
    once one succeeds); ``last_error`` also counts the ``after_round`` step.
    """

    def __init__(
        self,
        log: SealableLog,
        lake_url: str,
        signer: NoteSigner,
        *,
        max_rows_per_file: int = 1_000_000,
        origin: str | None = None,
        after_round: Callable[[], object] | None = None,
    ) -> None:
        if max_rows_per_file < 1:
            raise ValueError(f"max_rows_per_file must be >= 1, got {max_rows_per_file}")
        self._log = log
        self._signer = signer
        self._origin = origin if origin is not None else log.origin
        self._reader = LakeReader(lake_url)
        self._max_rows = max_rows_per_file
        self._after_round = after_round
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None
        self.last_seal_error: BaseException | None = None

    def frontier(self) -> int:
        """First unsealed seq: the end of the contiguous run of manifests from seq 0."""
        expected = 0
        for name in self._reader.manifest_names():
            first, last = range_of(name)
            if first != expected or last < first:
                raise SealError(
                    f"lake manifests are not contiguous at {name} (expected first seq "
                    f"{expected}); run 'infertrail audit verify' before sealing more"
                )
            expected = last + 1
        return expected

    def seal(self, on_progress: Callable[[int], None] | None = None) -> list[SealedFile]:
        """Seal every committed record past the frontier; return the files written, in order.

        ``on_progress`` is called with the number of records of each file written (a progress
        bar over ``log.size - frontier()``).
        """
        with self._lock:
            sealed: list[SealedFile] = []
            start, end = self.frontier(), self._log.size
            while start < end:
                stop = min(end, start + self._max_rows)
                sealed += self._seal_range(start, stop, on_progress)
                start = stop
            return sealed

    def _seal_range(
        self, start: int, end: int, on_progress: Callable[[int], None] | None = None
    ) -> list[SealedFile]:
        seqs, canonicals = [], []
        for seq, payload in self._log.read(start, end):
            seqs.append(seq)
            canonicals.append(payload)
        if seqs != list(range(start, end)):
            raise SealError(f"the log returned seqs {seqs[:1]}..{seqs[-1:]} for [{start}, {end})")
        leaves = leaf_hashes(canonicals)
        table = build_table(seqs, canonicals, leaves)
        out = []
        for begin, stop in hour_runs(table):
            out.append(self._write_file(table.slice(begin, stop - begin)))
            if on_progress is not None:
                on_progress(stop - begin)
        return out

    def _write_file(self, table: pa.Table) -> SealedFile:
        first, last = table.column("seq")[0].as_py(), table.column("seq")[-1].as_py()
        ts = table.column("ts")[0].as_py()
        rel = f"dt={ts:%Y-%m-%d}/hour={ts:%H}/{range_name(first, last)}.parquet"
        buf = pa.BufferOutputStream()
        schema = table.schema.with_metadata({ORIGIN_METADATA_KEY: self._origin.encode()})
        pq.write_table(table.cast(schema), buf, row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTIONS)
        data = write_file_once(
            self._reader, rel, buf.getvalue().to_pybytes(), lambda d: same_records(d, table)
        )
        manifest = Manifest(
            origin=self._origin,
            file=rel,
            first_seq=first,
            last_seq=last,
            sha256=hashlib.sha256(data).hexdigest(),
            root=self._log.root(last + 1),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        manifest_rel = f"{MANIFEST_DIR}/{manifest.name}"
        write_once(
            self._reader.fs, self._reader.path(manifest_rel), self._signer.sign(manifest.text())
        )
        self._log.retire_through(last)
        return SealedFile(manifest, manifest_rel)

    def start(self, interval_s: float, *, retry_s: float = 1.0, max_retry_s: float = 10.0) -> None:
        """Seal every ``interval_s`` seconds on a background thread until :meth:`stop`.

        After a failed seal the next try comes ``retry_s`` later, then at doubling intervals up
        to ``max_retry_s`` (neither longer than ``interval_s``).
        """
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if not 0 < retry_s <= max_retry_s:
            raise ValueError(f"need 0 < retry_s <= max_retry_s, got {retry_s} and {max_retry_s}")
        if self._thread is not None:
            raise RuntimeError("this sealer is already running")
        self._stop.clear()
        retry = (min(retry_s, interval_s), min(max_retry_s, interval_s))
        self._thread = threading.Thread(
            target=self._run, args=(interval_s, *retry), name="infertrail-sealer", daemon=True
        )
        self._thread.start()

    def _run(self, interval_s: float, retry_s: float, max_retry_s: float) -> None:
        failures = 0  # seals failed in a row
        while not self._stop.is_set():
            try:
                self.seal()
            except Exception as exc:  # the thread must outlive a bad round; it retries sooner
                self.last_error = self.last_seal_error = exc
                if failures:  # the traceback once per outage, then one line per try
                    _log.warning("audit sealer: seal failed again: %r", exc)
                else:
                    _log.exception("audit sealer: seal failed; retrying")
                self._stop.wait(retry_delay(failures, retry_s, max_retry_s))
                failures += 1
                continue
            if failures:
                _log.warning("audit sealer: sealing again after %d failed tries", failures)
            failures = 0
            self.last_seal_error = None
            try:
                if self._after_round is not None:
                    self._after_round()
                self.last_error = None
            except Exception as exc:  # compaction retries months on its own schedule
                self.last_error = exc
                _log.exception("audit sealer: the step after sealing failed")
            self._stop.wait(interval_s)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread (after the round in progress, if any)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
