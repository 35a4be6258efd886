"""Checking receipts offline: the C2SP tlog-proof inside them, and the checker's independence.

The verdict on every broken receipt is pinned by tests/golden/receipts (test_golden_formats.py);
these tests cover the parser on the C2SP specification's own example and what a golden file
cannot show.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from infertrail.audit.receipt_check import (
    MAX_PROOF_HASHES,
    TLOG_PROOF_HEADER,
    ReceiptError,
    check_receipt,
    format_tlog_proof,
    parse_tlog_proof,
)

SPEC_EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "c2sp_tlog_proof_example.tlog-proof"
HASHES = [hashlib.sha256(b"%d" % i).digest() for i in range(MAX_PROOF_HASHES + 1)]
NOTE = b"example.com/log\n3\n" + b"A" * 43 + b"=\n\n\xe2\x80\x94 example.com/log AAAA\n"


def test_the_specification_example_parses() -> None:
    # c2sp.org/tlog-proof's own example (its signatures are elided, so it is not verified).
    parsed = parse_tlog_proof(SPEC_EXAMPLE.read_text(encoding="utf-8"))
    assert parsed.index == 73894
    assert len(parsed.proof) == 5 and parsed.proof[0].hex().startswith("8122b25e")
    assert parsed.extra is not None and parsed.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert parsed.checkpoint.startswith(b"example.com/fancylog\n109482\nsFodV/vSp5O8")
    assert parsed.checkpoint.endswith(b"3oEcROGLFQ==\n")


@pytest.mark.parametrize("count", [0, 1, 20, MAX_PROOF_HASHES])
def test_format_and_parse_round_trip(count: int) -> None:
    text = format_tlog_proof(42, HASHES[:count], NOTE)
    assert text.startswith(f"{TLOG_PROOF_HEADER}\nindex 42\n")
    parsed = parse_tlog_proof(text)
    assert (parsed.index, list(parsed.proof), parsed.checkpoint, parsed.extra) == (
        42,
        HASHES[:count],
        NOTE,
        None,
    )


def test_proofs_are_bounded() -> None:
    text = format_tlog_proof(1, HASHES[: MAX_PROOF_HASHES + 1], NOTE)
    with pytest.raises(ReceiptError, match=f"over {MAX_PROOF_HASHES} proof hashes"):
        parse_tlog_proof(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "must start with the line"),
        (TLOG_PROOF_HEADER, "must start with the line"),
        (f"{TLOG_PROOF_HEADER}\nextra !!\nindex 1\n\nnote\n", "extra line is not canonical"),
        (f"{TLOG_PROOF_HEADER}\nindex -1\n\nnote\n", "needs an 'index"),
        (f"{TLOG_PROOF_HEADER}\nindex 1\n" + "A" * 44, "no blank line before its checkpoint"),
        (f"{TLOG_PROOF_HEADER}\nindex 1\nAAAA\n\nnote\n", "line 1 of the proof is not a base64"),
    ],
)
def test_malformed_tlog_proofs_are_refused(text: str, error: str) -> None:
    with pytest.raises(ReceiptError, match=error):
        parse_tlog_proof(text)


def test_a_bad_verifier_key_is_a_failed_check_not_an_exception() -> None:
    result = check_receipt({"format": "infertrail-receipt/1"}, "not a key")
    assert not result.ok and result.reason.startswith("bad verifier key")


def test_checking_receipts_loads_no_storage_code() -> None:
    # What the holder of a decision imports to check its receipt: hashing, Merkle proofs and
    # signed notes; nothing of the ledger, the lake or the service.
    code = "import sys, infertrail.audit.receipt_check; print(*sorted(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(run.stdout.split())
    assert {name for name in loaded if name.startswith("infertrail")} == {
        "infertrail",
        "infertrail._lazy",
        "infertrail.audit",
        "infertrail.audit.checkpoint",
        "infertrail.audit.evidence",
        "infertrail.audit.merkle",
        "infertrail.audit.receipt_check",
    }
    assert not loaded & {"pyarrow", "duckdb", "fsspec", "orjson", "isal"}
