"""Witnesses, end to end: real ``infertrail witness serve`` processes on loopback, a real
Runtime with its audit log, ``infertrail audit verify``, and an attacker who can write the data
directory (and, in one test, holds the log's signing key).

Each attack is first shown to pass ``audit verify --offline``, which consults nothing beyond the
data directory (what verify did before witnesses existed), and then to be caught once the
witnesses are asked. Nothing here is simulated: the witnesses are separate processes with their
own keys and state files, reached over HTTP.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from infertrail.audit.checkpoint import Checkpoint, NoteSigner, NoteVerifier, split_note
from infertrail.audit.cosigned import CosignedStore
from infertrail.audit.keys import generate_signing_key, load_signer
from infertrail.audit.lake import LakeReader, Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.cli import main as infertrail_cli
from infertrail.config import Settings, WitnessEndpoint
from infertrail.events import ModelInfo
from infertrail.runtime import Runtime
from infertrail.witness.cli import witness as witness_cli
from tests.integration.conftest import (
    LOOPBACK,
    ManagedProcess,
    ProcessLauncher,
    assert_loopback_only,
    clean_env,
    free_port,
    poll,
)

pytestmark = pytest.mark.slow

MODEL = ModelInfo("churn", "1", "ab" * 32)


@dataclass
class Witness:
    """One ``infertrail witness serve`` process."""

    name: str
    vkey: str
    url: str
    process: ManagedProcess

    @property
    def endpoint(self) -> WitnessEndpoint:
        return WitnessEndpoint(url=self.url, key=self.vkey)


class Witnesses:
    """Starts witness processes (keys made with ``infertrail witness keys init``)."""

    def __init__(self, launcher: ProcessLauncher, root: Path) -> None:
        self.launcher = launcher
        self.root = root
        self.started = 0

    def start(self, index: int, log_vkeys: list[str]) -> Witness:
        key = self.root / f"w{index}.key"
        name = f"witness.test/w{index}"
        if not key.exists():
            made = CliRunner().invoke(
                witness_cli, ["keys", "init", "--name", name, "--key-file", str(key)]
            )
            assert made.exit_code == 0, made.output
        vkey = (self.root / f"w{index}.key.pub").read_text().strip()
        port = free_port()
        argv: list[str | Path] = [
            sys.executable, "-m", "infertrail", "witness", "serve", "--key-file", key,
            "--state-file", self.root / f"w{index}.state", "--port", str(port),
        ]  # fmt: skip
        for log_vkey in log_vkeys:
            argv += ["--log", log_vkey]
        self.started += 1
        process = self.launcher.start(f"witness{index}-{self.started}", argv, env=clean_env())
        url = f"http://{LOOPBACK}:{port}"

        def answers() -> bool | None:  # any HTTP answer: it is listening
            httpx.get(f"{url}/checkpoint/none", timeout=2)
            return True

        poll(answers, timeout_s=30, process=process, what=f"witness {name} listening")
        assert_loopback_only(port, process)
        return Witness(name, vkey, url, process)


@pytest.fixture
def witnesses(launcher: ProcessLauncher, tmp_path: Path) -> Witnesses:
    return Witnesses(launcher, tmp_path / "witnesses")


@pytest.fixture
def settings(tmp_path: Path, clean_env: None) -> Settings:
    """A lean service's settings: the audit trail, no drift, cost or outcomes."""
    return Settings(
        data_dir=tmp_path / "data",
        service_name="witnessed",
        drift_enabled=False,
        cost_enabled=False,
        outcomes_enabled=False,
        retention_enforce=False,
        metric_export_interval_ms=60_000,
        set_global_providers=False,
        audit_witness_interval_s=0.2,
        audit_witness_timeout_s=2.0,
    )


def log_vkey(settings: Settings) -> str:
    """The log's verifier key (its signing key is created on first use)."""
    if not settings.signing_key_file.exists():
        generate_signing_key(settings.signing_key_file, settings.audit_origin)
    return load_signer(settings.signing_key_file).verifier_key


def with_witnesses(settings: Settings, ws: list[Witness], quorum: int) -> Settings:
    return settings.model_copy(
        update={"audit_witnesses": [w.endpoint for w in ws], "audit_witness_quorum": quorum}
    )


def decide(rt: Runtime, count: int) -> list[float]:
    """``count`` audited decisions; each one's seconds from observe to durable receipt."""
    took = []
    for i in range(count):
        start = time.perf_counter()
        with rt.observe(MODEL, {"x": i}) as ev:
            ev.score = 0.5
        receipt = rt.audit_receipt(ev, timeout_s=10)
        assert receipt is not None
        took.append(time.perf_counter() - start)
    return took


def published(settings: Settings) -> tuple[int, list[str]] | None:
    """The published checkpoint's size and cosigners (names on its signature lines)."""
    note = CosignedStore(settings.audit_log_dir).published()
    if note is None:
        return None
    text, signatures = split_note(note)
    return Checkpoint.parse(text).size, [n for n, _, _ in signatures[1:]]


def wait_for(what: str, condition: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def published_at(settings: Settings, rt: Runtime, cosigners: int) -> Callable[[], bool]:
    """True once every record so far is under a checkpoint published with ``cosigners``."""

    def check() -> bool:
        assert rt.audit is not None
        size = rt.audit.log.size
        got = published(settings)
        return got is not None and got[0] == size and len(got[1]) >= cosigners

    return check


def verify(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    """``infertrail audit verify --json [args]`` with these settings: (exit code, report)."""
    env = {
        "INFERTRAIL_AUDIT_WITNESSES": json.dumps([w.model_dump() for w in settings.audit_witnesses])
    }
    if settings.audit_witness_quorum is not None:
        env["INFERTRAIL_AUDIT_WITNESS_QUORUM"] = str(settings.audit_witness_quorum)
    # The verifier's own state (the checkpoint it remembers) is this test's, outside the data.
    env["XDG_CONFIG_HOME"] = str(settings.data_dir.parent / "verifier-config")
    result = CliRunner().invoke(
        infertrail_cli,
        ["--data-dir", str(settings.data_dir), "audit", "verify", "--json", *args],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def running() -> Iterator[list[Runtime]]:
    """Runtimes a test starts; each is shut down at the end, also on failure."""
    started: list[Runtime] = []
    yield started
    for rt in started:
        rt.shutdown()


def start(settings: Settings, running: list[Runtime]) -> Runtime:
    rt = Runtime.start(settings, [MODEL])
    running.append(rt)
    return rt


# ---- the tests ------------------------------------------------------------------------------


def test_a_quorum_cosigns_and_a_witness_down_never_blocks_decisions(
    settings: Settings, witnesses: Witnesses, running: list[Runtime]
) -> None:
    vkey = log_vkey(settings)
    ws = [witnesses.start(i, [vkey]) for i in (1, 2, 3)]
    s = with_witnesses(settings, ws, quorum=2)
    rt = start(s, running)
    decide(rt, 20)
    wait_for("a checkpoint cosigned by all three", published_at(s, rt, 3))
    health = rt.health()
    assert health.ready and health.to_dict()["audit_witnesses"] == "ok"

    ws[2].process.stop()  # witness 3 goes down
    took = decide(rt, 30)
    assert max(took) < 2.0, max(took)  # decisions never wait for a witness
    wait_for("a newer checkpoint cosigned by the other two", published_at(s, rt, 2))
    health = wait_for(
        "health naming the dead witness",
        lambda: (h := rt.health()).to_dict()["audit_witnesses"] != "ok" and h,
    )
    assert health.ready  # shown, never required
    assert "witness.test/w3: unreachable" in health.to_dict()["audit_witnesses"]
    rt.shutdown()

    code, report = verify(s, "--offline")  # w3 cannot be asked: the kept copies suffice here
    assert code == 0 and report["witnessed_size"] > 0, report
    code, report = verify(s)
    assert code == 0, report["finding"]
    assert any("witness witness.test/w3 not asked" in n for n in report["notes"])
    assert "a witness quorum" in report["rollback_protection"]


def test_a_rollback_of_the_whole_data_directory_is_caught(
    settings: Settings, witnesses: Witnesses, running: list[Runtime], tmp_path: Path
) -> None:
    vkey = log_vkey(settings)
    ws = [witnesses.start(i, [vkey]) for i in (1, 2)]
    s = with_witnesses(settings, ws, quorum=2)
    rt = start(s, running)
    decide(rt, 10)
    wait_for("the first 10 published", published_at(s, rt, 2))
    rt.shutdown()
    saved = tmp_path / "saved"
    shutil.copytree(s.data_dir, saved)  # an old backup: consistent, validly signed throughout
    rt = start(s, running)
    decide(rt, 15)
    wait_for("25 published", published_at(s, rt, 2))
    rt.shutdown()

    # The operator puts the old state back: log, lake, cosigned copies, everything.
    shutil.rmtree(s.data_dir)
    shutil.copytree(saved, s.data_dir)
    code, report = verify(s, "--offline")
    assert code == 0, report["finding"]  # nothing in the data directory contradicts it
    code, report = verify(s)
    assert code == 1, (report["notes"], report["anchors"])
    finding = report["finding"]
    assert finding["kind"] == "rollback" and finding["seq"] == 10
    assert finding["file"] == "witnesses witness.test/w1, witness.test/w2"
    assert "cosigned size 25" in finding["detail"] and "only 10 records" in finding["detail"]

    # Run on it, the log hears it from the witnesses too, and decisions go on.
    rt = start(s, running)
    decide(rt, 3)
    reason = wait_for(
        "health reporting the refusal",
        lambda: (r := rt.health().to_dict()["audit_witnesses"]) != "ok" and "refused" in r and r,
    )
    assert re.search(r"cosigned size 25, beyond this log's 1[1-3]: the log was rolled back", reason)
    assert rt.health().ready
    assert published(s) == (10, ["witness.test/w1", "witness.test/w2"])  # nothing new published


def test_a_fork_signed_with_a_stolen_key_is_caught_and_located(
    settings: Settings, witnesses: Witnesses, running: list[Runtime], tmp_path: Path
) -> None:
    vkey = log_vkey(settings)
    ws = [witnesses.start(i, [vkey]) for i in (1, 2)]
    s = with_witnesses(settings, ws, quorum=2)
    rt = start(s, running)
    decide(rt, 20)
    wait_for("20 published", published_at(s, rt, 2))
    rt.shutdown()

    # With the log's key, the attacker writes another history: the first 12 decisions as they
    # were, the rest changed, sealed and signed like the real thing; and swaps it in.
    build_fork(s, tmp_path / "fork", keep=12)
    code, report = verify(s, "--offline")
    assert code == 0, report["finding"]  # validly signed throughout
    code, report = verify(s)
    assert code == 1
    finding = report["finding"]
    assert finding["kind"] == "fork"
    assert finding["file"] == "witnesses witness.test/w1, witness.test/w2"
    assert "cosigned size 20" in finding["detail"] and "re-signed with its key" in finding["detail"]
    assert finding["seq"] == 0  # no smaller witnessed size survives to narrow it down

    # The forked log is refused by both witnesses (422), shown in health; nothing published.
    rt = start(s, running)
    decide(rt, 2)  # a checkpoint of 22: sent with a proof from 20, which cannot verify
    reason = wait_for(
        "both witnesses refusing the proof",
        lambda: (
            (r := rt.health().to_dict()["audit_witnesses"]).count("refused for") == 2
            and r.count("422: its tree of size 20 is not a prefix") == 2
            and r
        ),
    )
    assert "the log was forked" in reason and "quorum not reached" in reason
    assert rt.health().ready


def test_quorum_not_reached_publishes_nothing(
    settings: Settings, witnesses: Witnesses, running: list[Runtime]
) -> None:
    vkey = log_vkey(settings)
    follows = witnesses.start(1, [vkey])
    other_log = NoteSigner.generate("other.test/log")[1]
    stranger = witnesses.start(2, [other_log])  # a witness that does not follow this log
    s = with_witnesses(settings, [follows, stranger], quorum=2)
    rt = start(s, running)
    decide(rt, 5)
    reason = wait_for(
        "health saying the quorum is not reached",
        lambda: (r := rt.health().to_dict()["audit_witnesses"]).startswith("quorum not") and r,
    )
    assert "1 of the 2 needed" in reason and "witness.test/w2: rejected" in reason
    assert rt.health().ready
    assert published(s) is None
    witnessed = CosignedStore(s.audit_log_dir).witness_note("witness.test/w1")
    assert witnessed is not None  # w1's cosignature is kept, evidence below the quorum
    rt.shutdown()
    code, report = verify(s)
    assert code == 0 and report["witnessed_size"] == 0


def test_the_witness_process_refuses_bad_input_and_keeps_its_state(
    settings: Settings, witnesses: Witnesses
) -> None:
    vkey = log_vkey(settings)
    w = witnesses.start(1, [vkey])
    signer = load_signer(settings.signing_key_file)
    with AuditLog.open(
        settings.audit_log_dir, signer=signer, origin=settings.audit_origin, fsync=False
    ) as log:
        for i in range(5):
            log.append({"n": i})
        log.flush()
        note = log.latest_checkpoint
    post = f"{w.url}/add-checkpoint"
    assert httpx.post(post, content=b"old 0\n\n" + note).status_code == 200
    assert httpx.post(post, content=b"old 0\n\n" + note).text == "5\n"  # 409: it has size 5
    assert httpx.post(post, content=b"nonsense").status_code == 400
    assert httpx.post(post, content=b"old 5\n\n" + note.replace(b"5", b"6", 1)).status_code == 403
    assert httpx.post(post, content=b"x" * (1 << 20)).status_code == 413
    assert httpx.get(f"{w.url}/add-checkpoint").status_code == 405
    w.process.stop()
    again = witnesses.start(1, [vkey])  # restarted on the same state file
    kept = httpx.get(f"{again.url}/checkpoint/{settings.audit_origin}")
    assert kept.status_code == 200
    NoteVerifier.from_key(vkey).verify(kept.content)
    assert httpx.post(f"{again.url}/add-checkpoint", content=b"old 0\n\n" + note).text == "5\n"


# ---- the attacker's tools -------------------------------------------------------------------


def build_fork(settings: Settings, root: Path, keep: int) -> None:
    """Another history of the log, written with its key: records [0, keep) as they were."""
    signer = load_signer(settings.signing_key_file)
    verifier = NoteVerifier.from_key(signer.verifier_key)
    original = list(LakeReader(settings.lake_url).iter_records(verifier))
    log_dir, lake = root / "log", str(root / "lake")
    with AuditLog.open(log_dir, signer=signer, origin=settings.audit_origin, fsync=False) as log:
        for seq, canonical, _ in original:
            record = orjson.loads(canonical)
            del record["seq"]
            if seq >= keep:
                record["decision"] = "forged"
            log.append(record)
        log.flush()
        Sealer(log, lake, signer).seal()
    forged = list(LakeReader(lake).iter_records(verifier))
    assert [r[1] for r in forged[:keep]] == [r[1] for r in original[:keep]]  # byte for byte
    assert all(a[1] != b[1] for a, b in zip(forged[keep:], original[keep:], strict=True))
    shutil.rmtree(settings.audit_log_dir)
    shutil.rmtree(settings.lake_url)
    shutil.copytree(log_dir, settings.audit_log_dir)
    shutil.copytree(lake, settings.lake_url)
