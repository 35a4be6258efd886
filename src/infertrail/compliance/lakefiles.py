"""Which lake files a query reads: partition pruning by the window, sealed files only.

A query reads the ``dt=YYYY-MM-DD/hour=HH/`` partitions that overlap its window, and in them only
files whose manifest exists, so a file left without its manifest by a crash (the sealer writes
the file first) is never read. Each hour directory is listed once; afterwards only manifests
that are new since the last query are opened, to learn which hour their file went to, so a warm
query costs one listing of ``_manifests/`` however long its window.

A month with a compaction (:mod:`infertrail.audit.compaction`) is read from its compacted copy
instead of the hour files the compaction lists; hour files sealed into it later (late
timestamps) are still read. Compaction manifests are verified once and cached; one that does not
verify, or lists an hour file that has no manifest, is a :class:`LakeIntegrityError`.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from dataclasses import dataclass
from datetime import timedelta

from fsspec.implementations.local import LocalFileSystem

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.compaction import compaction_names, month_bounds
from infertrail.audit.lake import (
    MANIFEST_DIR,
    MANIFEST_SUFFIX,
    LakeReader,
    Manifest,
    ManifestError,
    open_manifest,
)
from infertrail.audit.manifest import COMPACTION_DIR, CompactionManifest, open_compaction
from infertrail.compliance.filters import TimeWindow

__all__ = ["LakeFile", "LakeFiles", "LakeIntegrityError", "sealed_frontier"]

_STEM_RE = re.compile(r"\d{20}-\d{20}")
_MONTH_NOTE_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])\.json\.note")


class LakeIntegrityError(RuntimeError):
    """Stored data disagrees with itself (leaf hash, typed columns or manifests): run verify."""


@dataclass(frozen=True, slots=True)
class LakeFile:
    """A sealed lake file: its seq range and the path DuckDB reads it by."""

    first: int
    last: int
    path: str


def _range(stem: str) -> tuple[int, int]:
    first, last = stem.split("-")
    return int(first), int(last)


def sealed_frontier(manifest_names: list[str]) -> int:
    """First unsealed seq: the end of the contiguous run of manifests from seq 0."""
    expected = 0
    for name in manifest_names:
        first, last = _range(name[: -len(MANIFEST_SUFFIX)])
        if first != expected:
            raise LakeIntegrityError(
                f"lake manifests are not contiguous at {name} (expected first seq {expected}): "
                "run 'infertrail audit verify'"
            )
        expected = last + 1
    return expected


class LakeFiles:
    """The sealed files of a lake by hour partition, kept current as the sealer adds files."""

    def __init__(self, lake: LakeReader, verifier: NoteVerifier | None) -> None:
        self.lake = lake
        self._verifier = verifier
        self._local = isinstance(lake.fs, LocalFileSystem)
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # manifest stems already accounted for
        self._hours: dict[str, dict[str, LakeFile]] = {}  # listed partition -> stem -> file
        self._compactions: dict[str, CompactionManifest] = {}  # verified, by manifest name

    def snapshot(self, window: TimeWindow) -> tuple[int, list[LakeFile]]:
        """The sealed frontier, and the sealed files below it for the window, by first seq.

        Hour files of the window's hours, except those a compacted month covers: its copy
        stands in for them.
        """
        names = self.manifest_names()
        frontier = sealed_frontier(names)
        compactions = self.compactions(window)
        with self._lock:
            self._learn(names)
            files: list[LakeFile] = []
            day_listing: dict[str, list[str]] = {}
            hour = window.start.replace(minute=0, second=0, microsecond=0)
            while hour < window.end:
                partition = f"dt={hour:%Y-%m-%d}/hour={hour:%H}"
                if partition not in self._hours:
                    self._hours[partition] = self._list(partition, day_listing)
                files.extend(self._hours[partition].values())
                hour += timedelta(hours=1)
        # A manifest removed since its file was indexed lowers the frontier: never read past it.
        files = [f for f in files if f.last < frontier]
        if compactions:
            sealed = set(names)
            covered: set[tuple[int, int]] = set()
            for compaction in compactions:
                self._check_sources(compaction, sealed)
                covered.update(compaction.ranges)
            files = [f for f in files if (f.first, f.last) not in covered]
            files += [LakeFile(c.first_seq, c.last_seq, self.path(c.file)) for c in compactions]
        files.sort(key=lambda f: f.first)
        return frontier, files

    def compactions(self, window: TimeWindow) -> list[CompactionManifest]:
        """The (verified) compactions of the months that overlap ``window``."""
        found = []
        for name in self._compaction_names():
            start, end = month_bounds(name[: -len(MANIFEST_SUFFIX)])
            if start < window.end and end > window.start:
                found.append(self._compaction(name))
        return found

    def _check_sources(self, compaction: CompactionManifest, sealed: set[str]) -> None:
        """A compaction must cover sealed hour files only, or its copy would be read twice."""
        for stem in compaction.sources:
            if stem + MANIFEST_SUFFIX not in sealed:
                raise LakeIntegrityError(
                    f"{COMPACTION_DIR}/{compaction.name} lists hour file {stem}, which has no "
                    "manifest: run 'infertrail audit verify'"
                )

    def _compaction_names(self) -> list[str]:
        if not self._local:
            return compaction_names(self.lake)
        try:
            names = os.listdir(self.lake.path(COMPACTION_DIR))  # noqa: PTH208
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _MONTH_NOTE_RE.fullmatch(n))

    def _compaction(self, name: str) -> CompactionManifest:
        """A compaction manifest, verified the first time it is read (never cached if bad)."""
        with self._lock:
            cached = self._compactions.get(name)
        if cached is not None:
            return cached
        rel = f"{COMPACTION_DIR}/{name}"
        try:
            note = self.lake.read_bytes(rel)
            if self._verifier is not None:
                manifest = open_compaction(note, self._verifier)
            else:
                manifest = CompactionManifest.parse(note[: note.rfind(b"\n\n") + 1])
        except (ManifestError, FileNotFoundError) as exc:
            raise LakeIntegrityError(f"{rel}: {exc}: run 'infertrail audit verify'") from exc
        if manifest.name != name:
            raise LakeIntegrityError(
                f"{rel} describes {manifest.name}: run 'infertrail audit verify'"
            )
        with self._lock:
            self._compactions[name] = manifest
        return manifest

    def manifest_of(self, seq: int) -> Manifest:
        """The (verified) manifest of the sealed file holding ``seq``; LookupError if none."""
        names = self.manifest_names()
        stems = [n[: -len(MANIFEST_SUFFIX)] for n in names]
        index = bisect.bisect_right(stems, f"{seq:020d}-{'9' * 20}") - 1
        if index < 0 or not _range(stems[index])[0] <= seq <= _range(stems[index])[1]:
            raise LookupError(f"seq {seq} is in no sealed lake file")
        return self._manifest(names[index])

    def manifest_names(self) -> list[str]:
        """Manifest file names by first seq, as LakeReader.manifest_names, faster on local disk.

        fsspec's local listing builds a dict per entry; a year of hourly files is ~9,000
        manifests, listed on every query.
        """
        if not self._local:
            return self.lake.manifest_names()
        try:
            names = os.listdir(self.lake.path(MANIFEST_DIR))  # noqa: PTH208
        except FileNotFoundError:
            return []
        return sorted(
            n for n in names
            if n.endswith(MANIFEST_SUFFIX) and _STEM_RE.fullmatch(n[: -len(MANIFEST_SUFFIX)])
        )  # fmt: skip

    def path(self, relative: str) -> str:
        """The path DuckDB opens for a lake-relative path (with the protocol off the local disk)."""
        path = self.lake.path(relative)
        return path if self._local else str(self.lake.fs.unstrip_protocol(path))

    def _learn(self, names: list[str]) -> None:
        """Account for new manifests: add their files to partitions listed before they existed."""
        for name in names:
            stem = name[: -len(MANIFEST_SUFFIX)]
            if stem in self._seen:
                continue
            if self._hours:
                manifest = self._manifest(name)
                partition = manifest.file.rsplit("/", 1)[0]
                if partition in self._hours:
                    self._hours[partition][stem] = self._file(manifest.file)
            self._seen.add(stem)

    def _list(self, partition: str, day_listing: dict[str, list[str]]) -> dict[str, LakeFile]:
        """The manifested files of one hour partition (listing its day once per snapshot)."""
        day, hour = partition.split("/")
        if day not in day_listing:
            day_listing[day] = self._listdir(day)
        if hour not in day_listing[day]:
            return {}
        found = {}
        for name in self._listdir(partition):
            stem = name.removesuffix(".parquet")
            if stem != name and stem in self._seen:
                found[stem] = self._file(f"{partition}/{name}")
        return found

    def _file(self, relative: str) -> LakeFile:
        first, last = _range(relative.rsplit("/", 1)[1].removesuffix(".parquet"))
        return LakeFile(first, last, self.path(relative))

    def _listdir(self, relative: str) -> list[str]:
        path = self.lake.path(relative)
        try:
            if self._local:
                # Plain names, no Path objects: a quarter has ~2,300 partitions to list.
                return os.listdir(path)  # noqa: PTH208
            return [p.rsplit("/", 1)[-1] for p in self.lake.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def _manifest(self, name: str) -> Manifest:
        note = self.lake.read_bytes(f"{MANIFEST_DIR}/{name}")
        try:
            if self._verifier is not None:
                return open_manifest(note, self._verifier)
            return Manifest.parse(note[: note.rfind(b"\n\n") + 1])
        except ManifestError as exc:
            raise LakeIntegrityError(
                f"{MANIFEST_DIR}/{name}: {exc}: run 'infertrail audit verify'"
            ) from exc
