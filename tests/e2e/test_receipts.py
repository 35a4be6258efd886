"""Receipts end to end: ``infertrail serve`` answers every decision with one; its holders keep them.

The real service on loopback answers credit, sentiment and digits decisions, each with an
``audit_receipt`` that ``infertrail audit check-receipt`` accepts with only the public key. The
service is killed with SIGKILL right after its answers, restarted, killed again; every receipt
given out still checks against the restarted log (``audit verify --receipts``). Then the
operator's attack of issue 14: roll the checkpoint store back and edit a receipted decision,
CRC and hash store recomputed. The log alone cannot tell (``audit verify`` passes, and so after
the next start, which seals the forged record into the lake under a valid manifest); the
receipts can, naming the decision's receipt and its seq.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from infertrail.audit.commitnote import COMMIT_FILE, read_commit_notes
from infertrail.audit.recovery import note_size
from infertrail.models.credit import as_application, load_dataset
from tests.integration.conftest import (
    LOOPBACK,
    ManagedProcess,
    ProcessLauncher,
    clean_env,
    free_port,
    poll,
)
from tests.unit.audit.test_tamper_receipts import forge, roll_back


class Service:
    """The demo service's data directory, its process of the moment, and the receipts kept."""

    def __init__(self, data: Path, launcher: ProcessLauncher, receipts: Path) -> None:
        self.data = data
        self.launcher = launcher
        self.receipts = receipts
        self.log_dir = data / "audit" / "log"
        # Nothing is sealed while it runs: the WAL is what the attacker edits.
        self.env = clean_env(INFERTRAIL_AUDIT_SEAL_INTERVAL_S="3600")
        self.starts = 0
        self.applications = [as_application(row) for row in load_dataset().X[:10]]

    def start(self) -> tuple[ManagedProcess, str]:
        port = free_port()
        self.starts += 1
        proc = self.launcher.start(
            f"serve-{self.starts}",
            [sys.executable, "-m", "infertrail", "--data-dir", str(self.data), "serve",
             "--host", LOOPBACK, "--port", str(port), "--log-level", "warning"],
            env=self.env,
        )  # fmt: skip
        base = f"http://{LOOPBACK}:{port}"
        poll(
            lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200 or None,
            timeout_s=60,
            process=proc,
            what="the service to be ready",
        )
        return proc, base

    def decide(self, base: str, count: int) -> list[dict[str, Any]]:
        """``count`` decisions across the three models; each whole response is kept as a file."""
        answers = []
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(count):
                kind = i % 3
                if kind == 0:
                    body = {"applicant_id": f"a-{i}", **self.applications[i % 10]}
                    r = http.post("/v1/credit/score", json=body)
                elif kind == 1:
                    r = http.post("/v1/sentiment", json={"text": f"works well, order {i}"})
                else:
                    r = http.post("/v1/digits", json={"pixels": [float(i % 17)] * 64})
                assert r.status_code == 200, r.text
                answer = r.json()
                receipt = answer["audit_receipt"]
                assert receipt["seq"] == answer["audit_seq"]
                path = self.receipts / f"decision-{receipt['seq']:05d}.json"
                path.write_text(json.dumps(answer))
                answers.append(answer)
        return answers

    def kill(self, proc: ManagedProcess) -> None:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the service and nothing else
        proc.popen.wait(timeout=30)

    def stop(self, proc: ManagedProcess) -> None:
        proc.popen.send_signal(signal.SIGTERM)  # a clean stop seals what is committed
        assert proc.popen.wait(timeout=60) == 0, proc.log_tail()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Each run a verifier that never saw this log: no state remembered from earlier runs
        # (which would catch a rollback too); what the receipts alone catch is the point here.
        fresh = tempfile.mkdtemp(prefix="receipts-verifier-", dir=self.data.parent)
        return subprocess.run(
            [sys.executable, "-m", "infertrail", "--data-dir", str(self.data), *args],
            env=clean_env(XDG_CONFIG_HOME=fresh),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def verify(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("audit", "verify", *extra)


@pytest.mark.slow
def test_receipts_outlive_crashes_and_catch_a_rewritten_log(
    tmp_path: Path, trained_models: Path, launcher: ProcessLauncher
) -> None:
    data, receipts = tmp_path / "data", tmp_path / "receipts"
    receipts.mkdir()
    shutil.copytree(trained_models, data / "models")
    service = Service(data, launcher, receipts)

    proc, base = service.start()
    answers = service.decide(base, 12)
    service.kill(proc)  # right after the last answer
    pub = data / "keys" / "audit.key.pub"
    checked = service.cli("audit", "check-receipt", str(receipts / "decision-00004.json"),
                          "--key", str(pub))  # fmt: skip
    assert checked.returncode == 0 and checked.stdout.startswith("VALID: record seq 4"), checked
    # Before any restart, a checkpoint on disk covers every answered decision.
    notes = read_commit_notes(service.log_dir / "checkpoints" / COMMIT_FILE)
    assert max(map(note_size, notes)) > max(a["audit_seq"] for a in answers)

    proc, base = service.start()  # its sealer moves the first 12 into the lake at once
    later = service.decide(base, 6)
    answers += later
    service.kill(proc)
    intact = service.verify("--receipts", str(receipts))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert f"all {len(answers)} receipted records are in the log" in intact.stdout

    # The attack: an unsealed credit decision reversed, and the checkpoint store rolled back to
    # before it was signed.
    credit = next(a for a in later if "decision" in a)
    seq = credit["audit_seq"]
    forge(
        service.log_dir, seq, decision="approve" if credit["decision"] != "approve" else "decline"
    )
    roll_back(service.log_dir, seq)
    alone = service.verify()
    assert alone.returncode == 0, alone.stdout + alone.stderr
    caught = service.verify("--receipts", str(receipts))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    where = f"TAMPERED: modified at seq {seq}, decision-{seq:05d}.json"
    assert caught.stdout.startswith(where), caught.stdout

    # The next start seals the forged record under a valid manifest; the receipt still tells.
    proc, _ = service.start()
    service.stop(proc)
    sealed = json.loads(service.verify("--json").stdout)
    assert sealed["ok"] and sealed["sealed_records"] == len(answers), sealed
    again = service.verify("--receipts", str(receipts))
    assert again.returncode == 1 and again.stdout.startswith(where), again.stdout
