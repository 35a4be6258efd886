"""A witness's durable state: the newest checkpoint it cosigned for each log it follows.

One journal file of framed JSON entries ``{"origin", "size", "root", "checkpoint"}`` (the
checkpoint note as the log signed it, with this witness's cosignature line); the newest entry of
an origin is that log's state. An update is one frame appended and fdatasync'ed: the witness
persists before it answers (c2sp.org/tlog-witness). A crash mid-append leaves a torn tail, cut
at the next open; an entry that takes an origin back to a smaller tree is damage, refused. Once
the journal outgrows ``compact_bytes`` it is rewritten with one entry per log (temporary file,
fsync, rename). An exclusive lock on ``<journal>.lock`` keeps a second witness process off it.

Callers serialize :meth:`WitnessState.put` with the checks that precede it (the witness holds
one lock around check and persist, or two requests could roll a log back between them).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from infertrail.audit.framing import encode_frame, fsync_dir, read_frames, write_all
from infertrail.audit.merkle import HASH_SIZE

__all__ = ["LogState", "StateError", "WitnessState"]

_COMPACT_BYTES = 1 << 20


class StateError(RuntimeError):
    """The state cannot be used: damaged, or held by another witness process."""


@dataclass(frozen=True)
class LogState:
    """What the witness last cosigned for one log: its size, root and the cosigned note."""

    origin: str
    size: int
    root: bytes
    checkpoint: bytes

    def encode(self) -> bytes:
        """This entry as one journal payload (JSON, keys sorted)."""
        entry = {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "checkpoint": self.checkpoint.decode(),
        }
        return json.dumps(entry, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def decode(cls, payload: bytes) -> LogState:
        """Parse one journal payload; ValueError naming what is wrong."""
        entry = json.loads(payload)
        if not isinstance(entry, dict) or set(entry) != {"origin", "size", "root", "checkpoint"}:
            raise ValueError("entry must have exactly origin, size, root and checkpoint")
        origin, size, checkpoint = entry["origin"], entry["size"], entry["checkpoint"]
        if not isinstance(origin, str) or not origin or not isinstance(checkpoint, str):
            raise ValueError("origin and checkpoint must be strings")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative integer, got {size!r}")
        try:
            root = base64.b64decode(entry["root"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            root = b""
        if len(root) != HASH_SIZE:
            raise ValueError("root must be base64 of 32 bytes")
        return cls(origin, size, root, checkpoint.encode())


class WitnessState:
    """The journal at ``path``: opened (and locked) by one witness process at a time."""

    def __init__(
        self, path: Path, *, fsync: bool = True, compact_bytes: int = _COMPACT_BYTES
    ) -> None:
        """Open or create the journal, take its lock, load it (StateError if it cannot)."""
        self.path = Path(path)
        self._fsync = fsync
        self._compact_bytes = compact_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StateError(
                f"witness state {self.path} is in use by another witness process"
            ) from None
        try:
            self._logs = self._load()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _load(self) -> dict[str, LogState]:
        try:
            payloads, _torn = read_frames(self.path)  # a torn tail (a crash mid-append) is cut
        except Exception as exc:
            raise StateError(f"witness state {self.path} is damaged: {exc}") from exc
        logs: dict[str, LogState] = {}
        for number, payload in enumerate(payloads, start=1):
            try:
                entry = LogState.decode(payload)
            except ValueError as exc:
                raise StateError(f"witness state {self.path}, entry {number}: {exc}") from None
            previous = logs.get(entry.origin)
            if previous is not None and entry.size < previous.size:
                raise StateError(
                    f"witness state {self.path}, entry {number}: {entry.origin} goes back from "
                    f"size {previous.size} to {entry.size}"
                )
            logs[entry.origin] = entry
        return logs

    def get(self, origin: str) -> LogState | None:
        """What was last cosigned for ``origin``, or None if nothing yet."""
        return self._logs.get(origin)

    def put(self, entry: LogState) -> None:
        """Make ``entry`` the state of its log, durably, before returning.

        Refuses (StateError) an entry smaller than the current one: the caller's check failed.
        """
        previous = self._logs.get(entry.origin)
        if previous is not None and entry.size < previous.size:
            raise StateError(
                f"{entry.origin}: refusing to go back from {previous.size} to {entry.size}"
            )
        frame = encode_frame(entry.encode())
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            write_all(self._fd, frame)
            if self._fsync:
                os.fdatasync(self._fd)
        except OSError:
            # Cut a partial frame now: a later append after it would be damage in place.
            os.ftruncate(self._fd, end)
            raise
        self._logs[entry.origin] = entry
        if end + len(frame) > self._compact_bytes:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the journal with one entry per log (temporary file, fsync, rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = b"".join(encode_frame(e.encode()) for e in self._logs.values())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        if self._fsync:
            fsync_dir(self.path.parent)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        """Close the journal and release the lock (idempotent)."""
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1
