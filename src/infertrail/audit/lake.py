"""Immutable Parquet lake: the sealer that moves committed records out of the WAL, and its reader.

Layout (see docs of the audit log): ``<lake>/dt=YYYY-MM-DD/hour=HH/<first>-<last>.parquet``,
written once, each followed by a signed manifest ``<lake>/_manifests/<first>-<last>.json.note``
whose text is the canonical JSON of :class:`Manifest`. The sealed frontier is derived from the
manifest names alone, so there is no mutable state to corrupt or lose. Files hold the exact WAL
payload (``canonical``), its leaf hash and typed columns for querying; the typed columns are
computed from the canonical bytes by :func:`typed_columns`, which the verifier runs again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import fsspec.core
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from infertrail.audit import merkle
from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier

if TYPE_CHECKING:
    from infertrail.audit.ledger import AuditLog

__all__ = [
    "FILE_SCHEMA",
    "MANIFEST_DIR",
    "TYPED_SCHEMA",
    "LakeReader",
    "Manifest",
    "ManifestError",
    "SealError",
    "SealedFile",
    "Sealer",
    "typed_columns",
]

_log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
MANIFEST_DIR = "_manifests"
MANIFEST_SUFFIX = ".json.note"
ORIGIN_METADATA_KEY = b"infertrail.origin"
_RANGE_RE = re.compile(r"(\d{20})-(\d{20})")
_FILE_RE = re.compile(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/(\d{20})-(\d{20})\.parquet")
_HOUR_MICROS = 3_600_000_000
# Row groups of ~20 MB of records: DuckDB scans a file with several threads, and fetching one
# record (for a proof) decodes one group, not the file.
_ROW_GROUP_ROWS = 16 * 1024

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


class ManifestError(ValueError):
    """A lake manifest is malformed, inconsistent or not signed by the log's key."""


class SealError(RuntimeError):
    """Sealing cannot proceed without risking the lake's integrity; the message says why."""


def range_name(first_seq: int, last_seq: int) -> str:
    """The ``<first:020d>-<last:020d>`` stem shared by a lake file and its manifest."""
    return f"{first_seq:020d}-{last_seq:020d}"


@dataclass(frozen=True)
class Manifest:
    """The signed description of one lake file: its seq range, sha256 and the tree root after it."""

    origin: str
    file: str
    first_seq: int
    last_seq: int
    sha256: str
    root: bytes
    created: str

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def tree_size(self) -> int:
        return self.last_seq + 1

    @property
    def name(self) -> str:
        """File name of the signed manifest under ``_manifests/``."""
        return range_name(self.first_seq, self.last_seq) + MANIFEST_SUFFIX

    def text(self) -> bytes:
        """The note text: canonical JSON of the manifest plus a newline."""
        obj = asdict(self)
        obj.update(
            format=MANIFEST_FORMAT,
            count=self.count,
            tree_size=self.tree_size,
            root=base64.b64encode(self.root).decode(),
        )
        return canonicalize(obj) + b"\n"

    @classmethod
    def parse(cls, text: bytes) -> Manifest:
        """Parse and check a manifest text strictly; ManifestError names the bad field."""
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest text is not JSON: {exc}") from exc
        keys = {"format", "origin", "file", "first_seq", "last_seq", "count", "sha256"}
        keys |= {"tree_size", "root", "created"}
        if not isinstance(obj, dict) or set(obj) != keys:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ManifestError(f"manifest must have exactly the keys {sorted(keys)}, got {got}")
        if obj["format"] != MANIFEST_FORMAT:
            raise ManifestError(f"manifest format {obj['format']!r} is not {MANIFEST_FORMAT}")
        for key in ("origin", "file", "sha256", "root", "created"):
            if not isinstance(obj[key], str):
                raise ManifestError(f"manifest {key} must be a string, got {obj[key]!r}")
        for key in ("first_seq", "last_seq", "count", "tree_size"):
            if type(obj[key]) is not int or obj[key] < 0:
                raise ManifestError(f"manifest {key} must be an int >= 0, got {obj[key]!r}")
        try:
            root = base64.b64decode(obj["root"], validate=True)
        except binascii.Error as exc:
            raise ManifestError(f"manifest root {obj['root']!r} is not base64") from exc
        manifest = cls(
            obj["origin"], obj["file"], obj["first_seq"], obj["last_seq"], obj["sha256"], root,
            obj["created"],
        )  # fmt: skip
        manifest._check(obj)
        if manifest.text() != text:
            raise ManifestError("manifest text is not in canonical form (RFC 8785 + newline)")
        return manifest

    def _check(self, obj: dict[str, Any]) -> None:
        if self.last_seq < self.first_seq:
            raise ManifestError(f"manifest last_seq {self.last_seq} < first_seq {self.first_seq}")
        if obj["count"] != self.count or obj["tree_size"] != self.tree_size:
            raise ManifestError(
                f"manifest count {obj['count']} / tree_size {obj['tree_size']} disagree with "
                f"its range [{self.first_seq}, {self.last_seq}]"
            )
        match = _FILE_RE.fullmatch(self.file)
        if not match or match.groups() != tuple(
            range_name(self.first_seq, self.last_seq).split("-")
        ):
            raise ManifestError(f"manifest file {self.file!r} does not name its seq range")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ManifestError(f"manifest sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if len(self.root) != merkle.HASH_SIZE:
            raise ManifestError(f"manifest root must be {merkle.HASH_SIZE} bytes")


def open_manifest(note: bytes, verifier: NoteVerifier) -> Manifest:
    """Verify a signed manifest note and parse it; ManifestError if either fails."""
    try:
        text = verifier.verify(note)
    except ValueError as exc:
        raise ManifestError(f"manifest signature: {exc}") from exc
    return Manifest.parse(text)


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
            if n.endswith(MANIFEST_SUFFIX) and _RANGE_RE.fullmatch(n[: -len(MANIFEST_SUFFIX)])
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


def _same_records(data: bytes, table: pa.Table) -> bool:
    """Whether Parquet ``data`` holds exactly the seqs and canonical bytes of ``table``."""
    try:
        existing = pq.read_table(pa.BufferReader(data), columns=["seq", "canonical"])
    except (pa.ArrowException, OSError):
        return False
    return bool(existing.equals(table.select(["seq", "canonical"])))


def _write_once(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Create ``path`` with ``data``; FileExistsError if it exists (never overwrite).

    Locally the bytes go to a temporary file that is fsynced and then hard-linked into place, so
    the final name only ever holds complete, durable content; object stores get an exclusive put.
    """
    if isinstance(fs, LocalFileSystem):
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
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
    """Moves committed-but-unsealed records of an AuditLog into the lake, then retires the WAL."""

    def __init__(
        self,
        log: AuditLog,
        lake_url: str,
        signer: NoteSigner,
        *,
        max_rows_per_file: int = 1_000_000,
        origin: str | None = None,
    ) -> None:
        if max_rows_per_file < 1:
            raise ValueError(f"max_rows_per_file must be >= 1, got {max_rows_per_file}")
        self._log = log
        self._signer = signer
        self._origin = origin if origin is not None else log.origin
        self._reader = LakeReader(lake_url)
        self._max_rows = max_rows_per_file
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    def frontier(self) -> int:
        """First unsealed seq: the end of the contiguous run of manifests from seq 0."""
        expected = 0
        for name in self._reader.manifest_names():
            first, last = (int(x) for x in name[: -len(MANIFEST_SUFFIX)].split("-"))
            if first != expected or last < first:
                raise SealError(
                    f"lake manifests are not contiguous at {name} (expected first seq "
                    f"{expected}); run 'infertrail audit verify' before sealing more"
                )
            expected = last + 1
        return expected

    def seal(self) -> list[SealedFile]:
        """Seal every committed record past the frontier; return the files written, in order."""
        with self._lock:
            sealed: list[SealedFile] = []
            start, end = self.frontier(), self._log.size
            while start < end:
                stop = min(end, start + self._max_rows)
                sealed += self._seal_range(start, stop)
                start = stop
            return sealed

    def _seal_range(self, start: int, end: int) -> list[SealedFile]:
        seqs, canonicals = [], []
        for seq, payload in self._log.read(start, end):
            seqs.append(seq)
            canonicals.append(payload)
        if seqs != list(range(start, end)):
            raise SealError(f"the log returned seqs {seqs[:1]}..{seqs[-1:]} for [{start}, {end})")
        leaves = [merkle.leaf_hash(c) for c in canonicals]
        table = build_table(seqs, canonicals, leaves)
        out = []
        for begin, stop in hour_runs(table):
            out.append(self._write_file(table.slice(begin, stop - begin)))
        return out

    def _write_file(self, table: pa.Table) -> SealedFile:
        first, last = table.column("seq")[0].as_py(), table.column("seq")[-1].as_py()
        ts = table.column("ts")[0].as_py()
        rel = f"dt={ts:%Y-%m-%d}/hour={ts:%H}/{range_name(first, last)}.parquet"
        buf = pa.BufferOutputStream()
        schema = table.schema.with_metadata({ORIGIN_METADATA_KEY: self._origin.encode()})
        # Record bytes and leaf hashes are unique: dictionaries and min/max stats would only cost.
        pq.write_table(
            table.cast(schema),
            buf,
            compression="zstd",
            row_group_size=_ROW_GROUP_ROWS,
            use_dictionary=list(STRING_FIELDS),
            write_statistics=[n for n in FILE_SCHEMA.names if n not in ("canonical", "leaf_hash")],
        )
        data = buf.getvalue().to_pybytes()
        try:
            _write_once(self._reader.fs, self._reader.path(rel), data)
        except FileExistsError:
            # A crash between file and manifest leaves a complete file without a manifest; adopt
            # it only if it holds exactly these records, never overwrite it.
            data = self._reader.read_bytes(rel)
            if not _same_records(data, table):
                raise SealError(
                    f"lake file {rel} exists with other content; not overwriting it"
                ) from None
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
        _write_once(
            self._reader.fs, self._reader.path(manifest_rel), self._signer.sign(manifest.text())
        )
        self._log.retire_through(last)
        return SealedFile(manifest, manifest_rel)

    def start(self, interval_s: float) -> None:
        """Seal every ``interval_s`` seconds on a background thread until :meth:`stop`."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if self._thread is not None:
            raise RuntimeError("this sealer is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), name="infertrail-sealer", daemon=True
        )
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.seal()
                self.last_error = None
            except Exception as exc:  # the thread must outlive a bad round; the next one retries
                self.last_error = exc
                _log.exception("audit sealer round failed")
            self._stop.wait(interval_s)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread (after the round in progress, if any)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
