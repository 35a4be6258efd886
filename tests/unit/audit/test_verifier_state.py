"""The verifier state: judging a log against a remembered checkpoint, the state file, and the
rollback and fork attacks ``infertrail audit verify`` catches with it (through the real CLI).

Every attack is also run with ``--no-state``: it then passes, which is the hole this closes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infertrail.audit import merkle
from infertrail.audit.checkpoint import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from infertrail.audit.keys import load_signer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.verifier_state import (
    MAX_CONFLICTS,
    StateError,
    StateFile,
    default_state_path,
    judge_by_proof,
    judge_by_recomputed,
)
from infertrail.audit.wal import FRAME_HEADER, HEADER_SIZE, encode_frame

ORIGIN = "state.example/log"
VECTORS = json.loads((Path(__file__).parents[2] / "data/rfc6962_vectors.json").read_text())
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def keys(origin: str = ORIGIN) -> tuple[NoteSigner, NoteVerifier]:
    skey, vkey = NoteSigner.generate(origin)
    return NoteSigner.from_key(skey), NoteVerifier.from_key(vkey)


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + f"entry {i}".encode()) for i in range(n)]


def tree(hashes: list[bytes], n: int) -> Checkpoint:
    return Checkpoint(ORIGIN, n, merkle.root(hashes[:n]))


def subtree_root_of(hashes: list[bytes]):  # type: ignore[no-untyped-def]
    return lambda begin, end: merkle.root(hashes[begin:end])


# ---- judge_by_proof: the monitor's judgement, from hashes the log serves ----------------------


def test_rfc6962_vectors_extend_consistently_at_every_pair_of_sizes() -> None:
    data = [bytes.fromhex(h) for h in VECTORS["leaves"]]
    hashes = [merkle.leaf_hash(d) for d in data]
    for old in range(len(hashes) + 1):
        for new in range(old, len(hashes) + 1):
            verdict = judge_by_proof(tree(hashes, old), tree(hashes, new), subtree_root_of(hashes))
            assert verdict.ok, (old, new, verdict.detail)
            # the published roots, so the proof is against the RFC's own tree
            if new:
                assert tree(hashes, new).root.hex() == VECTORS["roots_by_size"][str(new)]


@pytest.mark.parametrize(("old", "new", "changed"), [(3, 8, 1), (4, 7, 3), (5, 6, 0), (1, 9, 0)])
def test_a_log_that_changed_an_old_leaf_is_a_proven_fork(old: int, new: int, changed: int) -> None:
    honest = leaves(new)
    forked = list(honest)
    forked[changed] = merkle.leaf_hash(b"rewritten")
    verdict = judge_by_proof(tree(honest, old), tree(forked, new), subtree_root_of(forked))
    assert verdict.kind == "fork"
    assert f"size {old}" in verdict.detail and str(new) in verdict.detail
    # the evidence: the forked tree's own root at the old size, proven inside the signed new tree
    assert verdict.root_at_remembered is not None
    assert verdict.root_at_remembered != tree(honest, old).root
    assert merkle.verify_consistency(
        old, new, verdict.root_at_remembered, tree(forked, new).root, verdict.proof
    )
    assert set(verdict.evidence()) >= {"root_at_remembered_size", "consistency_proof"}


def test_smaller_tree_is_a_rollback_and_same_size_other_root_a_fork() -> None:
    hashes, other = leaves(10), leaves(10, b"other ")
    rollback = judge_by_proof(tree(hashes, 8), tree(hashes, 5), subtree_root_of(hashes))
    assert (
        rollback.kind == "rollback" and "size 5" in rollback.detail and "size 8" in rollback.detail
    )
    fork = judge_by_proof(tree(hashes, 6), tree(other, 6), subtree_root_of(other))
    assert fork.kind == "fork" and fork.root_at_remembered == tree(other, 6).root
    assert judge_by_proof(tree(hashes, 6), tree(hashes, 6), subtree_root_of(hashes)).ok
    assert judge_by_proof(tree(hashes, 0), tree(other, 6), subtree_root_of(other)).ok


def test_hashes_that_do_not_match_the_new_checkpoint_prove_nothing() -> None:
    hashes = leaves(20)
    garbage = leaves(20, b"garbage ")
    verdict = judge_by_proof(tree(hashes, 7), tree(hashes, 20), subtree_root_of(garbage))
    assert verdict.kind == "bad_proof" and "do not match its own checkpoint" in verdict.detail

    def broken(begin: int, end: int) -> bytes:
        raise ValueError("tile/0/000.p/20: expected 640 bytes, got 3")

    verdict = judge_by_proof(tree(hashes, 7), tree(hashes, 20), broken)
    assert verdict.kind == "bad_proof" and "640 bytes" in verdict.detail
    short = judge_by_proof(tree(hashes, 7), tree(hashes, 20), lambda b, e: b"x")
    assert short.kind == "bad_proof"


def test_judging_two_logs_of_different_origins_is_a_caller_error() -> None:
    hashes = leaves(4)
    with pytest.raises(ValueError, match="origins differ"):
        judge_by_proof(tree(hashes, 2), Checkpoint("other/log", 4, merkle.root(hashes)), None)


# ---- judge_by_recomputed: verify's judgement, from the records themselves -----------------------


def test_recomputed_judgements() -> None:
    hashes = leaves(40)
    remembered, newest = tree(hashes, 30), tree(hashes, 40)
    assert judge_by_recomputed(remembered, newest, 40, remembered.root).ok
    fork = judge_by_recomputed(remembered, newest, 40, b"\x01" * 32)
    assert fork.kind == "fork" and "size 30" in fork.detail and "size 40" in fork.detail
    older = tree(hashes, 10)
    intact = judge_by_recomputed(remembered, older, 40, remembered.root)
    assert intact.kind == "rollback" and "still match" in intact.detail
    changed = judge_by_recomputed(remembered, older, 40, b"\x02" * 32)
    assert changed.kind == "rollback" and "[10, 30) were changed" in changed.detail
    gone = judge_by_recomputed(remembered, older, 25, None)
    assert gone.kind == "rollback" and "from 25 on are gone" in gone.detail
    nothing = judge_by_recomputed(remembered, None, 40, remembered.root)
    assert nothing.kind == "rollback" and "has no checkpoint" in nothing.detail
    assert judge_by_recomputed(tree(hashes, 0), None, 0, None).ok


# ---- the state file ------------------------------------------------------------------------------


def signed(signer: NoteSigner, hashes: list[bytes], n: int) -> bytes:
    return sign_checkpoint(tree(hashes, n), signer)


def test_state_moves_forward_only_and_keeps_evidence(tmp_path: Path) -> None:
    signer, verifier = keys()
    hashes = leaves(50)
    state = StateFile(tmp_path / "state.json")
    assert state.load(verifier, ORIGIN) is None
    outcome, first = state.advance(signed(signer, hashes, 10), verifier, ORIGIN, source="a",
                                   seen=None, now=T0)  # fmt: skip
    assert outcome == "created" and first is not None and first.checkpoint.size == 10
    outcome, same = state.advance(signed(signer, hashes, 10), verifier, ORIGIN, source="b",
                                  seen=first, now=T0 + timedelta(seconds=5))  # fmt: skip
    assert outcome == "unchanged" and same is not None
    assert same.verified_at == T0 and same.checked_at == T0 + timedelta(seconds=5)
    outcome, grown = state.advance(signed(signer, hashes, 30), verifier, ORIGIN, source="a",
                                   seen=same, now=T0 + timedelta(seconds=9))  # fmt: skip
    assert outcome == "advanced" and grown is not None and grown.verified_at > T0
    with pytest.raises(ValueError, match="refusing to move"):
        state.advance(signed(signer, hashes, 20), verifier, ORIGIN, source="a", seen=grown, now=T0)
    # compare-and-swap: a state loaded before another verifier moved it is not written over
    outcome, theirs = state.advance(signed(signer, hashes, 50), verifier, ORIGIN, source="a",
                                    seen=first, now=T0)  # fmt: skip
    assert outcome == "changed" and theirs is not None and theirs.checkpoint.size == 30
    for i in range(MAX_CONFLICTS + 3):
        state.record_conflict("rollback", f"seen {i}", {"size": 5}, None, verifier, ORIGIN,
                              source="a", now=T0)  # fmt: skip
    loaded = state.load(verifier, ORIGIN)
    assert loaded is not None and loaded.checkpoint.size == 30
    assert loaded.conflicts[0]["detail"] == "seen 3"
    assert len(loaded.conflicts) == MAX_CONFLICTS
    assert oct(os.stat(state.path).st_mode & 0o777) == "0o600"


def test_state_refuses_another_key_another_log_and_damage(tmp_path: Path) -> None:
    signer, verifier = keys()
    hashes = leaves(5)
    state = StateFile(tmp_path / "state.json")
    state.advance(signed(signer, hashes, 5), verifier, ORIGIN, source="a", seen=None, now=T0)
    _, impostor = keys()  # the same origin re-signed with a new key: what a forger does
    with pytest.raises(StateError, match="under verifier key"):
        state.load(impostor, ORIGIN)
    _, other = keys("other.example/log")
    with pytest.raises(StateError, match="is for log"):
        state.load(other, "other.example/log")
    data = json.loads(state.path.read_text())
    data["size"] = 4  # the readable copy no longer says what the signed note says
    state.path.write_text(json.dumps(data))
    with pytest.raises(StateError, match="do not match its checkpoint"):
        state.load(verifier, ORIGIN)
    data["size"] = 5
    data["checkpoint"] = data["checkpoint"].replace("\n5\n", "\n6\n")
    state.path.write_text(json.dumps(data))
    with pytest.raises(StateError, match="damaged"):
        state.load(verifier, ORIGIN)
    state.path.write_text("{not json")
    with pytest.raises(StateError, match="not JSON"):
        state.load(verifier, ORIGIN)


def test_default_state_path_is_the_users_config_dir() -> None:
    digest = hashlib.sha256(ORIGIN.encode()).hexdigest()[:32]
    path = default_state_path(ORIGIN, {"XDG_CONFIG_HOME": "/x/cfg"})
    assert path == Path(f"/x/cfg/infertrail/verifier/{digest}.json")
    assert default_state_path(ORIGIN, {}).parts[-3:] == ("infertrail", "verifier", f"{digest}.json")


# ---- attacks on a real log, through the real CLI -----------------------------------------------


class Attack:
    """A data directory with a real AuditLog of 40 records and a way to run the CLI on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)
        self.data = root / "data"
        self.log_dir = self.data / "audit/log"
        self.state = root / "verifier-state.json"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))},
            "INFERTRAIL_DATA_DIR": str(self.data),
            "INFERTRAIL_AUDIT_ORIGIN": ORIGIN,
        }
        assert self.cli("keys", "init").returncode == 0

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infertrail", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("audit", "verify", "--state", str(self.state), *args)

    def unprotected(self) -> subprocess.CompletedProcess[str]:
        """``verify`` as it was before the verifier state: nothing outside the log consulted."""
        return self.cli("audit", "verify", "--no-state")

    def append(self, records: range, *, keep_at: int | None = None) -> bytes | None:
        """Append records (flushing a checkpoint at ``keep_at`` and returning it)."""
        kept = None
        signer = load_signer(self.data / "keys/audit.key")
        with AuditLog.open(self.log_dir, signer=signer, origin=ORIGIN, fsync=False) as log:
            for i in records:
                log.append({"decision": "decline" if i % 2 else "approve", "n": i})
                if i + 1 == keep_at:
                    log.flush()
                    kept = (self.log_dir / "checkpoints/latest").read_bytes()
        return kept

    def roll_back_checkpoints(self, note: bytes | None) -> None:
        """Put an older checkpoint back (None: delete them all) and hide the newer ones.

        Whatever else the checkpoint store holds goes too: the attacker controls all of it.
        """
        for other in (self.log_dir / "checkpoints").iterdir():
            if other.name not in ("latest", "history.log"):
                other.unlink()
        latest = self.log_dir / "checkpoints/latest"
        if note is None:
            latest.unlink()
        else:
            latest.write_bytes(note)
        (self.log_dir / "checkpoints/history.log").write_bytes(
            b"" if note is None else encode_frame(note)
        )

    def edit_record(self, seq: int) -> None:
        """Change record ``seq`` in the WAL (valid CRC) and recompute the hash store to match."""
        (segment,) = sorted((self.log_dir / "wal").glob("*.seg"))
        buf, payloads, offset = segment.read_bytes(), [], 0
        while offset < len(buf):
            length, _ = FRAME_HEADER.unpack_from(buf, offset)
            payloads.append(buf[offset + HEADER_SIZE : offset + HEADER_SIZE + length])
            offset += HEADER_SIZE + length
        assert b'"decline"' in payloads[seq]
        payloads[seq] = payloads[seq].replace(b'"decline"', b'"approve"')
        segment.write_bytes(b"".join(encode_frame(p) for p in payloads))
        tree = self.log_dir / "tree"
        (tree / "leaves.bin").write_bytes(b"".join(merkle.leaf_hash(p) for p in payloads))
        for level in tree.glob("level*.bin"):
            level.unlink()


@pytest.fixture
def attack(tmp_path: Path) -> Attack:
    return Attack(tmp_path)


def test_first_verify_says_it_cannot_detect_a_rollback_then_remembers(attack: Attack) -> None:
    attack.append(range(40))
    first = attack.verify()
    assert first.returncode == 0, first.stdout + first.stderr
    assert (
        "cannot detect a rollback of this log: no remembered checkpoint and no witnesses"
        in first.stdout
    )
    assert f"remembered: size 40 in {attack.state}" in first.stdout
    again = attack.verify("--json")
    report = json.loads(again.stdout)
    assert report["rollback_protection"] == "a remembered checkpoint"
    assert report["anchors"][0] | {"detail": ""} == {
        "source": "remembered", "size": 40, "verdict": "consistent", "detail": "",
        "root": report["root"],
    }  # fmt: skip
    assert report["verifier_state"] == {"path": str(attack.state), "outcome": "unchanged",
                                        "size": 40}  # fmt: skip
    bare = json.loads(attack.cli("audit", "verify", "--no-state", "--json").stdout)
    assert bare["ok"] and bare["rollback_protection"] == "none" and bare["anchors"] == []


def test_checkpoint_store_rolled_back_without_edits(attack: Attack) -> None:
    old = attack.append(range(40), keep_at=10)
    assert attack.verify().returncode == 0
    attack.roll_back_checkpoints(old)
    assert attack.unprotected().returncode == 0  # the hole: nothing else notices
    result = attack.verify()
    assert result.returncode == 1
    assert result.stdout.startswith("TAMPERED: rollback at seq 10, remembered: ")
    assert "size 40" in result.stdout and "size 10" in result.stdout
    assert "its records still match the remembered root" in result.stdout
    kept = json.loads(attack.state.read_text())
    assert kept["size"] == 40 and kept["conflicts"][-1]["kind"] == "rollback"
    assert kept["conflicts"][-1]["size"] == 10  # the evidence: what the log presented


def test_checkpoint_store_rolled_back_and_a_signed_record_edited(attack: Attack) -> None:
    old = attack.append(range(40), keep_at=10)
    assert attack.verify().returncode == 0
    attack.edit_record(25)  # a "decline" the size-40 checkpoint signed becomes an "approve"
    attack.roll_back_checkpoints(old)
    assert attack.unprotected().returncode == 0  # the hole: nothing else notices
    result = attack.verify()
    assert result.returncode == 1
    assert result.stdout.startswith("TAMPERED: rollback at seq 10, remembered: ")
    assert "records in [10, 40) were changed" in result.stdout
    report = json.loads(attack.verify("--json").stdout)
    evidence = report["anchors"][0]["evidence"]
    assert (evidence["remembered_size"], evidence["size"]) == (40, 10)
    assert evidence["root_at_remembered_size"] != evidence["remembered_root"]


def test_every_checkpoint_deleted(attack: Attack) -> None:
    attack.append(range(40))
    assert attack.verify().returncode == 0
    attack.roll_back_checkpoints(None)
    assert attack.unprotected().returncode == 0  # the hole
    result = attack.verify()
    assert result.returncode == 1 and "has no checkpoint" in result.stdout


def test_records_cut_back_with_the_checkpoints(attack: Attack, tmp_path: Path) -> None:
    old = attack.append(range(20), keep_at=10)
    saved = tmp_path / "saved"
    shutil.copytree(attack.log_dir, saved)
    attack.append(range(20, 40))
    assert attack.verify().returncode == 0
    shutil.rmtree(attack.log_dir)
    shutil.copytree(saved, attack.log_dir)  # an old backup restored: 20 decisions dropped
    attack.roll_back_checkpoints(old)
    assert attack.unprotected().returncode == 0  # the hole
    result = attack.verify()
    assert result.returncode == 1 and "records from 20 on are gone" in result.stdout


def test_a_fork_signed_by_the_same_key_is_caught(attack: Attack, tmp_path: Path) -> None:
    attack.append(range(30))
    assert attack.verify().returncode == 0
    # Another log, the same origin and key: the operator's rewritten history, fully signed.
    other = Attack(tmp_path / "other")
    shutil.copytree(attack.data / "keys", other.data / "keys", dirs_exist_ok=True)
    signer = load_signer(other.data / "keys/audit.key")
    with AuditLog.open(other.log_dir, signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(45):
            log.append({"decision": "approve", "n": i})
    forked = ["--log-dir", str(other.log_dir)]
    assert attack.cli("audit", *forked, "verify", "--no-state").returncode == 0  # the hole
    result = attack.cli("audit", *forked, "verify", "--state", str(attack.state))
    assert result.returncode == 1
    assert result.stdout.startswith("TAMPERED: fork at remembered: ")
    assert "size 30" in result.stdout and "size 45" in result.stdout
    assert json.loads(attack.state.read_text())["size"] == 30  # never moved to the fork


def test_a_log_resigned_with_a_new_key_is_refused(attack: Attack) -> None:
    attack.append(range(10))
    assert attack.verify().returncode == 0
    keys_dir = attack.data / "keys"
    for f in keys_dir.iterdir():
        f.unlink()
    assert attack.cli("keys", "init").returncode == 0  # the forger's key, same origin
    result = attack.verify()
    assert result.returncode == 2 and "under verifier key" in result.stderr


def test_state_inside_the_data_directory_is_flagged(attack: Attack) -> None:
    attack.append(range(5))
    inside = attack.cli("audit", "verify", "--state", str(attack.log_dir / "mine.json"))
    assert inside.returncode == 0 and "inside the log's directory" in inside.stdout
    both = attack.cli("audit", "verify", "--state", "x.json", "--no-state")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_default_state_lives_in_xdg_config_home(attack: Attack) -> None:
    attack.append(range(5))
    home = attack.root / "home-config"
    attack.env["XDG_CONFIG_HOME"] = str(home)
    assert attack.cli("audit", "verify").returncode == 0
    digest = hashlib.sha256(ORIGIN.encode()).hexdigest()[:32]
    stored = json.loads((home / f"infertrail/verifier/{digest}.json").read_text())
    assert stored["origin"] == ORIGIN and stored["size"] == 5
    assert base64.b64decode(stored["root"])


# ---- the library call, with worker processes ---------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_anchors_inside_lake_files_and_wal_segments(tmp_path: Path, workers: int) -> None:
    """Anchor sizes fall inside sealed files and WAL segments checked by worker processes."""
    from infertrail.audit.verify import verify_log
    from tests.unit.audit.test_lake import build_log

    built = build_log(tmp_path)  # 750 records: 0..599 in five lake files, the rest in the WAL
    with built.open() as log:
        roots = {size: log.root(size) for size in (1, 333, 640, 750)}
    for size, root in roots.items():
        note = sign_checkpoint(Checkpoint(built.verifier.name, size, root), built.signer)
        report = verify_log(built.log_dir, built.lake_url, built.verifier, remembered=note,
                            workers=workers)  # fmt: skip
        assert report.ok, (size, report.finding)
        assert report.anchors[0]["verdict"] == "consistent"
    forged = sign_checkpoint(Checkpoint(built.verifier.name, 640, b"\x05" * 32), built.signer)
    report = verify_log(built.log_dir, built.lake_url, built.verifier, remembered=forged,
                        workers=workers)  # fmt: skip
    assert report.finding is not None and report.finding.kind == "fork"
    assert report.rollback_protection == "a remembered checkpoint"
    ahead = sign_checkpoint(Checkpoint(built.verifier.name, 800, b"\x06" * 32), built.signer)
    report = verify_log(built.log_dir, built.lake_url, built.verifier, remembered=ahead,
                        from_checkpoint=note, workers=workers)  # fmt: skip
    assert report.finding is not None and report.finding.kind == "rollback"
    assert "records from 750 on are gone" in report.finding.detail
    assert report.rollback_protection == "a remembered checkpoint and a checkpoint kept elsewhere"
