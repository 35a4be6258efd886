"""Producing third-party evidence from the log: inclusion and consistency proofs.

:func:`make_evidence` and :func:`make_consistency` read the log (its WAL, hash store and signed
checkpoints) and the lake, and return the evidence documents that
:mod:`infertrail.audit.evidence` defines and checks with only the log's public key. Each is
checked before it is returned, so damaged storage raises :class:`ProofError` instead of
producing evidence that would not verify.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from infertrail.audit import merkle
from infertrail.audit.checkpoint import NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.evidence import (
    CONSISTENCY_FORMAT,
    PROOF_FORMAT,
    check_consistency,
    check_evidence,
)
from infertrail.audit.hashstore import HashStore
from infertrail.audit.lake import LakeReader
from infertrail.audit.manifest import MANIFEST_DIR, open_manifest, range_of
from infertrail.audit.wal import LogCorruptedError, iter_records

__all__ = ["ProofError", "make_consistency", "make_evidence"]

_PROOF_BATCH = 256  # rows decoded per step while seeking a record in a lake file


class ProofError(ValueError):
    """Evidence cannot be produced (seq not in the log, log busy or damaged); says why."""


def make_evidence(log_dir: Path, lake_url: str, seq: int) -> dict[str, Any]:
    """Evidence that record ``seq`` is in the log, against its newest signed checkpoint.

    The record comes from the WAL or, once sealed, from the lake; the proof from the hash store,
    read-only, so this works while the writer runs. The evidence is checked before it is
    returned, so damaged storage raises ProofError.
    """
    log_dir = Path(log_dir)
    verifier = _log_verifier(log_dir)
    note = _latest_note(log_dir)
    checkpoint = open_checkpoint(note, verifier)
    if not 0 <= seq < checkpoint.size:
        raise ProofError(
            f"seq {seq} is not covered by the newest checkpoint (tree size {checkpoint.size}); "
            f"valid seqs are 0..{checkpoint.size - 1}"
        )
    record = _record(log_dir, lake_url, verifier, seq)
    with _hash_store(log_dir) as store:
        proof = merkle.inclusion_proof_by(store.subtree_root, seq, checkpoint.size)
    evidence = {
        "format": PROOF_FORMAT,
        "origin": checkpoint.origin,
        "seq": seq,
        "record": record.decode("utf-8"),
        "leaf_hash": merkle.leaf_hash(record).hex(),
        "tree_size": checkpoint.size,
        "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
        "checkpoint": note.decode("utf-8"),
    }
    result = check_evidence(evidence, verifier.verifier_key)
    if not result.ok:
        raise ProofError(f"stored data does not prove seq {seq}: {result.reason}; run verify")
    return evidence


def make_consistency(log_dir: Path, old_checkpoint_note: bytes) -> dict[str, Any]:
    """Evidence that the log's newest checkpoint extends ``old_checkpoint_note`` (RFC 9162)."""
    log_dir = Path(log_dir)
    verifier = _log_verifier(log_dir)
    try:
        old = open_checkpoint(old_checkpoint_note, verifier)
    except NoteError as exc:
        raise ProofError(f"the old checkpoint is not one of this log: {exc}") from exc
    note = _latest_note(log_dir)
    new = open_checkpoint(note, verifier)
    if old.size > new.size:
        raise ProofError(
            f"the old checkpoint has size {old.size}, beyond the log's newest ({new.size}): "
            "the log was rolled back"
        )
    proof: list[bytes] = []
    if 0 < old.size < new.size:
        with _hash_store(log_dir) as store:
            proof = merkle.consistency_proof_by(store.subtree_root, old.size, new.size)
    evidence = {
        "format": CONSISTENCY_FORMAT,
        "origin": new.origin,
        "old_checkpoint": old_checkpoint_note.decode("utf-8"),
        "new_checkpoint": note.decode("utf-8"),
        "consistency_proof": [base64.b64encode(h).decode() for h in proof],
    }
    result = check_consistency(evidence, verifier.verifier_key)
    if not result.ok:
        raise ProofError(f"stored tree is not consistent with the old checkpoint: {result.reason}")
    return evidence


def _log_verifier(log_dir: Path) -> NoteVerifier:
    """The verifier key recorded in log.json (the evidence is self-checked against it)."""
    try:
        meta = json.loads((log_dir / "log.json").read_bytes())
        return NoteVerifier.from_key(meta["verifier_key"])
    except FileNotFoundError as exc:
        raise ProofError(f"no audit log at {log_dir} (log.json is missing)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ProofError(f"{log_dir / 'log.json'} has no usable verifier_key: {exc}") from exc


def _latest_note(log_dir: Path) -> bytes:
    try:
        return (log_dir / "checkpoints" / "latest").read_bytes()
    except FileNotFoundError as exc:
        raise ProofError(f"{log_dir} has no signed checkpoint yet") from exc


def _record(log_dir: Path, lake_url: str, verifier: NoteVerifier, seq: int) -> bytes:
    """Canonical bytes of record ``seq``: from the WAL if still there, else from its lake file."""
    try:
        for _, payload in iter_records(
            log_dir / "wal", seq, seq + 1, index_dir=log_dir / "wal-index"
        ):
            return payload
    except LookupError:
        pass  # retired from the WAL: sealed in the lake
    except LogCorruptedError as exc:
        raise ProofError(f"cannot read record {seq}: {exc}; run verify") from exc
    reader = LakeReader(lake_url)
    for name in reader.manifest_names():
        first, last = range_of(name)
        if first <= seq <= last:
            manifest = open_manifest(reader.read_bytes(f"{MANIFEST_DIR}/{name}"), verifier)
            with reader.fs.open(reader.path(manifest.file), "rb") as f:
                data = _lake_record(pq.ParquetFile(f), seq - first)
            if data is not None:
                return data
    raise ProofError(f"record {seq} is in neither the WAL nor the lake: run verify")


def _lake_record(parquet: pq.ParquetFile, row: int) -> bytes | None:
    """Canonical bytes at ``row`` of a lake file, decoding only what precedes it in its group.

    Pages are decoded in order, so a read stops at the record: half a row group on average.
    """
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if row < rows:
            for batch in parquet.iter_batches(
                _PROOF_BATCH, row_groups=[group], columns=["canonical"], use_threads=False
            ):
                if row < batch.num_rows:
                    data: bytes = batch.column(0)[row].as_py()
                    return data
                row -= batch.num_rows
            return None
        row -= rows
    return None


@contextmanager
def _hash_store(log_dir: Path) -> Iterator[HashStore]:
    """The log's hash store, read-only: safe while the writer appends, repairs nothing."""
    try:
        store = HashStore(log_dir / "tree", read_only=True)
    except FileNotFoundError as exc:
        raise ProofError(f"{log_dir} has no hash store (tree/leaves.bin is missing)") from exc
    try:
        yield store
    finally:
        store.close()
