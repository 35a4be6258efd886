"""What a verifier remembers about a log: its newest verified checkpoint, kept outside the log.

A log's own storage cannot prove that nothing was rolled back: whoever can write the data
directory can put an older (validly signed) checkpoint back and edit what the newer one covered.
A verifier that remembers the newest checkpoint it has verified can: every later view of the
log must extend it. This is the Go checksum database client's ``latest`` file
(golang.org/x/mod/sumdb, ``mergeLatest``/``checkTrees``) for infertrail logs, shared by
``infertrail audit verify`` (a local log) and ``infertrail audit monitor`` (a remote one).

The judgements are pure functions of signed checkpoints and hashes:

- :func:`judge_by_proof`: a newer checkpoint against the remembered one with a consistency
  proof built from hashes the log served (tiles, or a hash store); a fork comes with its
  evidence (the newer tree's root at the remembered size and a proof that verifies to it);
- :func:`judge_by_recomputed`: the log's newest checkpoint and the root of the remembered size
  recomputed from the records themselves (``verify`` recomputes every leaf anyway).

:class:`StateFile` keeps one remembered checkpoint per log in a small JSON file (default
``$XDG_CONFIG_HOME/infertrail/verifier/<sha256(origin)>.json``): replaced atomically, never
moved backwards or to a checkpoint that was not verified, updated by compare-and-swap so two
verifiers of one log cannot undo each other, and keeping the evidence of the last conflicts.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.merkle import consistency_proof_by, verify_consistency

__all__ = [
    "MAX_CONFLICTS",
    "STATE_FORMAT",
    "Remembered",
    "StateError",
    "StateFile",
    "Verdict",
    "default_state_path",
    "judge_by_proof",
    "judge_by_recomputed",
]

STATE_FORMAT = "infertrail-verifier-state/1"
MAX_CONFLICTS = 16  # evidence of the newest conflicts kept in the state file

VerdictKind = Literal["consistent", "rollback", "fork", "bad_proof"]
SubtreeRoot = Callable[[int, int], bytes]


class StateError(ValueError):
    """A state file that cannot be used: unreadable, damaged, or for another log or key."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tree(cp: Checkpoint) -> str:
    return f"size {cp.size} (root {_b64(cp.root)})"


@dataclass(frozen=True)
class Verdict:
    """How a newer view of a log relates to the remembered checkpoint.

    ``consistent``: it extends (or equals) the remembered tree. ``rollback``: it is smaller.
    ``fork``: it contradicts the remembered tree; ``root_at_remembered`` is the root the newer
    tree has at the remembered size and ``proof`` (when built from hashes) proves it is part of
    the newer signed tree: with both signed notes, evidence anyone can check. ``bad_proof``:
    the hashes offered do not even match the newer checkpoint, so nothing was proven.
    """

    kind: VerdictKind
    detail: str
    remembered: Checkpoint
    current: Checkpoint | None
    root_at_remembered: bytes | None = None
    proof: tuple[bytes, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the newer view is consistent with the remembered checkpoint."""
        return self.kind == "consistent"

    def evidence(self) -> dict[str, Any]:
        """JSON-ready sizes, roots and proof (base64), for reports and the state file."""
        out: dict[str, Any] = {
            "remembered_size": self.remembered.size,
            "remembered_root": _b64(self.remembered.root),
        }
        if self.current is not None:
            out |= {"size": self.current.size, "root": _b64(self.current.root)}
        if self.root_at_remembered is not None:
            out["root_at_remembered_size"] = _b64(self.root_at_remembered)
        if self.proof:
            out["consistency_proof"] = [_b64(h) for h in self.proof]
        return out


def judge_by_proof(
    remembered: Checkpoint, current: Checkpoint, subtree_root: SubtreeRoot
) -> Verdict:
    """Judge ``current`` against ``remembered`` with hashes from ``subtree_root(begin, end)``.

    The hashes are not trusted: a consistency proof built from them either verifies between
    the two signed roots (consistent), or verifies from the newer tree's own root at the
    remembered size to the newer signed root (a fork, proven), or verifies nothing (bad_proof:
    the log serves hashes that do not match its own checkpoint). A smaller tree is a rollback;
    the same size with another root is a fork. ``subtree_root`` may raise ValueError for data
    it cannot read (a malformed tile): that is a bad_proof too.
    """
    if current.origin != remembered.origin:
        raise ValueError(f"origins differ: {current.origin!r} vs {remembered.origin!r}")
    if current.size < remembered.size:
        detail = (
            f"the log presents {_tree(current)}, smaller than the remembered {_tree(remembered)}"
        )
        return Verdict("rollback", detail, remembered, current)
    if current.size == remembered.size:
        if current.root == remembered.root:
            return Verdict("consistent", "the log is where it was", remembered, current)
        detail = (
            f"two signed checkpoints of size {current.size} with different roots: "
            f"{_b64(current.root)} now, {_b64(remembered.root)} remembered"
        )
        return Verdict("fork", detail, remembered, current, current.root)
    if remembered.size == 0:  # every tree extends the empty one
        return Verdict("consistent", f"grew from 0 to {current.size}", remembered, current)
    try:
        proof = tuple(consistency_proof_by(subtree_root, remembered.size, current.size))
        if verify_consistency(remembered.size, current.size, remembered.root, current.root, proof):
            detail = f"grew from {remembered.size} to {current.size}, consistently"
            return Verdict("consistent", detail, remembered, current, proof=proof)
        theirs = subtree_root(0, remembered.size)
    except ValueError as exc:
        detail = f"cannot build a consistency proof from the log's hashes: {exc}"
        return Verdict("bad_proof", detail, remembered, current)
    if verify_consistency(remembered.size, current.size, theirs, current.root, proof):
        detail = (
            f"the log's {_tree(current)} has root {_b64(theirs)} at size {remembered.size}, "
            f"where the remembered checkpoint has {_b64(remembered.root)}"
        )
        return Verdict("fork", detail, remembered, current, theirs, proof)
    detail = (
        f"the hashes the log serves do not match its own checkpoint of {_tree(current)}: "
        "no consistency proof verifies"
    )
    return Verdict("bad_proof", detail, remembered, current)


def judge_by_recomputed(
    remembered: Checkpoint,
    newest: Checkpoint | None,
    records: int,
    root_at_remembered: bytes | None,
) -> Verdict:
    """Judge a log whose records were re-hashed against its own newest signed checkpoint.

    ``newest``: the largest checkpoint the log holds (None: none at all); ``records``: how many
    records it holds; ``root_at_remembered``: their root at the remembered size, recomputed
    from the records (None if fewer records). A newest checkpoint below the remembered size is
    a rollback of the checkpoint store, whose detail says whether the records still match the
    remembered root, were changed, or are missing; one at or above it whose records give
    another root at the remembered size is a fork.
    """
    have = newest.size if newest is not None else 0
    if have < remembered.size:
        where = f"newest signed checkpoint has size {have}" if newest else "has no checkpoint"
        head = (
            f"the remembered checkpoint has {_tree(remembered)}; the log's {where}: "
            "its checkpoints were rolled back"
        )
        if records < remembered.size:
            tail = f"; records from {records} on are gone"
        elif root_at_remembered == remembered.root:
            tail = "; its records still match the remembered root (only checkpoints were removed)"
        else:
            tail = (
                f"; records in [{have}, {remembered.size}) were changed: they no longer hash "
                "to the remembered root"
            )
        return Verdict("rollback", head + tail, remembered, newest, root_at_remembered)
    if remembered.size == 0 or root_at_remembered == remembered.root:
        return Verdict(
            "consistent", "the log extends the remembered checkpoint", remembered, newest
        )
    assert newest is not None
    got = _b64(root_at_remembered) if root_at_remembered is not None else "nothing"
    detail = (
        f"the log's records, which match its own checkpoint of {_tree(newest)}, give root "
        f"{got} at size {remembered.size}; the remembered checkpoint has "
        f"{_b64(remembered.root)}: the log forked"
    )
    return Verdict("fork", detail, remembered, newest, root_at_remembered)


def default_state_path(origin: str, environ: dict[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/infertrail/verifier/<sha256(origin)[:32]>.json`` (``~/.config``).

    The user's configuration directory, not the log's data directory: what guards against
    the log's operator must not live where the operator writes. StateError without a home.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or ""
    if not base:
        try:
            base = str(Path.home() / ".config")
        except RuntimeError as exc:
            raise StateError(f"no home directory for the verifier state ({exc})") from None
    name = hashlib.sha256(origin.encode()).hexdigest()[:32]
    return Path(base) / "infertrail" / "verifier" / f"{name}.json"


@dataclass(frozen=True)
class Remembered:
    """The remembered checkpoint of one log, as read from its state file."""

    checkpoint: Checkpoint
    note: bytes
    verifier_key: str
    verified_at: datetime  # when this checkpoint was first verified (the log last grew)
    checked_at: datetime  # when a verifier last found the log consistent with it
    source: str  # where it was verified: a log directory or a URL
    conflicts: tuple[dict[str, Any], ...] = field(default=())

    def same_tree(self, other: Remembered | None) -> bool:
        """True if ``other`` remembers the same tree (size and root)."""
        return other is not None and (other.checkpoint.size, other.checkpoint.root) == (
            self.checkpoint.size,
            self.checkpoint.root,
        )

    def to_json(self) -> dict[str, Any]:
        """The state file's JSON object."""
        cp = self.checkpoint
        return {
            "format": STATE_FORMAT,
            "origin": cp.origin,
            "verifier_key": self.verifier_key,
            "size": cp.size,
            "root": _b64(cp.root),
            "checkpoint": self.note.decode(),
            "verified_at": _iso(self.verified_at),
            "checked_at": _iso(self.checked_at),
            "source": self.source,
            "conflicts": list(self.conflicts),
        }


class StateFile:
    """One log's remembered checkpoint in a JSON file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, verifier: NoteVerifier, origin: str) -> Remembered | None:
        """The remembered checkpoint, verified with ``verifier``; None if there is no file.

        StateError if the file is damaged, names another log, was written under another
        verifier key (a changed key is what a log re-signed by someone else looks like), or
        holds a checkpoint that does not verify.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read verifier state {self.path}: {exc}") from exc
        return self._parse(raw, verifier, origin)

    def _parse(self, raw: bytes, verifier: NoteVerifier, origin: str) -> Remembered:
        where = f"verifier state {self.path}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"{where} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateError(f"{where} is not an {STATE_FORMAT} file")
        if data.get("origin") != origin:
            raise StateError(f"{where} is for log {data.get('origin')!r}, not {origin!r}")
        if data.get("verifier_key") != verifier.verifier_key:
            raise StateError(
                f"{where} remembers {origin!r} under verifier key {data.get('verifier_key')!r}, "
                f"but this check uses {verifier.verifier_key!r}. A log re-signed with a new key "
                "looks exactly like this; if the key was rotated on purpose, start a new state "
                "(--state NEW_FILE) after checking the new key out of band"
            )
        try:
            note = str(data["checkpoint"]).encode()
            cp = open_checkpoint(note, verifier, expected_origin=origin)
            remembered = Remembered(
                cp,
                note,
                verifier.verifier_key,
                _parse_time(data["verified_at"]),
                _parse_time(data["checked_at"]),
                str(data.get("source", "")),
                tuple(c for c in data.get("conflicts", []) if isinstance(c, dict)),
            )
        except (KeyError, TypeError, ValueError, NoteError) as exc:
            raise StateError(f"{where} is damaged: {exc}") from None
        if (data.get("size"), data.get("root")) != (cp.size, _b64(cp.root)):
            raise StateError(f"{where} is damaged: its size/root do not match its checkpoint")
        return remembered

    def advance(
        self,
        note: bytes,
        verifier: NoteVerifier,
        origin: str,
        *,
        source: str,
        seen: Remembered | None,
        now: datetime,
    ) -> tuple[str, Remembered | None]:
        """Remember ``note`` (verified and consistent with ``seen``, what was loaded before).

        Compare-and-swap: if another verifier changed the file since ``seen`` was loaded, the
        file is left as it is (this note was checked against ``seen``, not against theirs) and
        the outcome is ``"changed"``. Otherwise ``"created"``, ``"advanced"`` (a larger tree)
        or ``"unchanged"`` (the same tree; only ``checked_at`` moves). Never backwards:
        ValueError for a smaller tree, or another root at the same size.
        """
        cp = open_checkpoint(note, verifier, expected_origin=origin)
        with self._locked():
            current = self.load(verifier, origin)
            if not _same(current, seen):
                return "changed", current
            if current is not None:
                old = current.checkpoint
                if cp.size < old.size or (cp.size == old.size and cp.root != old.root):
                    raise ValueError(
                        f"refusing to move the remembered checkpoint from {_tree(old)} "
                        f"to {_tree(cp)}"
                    )
                if cp.size == old.size:
                    updated = replace(current, checked_at=now, source=source)
                    self._write(updated)
                    return "unchanged", updated
            conflicts = current.conflicts if current is not None else ()
            new = Remembered(cp, note, verifier.verifier_key, now, now, source, conflicts)
            self._write(new)
            return ("created" if current is None else "advanced"), new

    def record_conflict(
        self,
        kind: str,
        detail: str,
        evidence: Mapping[str, Any],
        note: bytes | None,
        verifier: NoteVerifier,
        origin: str,
        *,
        source: str,
        now: datetime,
    ) -> None:
        """Keep the evidence of a rollback or fork (``Verdict.evidence``, and the ``note`` the
        log presented) next to the remembered checkpoint.

        The remembered checkpoint itself stays; the newest ``MAX_CONFLICTS`` conflicts are kept.
        Nothing is written when nothing is remembered yet (there is nothing to conflict with).
        """
        with self._locked():
            current = self.load(verifier, origin)
            if current is None:
                return
            entry = {
                "seen_at": _iso(now),
                "kind": kind,
                "detail": detail,
                "source": source,
                "checkpoint": note.decode() if note is not None else None,
                **evidence,
            }
            conflicts = (*current.conflicts, entry)[-MAX_CONFLICTS:]
            self._write(replace(current, conflicts=conflicts))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on ``<state>.lock`` for a read-compare-write of the state."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, remembered: Remembered) -> None:
        """Temp file, fsync, rename, fsync of the directory: the old or the new state, whole."""
        data = (json.dumps(remembered.to_json(), indent=2, sort_keys=True) + "\n").encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _same(a: Remembered | None, b: Remembered | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.same_tree(b)


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"timestamp must be a string, got {text!r}")
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return at.astimezone(UTC)
