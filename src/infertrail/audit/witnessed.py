"""Checkpoints cosigned by the log's witnesses, as trust anchors for ``audit verify`` (pure).

A checkpoint signed by the log's key and cosigned by a witness the verifier trusts says: this
tree existed, and the witness saw it extend every tree of the log it saw before. The witnesses
keep that state out of the operator's reach, so a log rolled back below such a checkpoint, or
forked from it (its records rewritten and re-signed with the log's key, stolen or not), cannot
hide: the records recomputed by verify give another root at its size, or are too few.

:func:`open_witnessed` checks notes from wherever they came (the copies kept beside the log,
what each witness answers) and merges those of one tree; :func:`judge_witnessed` compares one
with the recomputed log and, when they disagree, says how and where, naming the witnesses.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.cosignature import WitnessPolicy

__all__ = ["Judgement", "Witnessed", "judge_witnessed", "open_witnessed"]


@dataclass(frozen=True)
class Witnessed:
    """One tree the log signed and witnesses cosigned: by whom, found where."""

    checkpoint: Checkpoint
    cosigners: tuple[str, ...]  # trusted witnesses whose cosignatures verified, sorted
    sources: tuple[str, ...]  # where its notes were found
    quorum: bool  # whether the cosigners make the policy's quorum

    @property
    def who(self) -> str:
        """The cosigners, for messages: ``witness a.example/w1 and b.example/w2``."""
        names = " and ".join(self.cosigners)
        return f"witness{'es' if len(self.cosigners) > 1 else ''} {names}"


@dataclass(frozen=True)
class Judgement:
    """How the log disagrees with a witnessed checkpoint: a rollback or a fork, from ``seq``."""

    kind: str  # "rollback" or "fork"
    seq: int
    detail: str


def open_witnessed(
    notes: Iterable[tuple[str, bytes]],
    verifier: NoteVerifier,
    origin: str,
    policy: WitnessPolicy,
) -> tuple[list[Witnessed], list[str]]:
    """The witnessed checkpoints among ``notes`` ((where, note) pairs), merged per tree.

    A note counts if the log's key signed it for ``origin`` and at least one trusted witness
    cosigned it. Others are skipped with a reason in the returned notes: a copy whose
    cosignature does not verify may have been tampered with, but it proves nothing either way.
    Sorted by tree size.
    """
    trees: dict[tuple[int, bytes], tuple[Checkpoint, set[str], list[str]]] = {}
    problems = []
    for where, note in notes:
        try:
            checkpoint = open_checkpoint(note, verifier, expected_origin=origin)
            cosignatures = policy.cosignatures(note)
        except NoteError as exc:
            problems.append(f"{where}: not used as a witnessed checkpoint: {exc}")
            continue
        if not cosignatures:
            problems.append(f"{where}: no cosignature of a trusted witness")
            continue
        _, names, found = trees.setdefault(
            (checkpoint.size, checkpoint.root), (checkpoint, set(), [])
        )
        names.update(cosignatures)
        found.append(where)
    witnessed = [
        Witnessed(cp, tuple(sorted(names)), tuple(found), policy.satisfied(names))
        for cp, names, found in trees.values()
    ]
    return sorted(witnessed, key=lambda w: w.checkpoint.size), problems


def judge_witnessed(
    witnessed: Witnessed,
    records: int,
    newest_size: int,
    recomputed: bytes | None,
    matched_below: int,
) -> Judgement | None:
    """None if the log agrees with ``witnessed``, else how it does not and from which seq.

    ``records``: how many the log holds; ``newest_size``: its newest signed checkpoint's size;
    ``recomputed``: the root its records give at the witnessed size (None if too few);
    ``matched_below``: the largest smaller witnessed size whose root the records still give
    (0: none). That, not the log's own checkpoints (which whoever holds its key can re-sign),
    bounds where changed records can start.

    - The records give the witnessed root: fine, unless the log's own newest checkpoint is
      smaller (its checkpoints were rolled back, the records are intact): a ``rollback``.
    - Too few records: a ``rollback``; records from ``records`` on are gone.
    - Another root, the log's newest checkpoint smaller: a ``rollback`` of the checkpoints with
      records changed in ``[matched_below, size)``.
    - Another root under the log's own newer checkpoints: a ``fork``, those checkpoints re-signed
      over other records (the log's key was used: stolen, or by its holder).
    """
    cp = witnessed.checkpoint
    tree = f"{witnessed.who} cosigned size {cp.size} (root {_b64(cp.root)})"
    if recomputed == cp.root:
        if newest_size >= cp.size:
            return None
        return Judgement(
            "rollback",
            newest_size,
            f"{tree}; the log's newest signed checkpoint has size {newest_size}: its "
            "checkpoints were rolled back (its records still match)",
        )
    if records < cp.size:
        return Judgement(
            "rollback",
            records,
            f"{tree}; the log holds only {records} records: it was rolled back, records from "
            f"{records} on are gone",
        )
    changed = (
        f"records in [{matched_below}, {cp.size}) do not hash to it (they give "
        f"{_b64(recomputed) if recomputed else 'nothing'})"
    )
    if newest_size < cp.size:
        return Judgement(
            "rollback",
            matched_below,
            f"{tree}; the log's newest signed checkpoint has size {newest_size}: its checkpoints "
            f"were rolled back and {changed}",
        )
    return Judgement(
        "fork",
        matched_below,
        f"{tree}; {changed}, yet the log's own checkpoints up to size {newest_size} are signed "
        "over them: the log forked, re-signed with its key after the witnesses saw it",
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
