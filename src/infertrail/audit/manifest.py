"""Signed manifests of lake files: what each immutable Parquet file holds, under the log's key.

A manifest ``<lake>/_manifests/<first>-<last>.json.note`` is a signed note whose text is the
canonical JSON of :class:`Manifest`: the file's path, seq range, sha256 and the tree root after
its last record. The sealed frontier is derived from the manifest names alone.

A compaction manifest ``<lake>/_compactions/<YYYY-MM>.json.note`` (:class:`CompactionManifest`)
describes the read-optimised copy of one month's hour files
(``compacted/month=YYYY-MM/<first>-<last>.parquet``): which hour files it covers (their manifest
stems), its sort order, record count and sha256.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from infertrail.audit import merkle
from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteVerifier

__all__ = [
    "COMPACTED_DIR",
    "COMPACTION_DIR",
    "COMPACTION_SORT",
    "MANIFEST_DIR",
    "MANIFEST_SUFFIX",
    "CompactionManifest",
    "Manifest",
    "ManifestError",
    "month_of",
    "open_compaction",
    "open_manifest",
    "range_name",
    "range_of",
]

MANIFEST_FORMAT = 1
MANIFEST_DIR = "_manifests"
MANIFEST_SUFFIX = ".json.note"
RANGE_RE = re.compile(r"(\d{20})-(\d{20})")
_FILE_RE = re.compile(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/(\d{20})-(\d{20})\.parquet")

COMPACTION_FORMAT = 1
COMPACTION_DIR = "_compactions"
COMPACTED_DIR = "compacted"
#: Row order of compacted files: one subject's records are adjacent, so row-group statistics
#: on ``subject`` admit one or two groups of a month.
COMPACTION_SORT = "subject ASC NULLS LAST, seq ASC"
MONTH_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


class ManifestError(ValueError):
    """A lake manifest is malformed, inconsistent or not signed by the log's key."""


def range_name(first_seq: int, last_seq: int) -> str:
    """The ``<first:020d>-<last:020d>`` stem shared by a lake file and its manifest."""
    return f"{first_seq:020d}-{last_seq:020d}"


def range_of(manifest_name: str) -> tuple[int, int]:
    """``(first_seq, last_seq)`` named by a manifest file name (not checked against its text)."""
    first, last = manifest_name[: -len(MANIFEST_SUFFIX)].split("-")
    return int(first), int(last)


@dataclass(frozen=True)
class Manifest:
    """The signed description of one lake file: its seq range, sha256 and the tree root after it."""

    origin: str
    file: str
    first_seq: int
    last_seq: int
    sha256: str
    root: bytes
    created: str

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def tree_size(self) -> int:
        return self.last_seq + 1

    @property
    def name(self) -> str:
        """File name of the signed manifest under ``_manifests/``."""
        return range_name(self.first_seq, self.last_seq) + MANIFEST_SUFFIX

    def text(self) -> bytes:
        """The note text: canonical JSON of the manifest plus a newline."""
        obj = asdict(self)
        obj.update(
            format=MANIFEST_FORMAT,
            count=self.count,
            tree_size=self.tree_size,
            root=base64.b64encode(self.root).decode(),
        )
        return canonicalize(obj) + b"\n"

    @classmethod
    def parse(cls, text: bytes) -> Manifest:
        """Parse and check a manifest text strictly; ManifestError names the bad field."""
        obj = _load(
            "manifest",
            text,
            MANIFEST_FORMAT,
            strings=("origin", "file", "sha256", "root", "created"),
            ints=("first_seq", "last_seq", "count", "tree_size"),
        )
        try:
            root = base64.b64decode(obj["root"], validate=True)
        except binascii.Error as exc:
            raise ManifestError(f"manifest root {obj['root']!r} is not base64") from exc
        manifest = cls(
            obj["origin"], obj["file"], obj["first_seq"], obj["last_seq"], obj["sha256"], root,
            obj["created"],
        )  # fmt: skip
        manifest._check(obj)
        if manifest.text() != text:
            raise ManifestError("manifest text is not in canonical form (RFC 8785 + newline)")
        return manifest

    def _check(self, obj: dict[str, Any]) -> None:
        if self.last_seq < self.first_seq:
            raise ManifestError(f"manifest last_seq {self.last_seq} < first_seq {self.first_seq}")
        if obj["count"] != self.count or obj["tree_size"] != self.tree_size:
            raise ManifestError(
                f"manifest count {obj['count']} / tree_size {obj['tree_size']} disagree with "
                f"its range [{self.first_seq}, {self.last_seq}]"
            )
        match = _FILE_RE.fullmatch(self.file)
        if not match or match.groups() != tuple(
            range_name(self.first_seq, self.last_seq).split("-")
        ):
            raise ManifestError(f"manifest file {self.file!r} does not name its seq range")
        _check_sha256("manifest", self.sha256)
        if len(self.root) != merkle.HASH_SIZE:
            raise ManifestError(f"manifest root must be {merkle.HASH_SIZE} bytes")


def month_of(lake_file: str) -> str:
    """The ``YYYY-MM`` of an hour file's partition path (``dt=YYYY-MM-DD/hour=HH/...``)."""
    return lake_file[3:10]


@dataclass(frozen=True)
class CompactionManifest:
    """The signed description of one month's compacted copy: its sources, order, count, sha256.

    ``sources`` are the stems (``<first>-<last>``) of the hour files' manifests it covers, by
    first seq; its records are exactly the union of their seq ranges.
    """

    origin: str
    month: str
    file: str
    sources: tuple[str, ...]
    count: int
    sha256: str
    created: str

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """``(first_seq, last_seq)`` of every source hour file, by first seq."""
        return [(int(a), int(b)) for a, b in (stem.split("-") for stem in self.sources)]

    @property
    def first_seq(self) -> int:
        return self.ranges[0][0]

    @property
    def last_seq(self) -> int:
        return self.ranges[-1][1]

    @property
    def name(self) -> str:
        """File name of the signed compaction manifest under ``_compactions/``."""
        return self.month + MANIFEST_SUFFIX

    def text(self) -> bytes:
        """The note text: canonical JSON of the compaction manifest plus a newline."""
        obj = asdict(self)
        obj.update(format=COMPACTION_FORMAT, sort=COMPACTION_SORT, sources=list(self.sources))
        return canonicalize(obj) + b"\n"

    @classmethod
    def parse(cls, text: bytes) -> CompactionManifest:
        """Parse and check a compaction manifest text strictly; ManifestError names the field."""
        what = "compaction manifest"
        obj = _load(
            what,
            text,
            COMPACTION_FORMAT,
            strings=("origin", "month", "file", "sha256", "created", "sort"),
            ints=("count",),
            lists=("sources",),
        )
        if obj["sort"] != COMPACTION_SORT:
            raise ManifestError(f"{what} sort {obj['sort']!r} is not {COMPACTION_SORT!r}")
        sources = obj["sources"]
        if not sources or not all(isinstance(s, str) and RANGE_RE.fullmatch(s) for s in sources):
            raise ManifestError(f"{what} sources must be a non-empty list of <first>-<last> stems")
        manifest = cls(
            obj["origin"], obj["month"], obj["file"], tuple(sources), obj["count"], obj["sha256"],
            obj["created"],
        )  # fmt: skip
        manifest._check()
        if manifest.text() != text:
            raise ManifestError(f"{what} text is not in canonical form (RFC 8785 + newline)")
        return manifest

    def _check(self) -> None:
        what = "compaction manifest"
        if not MONTH_RE.fullmatch(self.month):
            raise ManifestError(f"{what} month {self.month!r} is not YYYY-MM")
        previous = -1
        for first, last in self.ranges:
            if not previous < first <= last:
                raise ManifestError(
                    f"{what} sources must be disjoint ranges by first seq; "
                    f"{range_name(first, last)} follows one ending at {previous}"
                )
            previous = last
        count = sum(last - first + 1 for first, last in self.ranges)
        if self.count != count:
            raise ManifestError(f"{what} count {self.count} is not its sources' {count} records")
        expected = f"{COMPACTED_DIR}/month={self.month}/"
        expected += range_name(self.first_seq, self.last_seq) + ".parquet"
        if self.file != expected:
            raise ManifestError(f"{what} file {self.file!r} is not {expected!r}")
        _check_sha256(what, self.sha256)


def open_manifest(note: bytes, verifier: NoteVerifier) -> Manifest:
    """Verify a signed manifest note and parse it; ManifestError if either fails."""
    return Manifest.parse(_verified_text("manifest", note, verifier))


def open_compaction(note: bytes, verifier: NoteVerifier) -> CompactionManifest:
    """Verify a signed compaction manifest note and parse it; ManifestError if either fails."""
    return CompactionManifest.parse(_verified_text("compaction manifest", note, verifier))


def _verified_text(what: str, note: bytes, verifier: NoteVerifier) -> bytes:
    try:
        return verifier.verify(note)
    except ValueError as exc:
        raise ManifestError(f"{what} signature: {exc}") from exc


def _load(
    what: str,
    text: bytes,
    fmt: int,
    *,
    strings: tuple[str, ...],
    ints: tuple[str, ...],
    lists: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The JSON object of a manifest text with exactly these keys of these types, and ``fmt``."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{what} text is not JSON: {exc}") from exc
    keys = {"format", *strings, *ints, *lists}
    if not isinstance(obj, dict) or set(obj) != keys:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ManifestError(f"{what} must have exactly the keys {sorted(keys)}, got {got}")
    if obj["format"] != fmt:
        raise ManifestError(f"{what} format {obj['format']!r} is not {fmt}")
    for key in strings:
        if not isinstance(obj[key], str):
            raise ManifestError(f"{what} {key} must be a string, got {obj[key]!r}")
    for key in ints:
        if type(obj[key]) is not int or obj[key] < 0:
            raise ManifestError(f"{what} {key} must be an int >= 0, got {obj[key]!r}")
    for key in lists:
        if not isinstance(obj[key], list):
            raise ManifestError(f"{what} {key} must be a list, got {obj[key]!r}")
    return obj


def _check_sha256(what: str, sha256: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ManifestError(f"{what} sha256 {sha256!r} is not 64 lowercase hex digits")
