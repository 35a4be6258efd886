"""Verify an audit log from storage alone and name the first damage found.

Reads the lake (via its signed manifests), then the unsealed WAL tail, never a running AuditLog,
so it works read-only while the writer runs or is stopped. Every leaf hash is recomputed from the
stored record bytes; seqs must be dense and in order; typed lake columns must equal what the
canonical bytes say; file sha256 and signed roots (manifests, every checkpoint in the history,
an optional older checkpoint the caller kept) must match roots recomputed with a CompactRange.
The recorded leaf hashes (the lake's ``leaf_hash`` column, ``tree/leaves.bin``) only serve to
locate damage: the signatures are what is trusted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import zlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infertrail.audit import merkle
from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.lake import (
    FILE_SCHEMA,
    MANIFEST_DIR,
    MANIFEST_SUFFIX,
    ORIGIN_METADATA_KEY,
    TYPED_SCHEMA,
    LakeReader,
    ManifestError,
    open_manifest,
    typed_columns,
)
from infertrail.audit.wal import (
    FRAME_HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    LogCorruptedError,
    list_segments,
    read_frames,
)

__all__ = ["DAMAGE_KINDS", "Finding", "VerifyError", "VerifyReport", "verify_log"]

DamageKind = Literal[
    "modified", "typed_column_mismatch", "missing", "reordered", "inserted", "truncated",
    "file_missing", "file_replaced", "manifest_mismatch", "bad_signature", "rollback",
    "wal_corrupt",
]  # fmt: skip
DAMAGE_KINDS: tuple[str, ...] = get_args(DamageKind)
HASH = merkle.HASH_SIZE
_RETRIES = 3  # re-reads when the sealer moved records from the WAL to the lake meanwhile


class VerifyError(RuntimeError):
    """The log cannot be verified at all (no log there, unreadable metadata): a usage error."""


@dataclass(frozen=True)
class Finding:
    """The first damage found: its kind, the first bad seq and/or file, and what was seen."""

    kind: DamageKind
    seq: int | None
    file: str | None
    detail: str
    entry: int | None = None  # index of the checkpoint in checkpoints/history.log, if one


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_log`; ``finding`` is None when the log is intact."""

    origin: str
    finding: Finding | None = None
    records: int = 0
    sealed_records: int = 0
    files: int = 0
    segments: int = 0
    checkpoints: int = 0
    checkpoint_size: int = 0
    unattested: int = 0  # records past the newest checkpoint: intact framing, not yet signed
    root: str = ""  # base64 root of all records read
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finding is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--json`` output)."""
        return {"ok": self.ok, **asdict(self)}


@dataclass(frozen=True)
class _Task:
    """One unit of work for a worker: a lake file (by manifest name) or a WAL segment."""

    kind: Literal["lake", "wal"]
    name: str  # manifest name, or the segment path relative to log_dir
    first: int  # seq of its first record by name
    last: int  # lake: last seq by name; wal: -1
    skip_below: int  # wal: records below this seq are sealed already and skipped
    is_last: bool
    log_dir: str
    lake_url: str
    origin: str
    vkey: str


@dataclass
class _Result:
    task: _Task
    start: int  # seq position of the first returned record
    seqs: list[int]  # seq each record claims, in stored order
    leaves: bytes  # recomputed leaf hashes, 32 bytes each
    finding: Finding | None = None
    row: int = -1  # row of ``finding`` (-1: not tied to a row)
    root: bytes | None = None  # lake: the manifest's signed root after this file
    file: str | None = None
    sha_ok: bool = True
    torn: tuple[int, str, bool] | None = None  # wal tail: row, reason, was a complete frame
    vanished: bool = False


def verify_log(
    log_dir: Path,
    lake_url: str,
    verifier: NoteVerifier,
    *,
    from_checkpoint: bytes | None = None,
    workers: int = 1,
) -> VerifyReport:
    """Verify everything stored for the log in ``log_dir`` and the lake at ``lake_url``.

    ``from_checkpoint``: an older signed checkpoint the caller kept; the log must have grown
    consistently from it (else ``rollback``). ``workers > 1`` checks files in that many processes
    and gives the same report. Raises VerifyError if there is no readable log at ``log_dir``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    log_dir = Path(log_dir)
    origin = _read_origin(log_dir)
    for _ in range(_RETRIES):
        names = LakeReader(lake_url).manifest_names()
        report, raced = _verify_once(log_dir, lake_url, verifier, origin, from_checkpoint, workers)
        if not raced and (report.ok or LakeReader(lake_url).manifest_names() == names):
            return report
    return report


def _read_origin(log_dir: Path) -> str:
    try:
        meta = json.loads((log_dir / "log.json").read_bytes())
    except FileNotFoundError as exc:
        raise VerifyError(f"no audit log at {log_dir} (log.json is missing)") from exc
    except ValueError as exc:
        raise VerifyError(f"{log_dir / 'log.json'} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("origin"), str):
        raise VerifyError(f"{log_dir / 'log.json'} has no origin")
    origin: str = meta["origin"]
    return origin


def _verify_once(
    log_dir: Path,
    lake_url: str,
    verifier: NoteVerifier,
    origin: str,
    from_checkpoint: bytes | None,
    workers: int,
) -> tuple[VerifyReport, bool]:
    report = VerifyReport(origin)
    checks, finding = _checkpoint_checks(log_dir, verifier, origin, report)
    if finding is None and from_checkpoint is not None:
        finding, old = _from_checkpoint(from_checkpoint, verifier, origin, report)
        if old is not None:
            checks.append((old.size, old.root, "from", None))
    if finding is not None:
        report.finding = finding
        return report, False
    checks.sort(key=lambda c: c[0])
    tasks = _tasks(log_dir, lake_url, origin, verifier.verifier_key)
    if workers == 1 or len(tasks) < 2:
        return _merge(map(_check, tasks), checks, report)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
        try:
            return _merge(pool.map(_check, tasks), checks, report)
        finally:
            pool.shutdown(cancel_futures=True)


Check = tuple[int, bytes, str, int | None]  # tree size, signed root, source, history entry


def _checkpoint_checks(
    log_dir: Path, verifier: NoteVerifier, origin: str, report: VerifyReport
) -> tuple[list[Check], Finding | None]:
    """Signed roots to check: every history entry and ``latest``; bad_signature/rollback first."""
    where = "checkpoints/history.log"
    try:
        notes, _torn = read_frames(log_dir / where, repair=False)  # a torn tail: being appended
    except LogCorruptedError as exc:
        return [], Finding("bad_signature", None, where, f"history framing damaged: {exc}")
    checks: list[Check] = []
    for entry, note in enumerate(notes):
        try:
            cp = open_checkpoint(note, verifier, expected_origin=origin)
        except NoteError as exc:
            return [], Finding("bad_signature", None, where, f"checkpoint {entry}: {exc}", entry)
        if checks and cp.size < checks[-1][0]:
            detail = f"checkpoint {entry} has size {cp.size}, below the previous {checks[-1][0]}"
            return [], Finding("rollback", cp.size, where, detail, entry)
        checks.append((cp.size, cp.root, "history", entry))
    try:
        latest = open_checkpoint(
            (log_dir / "checkpoints/latest").read_bytes(), verifier, expected_origin=origin
        )
        checks.append((latest.size, latest.root, "latest", None))
    except FileNotFoundError:
        report.notes.append("checkpoints/latest is missing; using the history only")
    except NoteError as exc:
        return [], Finding("bad_signature", None, "checkpoints/latest", str(exc))
    report.checkpoints = len(notes)
    report.checkpoint_size = max((c[0] for c in checks), default=0)
    return checks, None


def _from_checkpoint(
    note: bytes, verifier: NoteVerifier, origin: str, report: VerifyReport
) -> tuple[Finding | None, Checkpoint | None]:
    try:
        old = open_checkpoint(note, verifier, expected_origin=origin)
    except NoteError as exc:
        return Finding("bad_signature", None, "from_checkpoint", str(exc)), None
    if old.size > report.checkpoint_size:
        detail = (
            f"the given checkpoint has size {old.size}; the log's newest signed checkpoint "
            f"has only {report.checkpoint_size}: the log was rolled back"
        )
        return Finding("rollback", report.checkpoint_size, "from_checkpoint", detail), None
    return None, old


def _tasks(log_dir: Path, lake_url: str, origin: str, vkey: str) -> list[_Task]:
    common = {"log_dir": str(log_dir), "lake_url": lake_url, "origin": origin, "vkey": vkey}
    tasks, frontier = [], 0
    for name in LakeReader(lake_url).manifest_names():
        first, last = (int(x) for x in name[: -len(MANIFEST_SUFFIX)].split("-"))
        tasks.append(_Task("lake", name, first, last, 0, False, **common))
        frontier = max(frontier, last + 1)
    wal_dir = log_dir / "wal"
    segments = list_segments(wal_dir) if wal_dir.is_dir() else []
    # Segments entirely below the frontier are sealed copies the ledger has not retired yet.
    bounds = [first for first, _ in segments[1:]] + [None]
    for (first, path), next_first in zip(segments, bounds, strict=True):
        if next_first is not None and next_first <= frontier:
            continue
        rel = str(path.relative_to(log_dir))
        tasks.append(_Task("wal", rel, first, -1, frontier, next_first is None, **common))
    return tasks


def _check(task: _Task) -> _Result:
    """Check one lake file or WAL segment on its own (runs in a worker process)."""
    if task.kind == "lake":
        return _check_lake_file(task)
    return _check_segment(task)


def _check_lake_file(task: _Task) -> _Result:
    reader = LakeReader(task.lake_url)
    result = _Result(task, task.first, [], b"")
    note_path = f"{MANIFEST_DIR}/{task.name}"

    def fail(kind: DamageKind, detail: str, file: str = note_path) -> _Result:
        result.finding = Finding(kind, task.first, file, detail)
        result.row = 0
        return result

    try:
        manifest = open_manifest(reader.read_bytes(note_path), NoteVerifier.from_key(task.vkey))
    except (ManifestError, FileNotFoundError) as exc:
        return fail("manifest_mismatch", str(exc))
    if manifest.name != task.name or manifest.origin != task.origin:
        return fail(
            "manifest_mismatch", f"manifest describes {manifest.name} of {manifest.origin!r}"
        )
    result.root, result.file = manifest.root, manifest.file
    try:
        data = reader.read_bytes(manifest.file)
    except FileNotFoundError:
        return fail("file_missing", "the manifest's file is gone", manifest.file)
    result.sha_ok = hashlib.sha256(data).hexdigest() == manifest.sha256
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        return fail("file_replaced", f"not a readable Parquet file: {exc}", manifest.file)
    file_origin = (
        (table.schema.metadata or {}).get(ORIGIN_METADATA_KEY, b"").decode(errors="replace")
    )
    if file_origin != task.origin or not table.schema.remove_metadata().equals(FILE_SCHEMA):
        detail = f"file of log {file_origin!r} / another schema, not of {task.origin!r}"
        return fail("file_replaced", detail, manifest.file)
    canonical = table.column("canonical")
    result.seqs = table.column("seq").to_pylist()
    leaves = [merkle.leaf_hash(c) for c in canonical.to_pylist()]
    result.leaves = b"".join(leaves)
    stored_leaves = table.column("leaf_hash").to_pylist()
    rows: list[tuple[int, int, DamageKind, str, str]] = []  # row, priority, kind, file, detail
    bad = _first_difference(leaves, stored_leaves)
    if bad >= 0:
        rows.append((bad, 0, "modified", manifest.file, "record bytes do not hash to leaf_hash"))
    reference = _reference_leaves(Path(task.log_dir), task.first, len(leaves))
    bad_ref = _first_difference(leaves[: len(reference)], reference)
    if bad_ref >= 0:
        if not result.sha_ok and bad_ref == 0 and _all_differ(leaves, reference):
            return fail("file_replaced", "no record matches the log's leaf hashes", manifest.file)
        where = manifest.file if not result.sha_ok else "tree/leaves.bin"
        rows.append((bad_ref, 0, "modified", where, "leaf hash differs from tree/leaves.bin"))
    bad_typed, column = _typed_difference(table, typed_columns(canonical))
    if bad_typed >= 0:
        detail = f"column {column!r} disagrees with the record's canonical bytes"
        rows.append((bad_typed, 1, "typed_column_mismatch", manifest.file, detail))
    if rows:
        row, _, kind, file, detail = min(rows)
        result.finding = Finding(kind, task.first + row, file, detail)
        result.row = row
    return result


def _check_segment(task: _Task) -> _Result:
    path = Path(task.log_dir) / task.name
    result = _Result(task, task.first, [], b"")
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        result.vanished = True  # retired by the ledger after sealing, since we listed it
        return result
    skip = max(0, task.skip_below - task.first)
    payloads, stop, reason, follows = _walk(buf, skip)
    result.start = task.first + skip
    if reason is not None:
        row = len(payloads) - skip
        if follows or not task.is_last:
            detail = f"{reason} at offset {stop} of {task.name}"
            result.finding = Finding("wal_corrupt", task.first + len(payloads), task.name, detail)
            result.row = row
        else:
            result.torn = (row, f"{reason} at offset {stop}", reason == "CRC mismatch")
    payloads = payloads[skip:]
    if not payloads:
        return result
    leaves = [merkle.leaf_hash(p) for p in payloads]
    result.leaves = b"".join(leaves)
    claimed = typed_columns(pa.array(payloads, pa.binary())).column("seq").to_pylist()
    # An unparsable record claims nothing: keep its position so the leaf check names it.
    result.seqs = [result.start + i if s is None else s for i, s in enumerate(claimed)]
    reference = _reference_leaves(Path(task.log_dir), result.start, len(leaves))
    bad = _first_difference(leaves[: len(reference)], reference)
    if bad >= 0 and (result.finding is None or bad < result.row):
        detail = f"record bytes do not hash to the leaf in tree/leaves.bin ({task.name})"
        result.finding = Finding("modified", result.start + bad, task.name, detail)
        result.row = bad
    return result


def _walk(buf: bytes, skip: int) -> tuple[list[bytes], int, str | None, bool]:
    """Frames of a WAL segment: payloads, where they stop, why, and if an intact frame follows.

    The first ``skip`` frames (already sealed, so their payloads are not needed) are only
    checked for framing, not CRC; their payloads come back empty.
    """
    payloads: list[bytes] = []
    offset = 0
    while offset < len(buf):
        reason = _frame_error(buf, offset, len(payloads) >= skip)
        if reason is not None:
            follows = any(
                _frame_error(buf, o, True) is None
                for o in range(offset + 1, len(buf) - HEADER_SIZE)
            )
            return payloads, offset, reason, follows
        length = FRAME_HEADER.unpack_from(buf, offset)[0]
        start = offset + HEADER_SIZE
        payloads.append(buf[start : start + length] if len(payloads) >= skip else b"")
        offset = start + length
    return payloads, offset, None, False


def _frame_error(buf: bytes, offset: int, check_crc: bool) -> str | None:
    if len(buf) - offset < HEADER_SIZE:
        return "partial frame header"
    length, crc = FRAME_HEADER.unpack_from(buf, offset)
    if not 0 < length <= MAX_PAYLOAD:
        return f"bad frame length {length}"
    if offset + HEADER_SIZE + length > len(buf):
        return "frame runs past the end of the file"
    start = offset + HEADER_SIZE
    if check_crc and zlib.crc32(buf[start : start + length]) != crc:
        return "CRC mismatch"
    return None


def _reference_leaves(log_dir: Path, begin: int, count: int) -> list[bytes]:
    """Leaf hashes [begin, begin+count) from tree/leaves.bin, as far as it has them."""
    try:
        fd = os.open(log_dir / "tree/leaves.bin", os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        data = os.pread(fd, count * HASH, begin * HASH)
    finally:
        os.close(fd)
    return [data[i : i + HASH] for i in range(0, len(data) - len(data) % HASH, HASH)]


def _first_difference(a: list[bytes], b: list[bytes]) -> int:
    if a == b[: len(a)]:
        return -1
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


def _all_differ(a: list[bytes], b: list[bytes]) -> bool:
    return all(x != y for x, y in zip(a, b, strict=False))


def _typed_difference(table: pa.Table, derived: pa.Table) -> tuple[int, str]:
    """First row where a stored typed column (or seq) differs from the derived one, and which."""
    first, which = -1, ""
    for name in ["seq", *TYPED_SCHEMA.names]:
        stored, fresh = table.column(name), derived.column(name)
        same = pc.or_kleene(
            pc.fill_null(pc.equal(stored, fresh), False),
            pc.and_(pc.is_null(stored), pc.is_null(fresh)),
        )
        index = pc.index(same, False).as_py()
        if index >= 0 and (first < 0 or index < first):
            first, which = index, name
    return first, which


def _merge(
    results: Iterable[_Result], checks: list[Check], report: VerifyReport
) -> tuple[VerifyReport, bool]:
    """Walk the results in seq order: density and order, row findings, signed roots."""
    tree = merkle.CompactRange()
    state = {"check": 0, "verified": 0}
    expected = 0
    for result in results:
        task = result.task
        if result.vanished:
            return report, True
        if task.kind == "lake":
            report.files += 1
        else:
            report.segments += 1
        if result.start > expected:
            gap = Finding(
                "missing", expected, task.name, f"no lake file or WAL segment holds seq {expected}"
            )
            report.finding = gap
            return report, task.kind == "wal"
        first = _first_finding(_order_finding(result, expected), result)
        if first is not None:
            report.finding = first
            return report, False
        leaves = [result.leaves[i : i + HASH] for i in range(0, len(result.leaves), HASH)]
        bad = _extend(tree, leaves, checks, state)
        if bad is not None:
            report.finding = bad
            return report, False
        expected += len(leaves)
        if task.kind == "lake":
            report.sealed_records += len(leaves)
            if (
                result.root is not None
                and tree.size == task.last + 1
                and tree.root() != result.root
            ):
                kind: DamageKind = "modified" if result.sha_ok else "file_replaced"
                detail = "records do not hash to the root signed in the manifest"
                report.finding = Finding(kind, task.first, result.file, detail)
                return report, False
            if not result.sha_ok:
                detail = "file bytes differ from the sealed file (sha256), records check out"
                report.finding = Finding("file_replaced", task.first, result.file, detail)
                return report, False
        if result.torn is not None:
            row, reason, complete = result.torn
            seq = result.start + row
            if complete and seq < report.checkpoint_size:
                report.finding = Finding("wal_corrupt", seq, task.name, reason)
                return report, False
            report.notes.append(f"torn tail in {task.name}: {reason} (seq {seq})")
    report.records = expected
    report.root = base64.b64encode(tree.root()).decode()
    report.unattested = max(0, expected - report.checkpoint_size)
    if expected < report.checkpoint_size:
        detail = (
            f"only {expected} records remain; a signed checkpoint covers {report.checkpoint_size}"
        )
        report.finding = Finding("truncated", expected, None, detail)
    return report, False


def _first_finding(order: tuple[int, Finding] | None, result: _Result) -> Finding | None:
    """The earlier of the order finding and the result's own (row) finding.

    A forged record inserted before a real one fails the leaf check one row before its seq
    shows up twice: that is an insertion, not a modification.
    """
    local = result.finding
    if order is None or local is None:
        return local if order is None else order[1]
    row, found = order
    if found.kind == "inserted" and found.seq == local.seq:
        return found
    # On the same row, damage to the whole file or frame explains the order problem, while a
    # leaf mismatch is the symptom of records being out of place.
    whole = local.kind in ("file_missing", "file_replaced", "manifest_mismatch", "wal_corrupt")
    return local if result.row < row or (result.row == row and whole) else found


def _order_finding(result: _Result, expected: int) -> tuple[int, Finding] | None:
    """Where this result's claimed seqs stop being start, start+1, ..., and what that means."""
    seqs = result.seqs
    base = expected - result.start  # >0: leading records already covered (overlap)
    if base > 0:
        return 0, Finding(
            "inserted", result.start, result.task.name, f"seqs from {result.start} appear twice"
        )
    for i, seq in enumerate(seqs):
        want = expected + i
        if seq == want:
            continue
        name = result.file or result.task.name
        if seq < want:
            return i, Finding("inserted", seq, name, f"seq {seq} appears again at position {want}")
        if want in seqs[i + 1 :]:
            return i, Finding("reordered", want, name, f"seq {seq} stored where seq {want} belongs")
        return i, Finding("missing", want, name, f"seq {want} is absent (next stored is {seq})")
    if result.task.kind == "lake" and result.task.last + 1 != expected + len(seqs):
        return len(seqs), Finding(
            "missing", expected + len(seqs), result.file, "file ends before its manifest's range"
        )
    return None


def _extend(
    tree: merkle.CompactRange, leaves: list[bytes], checks: list[Check], state: dict[str, int]
) -> Finding | None:
    """Append leaves, comparing the root with each signed root whose tree size is reached."""
    pos = 0
    while state["check"] < len(checks):
        check = checks[state["check"]]
        take = check[0] - tree.size
        if take > len(leaves) - pos:
            break
        tree.extend(leaves[pos : pos + take])
        pos += take
        bad = _check_root(tree, check, state["verified"])
        if bad is not None:
            return bad
        state["verified"] = check[0]
        state["check"] += 1
    tree.extend(leaves[pos:])
    return None


def _check_root(tree: merkle.CompactRange, check: Check, lower: int) -> Finding | None:
    """None if the recomputed root matches the signed one; else where the damage must lie."""
    size, root, source, entry = check
    if tree.root() == root:
        return None
    if source == "from":
        detail = f"the log's first {size} records do not match the given checkpoint (a fork)"
        return Finding("rollback", lower, "from_checkpoint", detail)
    where = "checkpoints/history.log" if source == "history" else "checkpoints/latest"
    detail = f"records in [{lower}, {size}) do not hash to the root signed for size {size}"
    return Finding("modified", lower, where, detail, entry)
