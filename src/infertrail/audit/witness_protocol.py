"""C2SP tlog-witness ``add-checkpoint``: the request body and the answers, for both sides.

A log (client) POSTs ``<submission prefix>/add-checkpoint`` with ``old <size>``, up to 63
base64 lines of an RFC 6962 consistency proof from that size, an empty line and the signed
checkpoint (c2sp.org/tlog-witness@v1.0.0). The witness answers 200 with cosignature lines, 409
``text/x.tlog.size`` with the size it last cosigned when ``old`` is not that size (or a checkpoint
of that size has another root), 400/403/404/422 otherwise. This module only encodes and parses;
the witness's decisions live in :mod:`infertrail.witness.service`, the client's in
:mod:`infertrail.runtime.witnesses`. No I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from infertrail.audit.checkpoint import MAX_NOTE_SIZE, MAX_SIGNATURES, strict_b64decode
from infertrail.audit.merkle import HASH_SIZE

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "MAX_ANSWER_SIZE",
    "MAX_PROOF_LINES",
    "MAX_REQUEST_SIZE",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "ProtocolError",
    "parse_cosignature_answer",
    "parse_size_answer",
    "size_answer",
]

ADD_CHECKPOINT_PATH = "/add-checkpoint"
#: The content type of a 409 answer, whose body is the witness's latest cosigned size.
SIZE_CONTENT_TYPE = "text/x.tlog.size"
#: A client MUST NOT send more (a proof for a 2^63-leaf tree has at most 63 hashes).
MAX_PROOF_LINES = 63
#: The old size line, 63 proof lines and the largest note a verifier here accepts.
MAX_REQUEST_SIZE = len("old 18446744073709551615\n") + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_SIZE
#: Cosignature lines of Ed25519 (~130 bytes) or ML-DSA-44 (~3.3 kB) keys: a generous bound.
MAX_ANSWER_SIZE = 64 * 1024

_OLD_LINE = re.compile(rb"old (0|[1-9][0-9]{0,19})")
_SIGNATURE_PREFIX = "\N{EM DASH} ".encode()
_MAX_SIZE = 2**64 - 1


class ProtocolError(ValueError):
    """A request or an answer does not follow c2sp.org/tlog-witness."""


@dataclass(frozen=True)
class AddCheckpoint:
    """An ``add-checkpoint`` request: the old size, the proof from it, the signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed note, exactly as the log signed it

    def __post_init__(self) -> None:
        if isinstance(self.old_size, bool) or not 0 <= self.old_size <= _MAX_SIZE:
            raise ProtocolError(f"old size must be in [0, 2^64 - 1], got {self.old_size!r}")
        if len(self.proof) > MAX_PROOF_LINES:
            raise ProtocolError(
                f"a consistency proof has at most {MAX_PROOF_LINES} hashes, got {len(self.proof)}"
            )
        if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in self.proof):
            raise ProtocolError(f"every proof hash must be {HASH_SIZE} bytes")
        if not self.checkpoint.endswith(b"\n"):
            raise ProtocolError("the checkpoint note must end with a newline")

    def encode(self) -> bytes:
        """The request body: ``old N``, one base64 hash per line, an empty line, the note."""
        lines = [b"old %d" % self.old_size, *(base64.b64encode(h) for h in self.proof)]
        return b"\n".join(lines) + b"\n\n" + self.checkpoint

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body strictly; ProtocolError says what is wrong (a 400 answer).

        The note itself is not checked here: its signatures are the witness's business.
        """
        if len(body) > MAX_REQUEST_SIZE:
            raise ProtocolError(f"request body is over {MAX_REQUEST_SIZE} bytes")
        head, blank, note = body.partition(b"\n\n")
        if not blank:
            raise ProtocolError("request has no empty line before the checkpoint")
        lines = head.split(b"\n")
        old = _OLD_LINE.fullmatch(lines[0])
        if old is None or int(old[1]) > _MAX_SIZE:
            raise ProtocolError(
                "the first line must be 'old <size>' (ASCII decimal, no leading zeros), "
                f"got {lines[0][:40]!r}"
            )
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise ProtocolError(
                f"at most {MAX_PROOF_LINES} consistency proof lines, got {len(lines) - 1}"
            )
        proof = []
        for number, line in enumerate(lines[1:], start=1):
            digest = _hash_line(line)
            if digest is None:
                raise ProtocolError(
                    f"consistency proof line {number} is not base64 of a {HASH_SIZE}-byte hash"
                )
            proof.append(digest)
        if not note:
            raise ProtocolError("request has no checkpoint after the empty line")
        return cls(int(old[1]), tuple(proof), note)


def size_answer(size: int) -> bytes:
    """The body of a 409 answer: the witness's latest cosigned size and a newline."""
    return b"%d\n" % size


def parse_size_answer(body: bytes) -> int:
    """The size in a 409 ``text/x.tlog.size`` body; ProtocolError if it is not one."""
    match = re.fullmatch(rb"(0|[1-9][0-9]{0,19})\n", body)
    if match is None or int(match[1]) > _MAX_SIZE:
        raise ProtocolError(f"a tlog size answer is a decimal and a newline, got {body[:40]!r}")
    return int(match[1])


def parse_cosignature_answer(body: bytes) -> Sequence[bytes]:
    """The signature lines of a 200 answer, each with its newline; ProtocolError otherwise.

    Only whole ``— <name> <base64>`` lines are accepted: an answer with an empty line could
    otherwise move the boundary between a note's text and its signatures when appended to it.
    """
    if len(body) > MAX_ANSWER_SIZE:
        raise ProtocolError(f"answer is over {MAX_ANSWER_SIZE} bytes")
    if not body or not body.endswith(b"\n"):
        raise ProtocolError("a cosignature answer is one or more lines, each ending in a newline")
    lines = body[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise ProtocolError(f"answer has {len(lines)} signature lines, over {MAX_SIGNATURES}")
    for number, line in enumerate(lines, start=1):
        name, space, encoded = line.removeprefix(_SIGNATURE_PREFIX).partition(b" ")
        if (
            not line.startswith(_SIGNATURE_PREFIX)
            or not name
            or not space
            or strict_b64decode(encoded.decode("ascii", "replace")) is None
        ):
            raise ProtocolError(f"answer line {number} is not a note signature line")
    return [line + b"\n" for line in lines]


def _hash_line(line: bytes) -> bytes | None:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return None
    digest = strict_b64decode(text)
    return digest if digest is not None and len(digest) == HASH_SIZE else None
