"""Audit log: the log's size, its newest signed checkpoint checked against the verifier key,
the checkpoint history, the witnesses' cosignatures and the RFC 3161 timestamps when
configured, and what the last ``infertrail audit verify`` on this host remembered.

Checkpoints are public (they are what the tlog-tiles API serves): every logged-in role sees
this page. Nothing here reads a record. Every signature shown as checked is checked here, on
each view, with the public keys only (the log's verifier key file, the witnesses' keys of the
settings, the TSA trust roots of the settings).

Query parameter: ``n``, how many history checkpoints to list (1..200, default 20).
"""

from __future__ import annotations

import base64
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.cosignature import CosignatureError, WitnessPolicy
from infertrail.audit.cosigned import CosignedStore
from infertrail.audit.framing import walk_frames
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.timestamps import (
    TIMESTAMPS_FILE,
    TimestampError,
    check_token,
    load_trust_roots,
    note_body,
    parse_entry,
    split_lines,
)
from infertrail.audit.verifier_state import StateError, StateFile, default_state_path
from infertrail.compliance.lakefiles import sealed_frontier
from infertrail.console.app import Console, PageContext, PageError

if TYPE_CHECKING:
    from infertrail.runtime.assembly import Runtime

HISTORY = "checkpoints/history.log"
#: How much of the end of an append-only file is read for its newest entries (the history
#: keeps one checkpoint a minute, so the whole file grows by ~0.4 MB a day).
_TAIL_BYTES = 256 * 1024
_MAX_N = 200


def register(console: Console) -> None:
    @console.page("auditlog", title="Audit log")
    def auditlog(ctx: PageContext) -> dict[str, Any]:
        unknown = sorted(set(ctx.request.query_params) - {"n"})
        if unknown:
            raise PageError(400, f"{unknown[0]}: unknown parameter; valid: n")
        text = ctx.param("n", "20")
        if not text.isdigit() or not 1 <= int(text) <= _MAX_N:
            raise PageError(400, f"n: {text[:20]!r} is not a whole number from 1 to {_MAX_N}")
        return build(ctx.runtime, int(text))


def build(runtime: Runtime, n: int) -> dict[str, Any]:
    """The page's data: ``n`` history checkpoints, newest first."""
    trail = runtime.audit
    if trail is None:
        return {"enabled": False}
    settings = runtime.settings
    log = trail.log
    log_dir = Path(log.log_dir)
    verifier, key_text, key_error = _verifier(settings.signing_key_file)
    sealed = None
    if runtime.compliance is not None:
        sealed = sealed_frontier(runtime.compliance.engine.files.manifest_names())
    history = [
        _checkpoint(note, verifier, log.origin) for note in _newest_frames(log_dir / HISTORY, n)
    ]
    history.reverse()
    for newer, older in itertools.pairwise(history):
        if newer["size"] is not None and older["size"] is not None:
            newer["growth"] = newer["size"] - older["size"]
    return {
        "enabled": True,
        "origin": log.origin,
        "size": log.size,
        "sealed": sealed,
        "verifier_key": key_text,
        "verifier_key_error": key_error,
        "newest": _checkpoint(log.latest_checkpoint, verifier, log.origin),
        "history": history,
        "n": n,
        "witnesses": _witnesses(runtime, log_dir),
        "timestamps": _timestamps(runtime, log_dir),
        "verification": _verification(verifier, log.origin),
    }


def _verifier(signing_key_file: Path) -> tuple[NoteVerifier | None, str | None, str | None]:
    """The log's verifier key (the public ``.pub`` file beside the signing key), parsed."""
    path = verifier_key_path(signing_key_file)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        return None, None, f"cannot read the verifier key file {path.name}: {exc.strerror}"
    try:
        return NoteVerifier.from_key(text), text, None
    except NoteError as exc:
        return None, text, f"the verifier key file {path.name} is malformed: {exc}"


def _checkpoint(note: bytes, verifier: NoteVerifier | None, origin: str) -> dict[str, Any]:
    """A checkpoint note, what it says, and whether its signature verifies under the key."""
    out: dict[str, Any] = {"note": note.decode("utf-8", "replace"), "size": None, "root": None,
                           "verified": None, "problem": None, "growth": None}  # fmt: skip
    if verifier is None:
        body = note[: note.rfind(b"\n\n") + 1]
        try:
            cp = Checkpoint.parse(body)
        except NoteError as exc:
            out["problem"] = f"not a checkpoint: {exc}"
            return out
        out["problem"] = "not checked: no verifier key"
    else:
        try:
            cp = open_checkpoint(note, verifier, expected_origin=origin)
            out["verified"] = True
        except NoteError as exc:
            out["verified"] = False
            out["problem"] = str(exc)
            return out
    out["size"] = cp.size
    out["root"] = base64.b64encode(cp.root).decode()
    return out


def _tail(path: Path) -> tuple[bytes, bool]:
    """The last :data:`_TAIL_BYTES` of ``path`` and whether that is the whole file (b"" and
    True when it is missing)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - _TAIL_BYTES))
            return f.read(), size <= _TAIL_BYTES
    except FileNotFoundError:
        return b"", True


def _newest_frames(path: Path, n: int) -> list[bytes]:
    """The newest ``n`` payloads of a framed append-only file, oldest first, from its end.

    A frame's start is found as the first offset from which intact frames (length and CRC-32)
    run exactly to the end; a chance match would need a CRC-32 collision. A file still being
    appended to may end in a partial frame: then nothing runs to the end, and the file is read
    again once.
    """
    for _ in range(2):
        buf, whole = _tail(path)
        if not buf:
            return []
        for start in range(1 if whole else len(buf)):
            frames, end, error = walk_frames(buf[start:])
            if error is None and frames and end == len(buf) - start:
                return [buf[start + o : start + o + ln] for o, ln in frames][-n:]
    return []


def _witnesses(runtime: Runtime, log_dir: Path) -> dict[str, Any] | None:
    """The witnesses' state: the published (quorum-cosigned) checkpoint and each witness's
    newest cosignature, verified with the witness keys of the settings."""
    publisher = runtime.witnesses
    if publisher is None:
        return None
    policy: WitnessPolicy = publisher.policy
    store = CosignedStore(log_dir)
    health = publisher.health()
    published = store.published()
    cosigners: list[str] = []
    published_problem = None
    if published is not None:
        try:
            cosigners = sorted(policy.cosignatures(published))
        except CosignatureError as exc:
            published_problem = str(exc)
    rows = []
    for witness in policy.witnesses:
        note = store.witness_note(witness.name)
        row: dict[str, Any] = {"name": witness.name, "size": None, "cosigned_at": None,
                               "problem": None}  # fmt: skip
        if note is None:
            row["problem"] = "has not cosigned a checkpoint yet"
        else:
            try:
                cosignature = witness.open(note)
                row["cosigned_at"] = cosignature.timestamp
                row["size"] = Checkpoint.parse(note_body(note)).size
            except NoteError as exc:
                row["problem"] = str(exc)
        rows.append(row)
    return {
        "quorum": policy.quorum,
        "count": len(policy.witnesses),
        "ok": health.ok,
        "reason": health.reason or None,
        "published_size": publisher.published_size or None,
        "unpublished": publisher.unpublished(),
        "published": None if published is None else published.decode("utf-8", "replace"),
        "cosigners": cosigners,
        "published_problem": published_problem,
        "witnesses": rows,
    }


def _timestamps(runtime: Runtime, log_dir: Path) -> dict[str, Any] | None:
    """The newest RFC 3161 token over a checkpoint, checked against the settings' trust roots."""
    settings = runtime.settings
    if settings.audit_tsa_url is None:
        return None
    buf, whole = _tail(log_dir / TIMESTAMPS_FILE)
    lines, _torn = split_lines(buf)
    if not whole:
        lines = lines[1:]  # the first may be the end of a line cut by the read
    out: dict[str, Any] = {"ok": None, "reason": None, "size": None, "gen_time": None,
                           "tsa": None, "problem": None}  # fmt: skip
    if runtime.timestamps is not None:
        health = runtime.timestamps.health()
        out["ok"], out["reason"] = health.ok, health.reason or None
    if not lines:
        out["problem"] = "no token obtained yet"
        return out
    try:
        entry = parse_entry(lines[-1])
        roots = settings.audit_tsa_roots_file
        if roots is None:
            out["problem"] = "not checked: audit_tsa_roots_file is not set"
            out["size"] = Checkpoint.parse(note_body(entry.note)).size
            return out
        trust = load_trust_roots(roots.read_bytes(), f"audit_tsa_roots_file {roots.name}")
        info = check_token(entry.token, note_body(entry.note), trust)
    except (TimestampError, NoteError, OSError, ValueError) as exc:
        out["problem"] = str(exc)
        return out
    out.update(size=info.checkpoint.size, gen_time=info.gen_time, tsa=info.tsa)
    return out


def _verification(verifier: NoteVerifier | None, origin: str) -> dict[str, Any]:
    """What ``infertrail audit verify`` on this host remembers of this log (its state file in
    the service user's configuration directory), or why there is nothing to show."""
    if verifier is None:
        return {"found": False, "problem": "no verifier key to check the remembered checkpoint"}
    try:
        path = default_state_path(origin)
        remembered = StateFile(path).load(verifier, origin)
    except StateError as exc:
        return {"found": False, "problem": str(exc)}
    if remembered is None:
        return {
            "found": False,
            "problem": "no 'infertrail audit verify' of this log has run as this user on this "
            "host (its state file is absent)",
        }
    return {
        "found": True,
        "problem": None,
        "size": remembered.checkpoint.size,
        "verified_at": remembered.verified_at,
        "checked_at": remembered.checked_at,
        "source": remembered.source,
        "conflicts": len(remembered.conflicts),
    }
