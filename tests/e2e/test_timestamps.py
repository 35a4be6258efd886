"""RFC 3161 timestamps end to end: a real TSA on loopback (``openssl ts``, tests/e2e/tsa.py).

A running service stamps its checkpoints in the background and ``infertrail audit verify``
checks the tokens; ``infertrail audit timestamp`` stamps on demand. Then the attacks, each shown
to pass unnoticed by the log's own checks (verify without the TSA root) and caught with it: a
token moved to another checkpoint, a token from an untrusted TSA, a history rolled back and
re-signed after its tokens were issued, a tampered token, tokens out of the log's order. Then a
TSA that fails in every way (down, hanging, HTTP 500, the wrong content type, garbage, another
CA): decisions go on, nothing is stored, health and metrics show it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.cli import audit
from infertrail.audit.keys import generate_signing_key, load_signer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.timestamps import (
    TIMESTAMPS_FILE,
    TrustRoots,
    encode_entry,
    load_trust_roots,
    parse_entry,
    split_lines,
)
from infertrail.audit.tsa import TimestampStore, TsaClient, TsaError, stamp_checkpoint
from infertrail.audit.verify import VerifyReport, verify_log
from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.runtime import Runtime
from tests.e2e.tsa import LoopbackTSA, Mode, Pki, make_pki
from tests.unit.audit.test_lake import make_record
from tests.unit.runtime.test_extras import run_core

ORIGIN = "tsa.example/log"
MODEL = ModelInfo("churn", "1", "ab" * 32)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tsa"), "Loopback TSA")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-tsa"), "Rogue TSA")


@pytest.fixture
def tsa(pki: Pki) -> Iterator[LoopbackTSA]:
    server = LoopbackTSA(pki)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustRoots:
    return load_trust_roots(pki.root_pem.read_bytes(), str(pki.root_pem))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def tokens(log_dir: Path) -> list[bytes]:
    path = log_dir / TIMESTAMPS_FILE
    return split_lines(path.read_bytes())[0] if path.exists() else []


def invoke(*args: str) -> Result:
    return CliRunner().invoke(audit, list(args), catch_exceptions=False)


# ---- a service stamps, verify checks -----------------------------------------------------


def service_settings(tmp_path: Path, tsa: LoopbackTSA, pki: Pki, **extra: Any) -> Settings:
    options: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "service_name": "tsa-test",
        "audit_origin": ORIGIN,
        "set_global_providers": False,
        "telemetry_files": False,
        "cost_enabled": False,
        "outcomes_enabled": False,
        "drift_enabled": False,
        "audit_tsa_url": tsa.url,
        "audit_tsa_roots_file": pki.root_pem,
        "audit_tsa_interval_s": 0.1,
        "audit_tsa_timeout_s": 1.0,
    }
    return Settings(**(options | extra))


def decide(rt: Runtime, n: int, start: int = 0) -> list[int]:
    seqs = []
    for i in range(start, start + n):
        with rt.observe(MODEL, {"x": i}, subject=f"s{i}") as ev:
            ev.score = 0.5
        receipt = rt.audit_receipt(ev, timeout_s=5)
        assert receipt is not None
        seqs.append(receipt.seq)
    return seqs


def metrics(rt: Runtime) -> dict[tuple[str, str], float]:
    """Timestamp series on /metrics: (sample name, result label) -> value."""
    assert rt.telemetry is not None
    text = generate_latest(rt.telemetry.prometheus_registry).decode()
    return {
        (s.name, s.labels.get("infertrail_audit_timestamp_result", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("infertrail_audit_timestamp")
    }


def test_a_service_stamps_its_checkpoints_and_verify_checks_them(
    tmp_path: Path, tsa: LoopbackTSA, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(tmp_path, tsa, pki)
    log_dir = settings.audit_log_dir
    with Runtime.start(settings, [MODEL]) as rt:
        decide(rt, 5)
        wait_for(lambda: len(tokens(log_dir)) >= 1, "a first token")
        decide(rt, 5, start=5)
        wait_for(lambda: len(tokens(log_dir)) >= 2, "a second token")
        health = rt.health()
        assert health.ready and health.to_dict()["audit_timestamps"] == "ok"
        # The token is on disk before the stamper counts its try: wait for the count too.
        stamped = ("infertrail_audit_timestamp_tries_total", "stamped")
        wait_for(lambda: metrics(rt).get(stamped, 0) >= 2, "two stamped tries counted")
        assert metrics(rt)[("infertrail_audit_timestamp_pending_seconds", "")] >= 0
    sizes = [int(parse_entry(line).note.split(b"\n")[1]) for line in tokens(log_dir)]
    assert sizes == sorted(set(sizes)) and sizes[-1] >= 5  # in the log's order, never twice

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(settings.data_dir))
    checked = invoke("verify", "--tsa-root", str(pki.root_pem), "--json")
    assert checked.exit_code == 0, checked.output
    summary = json.loads(checked.stdout)["timestamps"]
    assert summary["checked"] == summary["tokens"] == len(sizes)
    assert summary["tsa"] == ["CN=Loopback TSA"] and summary["trust"] == str(pki.root_pem)
    assert (summary["first_size"], summary["last_size"]) == (sizes[0], sizes[-1])
    text = invoke("verify", "--tsa-root", str(pki.root_pem))
    assert f"timestamps: {len(sizes)} RFC 3161 tokens by CN=Loopback TSA" in text.stdout
    unchecked = invoke("verify")  # no root given: counted, said so, not checked
    assert unchecked.exit_code == 0
    assert f"{len(sizes)} time-stamp tokens not checked: no TSA root given" in unchecked.stdout


def test_the_command_stamps_the_newest_checkpoint_once(
    tmp_path: Path, tsa: LoopbackTSA, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(data))
    monkeypatch.setenv("INFERTRAIL_AUDIT_ORIGIN", ORIGIN)
    generate_signing_key(data / "keys/audit.key", ORIGIN)
    log_dir = data / "audit/log"
    with AuditLog.open(
        log_dir, signer=load_signer(data / "keys/audit.key"), origin=ORIGIN, fsync=False
    ) as log:
        for i in range(12):
            log.append(make_record(i))
    url, root = ("--tsa-url", tsa.url), ("--tsa-root", str(pki.root_pem))
    first = invoke("timestamp", *url, *root)
    assert first.exit_code == 0, first.output
    assert "stamped checkpoint 12 at " in first.stdout and "by CN=Loopback TSA" in first.stdout
    again = invoke("timestamp", *url, *root)
    assert again.exit_code == 0 and "nothing to stamp: checkpoint 12 already has a token" in (
        again.stdout
    )
    assert len(tokens(log_dir)) == 1 and tsa.requests == 1
    assert invoke("verify", *root).exit_code == 0

    assert invoke("timestamp", *root).exit_code == 2  # no TSA URL
    assert "no time-stamp authority" in invoke("timestamp", *root).output
    assert invoke("timestamp", *url).exit_code == 2  # no root
    with AuditLog.open(
        log_dir, signer=load_signer(data / "keys/audit.key"), origin=ORIGIN, fsync=False
    ) as log:
        log.append(make_record(12))
    tsa.go_down()
    down = invoke("timestamp", *url, *root, "--timeout", "1")
    assert down.exit_code == 1 and "unreachable" in down.output
    assert len(tokens(log_dir)) == 1


# ---- attacks: each passes the log's own checks, and is caught with the tokens ------------


class Log:
    """A log written with AuditLog directly; tokens fetched from a live TSA as it grows."""

    def __init__(self, root: Path, signer: NoteSigner) -> None:
        self.dir = root / "log"
        self.lake = str(root / "lake")
        self.signer = signer
        self.verifier = NoteVerifier.from_key(signer.verifier_key)

    def grow(self, records: list[dict[str, Any]], stamp_with: TsaClient | None = None) -> bytes:
        """Append ``records``, sign a checkpoint, stamp it; return the checkpoint note."""
        with AuditLog.open(self.dir, signer=self.signer, origin=ORIGIN, fsync=False) as log:
            for record in records:
                log.append(record)
            log.flush()
            note = log.latest_checkpoint
        if stamp_with is not None:
            outcome = stamp_checkpoint(note, stamp_with, TimestampStore(self.dir, fsync=False))
            assert outcome.info is not None, outcome.skipped
        return note

    def verify(self, trust: TrustRoots | None) -> VerifyReport:
        return verify_log(self.dir, self.lake, self.verifier, tsa_roots=trust)

    def rewrite_tokens(self, lines: list[bytes]) -> None:
        (self.dir / TIMESTAMPS_FILE).write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_key(NoteSigner.generate(ORIGIN)[0])


@pytest.fixture
def stamped(tmp_path: Path, signer: NoteSigner, tsa: LoopbackTSA, trust: TrustRoots) -> Log:
    """A log of 30 records whose checkpoints at 10, 20 and 30 have tokens."""
    log = Log(tmp_path / "a", signer)
    client = TsaClient(tsa.url, trust, 2.0)
    for start in (0, 10, 20):
        log.grow([make_record(i) for i in range(start, start + 10)], client)
    client.close()
    assert len(tokens(log.dir)) == 3
    report = log.verify(trust)
    assert report.ok, report.finding
    assert report.timestamps.checked == 3 and report.timestamps.last_size == 30
    return log


def caught(log: Log, trust: TrustRoots) -> VerifyReport:
    """The attack is invisible to the log's own checks, and found with the tokens."""
    without = log.verify(None)
    assert without.ok, f"the log's own checks already catch it: {without.finding}"
    report = log.verify(trust)
    assert not report.ok
    return report


def test_a_token_moved_to_another_checkpoint(stamped: Log, trust: TrustRoots) -> None:
    lines = tokens(stamped.dir)
    entries = [parse_entry(line) for line in lines]
    swapped = encode_entry(entries[2].note, entries[1].token).rstrip(b"\n")
    stamped.rewrite_tokens([lines[0], lines[1], swapped])
    finding = caught(stamped, trust).finding
    assert finding is not None
    assert (finding.kind, finding.file, finding.entry) == ("timestamp_mismatch", TIMESTAMPS_FILE, 2)
    assert "not this checkpoint's" in finding.detail and "size 30" in finding.detail


def test_a_token_from_an_untrusted_tsa(
    tmp_path: Path, signer: NoteSigner, other_pki: Pki, trust: TrustRoots
) -> None:
    log = Log(tmp_path / "b", signer)
    rogue_trust = load_trust_roots(other_pki.root_pem.read_bytes(), "rogue root")
    with LoopbackTSA(other_pki) as rogue:
        log.grow([make_record(i) for i in range(10)], TsaClient(rogue.url, rogue_trust, 2.0))
    assert log.verify(rogue_trust).ok  # a real token, by its own root
    finding = caught(log, trust).finding
    assert finding is not None and finding.kind == "timestamp_untrusted"
    assert "CN=Rogue TSA" in finding.detail and "not under a trusted TSA root" in finding.detail


def test_a_history_rolled_back_and_re_signed_after_the_tokens(
    tmp_path: Path, stamped: Log, signer: NoteSigner, trust: TrustRoots
) -> None:
    """The operator rewrites records 15.. and re-signs a whole new history with the log's key.

    Every file of the new log is consistent and signed: only the tokens of the old one prove
    that the checkpoints of 20 and 30 records, now gone, existed when they were stamped.
    """
    forged = Log(tmp_path / "forged", signer)
    forged.grow([make_record(i) for i in range(15)])
    forged.grow([make_record(i, decision_override="approve") for i in range(15, 35)])
    shutil.copyfile(stamped.dir / TIMESTAMPS_FILE, forged.dir / TIMESTAMPS_FILE)
    report = caught(forged, trust)
    finding = report.finding
    assert finding is not None
    assert (finding.kind, finding.file, finding.entry) == ("rollback", TIMESTAMPS_FILE, 1)
    assert "first 20 records do not hash to the checkpoint" in finding.detail
    assert "genTime" in finding.detail
    assert report.records == 35  # the log itself checked out


def test_a_log_cut_back_below_a_stamped_checkpoint(
    tmp_path: Path, stamped: Log, signer: NoteSigner, trust: TrustRoots
) -> None:
    cut = Log(tmp_path / "cut", signer)
    cut.grow([make_record(i) for i in range(25)])  # the same first 25 records, re-signed
    shutil.copyfile(stamped.dir / TIMESTAMPS_FILE, cut.dir / TIMESTAMPS_FILE)
    finding = caught(cut, trust).finding
    assert finding is not None
    assert (finding.kind, finding.seq, finding.entry) == ("rollback", 25, 2)
    assert "a checkpoint of 30 was time-stamped" in finding.detail


def test_a_tampered_token(stamped: Log, trust: TrustRoots) -> None:
    lines = tokens(stamped.dir)
    entry = parse_entry(lines[1])
    damaged = bytearray(entry.token)
    damaged[-5] ^= 0x40  # inside the TSA's signature
    stamped.rewrite_tokens(
        [lines[0], encode_entry(entry.note, bytes(damaged)).rstrip(b"\n"), lines[2]]
    )
    finding = caught(stamped, trust).finding
    assert finding is not None and (finding.kind, finding.entry) == ("timestamp_mismatch", 1)
    assert "signature does not verify" in finding.detail


def test_tokens_out_of_the_logs_order(
    tmp_path: Path, signer: NoteSigner, tsa: LoopbackTSA, trust: TrustRoots
) -> None:
    """Checkpoint 20 stamped before checkpoint 10: tokens obtained out of the log's order."""
    log = Log(tmp_path / "c", signer)
    ten = log.grow([make_record(i) for i in range(10)])
    twenty = log.grow([make_record(i) for i in range(10, 20)])
    client = TsaClient(tsa.url, trust, 2.0)
    store = TimestampStore(log.dir, fsync=False)
    with store.locked():  # a rogue stamper: straight to the file, no order kept
        store.append(twenty, client.stamp(twenty[: twenty.rfind(b"\n\n") + 1])[0])
        time.sleep(1.1)  # genTime has a resolution of one second
        store.append(ten, client.stamp(ten[: ten.rfind(b"\n\n") + 1])[0])
    finding = caught(log, trust).finding
    assert finding is not None and (finding.kind, finding.entry) == ("timestamp_order", 0)
    assert "checkpoint 20 was stamped at" in finding.detail


def test_a_garbage_line_in_the_tokens_file(stamped: Log, trust: TrustRoots) -> None:
    lines = tokens(stamped.dir)
    stamped.rewrite_tokens([lines[0], b"not json at all", lines[2]])
    finding = caught(stamped, trust).finding
    assert finding is not None and (finding.kind, finding.entry) == ("timestamp_mismatch", 1)
    (stamped.dir / TIMESTAMPS_FILE).write_bytes(b"".join(x + b"\n" for x in lines) + b'{"torn')
    report = stamped.verify(trust)  # a torn last line is an append in progress
    assert report.ok and any("torn last line" in note for note in report.notes)


def test_the_logs_own_damage_is_named_before_its_tokens(stamped: Log, trust: TrustRoots) -> None:
    """A record modified in place breaks the stamped checkpoints too: it is reported as such."""
    segment = sorted((stamped.dir / "wal").glob("*"))[0]
    data = segment.read_bytes()
    at = data.index(b'"req-3"')
    segment.write_bytes(data[:at] + b'"req-X"' + data[at + 7 :])
    report = stamped.verify(trust)
    assert report.finding is not None and report.finding.kind != "rollback"
    assert report.finding.file != TIMESTAMPS_FILE


# ---- a TSA that fails: decisions go on, nothing is stored, it shows -----------------------


@pytest.mark.parametrize(
    ("mode", "reason", "message"),
    [
        ("down", "connection", "unreachable"),
        ("hang", "timeout", "timed out"),
        ("http_500", "http_status", "HTTP 500"),
        ("content_type", "content_type", "'text/html', not application/timestamp-reply"),
        ("garbage", "bad_reply", "not a DER TimeStampResp"),
    ],
)
def test_a_failing_tsa_gives_no_token(
    tmp_path: Path, tsa: LoopbackTSA, trust: TrustRoots, mode: Mode, reason: str, message: str
) -> None:
    log = Log(tmp_path, NoteSigner.from_key(NoteSigner.generate(ORIGIN)[0]))
    note = log.grow([make_record(i) for i in range(3)])
    if mode == "down":
        tsa.go_down()
    tsa.mode = mode
    client = TsaClient(tsa.url, trust, 0.5)
    t0 = time.monotonic()
    with pytest.raises(TsaError, match=message) as failure:
        stamp_checkpoint(note, client, TimestampStore(log.dir, fsync=False))
    assert failure.value.reason == reason
    assert time.monotonic() - t0 < 3  # bounded by the timeout
    assert tokens(log.dir) == []


def test_an_answer_from_another_tsa_is_refused(
    tmp_path: Path, other_pki: Pki, trust: TrustRoots
) -> None:
    log = Log(tmp_path, NoteSigner.from_key(NoteSigner.generate(ORIGIN)[0]))
    note = log.grow([make_record(0)])
    with LoopbackTSA(other_pki) as rogue, pytest.raises(TsaError, match="Rogue TSA") as failure:
        stamp_checkpoint(note, TsaClient(rogue.url, trust, 2.0), TimestampStore(log.dir))
    assert failure.value.reason == "untrusted"
    assert tokens(log.dir) == []


def test_a_tsa_outage_never_blocks_decisions(tmp_path: Path, tsa: LoopbackTSA, pki: Pki) -> None:
    tsa.mode = "hang"
    settings = service_settings(tmp_path, tsa, pki, audit_tsa_timeout_s=0.3)
    with Runtime.start(settings, [MODEL]) as rt:
        t0 = time.perf_counter()
        assert decide(rt, 20) == list(range(20))
        assert time.perf_counter() - t0 < 2.0  # no decision waited for the TSA
        assert rt.timestamps is not None
        wait_for(lambda: rt.health().to_dict()["audit_timestamps"] != "ok", "the outage")
        health = rt.health()
        assert health.ready and health.problems() == ""  # still in the load balancer
        detail = health.to_dict()["audit_timestamps"]
        assert "(timeout)" in detail and "decisions are not affected" in detail
        assert tsa.url not in detail
        seen = metrics(rt)
        assert seen[("infertrail_audit_timestamp_tries_total", "timeout")] >= 1
        wait_for(lambda: rt.timestamps is not None and rt.timestamps.pending_s() > 0.2, "pending")
        assert metrics(rt)[("infertrail_audit_timestamp_pending_seconds", "")] > 0.2
        assert tokens(settings.audit_log_dir) == []

        tsa.mode = "ok"  # the TSA comes back: the newest checkpoint gets its token
        wait_for(lambda: len(tokens(settings.audit_log_dir)) == 1, "a token after the outage")
        wait_for(lambda: rt.health().to_dict()["audit_timestamps"] == "ok", "recovery")
        assert rt.timestamps.pending_s() == 0.0
        decide(rt, 5, start=20)


def test_shutdown_does_not_wait_for_a_hung_tsa(tmp_path: Path, tsa: LoopbackTSA, pki: Pki) -> None:
    tsa.mode = "hang"
    settings = service_settings(tmp_path, tsa, pki, audit_tsa_timeout_s=30.0)
    rt = Runtime.start(settings, [MODEL])
    decide(rt, 3)
    wait_for(lambda: tsa.requests >= 1, "a request to the TSA")
    t0 = time.monotonic()
    rt.shutdown()
    assert time.monotonic() - t0 < 5.0
    assert (settings.audit_log_dir / "checkpoints/latest").is_file()


def test_a_bad_roots_file_fails_the_start_clearly(
    tmp_path: Path, tsa: LoopbackTSA, pki: Pki
) -> None:
    bad = tmp_path / "roots.pem"
    bad.write_text("not a certificate\n")
    settings = service_settings(tmp_path, tsa, pki, audit_tsa_roots_file=bad)
    with pytest.raises(ValueError, match=r"roots\.pem: not a PEM file"):
        Runtime.start(settings, [MODEL])
    missing = service_settings(tmp_path, tsa, pki, audit_tsa_roots_file=tmp_path / "none.pem")
    with pytest.raises(ValueError, match="cannot read it"):
        Runtime.start(missing, [MODEL])


@pytest.mark.slow
def test_without_the_extra_timestamps_are_off_with_a_warning(tmp_path: Path, pki: Pki) -> None:
    """A core install (rfc3161_client refused) still serves, and says timestamps are off."""
    done = run_core(
        f"""
        import logging
        import infertrail
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        model = infertrail.ModelInfo("churn", "1", "ab" * 32)
        settings = infertrail.Settings(
            service_name="batch", data_dir="data", audit_tsa_url="http://127.0.0.1:9/tsa",
            audit_tsa_roots_file={str(pki.root_pem)!r},
        )
        with infertrail.start(settings, models=[model]) as rt:
            with rt.observe(model, {{"x": 1}}) as ev:
                ev.score = 0.5
            print("seq", rt.audit_receipt(ev).seq, "timestamps", rt.timestamps)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "seq 0 timestamps None" in done.stdout
    assert "RFC 3161 timestamps is off: it needs infertrail[timestamps]" in done.stderr


def test_the_light_install_imports_no_time_stamp_client() -> None:
    code = (
        "import sys, infertrail.audit.verify, infertrail.runtime.assembly, infertrail.audit.cli\n"
        "print('rfc3161_client' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
