"""The witness's decisions on ``add-checkpoint`` (c2sp.org/tlog-witness@v1.0.0), without HTTP.

For a request body, in the order of the specification: 400 if it is malformed; 404 if the
checkpoint's origin is not a known log; 403 unless a key trusted for it signed it (unknown keys'
lines are ignored, a trusted key's bad signature refuses the note); 400 if the old size exceeds
the checkpoint's; then, under one lock with the state update: 409 (``text/x.tlog.size``, the
size last cosigned) unless the old size is that size; 409 if it is the checkpoint's size too but
the roots differ; 422 if a proof from size 0 is not empty, or the consistency proof from the
cosigned tree does not verify. Otherwise the checkpoint is cosigned, stored durably, and the
cosignature line answered (200). A checkpoint validly signed by the log but not consistent with
the cosigned one is evidence the log forked: it is logged, never cosigned.

A rollback (a checkpoint smaller than the one cosigned) can only arrive with an old size that is
not the witness's (409) or above the checkpoint's (400): it is never cosigned either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from infertrail.audit.checkpoint import Checkpoint, NoteError, split_note
from infertrail.audit.cosignature import CosignatureSigner, add_signature_lines, signature_line
from infertrail.audit.merkle import EMPTY_ROOT, verify_consistency
from infertrail.audit.witness_protocol import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    ProtocolError,
    size_answer,
)
from infertrail.witness.logs import KnownLogs
from infertrail.witness.state import LogState, WitnessState

__all__ = ["Answer", "Witness"]

_log = logging.getLogger("infertrail.witness")

TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body and content type."""

    status: int
    body: bytes
    content_type: str = TEXT

    @classmethod
    def error(cls, status: int, reason: str) -> Answer:
        """A refusal with a one-line reason."""
        return cls(status, reason.encode() + b"\n")


class Witness:
    """Cosigns the checkpoints of ``logs`` that extend what it cosigned before (``state``).

    Thread-safe: requests may be handled concurrently; check and persist happen under one lock.
    """

    def __init__(
        self,
        signer: CosignatureSigner,
        logs: KnownLogs,
        state: WitnessState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.logs = logs
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()

    def add_checkpoint(self, body: bytes) -> Answer:
        """Judge one ``add-checkpoint`` request body; cosign and persist it when it is sound."""
        try:
            request = AddCheckpoint.parse(body)
            text, signatures = split_note(request.checkpoint)
        except (ProtocolError, NoteError) as exc:
            return Answer.error(400, f"malformed request: {exc}")
        origin = text.split(b"\n", 1)[0].decode()
        verifiers = self.logs.verifiers(origin)
        if not verifiers:
            return Answer.error(404, f"unknown log origin {origin[:100]!r}")
        trusted = [
            v for v in verifiers if any(n == v.name and k == v.key_id for n, k, _ in signatures)
        ]
        if not trusted:
            return Answer.error(403, f"no signature from a key trusted for {origin}")
        try:
            for verifier in trusted:
                verifier.verify(request.checkpoint)
        except NoteError as exc:
            return Answer.error(403, str(exc))
        try:
            checkpoint = Checkpoint.parse(text)
        except NoteError as exc:
            return Answer.error(400, f"malformed checkpoint: {exc}")
        if request.old_size > checkpoint.size:
            return Answer.error(
                400,
                f"old size {request.old_size} is larger than the checkpoint's {checkpoint.size}",
            )
        log_lines = [
            signature_line(name, key_id + signature)
            for name, key_id, signature in signatures
            if any(name == v.name and key_id == v.key_id for v in trusted)
        ]
        with self._lock:
            return self._extend(request, text, checkpoint, log_lines)

    def _extend(
        self, request: AddCheckpoint, text: bytes, checkpoint: Checkpoint, log_lines: list[bytes]
    ) -> Answer:
        """The checks that depend on the state, and its update: run under the lock."""
        current = self._state.get(checkpoint.origin)
        size = 0 if current is None else current.size
        if request.old_size != size:
            return Answer(409, size_answer(size), SIZE_CONTENT_TYPE)
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            return Answer.error(422, "the root of the empty tree is SHA-256 of nothing")
        if current is None or size == 0:
            if request.proof:
                return Answer.error(422, "a consistency proof from size 0 must be empty")
        elif checkpoint.size == size:
            if checkpoint.root != current.root or request.proof:
                self._evidence(checkpoint, current, "the same size with another root")
                return Answer(409, size_answer(size), SIZE_CONTENT_TYPE)
        elif not verify_consistency(
            size, checkpoint.size, current.root, checkpoint.root, request.proof
        ):
            self._evidence(checkpoint, current, "a consistency proof that does not verify")
            return Answer.error(
                422, f"the consistency proof from size {size} to {checkpoint.size} does not verify"
            )
        cosignature = self.signer.cosign(text, int(self._clock()))
        note = add_signature_lines(text + b"\n" + b"".join(log_lines), [cosignature])
        self._state.put(LogState(checkpoint.origin, checkpoint.size, checkpoint.root, note))
        return Answer(200, cosignature)

    def checkpoint(self, origin: str) -> bytes | None:
        """The newest checkpoint cosigned for ``origin`` (with the cosignature), if any."""
        with self._lock:
            current = self._state.get(origin)
        return None if current is None else current.checkpoint

    def _evidence(self, checkpoint: Checkpoint, current: LogState, what: str) -> None:
        # Signed by the log's key yet not consistent with what was cosigned: proof of a fork
        # (or of a stolen key). Kept in the witness's log; never cosigned.
        _log.warning(
            "witness %s: %s sent size %d with %s; cosigned before: size %d. Refused.",
            self.signer.name,
            checkpoint.origin,
            checkpoint.size,
            what,
            current.size,
        )
