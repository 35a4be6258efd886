"""SQLite plumbing shared by the privacy stores: private files, WAL, durable, zeroing deletes."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from infertrail.privacy.errors import PrivacyError

_MODE = 0o600


def connect(
    path: Path,
    schema: Sequence[str],
    version: int,
    migrations: Mapping[int, Sequence[str]] | None = None,
) -> sqlite3.Connection:
    """Open (creating, mode 0600) the database at ``path``; create ``schema`` if it is new.

    An older file is upgraded in the same transaction: ``migrations[v]`` holds the statements
    that turn version ``v`` into ``v + 1``.

    WAL for concurrent readers; synchronous=FULL because an erasure or a new pseudonym must
    survive a power loss once the audit record that depends on it is durable; secure_delete so
    deleted rows (mappings, data keys) are overwritten, not left in free pages.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, _MODE))  # SQLite's -wal/-shm copy this mode
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PrivacyError(
            f"{path} has mode {mode:04o}; it must not be readable by group or others "
            f"(chmod 600 {path})"
        )
    steps = migrations or {}
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")
        with transaction(conn):
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found == 0:
                for statement in schema:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={int(version)}")
            elif found < version and all(v in steps for v in range(found, version)):
                for step in range(found, version):
                    for statement in steps[step]:
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={int(version)}")
            elif found != version:
                raise PrivacyError(
                    f"{path} has schema version {found}; this infertrail reads version {version}"
                )
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken up front (BEGIN IMMEDIATE): no upgrade deadlocks, no lost race."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def scrub(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it, so deleted secrets leave the WAL file too.

    Best effort: a concurrent reader can keep frames alive until the next checkpoint.
    """
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
