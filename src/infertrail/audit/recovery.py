"""Opening an audit log directory: its layout, the writer lock, and recovery after a crash.

On open, a torn WAL tail is cut (by the WAL scan), the hash store is brought back in line with
the WAL, and the checkpoint history must still match the recovered tree (no rollback). The
checkpoint writer lives here too: open writes a checkpoint when the newest one lags the tree.

Every acknowledged record was under a signed checkpoint before its caller heard of it (the
group-commit checkpoint of :mod:`infertrail.audit.commitnote`), so the WAL scan is told the
largest tree size a checkpoint on disk signs: damage to a record below it is tampering, and
open refuses it instead of cutting it as a torn tail. WAL copies of records already sealed into
the lake (``sealed``, written by ``retire_through``) are another matter: once sealed, the lake
holds the record, so a damaged copy is dropped (and reported) rather than stopping the log.

Every checkpoint replaces ``checkpoints/latest``; the append-only ``checkpoints/history.log``
keeps one at most every ``history_interval`` seconds (and the last one before close), so it
grows by ~187 bytes a minute, not a second: open parses and ``verify`` checks every entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from infertrail.audit.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from infertrail.audit.commitnote import COMMIT_FILE, SLOT_BYTES, CommitNoteFile, read_commit_notes
from infertrail.audit.framing import (
    LogCorruptedError,
    TornTail,
    encode_frame,
    fsync_dir,
    read_frames,
    write_all,
)
from infertrail.audit.hashstore import HashStore
from infertrail.audit.merkle import EMPTY_ROOT, consistency_proof_by, leaf_hash, verify_consistency
from infertrail.audit.wal import (
    SegmentWriter,
    WalState,
    cut_refused,
    drop_damaged_sealed,
    iter_records,
    scan_wal,
)

__all__ = [
    "HISTORY_RECHECK",
    "LOG_FORMAT",
    "SEALED_FILE",
    "CheckpointWriter",
    "LogLockedError",
    "LogParts",
    "RecoveryReport",
    "acquire_lock",
    "check_commit_notes",
    "check_history",
    "note_size",
    "open_parts",
    "prepare_layout",
    "read_sealed",
    "reconcile",
    "replace_file",
    "signed_coverage",
    "tree_root",
    "write_sealed",
]

LOG_FORMAT = 1
# Checkpoints at the end of the history whose signatures and consistency proofs are re-checked
# on every open; older entries get the cheap checks (framing, origin, sizes never shrink).
# Checking all of them is `verify`'s job: the history grows by one entry per interval.
HISTORY_RECHECK = 32
_COMPARE_CHUNK = 65536  # leaf hashes compared or appended per step during recovery
SEALED_FILE = "sealed"  # in the log directory: the last seq sealed into the lake (a hint)


class LogLockedError(RuntimeError):
    """Another process (or handle) already has this log open for writing."""


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``AuditLog.open`` found after an unclean shutdown and repaired."""

    wal_tail: TornTail | None  # torn end of the last WAL segment, cut off
    history_tail: TornTail | None  # torn end of checkpoints/history.log, cut off
    leaves_rebuilt: int  # leaf hashes re-derived from the WAL (the hash store lagged)
    leaves_dropped: int  # hash store leaves beyond the end of the WAL, cut off
    # Complete WAL records past what the failed handle acknowledged, cut off (reopen only)
    refused_dropped: int = 0
    # Sealed records whose WAL copy was damaged: the copies were dropped (the lake holds them)
    sealed_damaged: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LogParts:
    """The recovered, open pieces of a log directory that the writer takes over."""

    lock_fd: int
    wal: SegmentWriter
    hashes: HashStore
    checkpoints: CheckpointWriter
    latest_note: bytes
    recovery: RecoveryReport | None

    def close(self) -> None:
        """Close every file and release the writer lock, even if closing one of them fails.

        The first error is raised once all are closed: a log that failed on a full disk may
        fail again here (its last checkpoint reaching the history), and the lock must still be
        released, or the process could never reopen its own log.
        """
        with contextlib.ExitStack() as stack:  # callbacks run last-in first-out
            stack.callback(os.close, self.lock_fd)
            stack.callback(self.checkpoints.close)
            stack.callback(self.hashes.close)
            stack.callback(self.wal.close)


def open_parts(
    log_dir: Path,
    signer: NoteSigner,
    origin: str,
    *,
    segment_bytes: int,
    fsync: bool,
    history_interval: float = 0.0,
    acknowledged_size: int | None = None,
) -> LogParts:
    """Lock ``log_dir`` for writing, create or check its layout, recover it after a crash.

    A new checkpoint is signed when the newest one does not cover the recovered tree.
    ``acknowledged_size``, when this process reopens a log whose writer failed: how many
    records it acknowledged; WAL records past them were refused and are cut off (after the
    torn tail, exactly as any open cuts it), fewer is LogCorruptedError. Such a reopen always
    signs a checkpoint (kept in the history): the first after the fault, consistent with every
    one before it, and a write, so that a reopen while the fault lasts (a disk still full)
    fails here rather than at the next append. A damaged record that a signed checkpoint covers
    (history, ``latest`` or the group-commit checkpoint) is LogCorruptedError, never cut as a
    torn tail; damaged WAL copies of sealed records are dropped (``sealed_damaged``). Raises
    LogLockedError, LogCorruptedError (damage recovery must not repair) or ValueError.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    verifier = NoteVerifier.from_key(signer.verifier_key)
    with contextlib.ExitStack() as cleanup:
        lock_fd = acquire_lock(log_dir)
        cleanup.callback(os.close, lock_fd)
        prepare_layout(log_dir, signer, origin)
        hashes = HashStore(log_dir / "tree")
        cleanup.callback(hashes.close)
        sealed_damaged = drop_damaged_sealed(
            log_dir / "wal", read_sealed(log_dir), hashes.size, index_dir=log_dir / "wal-index"
        )
        covered, covered_by = signed_coverage(
            log_dir / "checkpoints", verifier, origin, acknowledged_size
        )
        wal_state = scan_wal(log_dir / "wal", covered=covered, covered_by=covered_by)
        refused = 0
        if acknowledged_size is not None:
            wal_state, refused = cut_refused(
                log_dir / "wal", wal_state, acknowledged_size, index_dir=log_dir / "wal-index"
            )
        rebuilt, dropped = reconcile(log_dir / "wal", wal_state, hashes)
        history_tail, latest, kept = check_history(
            log_dir / "checkpoints", verifier, origin, hashes
        )
        check_commit_notes(log_dir / "checkpoints", verifier, origin, hashes, acknowledged_size)
        checkpoints = CheckpointWriter(
            log_dir / "checkpoints", signer, origin, fsync, history_interval, kept, latest
        )
        cleanup.callback(checkpoints.close)
        reopen = acknowledged_size is not None
        if reopen or latest is None or note_size(latest) != hashes.size:
            latest = checkpoints.write(hashes.size, tree_root(hashes, hashes.size), keep=True)
        # Both slots: a reopen's refused batch may have left its note in one.
        checkpoints.reset_commit_notes(latest)
        wal = SegmentWriter(
            log_dir / "wal",
            wal_state,
            segment_bytes=segment_bytes,
            fsync=fsync,
            index_dir=log_dir / "wal-index",
        )
        repaired = (
            wal_state.torn_tail or history_tail or rebuilt or dropped or refused or sealed_damaged
        )
        report = RecoveryReport(
            wal_state.torn_tail, history_tail, rebuilt, dropped, refused, tuple(sealed_damaged)
        )
        parts = LogParts(lock_fd, wal, hashes, checkpoints, latest, report if repaired else None)
        cleanup.pop_all()
    return parts


def tree_root(hashes: HashStore, size: int) -> bytes:
    """MTH of the first ``size`` stored leaves, from the store's levels (a few hundred hashes)."""
    return EMPTY_ROOT if size == 0 else hashes.subtree_root(0, size)


class CheckpointWriter:
    """Signs checkpoints, replaces ``latest`` with each, and keeps some in the history.

    A checkpoint goes to the history when ``history_interval`` seconds have passed since the
    last one kept, when asked (``keep``), and at :meth:`close` if ``latest`` is newer than the
    history's newest; history first, then ``latest``, so a crash between leaves ``latest``
    behind the history, which recovery repairs. ``kept_size`` and ``latest``: the sizes of the
    history's newest entry and the ``latest`` note that recovery found.

    A history append that fails (a full disk) is cut back; if even that fails, nothing more is
    appended by this writer: a frame after a torn one would turn the torn tail, which the next
    open cuts, into damage in place, which it refuses.

    :meth:`write_commit` signs the checkpoint of each group commit and keeps the newest in
    ``checkpoints/commit`` (:mod:`infertrail.audit.commitnote`); neither ``latest`` nor the
    history sees those.
    """

    def __init__(
        self,
        cp_dir: Path,
        signer: NoteSigner,
        origin: str,
        fsync: bool,
        history_interval: float = 0.0,
        kept_size: int = -1,
        latest: bytes | None = None,
    ) -> None:
        if not history_interval >= 0:  # also refuses NaN
            raise ValueError(f"history_interval must be >= 0 seconds, got {history_interval}")
        self._latest = cp_dir / "latest"
        self._signer = signer
        self._origin = origin
        self._fsync = fsync
        self._interval = history_interval
        self._kept_size = kept_size  # size of the history's newest entry (-1: none)
        self._kept_at = time.monotonic()
        # latest, when it is newer than the history's newest entry (as recovery may find it)
        self._unkept = latest if latest is not None and note_size(latest) > kept_size else None
        # The largest note this log can sign must fit a commit slot (a long origin would not).
        widest = sign_checkpoint(Checkpoint(origin, 2**64 - 1, EMPTY_ROOT), signer)
        if len(widest) + 8 > SLOT_BYTES:
            raise ValueError(
                f"origin {origin[:40]!r}... and key name make checkpoints of {len(widest)} bytes; "
                f"at most {SLOT_BYTES - 8} fit the group-commit checkpoint's slot"
            )
        self._fd = os.open(cp_dir / "history.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._commits = CommitNoteFile(cp_dir / COMMIT_FILE)
        except BaseException:
            os.close(self._fd)
            raise
        self._torn = False  # a failed append could not be cut back: append nothing more

    def write(self, size: int, root: bytes, *, keep: bool = False) -> bytes:
        """Sign a checkpoint of the tree of ``size`` leaves, make it durable, return the note."""
        note = sign_checkpoint(Checkpoint(self._origin, size, root), self._signer)
        now = time.monotonic()
        if keep or self._kept_size < 0 or now - self._kept_at >= self._interval:
            self._keep(note, size, now)
        else:
            self._unkept = note
        replace_file(self._latest, note, self._fsync)
        return note

    def sign_commit(self, size: int, root: bytes) -> bytes:
        """Sign the checkpoint of a group commit; it goes nowhere until :meth:`keep_commit`."""
        return sign_checkpoint(Checkpoint(self._origin, size, root), self._signer)

    def keep_commit(self, note: bytes) -> None:
        """Keep a group commit's signed checkpoint in ``checkpoints/commit`` (no fsync).

        Call it only once the tree it signs is durable: the note may reach the disk before
        anything written later, never before what was fdatasynced earlier.
        """
        self._commits.write(note)

    def reset_commit_notes(self, note: bytes) -> None:
        """Put ``note`` (the checkpoint of the whole tree, as open signs it) in both slots."""
        self._commits.write(note)
        self._commits.write(note)

    def _keep(self, note: bytes, size: int, now: float) -> None:
        if self._torn:
            raise OSError(f"{self._latest.parent}: a failed history append could not be cut back")
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            write_all(self._fd, encode_frame(note))
            if self._fsync:
                os.fdatasync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, end)
            except OSError:
                self._torn = True
            raise
        self._kept_size, self._kept_at, self._unkept = size, now, None

    def close(self) -> None:
        """Append ``latest`` to the history if it is not there yet; close the file (idempotent)."""
        if self._fd < 0:
            return
        try:
            if self._unkept is not None and not self._torn:
                self._keep(self._unkept, note_size(self._unkept), time.monotonic())
        finally:
            os.close(self._fd)
            self._fd = -1
            self._commits.close()


def acquire_lock(log_dir: Path) -> int:
    """Take the log's exclusive writer lock (flock: released by the kernel if we die)."""
    fd = os.open(log_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise LogLockedError(
            f"audit log {log_dir} is already open for writing"
            + (f" (LOCK held by pid {holder})" if holder else "")
            + "; a log has one writer: give each process its own log directory (shard)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # The holder's pid is a hint for the message above: a full disk must not fail the open
    # (nor leak the locked descriptor, which would lock this process out of its own log).
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def replace_file(path: Path, data: bytes, fsync: bool) -> None:
    """Atomically replace ``path`` with ``data`` (temp file, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    if fsync:
        fsync_dir(path.parent)


def prepare_layout(log_dir: Path, signer: NoteSigner, origin: str) -> None:
    """Create the directories and log.json, or check log.json matches this origin and key."""
    for sub in ("wal", "tree", "checkpoints"):
        (log_dir / sub).mkdir(exist_ok=True)
    meta_path = log_dir / "log.json"
    if not meta_path.exists():
        meta = {"format": LOG_FORMAT, "origin": origin, "verifier_key": signer.verifier_key}
        replace_file(meta_path, json.dumps(meta, sort_keys=True).encode() + b"\n", True)
        return
    try:
        meta = json.loads(meta_path.read_bytes())
    except ValueError as exc:
        raise LogCorruptedError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != LOG_FORMAT:
        raise LogCorruptedError(f"{meta_path}: unsupported log format {meta!r}")
    if meta.get("origin") != origin:
        raise ValueError(f"log {log_dir} has origin {meta.get('origin')!r}, not {origin!r}")
    if meta.get("verifier_key") != signer.verifier_key:
        raise ValueError(
            f"log {log_dir} is signed by {meta.get('verifier_key')!r}; the signer's verifier key "
            f"is {signer.verifier_key!r}"
        )


def reconcile(wal_dir: Path, wal: WalState, hashes: HashStore) -> tuple[int, int]:
    """Bring the hash store in line with the WAL; return (leaves rebuilt, leaves dropped).

    Leaves present in both must agree. The store may lag (crash between WAL and store writes)
    or, if the WAL lost its tail, run ahead; it must cover everything below the WAL.
    """
    if not wal.segments and hashes.size:
        raise LogCorruptedError(
            f"{wal_dir} has no segments but the hash store has {hashes.size} leaves"
        )
    if hashes.size < wal.first_seq:
        raise LogCorruptedError(
            f"the hash store has {hashes.size} leaves but the WAL starts at seq {wal.first_seq}: "
            f"leaves {hashes.size}..{wal.first_seq - 1} exist nowhere"
        )
    overlap_end = min(hashes.size, wal.next_seq)
    dropped = hashes.size - overlap_end
    missing: list[bytes] = []
    stored: list[bytes] = []
    for seq, payload in iter_records(wal_dir, wal.first_seq, wal.next_seq):
        digest = leaf_hash(payload)
        if seq >= overlap_end:
            missing.append(digest)
            continue
        offset = (seq - wal.first_seq) % _COMPARE_CHUNK
        if offset == 0:
            stored = hashes.leaves(seq, min(seq + _COMPARE_CHUNK, overlap_end))
        if stored[offset] != digest:
            raise LogCorruptedError(
                f"leaf hash of seq {seq} in tree/leaves.bin does not match its WAL record"
            )
    if dropped:
        hashes.truncate(overlap_end)
    for start in range(0, len(missing), _COMPARE_CHUNK):
        hashes.append(missing[start : start + _COMPARE_CHUNK])
    return len(missing), dropped


def _note_text(note: bytes) -> bytes:
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    return note[: split + 1]


def note_size(note: bytes) -> int:
    """Tree size of a signed checkpoint note (its signature is not checked here)."""
    return Checkpoint.parse(_note_text(note)).size


def check_history(
    cp_dir: Path, verifier: NoteVerifier, origin: str, hashes: HashStore
) -> tuple[TornTail | None, bytes | None, int]:
    """Check the history and ``latest`` against the recovered tree.

    Returns the history's torn tail (cut off), the newest valid checkpoint note (``latest``,
    repaired from the history if a crash left it behind) and the size of the history's newest
    entry (-1 if empty). Every history entry: well framed, parses, right origin, sizes never
    shrink. The last HISTORY_RECHECK: valid signature and a consistency proof from each to the
    next. ``latest`` and the newest entry: valid signature, not larger than the tree (a
    rolled-back log), root equal to the tree's root at their size.
    """
    history_path = cp_dir / "history.log"
    notes, tail = read_frames(history_path)
    checkpoints: list[Checkpoint] = []
    recheck_from = max(0, len(notes) - HISTORY_RECHECK)
    for index, note in enumerate(notes):
        where = f"{history_path} entry {index}"
        try:
            if index >= recheck_from:
                cp = open_checkpoint(note, verifier, expected_origin=origin)
            else:
                cp = Checkpoint.parse(_note_text(note))
        except NoteError as exc:
            raise LogCorruptedError(f"{where}: {exc}") from exc
        if cp.origin != origin:
            raise LogCorruptedError(f"{where}: origin {cp.origin!r}, expected {origin!r}")
        if checkpoints and cp.size < checkpoints[-1].size:
            raise LogCorruptedError(
                f"{where}: size {cp.size} is smaller than the previous {checkpoints[-1].size}"
            )
        checkpoints.append(cp)
    latest_path = cp_dir / "latest"
    latest = latest_path.read_bytes() if latest_path.exists() else None
    if not checkpoints:
        if latest is not None:
            raise LogCorruptedError(f"{latest_path} exists but {history_path} is empty")
        return tail, None, -1
    newest = checkpoints[-1]
    _check_against_tree(newest, hashes, f"{history_path} entry {len(notes) - 1}")
    for old, new in zip(checkpoints[recheck_from:], checkpoints[recheck_from + 1 :], strict=False):
        if old.size == 0:
            continue
        proof = consistency_proof_by(hashes.subtree_root, old.size, new.size)
        if not verify_consistency(old.size, new.size, old.root, new.root, proof):
            raise LogCorruptedError(
                f"{history_path}: checkpoint at size {new.size} is not consistent with the one "
                f"at size {old.size}"
            )
    if latest is not None and latest != notes[-1]:
        try:
            current = open_checkpoint(latest, verifier, expected_origin=origin)
        except NoteError as exc:
            raise LogCorruptedError(f"{latest_path}: {exc}") from exc
        _check_against_tree(current, hashes, str(latest_path))
        if current.size >= newest.size:
            return tail, latest, newest.size  # newer than the history: not kept yet
    # Missing, or behind the history (a crash between the history append and the replace).
    replace_file(latest_path, notes[-1], True)
    return tail, notes[-1], newest.size


def signed_coverage(
    cp_dir: Path, verifier: NoteVerifier, origin: str, acknowledged_size: int | None = None
) -> tuple[int, str]:
    """The largest tree size a valid checkpoint on disk signs, and which file holds it.

    Looks at the history's newest entry, ``latest`` and the group-commit checkpoints; notes that
    do not verify count for nothing here (:func:`check_history` and :func:`check_commit_notes`
    say what is wrong with them). On a reopen (``acknowledged_size``), a group-commit checkpoint
    beyond what was acknowledged is the refused batch's, and does not count either.
    """
    candidates: list[tuple[bytes, str]] = []
    history, _ = read_frames(cp_dir / "history.log", repair=False)
    if history:
        candidates.append((history[-1], "checkpoints/history.log"))
    with contextlib.suppress(FileNotFoundError):
        candidates.append(((cp_dir / "latest").read_bytes(), "checkpoints/latest"))
    commit_source = f"checkpoints/{COMMIT_FILE}"
    candidates += [(note, commit_source) for note in read_commit_notes(cp_dir / COMMIT_FILE)]
    best, where = 0, ""
    for note, source in candidates:
        try:
            size = open_checkpoint(note, verifier, expected_origin=origin).size
        except NoteError:
            continue
        refused = acknowledged_size is not None and size > acknowledged_size
        if refused and source == commit_source:
            continue  # the refused batch's
        if size > best:
            best, where = size, source
    return best, where


def check_commit_notes(
    cp_dir: Path,
    verifier: NoteVerifier,
    origin: str,
    hashes: HashStore,
    acknowledged_size: int | None = None,
) -> None:
    """LogCorruptedError unless every intact group-commit checkpoint verifies and fits the tree.

    A slot a crash tore is no note (its frame fails its CRC) and is skipped; one that is intact
    but not signed by this log's key, or that says more records or another root than the
    recovered tree has, was put there by someone else, or the log was cut back.
    """
    path = cp_dir / COMMIT_FILE
    checkpoints = []
    for note in read_commit_notes(path):
        try:
            checkpoints.append(open_checkpoint(note, verifier, expected_origin=origin))
        except NoteError as exc:
            raise LogCorruptedError(f"{path}: {exc}") from exc
    for cp in sorted(checkpoints, key=lambda cp: cp.size, reverse=True):  # the newest first
        if acknowledged_size is not None and cp.size > acknowledged_size:
            continue  # the refused batch's (see signed_coverage); open overwrites it
        _check_against_tree(cp, hashes, str(path))


def read_sealed(log_dir: Path) -> int:
    """The last seq ``retire_through`` was told is sealed into the lake; -1 if none (a hint)."""
    try:
        text = (log_dir / SEALED_FILE).read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return -1
    return int(text) if text.strip().isdigit() and text.isascii() else -1


def write_sealed(log_dir: Path, seq: int, fsync: bool) -> None:
    """Record that records ``<= seq`` are sealed into the lake (before their WAL goes)."""
    replace_file(log_dir / SEALED_FILE, f"{seq}\n".encode(), fsync)


def _check_against_tree(cp: Checkpoint, hashes: HashStore, where: str) -> None:
    """LogCorruptedError unless the signed checkpoint ``cp`` matches the recovered tree."""
    if cp.size > hashes.size:
        raise LogCorruptedError(
            f"log rolled back: {where} says {cp.size} records, only {hashes.size} recovered"
        )
    root = EMPTY_ROOT if cp.size == 0 else hashes.subtree_root(0, cp.size)
    if root != cp.root:
        raise LogCorruptedError(
            f"the recovered tree's root at size {cp.size} differs from the signed checkpoint "
            f"({where})"
        )
