"""Golden test vectors (tests/golden) for the formats third parties read, checked both ways.

Every case file must get its verdict from the project's pure verifiers (the checkpoint note
parser and :mod:`infertrail.audit.evidence`): valid cases are accepted and report what the case
expects, broken ones are rejected with the expected error. And scripts/gen_golden.py must still
write exactly the checked-in bytes, so none of the formats can drift unnoticed.
"""

from __future__ import annotations

import base64
import json
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infertrail.audit.checkpoint import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    open_checkpoint,
    split_note,
)
from infertrail.audit.cli import audit
from infertrail.audit.cosignature import CosignatureVerifier
from infertrail.audit.evidence import CheckResult, check_consistency, check_evidence
from infertrail.audit.receipt_check import check_receipt

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"
INPUT_FIELD = {
    "checkpoint": "note",
    "inclusion_evidence": "evidence",
    "consistency_evidence": "evidence",
    "receipts": "evidence",
    "cosignature": "note",
}
# timestamps/ holds tokens a TSA signed once, not regenerable: tests/unit/audit/test_timestamps.py.
# tiles/ is a static tlog-tiles log, not verdict cases: tests/unit/audit/test_tiles.py.
NOT_GENERATED = frozenset({"timestamps", "tiles"})
CASES = sorted(p for p in GOLDEN.glob("*/*.json") if p.parent.name not in NOT_GENERATED)
CHECK_COMMANDS = {
    "inclusion_evidence": "check-proof",
    "consistency_evidence": "check-consistency",
    "receipts": "check-receipt",
}

Verdict = tuple[str | None, dict[str, Any] | None]  # (error, what a valid input reports)


def open_note(case: dict[str, Any]) -> Verdict:
    """Verify a checkpoint note for the case's key and origin."""
    try:
        verifier = NoteVerifier.from_key(case["verifier_key"])
        cp = open_checkpoint(case["note"].encode(), verifier, expected_origin=case["origin"])
    except NoteError as exc:
        return str(exc), None
    return None, {"origin": cp.origin, "size": cp.size, "root": base64.b64encode(cp.root).decode()}


def open_cosignature(case: dict[str, Any]) -> Verdict:
    """Verify the case's witness's cosignature on its checkpoint note."""
    try:
        verifier = CosignatureVerifier.from_key(case["verifier_key"])
        cosignature = verifier.open(case["note"].encode())
        cp = Checkpoint.parse(split_note(case["note"].encode())[0])
    except NoteError as exc:
        return str(exc), None
    return None, {
        "cosigner": cosignature.name,
        "timestamp": cosignature.timestamp,
        "origin": cp.origin,
        "size": cp.size,
    }


def reported(result: CheckResult, *fields: str) -> Verdict:
    """A check result as a verdict: its reason if it failed, else these fields of it."""
    if not result.ok:
        return result.reason, None
    return None, {name: getattr(result, name) for name in fields}


def check_inclusion_case(case: dict[str, Any]) -> Verdict:
    """Check inclusion evidence with the case's key."""
    result = check_evidence(case["evidence"], case["verifier_key"])
    return reported(result, "origin", "tree_size", "seq")


def check_receipt_case(case: dict[str, Any]) -> Verdict:
    """Check a decision receipt with the case's key."""
    return reported(
        check_receipt(case["evidence"], case["verifier_key"]), "origin", "tree_size", "seq"
    )


def check_consistency_case(case: dict[str, Any]) -> Verdict:
    """Check consistency evidence with the case's key."""
    return reported(
        check_consistency(case["evidence"], case["verifier_key"]), "origin", "tree_size"
    )


VERIFIERS: dict[str, Callable[[dict[str, Any]], Verdict]] = {
    "checkpoint": open_note,
    "inclusion_evidence": check_inclusion_case,
    "consistency_evidence": check_consistency_case,
    "receipts": check_receipt_case,
    "cosignature": open_cosignature,
}


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_case_gets_its_verdict(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    error, report = VERIFIERS[path.parent.name](case)
    if case["must_fail"]:
        assert error is not None, f"{path.name} was accepted: {case['description']}"
        assert case["expect_error"] in error, (case["expect_error"], error)
    else:
        assert error is None, f"{path.name} was rejected: {error}"
        assert report == case["expect"]


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_case_has_the_documented_fields(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    fields = {"description", "must_fail", "expect_error", "expect", "verifier_key"}
    fields.add(INPUT_FIELD[path.parent.name])
    if path.parent.name == "checkpoint":
        fields.add("origin")
    assert set(case) == fields
    assert isinstance(case["description"], str) and case["description"]
    assert case["must_fail"] is not path.stem.startswith("valid")
    if case["must_fail"]:
        assert isinstance(case["expect_error"], str) and case["expect_error"]
        assert case["expect"] is None
    else:
        assert case["expect_error"] is None and isinstance(case["expect"], dict)


def cli_checkable(path: Path) -> bool:
    """An evidence case the CLI judges (not one it refuses as a usage error: bad key, not JSON)."""
    if path.parent.name not in CHECK_COMMANDS:
        return False
    case = json.loads(path.read_text(encoding="utf-8"))
    try:
        NoteVerifier.from_key(case["verifier_key"])
    except NoteError:
        return False
    return isinstance(case["evidence"], dict)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    "path", [p for p in CASES if cli_checkable(p)], ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_the_cli_gives_the_same_verdict(path: Path, tmp_path: Path) -> None:
    # The evidence written the way `infertrail audit prove` / `consistency` write it.
    case = json.loads(path.read_text(encoding="utf-8"))
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(case["evidence"], indent=2, sort_keys=True) + "\n")
    command = [CHECK_COMMANDS[path.parent.name], str(evidence), "--key", case["verifier_key"]]
    result = CliRunner().invoke(audit, command, catch_exceptions=False)
    if case["must_fail"]:
        assert result.exit_code == 1 and result.stdout.startswith("INVALID: "), result.stdout
        assert case["expect_error"] in result.stdout
    else:
        assert result.exit_code == 0 and result.stdout.startswith("VALID: "), result.stdout


def test_every_format_has_valid_and_broken_cases() -> None:
    kinds = {p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name not in NOT_GENERATED}
    assert kinds == set(VERIFIERS)
    for kind in kinds:
        verdicts = {json.loads(p.read_text())["must_fail"] for p in GOLDEN.glob(f"{kind}/*.json")}
        assert verdicts == {True, False}, kind


def test_the_generator_writes_exactly_the_golden_files(tmp_path: Path) -> None:
    generator = runpy.run_path(str(ROOT / "scripts" / "gen_golden.py"), run_name="gen_golden")
    generator["generate"](tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("*/*.json"))
    assert fresh == [p.relative_to(GOLDEN) for p in CASES], "cases added or removed: regenerate"
    for relative in fresh:
        assert (tmp_path / relative).read_bytes() == (GOLDEN / relative).read_bytes(), (
            f"{relative} drifted: if the change is intended, run scripts/gen_golden.py"
        )
