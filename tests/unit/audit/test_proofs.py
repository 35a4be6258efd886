"""Inclusion and consistency evidence: produced from storage, checked with only the public key."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infertrail.audit.evidence import (
    CONSISTENCY_FORMAT,
    PROOF_FORMAT,
    check_consistency,
    check_evidence,
)
from infertrail.audit.proofs import ProofError, make_consistency, make_evidence
from infertrail.audit.wal import FRAME_HEADER, HEADER_SIZE
from tests.unit.audit.test_lake import BuiltLog, build_log, make_record, new_keys


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("proofs"), sealed=600, unsealed=150)


def vkey(built: BuiltLog) -> str:
    return built.verifier.verifier_key


def history(built: BuiltLog) -> list[bytes]:
    buf, out, offset = (built.log_dir / "checkpoints/history.log").read_bytes(), [], 0
    while offset < len(buf):
        length, _ = FRAME_HEADER.unpack_from(buf, offset)
        out.append(buf[offset + HEADER_SIZE : offset + HEADER_SIZE + length])
        offset += HEADER_SIZE + length
    return out


@pytest.mark.parametrize("seq", [0, 299, 599, 600, 749])
def test_evidence_for_sealed_and_unsealed_records(built: BuiltLog, seq: int) -> None:
    evidence = make_evidence(built.log_dir, built.lake_url, seq)
    assert evidence["format"] == PROOF_FORMAT and evidence["seq"] == seq
    assert evidence["tree_size"] == 750
    assert json.loads(evidence["record"])["request_id"] == f"req-{seq}"
    result = check_evidence(json.loads(json.dumps(evidence)), vkey(built))
    assert result.ok, result.reason
    assert (result.seq, result.tree_size, result.origin) == (seq, 750, "test.example/log")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=st.integers(0, 749))
def test_every_record_has_checkable_evidence(built: BuiltLog, seq: int) -> None:
    assert check_evidence(make_evidence(built.log_dir, built.lake_url, seq), vkey(built)).ok


def _tampered(evidence: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(evidence)
    out[key] = value
    return out


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(raw).decode()


def test_evidence_negatives(built: BuiltLog) -> None:
    good = make_evidence(built.log_dir, built.lake_url, 123)
    record = good["record"].replace("req-123", "req-999")
    proof = list(good["inclusion_proof"])
    proof[3] = _flip(proof[3])
    cases = {
        "leaf_hash is not the hash": _tampered(good, "record", record),
        "inclusion proof does not lead": _tampered(good, "inclusion_proof", proof),
        "inclusion proof does not lead ": _tampered(good, "inclusion_proof", proof[:-1]),
        "tree_size 751 is not": _tampered(good, "tree_size", 751),
        "record carries seq 123, evidence says 124": _tampered(good, "seq", 124),
        "format must be": _tampered(good, "format", "other/1"),
        "seq must be a int": _tampered(good, "seq", "123"),
        "list of base64": _tampered(good, "inclusion_proof", ["not base64!"]),
        "checkpoint:": _tampered(good, "checkpoint", good["checkpoint"].replace("750", "751", 1)),
        "expected": _tampered(good, "origin", "other.example/log"),
    }
    for reason, evidence in cases.items():
        result = check_evidence(evidence, vkey(built))
        assert not result.ok and reason.strip() in result.reason, (reason, result)
    forged_leaf = _tampered(good, "record", record)
    forged_leaf["leaf_hash"] = hashlib.sha256(b"\x00" + record.encode()).hexdigest()
    assert not check_evidence(forged_leaf, vkey(built)).ok
    assert not check_evidence([], vkey(built)).ok  # type: ignore[arg-type]


def test_evidence_with_the_wrong_key(built: BuiltLog) -> None:
    good = make_evidence(built.log_dir, built.lake_url, 5)
    _, other = new_keys()
    result = check_evidence(good, other.verifier_key)
    assert not result.ok and "checkpoint" in result.reason
    result = check_evidence(good, "not a key")
    assert not result.ok and "bad verifier key" in result.reason


def test_evidence_for_a_seq_outside_the_log(built: BuiltLog) -> None:
    with pytest.raises(ProofError, match=r"seq 750 is not covered .* valid seqs are 0\.\.749"):
        make_evidence(built.log_dir, built.lake_url, 750)
    with pytest.raises(ProofError, match="seq -1"):
        make_evidence(built.log_dir, built.lake_url, -1)


def test_no_log(tmp_path: Path) -> None:
    with pytest.raises(ProofError, match=r"log\.json is missing"):
        make_evidence(tmp_path, str(tmp_path / "lake"), 0)


def test_proofs_while_the_writer_runs(tmp_path: Path) -> None:
    # The hash store is read-only for proofs: no lock, no repair, the writer keeps appending.
    built = build_log(tmp_path, sealed=0, unsealed=5)
    with built.open() as log:
        evidence = make_evidence(built.log_dir, built.lake_url, 1)
        assert check_evidence(evidence, vkey(built)).ok
        log.append(make_record(5))
        log.flush()
        assert make_evidence(built.log_dir, built.lake_url, 5)["tree_size"] == 6
        assert log.size == 6


def test_checking_evidence_loads_no_storage_code() -> None:
    # What a third-party verifier imports: hashing, Merkle proofs and signed notes, no lake.
    code = "import sys, infertrail.audit.evidence; print(*sorted(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(run.stdout.split())
    ours = {name for name in loaded if name.startswith("infertrail")}
    assert ours == {
        "infertrail",
        "infertrail._lazy",  # the package facades' lazy attributes: stdlib only
        "infertrail.audit",
        "infertrail.audit.checkpoint",
        "infertrail.audit.evidence",
        "infertrail.audit.merkle",
    }
    assert not loaded & {"pyarrow", "duckdb", "fsspec"}


def test_consistency_from_an_old_checkpoint(built: BuiltLog) -> None:
    notes = history(built)
    for old in (notes[0], notes[1], notes[-1]):
        evidence = make_consistency(built.log_dir, old)
        assert evidence["format"] == CONSISTENCY_FORMAT
        result = check_consistency(json.loads(json.dumps(evidence)), vkey(built))
        assert result.ok, result.reason


def test_consistency_negatives(built: BuiltLog, tmp_path: Path) -> None:
    good = make_consistency(built.log_dir, history(built)[1])
    assert good["consistency_proof"], "sizes differ: a real proof is needed"
    proof = list(good["consistency_proof"])
    proof[0] = _flip(proof[0])
    bad = _tampered(good, "consistency_proof", proof)
    assert "does not verify" in check_consistency(bad, vkey(built)).reason
    swapped = _tampered(good, "old_checkpoint", good["new_checkpoint"])
    swapped["new_checkpoint"] = good["old_checkpoint"]
    assert "rollback" in check_consistency(swapped, vkey(built)).reason
    _, other = new_keys()
    assert not check_consistency(good, other.verifier_key).ok
    assert not check_consistency(_tampered(good, "format", PROOF_FORMAT), vkey(built)).ok
    assert not check_consistency(_tampered(good, "consistency_proof", [1]), vkey(built)).ok

    other_log = build_log(tmp_path, sealed=0, unsealed=3, keys=new_keys())
    foreign = (other_log.log_dir / "checkpoints/latest").read_bytes()
    with pytest.raises(ProofError, match="not one of this log"):
        make_consistency(built.log_dir, foreign)


def test_consistency_after_rollback_is_refused(tmp_path: Path) -> None:
    built = build_log(tmp_path, sealed=0, unsealed=5)
    old_state = (built.log_dir / "checkpoints/latest").read_bytes()
    with built.open() as log:
        log.append(make_record(5))
    newer = (built.log_dir / "checkpoints/latest").read_bytes()
    (built.log_dir / "checkpoints/latest").write_bytes(old_state)  # the operator rolls back
    with pytest.raises(ProofError, match="rolled back"):
        make_consistency(built.log_dir, newer)
