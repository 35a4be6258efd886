"""Getting RFC 3161 tokens for checkpoints: the TSA client and the tokens file.

:class:`TsaClient` sends a time-stamp query (SHA-256 imprint of the checkpoint body, a random
nonce, the signer's certificate requested) over HTTP and accepts only a response that checks
out (:func:`~infertrail.audit.timestamps.check_token`, nonce included): a token that would not
verify later is never stored. :class:`TimestampStore` appends tokens to the log's
``checkpoints/timestamps.jsonl`` under an exclusive lock, each made durable (fdatasync) before
the next. :func:`stamp_checkpoint` joins them: one token for a checkpoint larger than every one
already stamped, so tokens are obtained in the log's order (what ``verify`` expects of their
genTimes) by the service's background task and by ``infertrail audit timestamp`` alike.

Needs ``rfc3161-client`` (the ``timestamps`` extra) to be importable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from infertrail.audit.checkpoint import Checkpoint, NoteError
from infertrail.audit.framing import fsync_dir, write_all
from infertrail.audit.timestamps import (
    TIMESTAMPS_FILE,
    StampInfo,
    TimestampError,
    TrustRoots,
    check_token,
    encode_entry,
    note_body,
    parse_entry,
    split_lines,
)

__all__ = ["StampOutcome", "TimestampStore", "TsaClient", "TsaError", "stamp_checkpoint"]

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
#: A time-stamp response is a few kB (a signature and one certificate).
MAX_REPLY_BYTES = 256 * 1024

#: Why getting a token failed: the metric attribute and the health detail name it.
TsaReason = Literal[
    "connection", "timeout", "http_status", "content_type", "bad_reply", "untrusted"
]


class TsaError(RuntimeError):
    """The TSA gave no acceptable token; ``reason`` names the kind of failure."""

    def __init__(self, reason: TsaReason, message: str) -> None:
        super().__init__(message)
        self.reason: TsaReason = reason


class TsaClient:
    """Asks one TSA for tokens over HTTP(S) and keeps only those that check out.

    ``trust``: the roots a token's signer must chain to; ``timeout_s`` bounds each exchange
    (connect, send, each read). ``transport`` is for tests (an httpx transport).
    """

    def __init__(
        self,
        url: str,
        trust: TrustRoots,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"TSA URL must be http:// or https://, got {url!r}")
        if not timeout_s > 0:
            raise ValueError(f"TSA timeout must be > 0 seconds, got {timeout_s!r}")
        self.url = url
        self._trust = trust
        self._client = httpx.Client(timeout=timeout_s, transport=transport)

    def stamp(self, body: bytes) -> tuple[bytes, StampInfo]:
        """A token over checkpoint ``body`` (DER TimeStampResp) and what it says; else TsaError."""
        request = (
            TimestampRequestBuilder()
            .data(body)
            .hash_algorithm(HashAlgorithm.SHA256)
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        token = self._exchange(request.as_bytes())
        try:
            return token, check_token(token, body, self._trust, nonce=request.nonce)
        except TimestampError as exc:
            reason: TsaReason = "untrusted" if exc.kind == "untrusted" else "bad_reply"
            raise TsaError(reason, f"TSA {self.url} answered an unusable token: {exc}") from exc

    def _exchange(self, query: bytes) -> bytes:
        try:
            with self._client.stream(
                "POST", self.url, content=query, headers={"Content-Type": QUERY_TYPE}
            ) as answer:
                if answer.status_code != httpx.codes.OK:
                    raise TsaError(
                        "http_status", f"TSA {self.url} answered HTTP {answer.status_code}"
                    )
                kind = answer.headers.get("Content-Type", "").partition(";")[0].strip().lower()
                if kind != REPLY_TYPE:
                    raise TsaError(
                        "content_type",
                        f"TSA {self.url} answered {kind or 'no content type'!r}, not {REPLY_TYPE}",
                    )
                return _read_bounded(answer, self.url)
        except httpx.TimeoutException as exc:
            raise TsaError("timeout", f"TSA {self.url} timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise TsaError("connection", f"TSA {self.url} unreachable: {exc!r}") from exc

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _read_bounded(answer: httpx.Response, url: str) -> bytes:
    """The reply body, refusing one over MAX_REPLY_BYTES before reading it all."""
    chunks, total = [], 0
    for chunk in answer.iter_bytes():
        total += len(chunk)
        if total > MAX_REPLY_BYTES:
            raise TsaError("bad_reply", f"TSA {url} reply is over {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class TimestampStore:
    """The log's tokens file: appended under an exclusive lock, each line durable.

    Readers (``verify``) take no lock: a line is written with one ``write`` and only the last
    may be torn, which they ignore and the next append cuts off.
    """

    def __init__(self, log_dir: Path, *, fsync: bool = True) -> None:
        self.path = Path(log_dir) / TIMESTAMPS_FILE
        self._fsync = fsync

    @contextlib.contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[int | None]:
        """Hold the file's lock; yields the newest stamped size (-1: none), None if busy.

        ``wait=False``: yield None at once when another process holds it (and do nothing).
        """
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if created and self._fsync:
                fsync_dir(self.path.parent)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield None
                return
            yield _newest_size(fd)
        finally:
            os.close(fd)  # also releases the lock

    def append(self, note: bytes, token: bytes) -> None:
        """Append one token; call inside :meth:`locked`. Cuts a torn last line off first."""
        line = encode_entry(note, token)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            data = _read_all(fd)
            end = data.rfind(b"\n") + 1
            if end != len(data):
                os.ftruncate(fd, end)
            write_all(fd, line)
            if self._fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


def _newest_size(fd: int) -> int:
    """The largest checkpoint size among the file's readable entries (-1 if none)."""
    lines, _torn = split_lines(_read_all(fd))
    newest = -1
    for line in lines:
        try:
            newest = max(newest, Checkpoint.parse(note_body(parse_entry(line).note)).size)
        except (TimestampError, NoteError):
            continue  # damage is verify's to report; stamping goes on
    return newest


@dataclass(frozen=True, slots=True)
class StampOutcome:
    """What :func:`stamp_checkpoint` did: the new token's details, or why it made none."""

    info: StampInfo | None  # None: nothing to do (see ``skipped``)
    newest: int | None  # the largest stamped size now (-1: none; None: unknown, file busy)
    skipped: str = ""


def stamp_checkpoint(
    note: bytes, client: TsaClient, store: TimestampStore, *, wait: bool = True
) -> StampOutcome:
    """Get and keep a token for checkpoint ``note`` unless a checkpoint as large has one.

    Holds the store's lock from reading the newest stamped size to appending, so two stampers
    (the service and a cron job) never stamp out of order. ``wait=False``: skip when another
    holds it. The empty tree is never stamped. Raises TsaError (nothing stored), NoteError for
    a note that is not a checkpoint, OSError if the file cannot be written.
    """
    body = note_body(note)
    size = Checkpoint.parse(body).size
    if size == 0:
        return StampOutcome(None, None, "the log is empty")
    with store.locked(wait=wait) as newest:
        if newest is None:
            return StampOutcome(None, None, "another process is stamping")
        if size <= newest:
            return StampOutcome(None, newest, f"checkpoint {newest} already has a token")
        token, info = client.stamp(body)
        store.append(note, token)
    return StampOutcome(info, size)
