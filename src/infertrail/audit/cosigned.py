"""Checkpoints the witnesses cosigned, kept beside the log, and a witness's own copy of them.

In ``<log_dir>/checkpoints/``:

- ``cosigned``: the newest checkpoint a quorum of witnesses cosigned (published), with the log's
  signature line and every witness's cosignature line on it;
- ``cosigned.log``: some of those, framed like ``history.log``: one kept per
  ``history_interval_s`` at most (to locate damage between two of them);
- ``witnesses/<percent-encoded witness name>``: the newest checkpoint each witness cosigned,
  with its cosignature.

The publisher (:mod:`infertrail.runtime.witnesses`) writes them; ``audit verify`` reads them.
They are evidence, not trust: whoever can write the directory can delete or roll them back, but
cannot forge a cosignature. What the witnesses themselves keep is out of the operator's reach:
:func:`fetch_witness_checkpoint` asks an infertrail witness for it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

import httpx

from infertrail.audit.checkpoint import MAX_NOTE_SIZE, NoteVerifier
from infertrail.audit.cosignature import WitnessPolicy
from infertrail.audit.framing import (
    LogCorruptedError,
    encode_frame,
    fsync_dir,
    read_frames,
    write_all,
)
from infertrail.audit.witnessed import Witnessed, open_witnessed

__all__ = [
    "CHECKPOINT_ROUTE",
    "NOT_COSIGNED",
    "CosignedStore",
    "WitnessFetchError",
    "collect_witnessed",
    "fetch_witness_checkpoint",
]

#: The infertrail witness's read route, below its URL: ``GET /checkpoint/<origin>``.
CHECKPOINT_ROUTE = "/checkpoint/"
#: How its 404 answer starts when it follows the log but has cosigned nothing yet.
NOT_COSIGNED = b"no checkpoint cosigned for "

PUBLISHED = "cosigned"
HISTORY = "cosigned.log"
WITNESSES = "witnesses"


class WitnessFetchError(RuntimeError):
    """A witness could not be asked for its newest cosigned checkpoint."""


class CosignedStore:
    """The cosigned checkpoints under ``<log_dir>/checkpoints`` (module docstring)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        fsync: bool = True,
        history_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(log_dir) / "checkpoints"
        self._fsync = fsync
        self._interval = history_interval_s
        self._clock = clock
        self._kept_at: float | None = None

    def witness_path(self, name: str) -> Path:
        """Where the newest checkpoint cosigned by the witness ``name`` is kept."""
        return self.directory / WITNESSES / quote(name, safe="")

    def witness_note(self, name: str) -> bytes | None:
        """The newest checkpoint the witness ``name`` cosigned, as kept (unverified), or None."""
        return _read(self.witness_path(name))

    def write_witness(self, name: str, note: bytes) -> None:
        """Keep ``note`` (a checkpoint with the witness's cosignature) as its newest."""
        path = self.witness_path(name)
        path.parent.mkdir(exist_ok=True)
        self._replace(path, note)

    def published(self) -> bytes | None:
        """The newest quorum-cosigned checkpoint, as kept (unverified), or None."""
        return _read(self.directory / PUBLISHED)

    def publish(self, note: bytes) -> None:
        """Keep ``note`` as the newest quorum-cosigned checkpoint; add it to the history if due.

        History first: a crash between the two leaves ``cosigned`` behind the history, never
        a published checkpoint missing from both.
        """
        now = self._clock()
        if self._kept_at is None or now - self._kept_at >= self._interval:
            self._append_history(note)
            self._kept_at = now
        self._replace(self.directory / PUBLISHED, note)

    def history(self) -> list[bytes]:
        """The kept history of published checkpoints, oldest first (a torn tail is skipped)."""
        try:
            notes, _torn = read_frames(self.directory / HISTORY, repair=False)
        except LogCorruptedError:
            return []  # damaged in place: evidence lost, not forged (verify says so)
        return notes

    def all_notes(self) -> list[tuple[str, bytes]]:
        """Every cosigned checkpoint kept, as (where, note), for a verifier to check."""
        found = [(f"checkpoints/{HISTORY}#{i}", n) for i, n in enumerate(self.history())]
        published = self.published()
        if published is not None:
            found.append((f"checkpoints/{PUBLISHED}", published))
        directory = self.directory / WITNESSES
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                note = _read(path)
                if note is not None:
                    found.append((f"checkpoints/{WITNESSES}/{path.name}", note))
        return found

    def _append_history(self, note: bytes) -> None:
        fd = os.open(self.directory / HISTORY, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                write_all(fd, encode_frame(note))
                if self._fsync:
                    os.fdatasync(fd)
            except OSError:
                os.ftruncate(fd, end)  # a torn frame now would be damage under the next one
                raise
        finally:
            os.close(fd)

    def _replace(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        if self._fsync:
            fsync_dir(path.parent)


def fetch_witness_checkpoint(
    url: str, origin: str, timeout_s: float, client: httpx.Client | None = None
) -> bytes | None:
    """The newest checkpoint the witness at ``url`` cosigned for ``origin``; None if none.

    Uses the infertrail witness's ``GET <url>/checkpoint/<origin>``; WitnessFetchError if the
    witness cannot be reached, has no such route, or answers with something else.
    """
    target = url.rstrip("/") + CHECKPOINT_ROUTE + quote(origin, safe="/")
    http = client or httpx.Client(timeout=timeout_s)
    try:
        with http.stream("GET", target, timeout=timeout_s) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_NOTE_SIZE:
                    raise WitnessFetchError(f"{url}: answer is over {MAX_NOTE_SIZE} bytes")
    except httpx.HTTPError as exc:
        raise WitnessFetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
    finally:
        if client is None:
            http.close()
    if response.status_code == 404 and body.startswith(NOT_COSIGNED):
        return None
    if response.status_code != 200:
        raise WitnessFetchError(
            f"{url}: GET /checkpoint answered {response.status_code} (is it an infertrail "
            "witness? others do not serve what they cosigned)"
        )
    return body


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if len(data) <= MAX_NOTE_SIZE else None


def collect_witnessed(
    log_dir: Path,
    origin: str,
    verifier: NoteVerifier,
    witnesses: Sequence[tuple[str, str]],
    quorum: int | None,
    *,
    timeout_s: float,
    online: bool = True,
) -> tuple[list[Witnessed], list[str]]:
    """The witnessed checkpoints of the log in ``log_dir``, for ``audit verify``, and notes.

    ``witnesses``: (url, cosigner verifier key) pairs, ``quorum`` None: a majority. The copies
    kept beside the log are read, and with ``online`` every witness is asked what it cosigned
    (a witness that cannot be asked is a note, not a failure). ValueError for a bad key or
    quorum.
    """
    policy = WitnessPolicy.of([key for _, key in witnesses], quorum)
    notes = CosignedStore(log_dir).all_notes()
    problems = []
    if online:
        for (url, _), witness in zip(witnesses, policy.witnesses, strict=True):
            try:
                note = fetch_witness_checkpoint(url, origin, timeout_s)
            except WitnessFetchError as exc:
                problems.append(f"witness {witness.name} not asked: {exc}")
                continue
            if note is None:
                problems.append(f"witness {witness.name} has cosigned nothing of this log")
            else:
                notes.append((f"witness {witness.name}", note))
    witnessed, skipped = open_witnessed(notes, verifier, origin, policy)
    return witnessed, problems + skipped
