"""Signed manifests of lake files: what each immutable Parquet file holds, under the log's key.

A manifest ``<lake>/_manifests/<first>-<last>.json.note`` is a signed note whose text is the
canonical JSON of :class:`Manifest`: the file's path, seq range, sha256 and the tree root after
its last record. The sealed frontier is derived from the manifest names alone.
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
    "MANIFEST_DIR",
    "MANIFEST_SUFFIX",
    "Manifest",
    "ManifestError",
    "open_manifest",
    "range_name",
    "range_of",
]

MANIFEST_FORMAT = 1
MANIFEST_DIR = "_manifests"
MANIFEST_SUFFIX = ".json.note"
RANGE_RE = re.compile(r"(\d{20})-(\d{20})")
_FILE_RE = re.compile(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/(\d{20})-(\d{20})\.parquet")


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
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest text is not JSON: {exc}") from exc
        keys = {"format", "origin", "file", "first_seq", "last_seq", "count", "sha256"}
        keys |= {"tree_size", "root", "created"}
        if not isinstance(obj, dict) or set(obj) != keys:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ManifestError(f"manifest must have exactly the keys {sorted(keys)}, got {got}")
        if obj["format"] != MANIFEST_FORMAT:
            raise ManifestError(f"manifest format {obj['format']!r} is not {MANIFEST_FORMAT}")
        for key in ("origin", "file", "sha256", "root", "created"):
            if not isinstance(obj[key], str):
                raise ManifestError(f"manifest {key} must be a string, got {obj[key]!r}")
        for key in ("first_seq", "last_seq", "count", "tree_size"):
            if type(obj[key]) is not int or obj[key] < 0:
                raise ManifestError(f"manifest {key} must be an int >= 0, got {obj[key]!r}")
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
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ManifestError(f"manifest sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if len(self.root) != merkle.HASH_SIZE:
            raise ManifestError(f"manifest root must be {merkle.HASH_SIZE} bytes")


def open_manifest(note: bytes, verifier: NoteVerifier) -> Manifest:
    """Verify a signed manifest note and parse it; ManifestError if either fails."""
    try:
        text = verifier.verify(note)
    except ValueError as exc:
        raise ManifestError(f"manifest signature: {exc}") from exc
    return Manifest.parse(text)
