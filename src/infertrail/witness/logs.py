"""The logs a witness follows: each origin and the keys whose checkpoints it accepts.

Written as c2sp.org/tlog-policy ``log`` lines, ``log <vkey> [<url>]``: the vkey's key name is
the log's origin (tlog-policy requires it, and an infertrail log's key is named after its
origin), the URL is ignored. Blank lines and ``#`` comments are skipped; any other line is an
error. Several keys may name one origin (a key rotation); a key may appear once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infertrail.audit.checkpoint import NoteError, NoteVerifier

__all__ = ["KnownLogs", "LogsConfigError", "policy_log_keys"]


class LogsConfigError(ValueError):
    """A known-logs line is not ``log <vkey> [<url>]`` or its key is not a checkpoint key."""


@dataclass(frozen=True)
class KnownLogs:
    """Origin -> the verifiers of the keys that sign its checkpoints."""

    logs: Mapping[str, tuple[NoteVerifier, ...]]

    @classmethod
    def of(cls, vkeys: Iterable[str]) -> KnownLogs:
        """Known logs from checkpoint verifier keys (origin = key name)."""
        logs: dict[str, tuple[NoteVerifier, ...]] = {}
        seen: set[str] = set()
        for vkey in vkeys:
            try:
                verifier = NoteVerifier.from_key(vkey)
            except NoteError as exc:
                raise LogsConfigError(f"bad log key {vkey[:80]!r}: {exc}") from None
            if verifier.verifier_key in seen:
                raise LogsConfigError(f"log key {verifier.verifier_key} is listed twice")
            seen.add(verifier.verifier_key)
            logs[verifier.name] = (*logs.get(verifier.name, ()), verifier)
        return cls(logs)

    def verifiers(self, origin: str) -> tuple[NoteVerifier, ...]:
        """The keys trusted for ``origin`` (empty: the witness does not follow it)."""
        return self.logs.get(origin, ())

    def __len__(self) -> int:
        return len(self.logs)


def policy_log_keys(text: str, source: str) -> list[str]:
    """The vkeys of the tlog-policy ``log`` lines in ``text``; LogsConfigError names a bad line.

    ``source`` names the text in errors (a file name).
    """
    vkeys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] != "log" or len(fields) not in (2, 3):
            raise LogsConfigError(
                f"{source}, line {number}: expected 'log <vkey> [<url>]', got {line[:80]!r}"
            )
        vkeys.append(fields[1])
    return vkeys
