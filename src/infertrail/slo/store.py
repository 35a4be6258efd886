"""The SLO counts on disk, so that a restart keeps the error budget of the whole SLO window.

One JSON file: per SLO its fingerprint (SLI and model), the index of its newest bucket
(``last``) and its ``good`` and ``total`` counts, oldest bucket first, ending at ``last``. The
counts are copied under the counter's lock (two list copies per SLO) and written outside it;
the file is replaced atomically (temp file, rename). A crash loses at most the buckets counted
since the last save. Counts are restored only into an
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
        copies = [
            (slo, c.last, c.good[:], c.total[:])
            for slo in counter.slos
            for c in (counter.counts(slo.name),)
        ]
    slos = {}
    for slo, last, good, total in copies:
        oldest = (last + 1) % len(total)  # the ring's slot after the newest is its oldest
        good, total = good[oldest:] + good[:oldest], total[oldest:] + total[:oldest]
        first = next((i for i, n in enumerate(total) if n), len(total))
        slos[slo.name] = {
            "fingerprint": slo.fingerprint(),
            "last": last,
            "good": good[first:],
            "total": total[first:],
        }
    doc = {"version": FORMAT_VERSION, "bucket_s": counter.bucket_s, "slos": slos}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, separators=(",", ":")))  # one write: dump() makes many
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
            good, total = entry["good"], entry["total"]
            first = int(entry["last"]) - len(total) + 1
            pairs = enumerate(zip(good, total, strict=True))  # ValueError if lengths differ
            counter.restore(slo.name, [(first + i, g, n) for i, (g, n) in pairs if n])
        except (KeyError, TypeError, ValueError) as exc:
            raise CountsFileError(
                f"SLO counts {path}: bad buckets for {slo.name!r}: {exc}"
            ) from None
        restored.append(slo.name)
    return restored
