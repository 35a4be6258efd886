"""Receipts handed to a verifier: read from a directory, each checked offline, matched to a log.

``infertrail audit verify --receipts DIR`` reads every ``*.json`` file of ``DIR``: a receipt
(``infertrail-receipt/1``, :mod:`infertrail.audit.receipt_check`) or a whole decision response
holding one under ``audit_receipt``. Each must check out with the log's key on its own (else
:class:`ReceiptFileError`: a forged or broken receipt says nothing about the log); receipts of
another origin are set aside with a note (a directory may collect a whole fleet's). What is left
becomes :class:`HeldReceipt` claims that :func:`infertrail.audit.verify.verify_log` holds the log
to: the record at each receipt's seq hashes to its leaf, and the log's root at each receipt's
tree size is the one the receipt's checkpoint signs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.receipt_check import ReceiptClaim, ReceiptError, open_receipt
from infertrail.audit.verify_files import Finding

__all__ = [
    "RECEIPT_SOURCE",
    "HeldReceipt",
    "ReceiptFileError",
    "beyond_finding",
    "covered_by_receipts",
    "leaf_finding",
    "load_receipts",
    "receipt_checks",
    "root_finding",
]

RECEIPT_SOURCE = "receipt "  # a signed root's source in verify: "receipt <file name>"


class ReceiptFileError(ValueError):
    """A receipt file cannot be read, or its receipt does not check out with the log's key."""


@dataclass(frozen=True)
class HeldReceipt:
    """A receipt that checked out with the log's key, and the file it came from."""

    name: str  # the file, relative to the directory it was read from
    claim: ReceiptClaim


def load_receipts(
    directory: Path, verifier: NoteVerifier, origin: str
) -> tuple[list[HeldReceipt], list[str]]:
    """The receipts of ``origin`` in ``directory`` (sorted by file name), and notes on the rest.

    Raises ReceiptFileError naming the file for one that is unreadable or does not check out,
    and for a directory without any receipt file.
    """
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ReceiptFileError(f"{directory} holds no receipt files (*.json)")
    held, others = [], 0
    for path in paths:
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ReceiptFileError(f"cannot read receipt {path}: {exc}") from exc
        if isinstance(document, dict) and isinstance(document.get("audit_receipt"), dict):
            document = document["audit_receipt"]  # a whole decision response
        if isinstance(document, dict) and document.get("origin") != origin:
            others += 1
            continue
        try:
            claim = open_receipt(document, verifier)
        except ReceiptError as exc:
            raise ReceiptFileError(f"receipt {path} does not check out: {exc}") from exc
        held.append(HeldReceipt(path.name, claim))
    notes = [f"{others} receipts of other logs than {origin!r} set aside"] if others else []
    return held, notes


def receipt_checks(receipts: Sequence[HeldReceipt]) -> list[tuple[int, bytes, str, int | None]]:
    """Signed roots verify must find in the log: (tree size, root, source, lower bound).

    The lower bound is the largest smaller tree size a receipt signs: checks run in size order
    and stop at the first mismatch, so the log matched that receipt, and the damage lies above
    it. The log's own checkpoints cannot narrow it: whoever rewrote the log could sign them.
    """
    sizes = sorted({r.claim.tree_size for r in receipts})
    checks: list[tuple[int, bytes, str, int | None]] = []
    for r in receipts:
        below = [s for s in sizes if s < r.claim.tree_size]
        lower = below[-1] if below else 0
        checks.append((r.claim.tree_size, r.claim.root, RECEIPT_SOURCE + r.name, lower))
    return checks


def root_finding(source: str, size: int, lower: int) -> Finding:
    """The finding when the log's root at a receipt's tree size is not the one it signs."""
    name = source.removeprefix(RECEIPT_SOURCE)
    detail = (
        f"records in [{lower}, {size}) do not hash to the root that receipt {name} holds "
        f"signed for a tree of {size}: the log was rewritten after the receipt was given"
    )
    return Finding("modified", lower, name, detail)


def leaf_finding(leaves_at: dict[int, bytes], receipts: Sequence[HeldReceipt]) -> Finding | None:
    """The first receipted seq among ``leaves_at`` (seq -> recomputed leaf) whose record does
    not hash to its receipt's leaf."""
    for receipt in sorted(receipts, key=lambda r: r.claim.seq):
        leaf = leaves_at.get(receipt.claim.seq)
        if leaf is not None and leaf != receipt.claim.leaf_hash:
            detail = (
                f"the record at seq {receipt.claim.seq} does not hash to the leaf of receipt "
                f"{receipt.name} ({receipt.claim.leaf_hash.hex()[:16]}...)"
            )
            return Finding("modified", receipt.claim.seq, receipt.name, detail)
    return None


def beyond_finding(records: int, receipts: Sequence[HeldReceipt]) -> Finding | None:
    """``truncated`` if a receipt's record or signed tree lies past the ``records`` left."""
    beyond = [r for r in receipts if r.claim.tree_size > records]
    if not beyond:
        return None
    first = min(beyond, key=lambda r: (r.claim.seq, r.name))
    detail = (
        f"only {records} records remain; receipt {first.name} holds seq {first.claim.seq} under "
        f"a signed tree of {first.claim.tree_size}"
    )
    return Finding("truncated", records, first.name, detail)


def covered_by_receipts(receipts: Sequence[HeldReceipt]) -> int:
    """The largest tree size a receipt signs (0 without receipts)."""
    return max((r.claim.tree_size for r in receipts), default=0)
