"""The SLO counts on disk, so that a restart keeps the error budget of the whole SLO window.

One JSON file: per SLO its fingerprint (SLI and model) and the buckets that hold events, as
``[index, good, total]``. It is replaced atomically (temp file, rename) after evaluations; a
crash loses at most the buckets counted since the last save. Counts are restored only into an
SLO whose fingerprint and bucket width match: a changed SLI starts from zero, never from
events counted under another definition.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from infertrail.slo.sli import SLICounter

log = logging.getLogger("infertrail.slo")
FORMAT_VERSION = 1


class CountsFileError(RuntimeError):
    """A counts file that exists but cannot be read as one."""


def save_counts(counter: SLICounter, path: str | os.PathLike[str]) -> None:
    """Write every SLO's non-empty buckets to ``path`` (atomically)."""
    with counter.locked():
        slos = {
            slo.name: {
                "fingerprint": slo.fingerprint(),
                "buckets": counter.counts(slo.name).nonzero(),
            }
            for slo in counter.slos
        }
    doc = {"version": FORMAT_VERSION, "bucket_s": counter.bucket_s, "slos": slos}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        Path(tmp).replace(p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_counts(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed counts file, None if there is none; CountsFileError if it is damaged."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CountsFileError(f"cannot read SLO counts {p}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CountsFileError(f"SLO counts {p} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise CountsFileError(f"SLO counts {p}: not a version {FORMAT_VERSION} counts file")
    return doc


def load_counts(counter: SLICounter, path: str | os.PathLike[str]) -> list[str]:
    """Restore the saved buckets of every SLO that still counts the same events.

    Returns the names of the SLOs restored; SLOs whose definition changed are logged.
    """
    doc = read_counts(path)
    if doc is None:
        return []
    if doc.get("bucket_s") != counter.bucket_s:
        log.warning(
            "SLO counts in %s use %s s buckets, not %s s: starting from zero",
            path,
            doc.get("bucket_s"),
            counter.bucket_s,
        )
        return []
    saved = doc.get("slos", {})
    restored = []
    for slo in counter.slos:
        entry = saved.get(slo.name)
        if not isinstance(entry, dict):
            continue
        if entry.get("fingerprint") != slo.fingerprint():
            log.warning(
                "SLO %r changed what it counts: its saved counts are not restored", slo.name
            )
            continue
        try:
            counter.restore(slo.name, entry.get("buckets", []))
        except (TypeError, ValueError) as exc:
            raise CountsFileError(
                f"SLO counts {path}: bad buckets for {slo.name!r}: {exc}"
            ) from None
        restored.append(slo.name)
    return restored
