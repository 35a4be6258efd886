"""RFC 3161 tokens over checkpoints: the pure checks (audit/timestamps.py) and the tokens file.

The tokens are the golden ones (tests/golden/timestamps: real ``openssl ts`` answers, generated
once by scripts/gen_timestamp_golden.py); ``openssl ts -verify`` is asked for its own verdict
on them, so the checks here agree with an independent verifier. Tokens fetched from a live TSA
by the runtime and the CLI are tests/e2e/test_timestamps.py's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier
from infertrail.audit.timestamps import (
    StampInfo,
    TimestampError,
    TrustRoots,
    check_entries,
    check_order,
    check_token,
    encode_entry,
    imprint,
    load_trust_roots,
    note_body,
    parse_entry,
    split_lines,
)
from infertrail.audit.tsa import TimestampStore
from infertrail.audit.verify import DAMAGE_KINDS

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "timestamps"
ORIGIN = "golden.example/infertrail"
CASES = sorted(GOLDEN.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text())
    return data


def lines_of(case: dict[str, Any]) -> list[bytes]:
    return [json.dumps(e).encode() for e in case["entries"]]


@pytest.fixture(scope="module")
def verifier() -> NoteVerifier:
    return NoteVerifier.from_key((GOLDEN / "log.pub").read_text())


@pytest.fixture(scope="module")
def trust() -> TrustRoots:
    return load_trust_roots((GOLDEN / "root.pem").read_bytes(), "root.pem")


def test_the_golden_cases_are_all_there() -> None:
    names = {p.stem for p in CASES}
    assert {"valid", "token_moved", "untrusted_tsa", "signature_altered"} <= names
    assert len(names) == 9


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_verdicts(path: Path, verifier: NoteVerifier, trust: TrustRoots) -> None:
    case = json.loads(path.read_text())
    stamps, problem = check_entries(lines_of(case), verifier, ORIGIN, trust)
    if not case["must_fail"]:
        assert problem is None, problem
        assert [info.checkpoint.size for _, info in stamps] == case["expect_sizes"]
        assert all(info.tsa == "CN=Golden TSA" for _, info in stamps)
        return
    assert problem is not None, f"{path.stem} must fail"
    assert problem.kind == case["expect_kind"]
    assert problem.kind in DAMAGE_KINDS
    assert problem.entry == case["expect_entry"]
    assert case["expect_error"] in problem.detail


def test_each_entry_is_checked_on_its_own(verifier: NoteVerifier, trust: TrustRoots) -> None:
    """The first problem is reported; the entries that check out are still returned."""
    moved = load("token_moved")
    stamps, problem = check_entries(lines_of(moved), verifier, ORIGIN, trust)
    assert [line for line, _ in stamps] == [0]
    assert problem is not None and problem.entry == 1


def test_genTimes_increase_with_the_checkpoints(verifier: NoteVerifier, trust: TrustRoots) -> None:
    stamps, _ = check_entries(lines_of(load("valid")), verifier, ORIGIN, trust)
    times = [info.gen_time for _, info in stamps]
    assert times == sorted(times) and times[0] < times[-1]
    assert all(t.tzinfo is not None for t in times)


def test_every_token_is_refused_under_another_root(verifier: NoteVerifier) -> None:
    other = load_trust_roots((GOLDEN / "other_root.pem").read_bytes(), "other_root.pem")
    _, problem = check_entries(lines_of(load("valid")), verifier, ORIGIN, other)
    assert problem is not None and problem.kind == "timestamp_untrusted"
    assert "CN=Golden TSA" in problem.detail


def test_a_checkpoint_of_another_origin_is_refused(
    verifier: NoteVerifier, trust: TrustRoots
) -> None:
    _, problem = check_entries(lines_of(load("valid")), verifier, "other.example/log", trust)
    assert problem is not None and problem.kind == "bad_signature"
    assert "'other.example/log'" in problem.detail


# ---- an independent verifier agrees -----------------------------------------------------


def openssl_verify(token: bytes, body: bytes, root: Path, tmp_path: Path) -> bool:
    tsr = tmp_path / "token.tsr"
    tsr.write_bytes(token)
    digest = hashlib.sha256(body).hexdigest()
    done = subprocess.run(
        ["openssl", "ts", "-verify", "-digest", digest, "-in", str(tsr), "-CAfile", str(root)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode == 0 and "Verification: OK" in done.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")
def test_openssl_reaches_the_same_verdicts(tmp_path: Path) -> None:
    valid = [parse_entry(line) for line in lines_of(load("valid"))]
    root, other = GOLDEN / "root.pem", GOLDEN / "other_root.pem"
    for entry in valid:
        assert openssl_verify(entry.token, note_body(entry.note), root, tmp_path)
        assert not openssl_verify(entry.token, note_body(entry.note), other, tmp_path)
    (moved_4, moved_13) = [parse_entry(line) for line in lines_of(load("token_moved"))]
    assert openssl_verify(moved_4.token, note_body(moved_4.note), root, tmp_path)
    assert not openssl_verify(moved_13.token, note_body(moved_13.note), root, tmp_path)
    (altered,) = [parse_entry(line) for line in lines_of(load("signature_altered"))]
    assert not openssl_verify(altered.token, note_body(altered.note), root, tmp_path)


# ---- check_token ------------------------------------------------------------------------


def golden_entry(name: str = "valid", index: int = 0) -> tuple[bytes, bytes]:
    entry = parse_entry(lines_of(load(name))[index])
    return entry.token, note_body(entry.note)


def test_a_token_says_what_was_stamped_and_when(trust: TrustRoots) -> None:
    token, body = golden_entry()
    info = check_token(token, body, trust)
    assert info.checkpoint == Checkpoint.parse(body)
    assert info.tsa == "CN=Golden TSA" and info.policy == "1.2.3.4.1"
    assert info.accuracy == dt.timedelta() and info.serial > 0
    assert dt.datetime(2026, 1, 1, tzinfo=dt.UTC) < info.gen_time


def test_the_imprint_is_sha256_of_the_checkpoint_body(trust: TrustRoots) -> None:
    token, body = golden_entry()
    assert imprint(body) == hashlib.sha256(body).digest()
    with pytest.raises(TimestampError, match="not this checkpoint's") as info:
        check_token(token, body.replace(b"\n4\n", b"\n5\n"), trust)
    assert info.value.kind == "mismatch"


def test_a_fresh_answer_must_echo_the_nonce(trust: TrustRoots) -> None:
    token, body = golden_entry()
    with pytest.raises(TimestampError, match="nonce"):
        check_token(token, body, trust, nonce=12345)


@pytest.mark.parametrize(
    "token",
    [b"", b"\x30\x03\x02\x01\x00", os.urandom(64), b"\x30" + b"\xff" * 20],
    ids=["empty", "status-only", "random", "bad-length"],
)
def test_garbage_tokens_are_mismatches(token: bytes, trust: TrustRoots) -> None:
    _, body = golden_entry()
    with pytest.raises(TimestampError) as info:
        check_token(token, body, trust)
    assert info.value.kind == "mismatch"


def test_a_truncated_token_is_a_mismatch(trust: TrustRoots) -> None:
    token, body = golden_entry()
    for cut in (1, 10, len(token) // 2, len(token) - 1):
        with pytest.raises(TimestampError) as info:
            check_token(token[:cut], body, trust)
        assert info.value.kind == "mismatch"


def test_a_body_that_is_no_checkpoint_is_refused(trust: TrustRoots) -> None:
    token, _ = golden_entry()
    with pytest.raises(NoteError):
        check_token(token, b"hello\n", trust)


# ---- the signer's certificate -----------------------------------------------------------


def certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    *,
    eku: list[x509.ObjectIdentifier] | None = None,
    critical: bool = True,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def test_the_signer_must_be_a_time_stamping_certificate() -> None:
    from infertrail.audit.timestamps import _check_time_stamping

    key = ec.generate_private_key(ec.SECP256R1())
    stamping = ExtendedKeyUsageOID.TIME_STAMPING
    _check_time_stamping(certificate("tsa", key, eku=[stamping]))
    for eku, critical, what in (
        (None, True, "no extended key usage"),
        ([stamping], False, "not a time-stamping certificate"),
        ([ExtendedKeyUsageOID.CODE_SIGNING], True, "not a time-stamping certificate"),
        ([stamping, ExtendedKeyUsageOID.CODE_SIGNING], True, "not a time-stamping certificate"),
    ):
        with pytest.raises(TimestampError, match=what) as info:
            _check_time_stamping(certificate("tsa", key, eku=eku, critical=critical))
        assert info.value.kind == "untrusted"


def test_chains_through_intermediates_to_a_root_only() -> None:
    from infertrail.audit.timestamps import _chains_to

    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = certificate("root", root_key)
    mid = certificate("mid", mid_key, ("root", root_key))
    leaf = certificate("tsa", leaf_key, ("mid", mid_key))
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in (mid, root))
    trust = load_trust_roots(pem, "chain.pem")
    assert trust.roots == (root,) and trust.intermediates == (mid,)
    assert _chains_to(leaf, trust)
    assert not _chains_to(leaf, TrustRoots((root,)))  # the intermediate is missing
    impostor_root = certificate("root", ec.generate_private_key(ec.SECP256R1()))
    assert not _chains_to(leaf, TrustRoots((impostor_root,), (mid,)))  # same name, other key


def test_trust_roots_files_are_checked() -> None:
    with pytest.raises(ValueError, match=r"roots\.pem: not a PEM file"):
        load_trust_roots(b"not a certificate", "roots.pem")
    key, root_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("tsa", key, ("root", root_key))
    with pytest.raises(ValueError, match=r"leaf\.pem: no self-signed"):
        load_trust_roots(leaf.public_bytes(Encoding.PEM), "leaf.pem")


# ---- order ------------------------------------------------------------------------------


def stamp(size: int, second: int, accuracy_s: float = 0.0) -> StampInfo:
    return StampInfo(
        Checkpoint("example.com/log", size, bytes(32)),
        dt.datetime(2026, 12, 1, 12, 0, second, tzinfo=dt.UTC),
        dt.timedelta(seconds=accuracy_s),
        1,
        "CN=tsa",
        "1.2.3",
    )


def test_order_allows_equal_times_and_accuracy() -> None:
    assert check_order([]) is None
    assert check_order([stamp(5, 1), stamp(9, 1), stamp(12, 7)]) is None
    assert check_order([stamp(12, 7), stamp(5, 1)]) is None  # by size, not by file order
    # 2 s backwards, within 1 s + 1 s of accuracy: plausible; with less, not.
    assert check_order([stamp(5, 3, 1.0), stamp(9, 1, 1.0)]) is None
    earlier, later = check_order([stamp(5, 3, 0.5), stamp(9, 1, 1.0)]) or (None, None)
    assert earlier is not None and later is not None
    assert (earlier.checkpoint.size, later.checkpoint.size) == (5, 9)


def test_order_compares_with_the_latest_time_so_far() -> None:
    pair = check_order([stamp(1, 10), stamp(2, 30), stamp(3, 20), stamp(4, 40)])
    assert pair is not None
    assert (pair[0].checkpoint.size, pair[1].checkpoint.size) == (2, 3)


# ---- the file ---------------------------------------------------------------------------


def test_entries_round_trip_and_bad_lines_are_named() -> None:
    token, _ = golden_entry()
    note = parse_entry(lines_of(load("valid"))[0]).note
    line = encode_entry(note, token)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_entry(line[:-1]) == parse_entry(lines_of(load("valid"))[0])
    for bad, what in (
        (b"{", "not JSON"),
        (b"[]", "must be an object"),
        (b'{"checkpoint": "x"}', "must be an object"),
        (b'{"checkpoint": "x", "token": "", "size": 1}', "must be an object"),
        (b'{"checkpoint": 1, "token": ""}', "must be strings"),
        (b'{"checkpoint": "x", "token": "%%"}', "not base64"),
        (b" " * (300 * 1024), "over"),
    ):
        with pytest.raises(TimestampError, match=what):
            parse_entry(bad)


def test_note_body_needs_a_checkpoint_note() -> None:
    note = parse_entry(lines_of(load("valid"))[0]).note
    assert note_body(note) == note[: note.index(b"\n\n") + 1]
    with pytest.raises(NoteError, match="no blank line"):
        note_body(b"golden.example/infertrail\n4\n")
    with pytest.raises(NoteError, match="line 2"):
        note_body(b"origin\nfour\nroot\n\n- sig\n")


def test_a_torn_last_line_is_set_apart() -> None:
    assert split_lines(b"") == ([], b"")
    assert split_lines(b"a\nb\n") == ([b"a", b"b"], b"")
    assert split_lines(b"a\nb\npart") == ([b"a", b"b"], b"part")


def test_the_store_appends_in_order_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    store = TimestampStore(tmp_path, fsync=False)
    entries = [parse_entry(line) for line in lines_of(load("valid"))]
    with store.locked() as newest:
        assert newest == -1
        store.append(entries[0].note, entries[0].token)
    with store.path.open("ab") as f:
        f.write(b'{"checkpoint": "torn')  # a crash mid-append
    with store.locked() as newest:
        assert newest == 4
        store.append(entries[1].note, entries[1].token)
    lines, torn = split_lines(store.path.read_bytes())
    assert torn == b"" and [parse_entry(line) for line in lines] == entries[:2]
    with store.path.open("ab") as f:
        f.write(b"garbage in the middle\n")  # verify's to report; the newest is still found
    with store.locked() as newest:
        assert newest == 6
        store.append(entries[2].note, entries[2].token)
    with store.locked() as newest:
        assert newest == 13


def test_the_store_lock_is_exclusive(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    store = TimestampStore(tmp_path, fsync=False)
    with store.locked() as newest:
        assert newest == -1
        with TimestampStore(tmp_path).locked(wait=False) as busy:
            assert busy is None
    with TimestampStore(tmp_path).locked(wait=False) as free:
        assert free == -1


def test_tokens_are_base64_of_der_in_the_file() -> None:
    case = load("valid")
    der = base64.b64decode(case["entries"][0]["token"])
    assert der[0] == 0x30  # a DER SEQUENCE: the TimeStampResp, as `openssl ts -reply` wrote it
