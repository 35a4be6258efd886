"""The witness's decisions (tlog-witness status codes) and its durable state, without HTTP."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from infertrail.audit.checkpoint import Checkpoint, NoteVerifier, split_note
from infertrail.audit.cosignature import CosignatureVerifier, signature_line
from infertrail.audit.framing import encode_frame
from infertrail.audit.merkle import leaf_hash
from infertrail.audit.witness_protocol import SIZE_CONTENT_TYPE, AddCheckpoint
from infertrail.witness.logs import KnownLogs, LogsConfigError, policy_log_keys
from infertrail.witness.service import Witness
from infertrail.witness.state import LogState, StateError, WitnessState
from tests.unit.witness.helpers import ORIGIN, MemoryLog, new_signer, new_witness


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def state(tmp_path: Path) -> WitnessState:
    s = WitnessState(tmp_path / "state")
    yield s
    s.close()


@pytest.fixture
def witness(log: MemoryLog, state: WitnessState) -> Witness:
    return Witness(
        new_witness(), KnownLogs.of([log.signer.verifier_key]), state, clock=lambda: 1_800_000_000
    )


def cosigned(witness: Witness, log: MemoryLog, old: int, size: int) -> int:
    """Submit (old, size); assert 200 and a valid cosignature; return the size cosigned."""
    answer = witness.add_checkpoint(log.request(old, size))
    assert answer.status == 200, answer.body
    found = witness.signer.verifier.open(log.checkpoint(size) + answer.body)
    assert found.timestamp > 0
    return size


def test_first_checkpoint_then_extensions(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 5)
    cosigned(witness, log, 5, 8)
    cosigned(witness, log, 8, 8)  # the same checkpoint again: a fresh cosignature
    cosigned(witness, log, 8, 1000)


def test_409_tells_the_client_the_size_last_cosigned(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 5)
    for old in (0, 4, 6):
        answer = witness.add_checkpoint(log.request(old, 9))
        assert (answer.status, answer.body, answer.content_type) == (409, b"5\n", SIZE_CONTENT_TYPE)


def test_a_rollback_is_never_cosigned(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 10)
    smaller = log.checkpoint(6)
    assert witness.add_checkpoint(AddCheckpoint(10, (), smaller).encode()).status == 400
    assert witness.add_checkpoint(AddCheckpoint(6, (), smaller).encode()).status == 409
    assert witness.add_checkpoint(AddCheckpoint(0, (), smaller).encode()).body == b"10\n"


def test_a_fork_is_refused_and_the_state_stays(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 10)
    fork = MemoryLog(log.signer, fork_at=7)  # the log's own key, another history from 7
    answer = witness.add_checkpoint(fork.request(10, 20))
    assert answer.status == 422 and b"does not verify" in answer.body
    # The same size with another root: 409 (tlog-witness v1.0.0), with the size cosigned.
    same = witness.add_checkpoint(fork.request(10, 10))
    assert (same.status, same.body) == (409, b"10\n")
    current = witness.checkpoint(ORIGIN)
    assert current is not None and Checkpoint.parse(split_note(current)[0]).size == 10
    cosigned(witness, log, 10, 12)  # the true history still extends


def test_bad_proofs_are_422(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 5)
    good = AddCheckpoint.parse(log.request(5, 9))
    for proof in ((), good.proof[:-1], (*good.proof, good.proof[0]), good.proof[::-1]):
        answer = witness.add_checkpoint(AddCheckpoint(5, proof, good.checkpoint).encode())
        assert answer.status == 422, proof
    from_zero = AddCheckpoint(0, good.proof, log.checkpoint(3))
    fresh = Witness(witness.signer, witness.logs, WitnessState(witness._state.path.with_name("s2")))
    assert fresh.add_checkpoint(from_zero.encode()).status == 422  # old 0 needs no proof


def test_the_same_size_with_a_proof_is_refused(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 5)
    request = AddCheckpoint(5, (leaf_hash(b"x"),), log.checkpoint(5))
    assert witness.add_checkpoint(request.encode()).status == 409


def test_the_empty_tree_has_one_root(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 0)
    bogus = log.signer.sign(f"{ORIGIN}\n0\n{'A' * 43}=\n".encode())
    assert witness.add_checkpoint(AddCheckpoint(0, (), bogus).encode()).status == 422


def test_who_signed_decides_404_and_403(witness: Witness, log: MemoryLog) -> None:
    other = MemoryLog(new_signer("log.test/other"))
    assert witness.add_checkpoint(other.request(0, 3)).status == 404
    impostor = MemoryLog(new_signer(ORIGIN))  # the log's name, another key
    answer = witness.add_checkpoint(impostor.request(0, 3))
    assert answer.status == 403 and b"no signature from a key trusted" in answer.body
    text, [(name, key_id, signature)] = split_note(log.checkpoint(3))
    broken = bytes([signature[0] ^ 1]) + signature[1:]  # the trusted key's signature, broken
    note = text + b"\n" + signature_line(name, key_id + broken)
    answer = witness.add_checkpoint(AddCheckpoint(0, (), note).encode())
    assert answer.status == 403 and b"invalid signature" in answer.body
    # Another key's line beside the trusted one is ignored.
    both = log.checkpoint(3) + impostor.checkpoint(3).split(b"\n\n")[1]
    assert witness.add_checkpoint(AddCheckpoint(0, (), both).encode()).status == 200


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",
        b"old x\n\nnote\n",
        b"old 0\n\nnot a note\n",
        b"old 0\n\n\xff\xfe\n\n\xe2\x80\x94 k AAAA\n",
    ],
)
def test_malformed_requests_are_400(witness: Witness, body: bytes) -> None:
    assert witness.add_checkpoint(body).status == 400


def test_a_signed_text_that_is_no_checkpoint_is_400(witness: Witness, log: MemoryLog) -> None:
    note = log.signer.sign(f"{ORIGIN}\n3\n".encode())
    answer = witness.add_checkpoint(AddCheckpoint(0, (), note).encode())
    assert answer.status == 400 and b"malformed checkpoint" in answer.body


def test_only_trusted_signatures_are_kept_with_the_cosignature(
    witness: Witness, log: MemoryLog
) -> None:
    stranger = MemoryLog(new_signer("someone.else/key"))
    both = log.checkpoint(4) + stranger.checkpoint(4).split(b"\n\n")[1]
    assert witness.add_checkpoint(AddCheckpoint(0, (), both).encode()).status == 200
    kept = witness.checkpoint(ORIGIN)
    assert kept is not None
    assert [name for name, _, _ in split_note(kept)[1]] == [ORIGIN, "witness.test/w1"]
    NoteVerifier.from_key(log.signer.verifier_key).verify(kept)
    witness.signer.verifier.open(kept)
    assert witness.checkpoint("log.test/unknown") is None


def test_concurrent_requests_never_roll_back(witness: Witness, log: MemoryLog) -> None:
    cosigned(witness, log, 0, 5)
    bodies = [log.request(5, size) for size in range(6, 26)]
    answers: list[int] = []

    def submit(body: bytes) -> None:
        answers.append(witness.add_checkpoint(body).status)

    threads = [threading.Thread(target=submit, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200] + [409] * 19  # one extends from 5; the rest see a new size
    current = witness.checkpoint(ORIGIN)
    assert current is not None and Checkpoint.parse(split_note(current)[0]).size > 5


# ---- state ----------------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path, log: MemoryLog) -> None:
    signer = new_witness()
    logs = KnownLogs.of([log.signer.verifier_key])
    state = WitnessState(tmp_path / "state")
    cosigned(Witness(signer, logs, state), log, 0, 7)
    state.close()
    reopened = WitnessState(tmp_path / "state")
    again = Witness(signer, logs, reopened)
    assert again.add_checkpoint(log.request(0, 9)).body == b"7\n"
    cosigned(again, log, 7, 9)
    reopened.close()


def test_one_process_per_state(tmp_path: Path) -> None:
    first = WitnessState(tmp_path / "state")
    with pytest.raises(StateError, match="in use by another witness"):
        WitnessState(tmp_path / "state")
    first.close()
    WitnessState(tmp_path / "state").close()


def entry(size: int, origin: str = ORIGIN) -> LogState:
    return LogState(origin, size, bytes(32), b"note\n")


def test_a_torn_tail_is_cut_and_damage_refused(tmp_path: Path) -> None:
    path = tmp_path / "state"
    state = WitnessState(path)
    state.put(entry(3))
    state.close()
    with path.open("ab") as f:
        f.write(encode_frame(entry(9).encode())[:-5])  # a crash mid-append
    reopened = WitnessState(path)
    got = reopened.get(ORIGIN)
    assert got is not None and got.size == 3
    reopened.close()
    with path.open("ab") as f:
        f.write(encode_frame(entry(1).encode()))  # going back: not a crash, damage
    with pytest.raises(StateError, match="goes back from size 3 to 1"):
        WitnessState(path)
    path.write_bytes(encode_frame(b'{"origin": 1}'))
    with pytest.raises(StateError, match="entry 1"):
        WitnessState(path)


def test_put_refuses_to_go_back_and_compaction_keeps_the_newest(tmp_path: Path) -> None:
    state = WitnessState(tmp_path / "state", compact_bytes=300)
    for size in range(1, 40):
        state.put(entry(size))
        state.put(entry(size * 2, "log.test/second"))
    with pytest.raises(StateError, match="refusing to go back"):
        state.put(entry(5))
    state.close()
    assert (tmp_path / "state").stat().st_size < 600  # compacted
    reopened = WitnessState(tmp_path / "state")
    assert [reopened.get(o).size for o in (ORIGIN, "log.test/second")] == [39, 78]  # type: ignore[union-attr]
    reopened.close()


def test_known_logs_from_policy_lines(log: MemoryLog) -> None:
    text = f"# witnessed logs\n\nlog {log.signer.verifier_key} https://log.test/\n"
    logs = KnownLogs.of(policy_log_keys(text, "logs.txt"))
    assert [v.verifier_key for v in logs.verifiers(ORIGIN)] == [log.signer.verifier_key]
    with pytest.raises(LogsConfigError, match="line 1: expected 'log"):
        policy_log_keys("witness w1 key\n", "logs.txt")
    with pytest.raises(LogsConfigError, match="listed twice"):
        KnownLogs.of([log.signer.verifier_key] * 2)
    with pytest.raises(LogsConfigError, match="bad log key"):
        KnownLogs.of([new_witness().verifier_key])  # a cosigner key is no checkpoint key
    rotated = new_signer(ORIGIN)
    two = KnownLogs.of([log.signer.verifier_key, rotated.verifier_key])
    assert len(two.verifiers(ORIGIN)) == 2 and len(two) == 1


def test_cosignatures_verify_with_the_published_key(witness: Witness, log: MemoryLog) -> None:
    answer = witness.add_checkpoint(log.request(0, 5))
    verifier = CosignatureVerifier.from_key(witness.signer.verifier_key)
    assert verifier.open(log.checkpoint(5) + answer.body).name == "witness.test/w1"
