"""Following a remote tiled log: one look at its checkpoint, judged against what was seen before.

:func:`observe` fetches ``<url>/checkpoint``, verifies its signature (and, through a hook, its
witnesses' cosignatures), then checks it against the remembered checkpoint with a consistency
proof built from the log's own tiles (:class:`~infertrail.audit.tiles.TileHashReader`,
:func:`~infertrail.audit.verifier_state.judge_by_proof`). The first time, with nothing
remembered, it checks that the tiles reproduce the checkpoint's root. The result is an
:class:`Observation`: ok, rollback, fork, invalid (a bad signature, or tiles that do not match
the checkpoint) or unreachable, with the numbers alert rules read (:meth:`Observation.signals`).

Remembering and alerting are the caller's (``infertrail.runtime.logwatch``): this module only
fetches over HTTP (:class:`HttpLog`, size-limited, with timeouts) and judges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx

from infertrail.audit.checkpoint import (
    MAX_NOTE_SIZE,
    Checkpoint,
    NoteError,
    NoteVerifier,
    open_checkpoint,
)
from infertrail.audit.cosignature import WitnessPolicy
from infertrail.audit.merkle import EMPTY_ROOT
from infertrail.audit.tiles import Tile, TileError, TileHashReader
from infertrail.audit.verifier_state import Remembered, Verdict, judge_by_proof

__all__ = [
    "SIGNALS",
    "CosignatureCheck",
    "FetchError",
    "HttpLog",
    "Observation",
    "observe",
    "witness_quorum",
]

ObservationKind = Literal["ok", "rollback", "fork", "invalid", "unreachable"]
# Hook for witness cosignatures (c2sp.org/tlog-cosignature): given the signed checkpoint note,
# return what was verified (e.g. "2 of 3 witnesses") or raise NoteError when the policy fails.
CosignatureCheck = Callable[[bytes], str]

#: Signals an observation reports, for alert rules (docs/verification.md).
SIGNALS = {
    "tlog.fork": "1 when the log contradicts the remembered checkpoint, else 0",
    "tlog.rollback": "1 when the log presents a smaller tree than remembered, else 0",
    "tlog.invalid": "1 when its checkpoint or tiles do not verify, else 0",
    "tlog.unreachable": "1 when the checkpoint or a tile could not be fetched, else 0",
    "tlog.seconds_since_growth": "seconds since the log was last seen to grow",
}
_MAX_TILE = 256 * 32  # a full hash tile
_MAX_BUNDLE = 256 * (2 + 0xFFFF)  # 256 entries of at most 65,535 bytes


class FetchError(RuntimeError):
    """A resource of the log could not be fetched (network, HTTP status, oversized answer)."""


class HttpLog:
    """GETs a tiled log's resources under ``url`` (its prefix), with limits.

    Any answer but 200 is a FetchError naming the path and status; bodies larger than the
    format allows are refused while reading. ``client`` (an ``httpx.Client``) is for tests;
    by default one is made with ``timeout_s`` and closed by :meth:`close`.
    """

    def __init__(
        self, url: str, *, timeout_s: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"log URL must be http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._own = client is None
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def checkpoint(self) -> bytes:
        """The raw ``<url>/checkpoint`` note."""
        return self.get("checkpoint", MAX_NOTE_SIZE)

    def tile(self, tile: Tile) -> bytes:
        """The raw bytes of a tile (entry bundles decompressed by the HTTP client)."""
        return self.get(tile.path(), _MAX_BUNDLE if tile.entries else _MAX_TILE)

    def get(self, path: str, limit: int) -> bytes:
        """``<url>/<path>``, at most ``limit`` bytes; FetchError otherwise."""
        target = f"{self.url}/{path}"
        try:
            with self._client.stream("GET", target) as response:
                if response.status_code != 200:
                    raise FetchError(f"GET {target}: HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"GET {target}: answer over {limit} bytes")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {target}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._own:
            self._client.close()


@dataclass(frozen=True)
class Observation:
    """One look at the log: what it presented and how that relates to what was remembered."""

    at: datetime
    kind: ObservationKind
    detail: str
    checkpoint: Checkpoint | None = None  # what the log presented, signature verified
    note: bytes | None = None
    remembered: Remembered | None = None  # what was remembered before this look
    verdict: Verdict | None = None
    witnesses: str = ""  # what the cosignature hook verified ("" without one)
    fetched: list[str] = field(default_factory=list)  # tile paths fetched for the proof

    @property
    def grew(self) -> bool:
        """True when the log is consistent and larger than remembered (or seen first)."""
        if self.kind != "ok" or self.checkpoint is None:
            return False
        return self.remembered is None or self.checkpoint.size > self.remembered.checkpoint.size

    def seconds_since_growth(self) -> float:
        """Seconds since the log was last seen to grow (0 when it grew in this look)."""
        if self.grew or self.remembered is None:
            return 0.0
        return max(0.0, (self.at - self.remembered.verified_at).total_seconds())

    def signals(self) -> dict[str, float]:
        """The values alert rules read (:data:`SIGNALS`); only reachability when unreachable."""
        out = {
            "tlog.unreachable": 1.0 if self.kind == "unreachable" else 0.0,
            "tlog.seconds_since_growth": self.seconds_since_growth(),
        }
        if self.kind != "unreachable":  # nothing known about the rest: they do not count
            for kind in ("fork", "rollback", "invalid"):
                out[f"tlog.{kind}"] = 1.0 if self.kind == kind else 0.0
        return out


def observe(
    log: HttpLog,
    verifier: NoteVerifier,
    origin: str,
    remembered: Remembered | None,
    now: datetime,
    *,
    cosignatures: CosignatureCheck | None = None,
) -> Observation:
    """Fetch and judge the log's checkpoint once (see the module docstring); never raises
    for what the log serves: every failure is an observation."""
    try:
        note = log.checkpoint()
    except FetchError as exc:
        return Observation(now, "unreachable", str(exc), remembered=remembered)
    try:
        checkpoint = open_checkpoint(note, verifier, expected_origin=origin)
        witnesses = cosignatures(note) if cosignatures is not None else ""
    except NoteError as exc:
        detail = f"the checkpoint at {log.url}/checkpoint does not verify: {exc}"
        return Observation(now, "invalid", detail, note=note, remembered=remembered)
    reader = TileHashReader(checkpoint.size, log.tile)
    seen = Observation(now, "ok", "", checkpoint, note, remembered, None, witnesses)
    try:
        if remembered is None:
            return _first_look(seen, reader)
        verdict = judge_by_proof(remembered.checkpoint, checkpoint, reader.subtree_root)
    except FetchError as exc:
        return _with(seen, "unreachable", f"fetching tiles: {exc}", reader)
    kind: ObservationKind = "invalid" if verdict.kind == "bad_proof" else "ok"
    if verdict.kind in ("rollback", "fork"):
        kind = "rollback" if verdict.kind == "rollback" else "fork"
    return _with(seen, kind, verdict.detail, reader, verdict)


def witness_quorum(policy: WitnessPolicy) -> CosignatureCheck:
    """A cosignature check for :func:`observe`: a quorum of ``policy`` must have cosigned.

    A checkpoint a quorum did not cosign was not witnessed, whatever its own signature says:
    NoteError (so the look is ``invalid``), as for a cosignature that does not verify.
    """

    def check(note: bytes) -> str:
        found = policy.cosignatures(note)
        count = f"{len(found)} of the {len(policy.witnesses)} trusted witnesses"
        if not policy.satisfied(found):
            raise NoteError(f"{count} cosigned it; the quorum is {policy.quorum}")
        return f"{count} cosigned it ({', '.join(sorted(found))}; quorum {policy.quorum})"

    return check


def _first_look(seen: Observation, reader: TileHashReader) -> Observation:
    """Nothing remembered: the tiles must at least reproduce the checkpoint's root."""
    checkpoint = seen.checkpoint
    assert checkpoint is not None
    try:
        got = reader.subtree_root(0, checkpoint.size) if checkpoint.size else EMPTY_ROOT
    except TileError as exc:
        return _with(seen, "invalid", f"a tile is malformed: {exc}", reader)
    if got != checkpoint.root:
        detail = f"the log's tiles do not hash to its checkpoint of size {checkpoint.size}"
        return _with(seen, "invalid", detail, reader)
    return _with(seen, "ok", f"first look: size {checkpoint.size}, tiles match", reader)


def _with(
    seen: Observation,
    kind: ObservationKind,
    detail: str,
    reader: TileHashReader,
    verdict: Verdict | None = None,
) -> Observation:
    return Observation(
        seen.at,
        kind,
        detail,
        seen.checkpoint,
        seen.note,
        seen.remembered,
        verdict,
        seen.witnesses,
        [t.path() for t in reader.fetched],
    )
