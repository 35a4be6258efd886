"""A storage fault under a running service, and recovery without a restart (issue 15).

``infertrail serve`` runs with its data directory on a small tmpfs mounted for the test. The
disk is filled (then freed), or the audit log's files and directories made read-only (then
writable again; the service runs without the capabilities that let root ignore permissions).
While the fault
lasts, credit decisions get 503 and ``/readyz`` 503 naming the component, never a path of the
server; once it clears, decisions are given again and ``/readyz`` is 200, same process. After a
clean stop, every acknowledged decision is in the log at the seq its answer gave, no refused
one is, and ``infertrail audit verify`` passes (its checkpoint history consistent throughout).

Mounting needs root, as tests run here and in CI; elsewhere the tests skip saying so.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from infertrail.audit import wal
from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.lake import LakeReader
from infertrail.models.credit import as_application, load_dataset
from tests.integration.conftest import LOOPBACK, free_port, poll

pytestmark = pytest.mark.slow

# What lets root write where the permissions say no: dropped for the service, so they hold.
_OVERRIDES = "-dac_override,-dac_read_search,-fowner"
APPLICANTS = [f"applicant-{i}@example" for i in range(3)]


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size``, unmounted (and its mount point removed) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the tests run as root here and in CI)")
    mount_point = Path(tempfile.mkdtemp(prefix="health-tmpfs-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


@functools.cache
def application(row: int) -> dict[str, Any]:
    return as_application(load_dataset().X[row])


@dataclass
class Service:
    """``infertrail serve`` on the tmpfs, and what its answers said."""

    data: Path
    http: httpx.Client
    acked: dict[str, int] = field(default_factory=dict)  # request id -> audit seq
    refused: set[str] = field(default_factory=set)  # request ids answered 503

    def decide(self, i: int) -> httpx.Response:
        """One credit decision for a known applicant (its pseudonym is already stored)."""
        body = {"applicant_id": APPLICANTS[i % len(APPLICANTS)], **application(i % 50)}
        r = self.http.post("/v1/credit/score", json=body)
        if r.status_code == 200:
            self.acked[r.json()["request_id"]] = r.json()["audit_seq"]
        elif r.status_code == 503:
            self.refused.add(r.json()["request_id"])
        return r

    def refuse_a_decision(self) -> httpx.Response:
        """Decide until one is refused (the first may still fit in allocated space)."""
        for i in range(400):
            r = self.decide(i)
            if r.status_code == 503:
                return r
            assert r.status_code == 200, r.text
            time.sleep(0.02)
        pytest.fail("no decision was refused under the fault")

    def ready(self) -> httpx.Response:
        return self.http.get("/readyz")


@contextlib.contextmanager
def serve(
    mount: Path, trained_models: Path, tmp_path: Path, *, permissions_hold: bool = False
) -> Iterator[Service]:
    """The demo service with its data on ``mount``; stopped with SIGTERM (exit 0) at the end.

    ``permissions_hold``: run it without the capabilities that let root ignore them.
    """
    data = mount / "data"
    shutil.copytree(trained_models, data / "models")
    home = mount / "home"
    home.mkdir()
    command = [sys.executable, "-m", "infertrail", "--data-dir", str(data), "serve"]
    if permissions_hold:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root's permission overrides"
        command = [setpriv, f"--bounding-set={_OVERRIDES}", f"--inh-caps={_OVERRIDES}", *command]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERTRAIL_", "OTEL_"))}
    env.update(
        HOME=str(home),
        PYTHONDONTWRITEBYTECODE="1",
        INFERTRAIL_AUDIT_RETRY_S="0.2",
        INFERTRAIL_AUDIT_RETRY_MAX_S="1",
        INFERTRAIL_AUDIT_SEAL_INTERVAL_S="1",  # the sealer runs (and fails) during the fault
    )
    stderr = (tmp_path / "serve.stderr").open("w")
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=20.0) as http:
            service = Service(data, http)
            poll(lambda: service.ready().status_code == 200 or None, timeout_s=90, what="serve")
            yield service
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, (tmp_path / "serve.stderr").read_text()[-4000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
        stderr.close()


def fill_disk(mount: Path) -> Path:
    """Write a file until the file system is full, to the last byte; the file."""
    filler = mount / "filler"
    with filler.open("wb", buffering=0) as f:
        chunk = 1 << 20
        while chunk:
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    return filler


def assert_no_paths(response: httpx.Response, mount: Path) -> None:
    assert str(mount) not in response.text and "/tmp" not in response.text, response.text


def assert_not_ready(service: Service, mount: Path, *fragments: str) -> dict[str, Any]:
    r = service.ready()
    assert r.status_code == 503, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"error", "detail", "request_id"} and body["error"] == "not_ready"
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    assert_no_paths(r, mount)
    return body


def assert_refused(r: httpx.Response, mount: Path) -> None:
    assert r.status_code == 503 and r.json()["error"] == "audit_unavailable", r.text
    assert_no_paths(r, mount)


def recovers(service: Service) -> None:
    """/readyz back to 200 and decisions given again, by the same process."""
    poll(lambda: service.ready().status_code == 200 or None, timeout_s=30, what="/readyz 200")
    for i in range(5):
        r = service.decide(100 + i)
        assert r.status_code == 200, r.text


def check_the_log(data: Path, service: Service) -> None:
    """After the stop: verify passes, acknowledged decisions are in, refused ones are not."""
    verify = subprocess.run(
        [sys.executable, "-m", "infertrail", "--data-dir", str(data), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    vkey = (data / "keys" / "audit.key.pub").read_text().strip()
    records = {
        seq: json.loads(raw)
        for seq, raw, _ in LakeReader(str(data / "audit" / "lake")).iter_records(
            NoteVerifier.from_key(vkey)
        )
    }
    for seq, raw in wal.iter_records(data / "audit" / "log" / "wal"):
        records.setdefault(seq, json.loads(raw))
    assert sorted(records) == list(range(len(records)))  # dense: no seq lost or reused twice
    by_request = {r["request_id"]: seq for seq, r in records.items() if r.get("request_id")}
    for request_id, seq in service.acked.items():
        assert by_request.get(request_id) == seq, f"acknowledged {request_id} not at seq {seq}"
    assert service.refused, "the fault refused nothing"
    assert not service.refused & set(by_request), "a refused decision is in the log"


def test_a_full_disk_then_freed_space_without_a_restart(
    trained_models: Path, tmp_path: Path, clean_env: None
) -> None:
    with tmpfs("24m") as mount:
        with serve(mount, trained_models, tmp_path) as service:
            for i in range(6):
                assert service.decide(i).status_code == 200
            filler = fill_disk(mount)
            # Readiness sees the full disk before a write fails on it.
            assert_not_ready(service, mount, "free on its file system")
            assert_refused(service.refuse_a_decision(), mount)
            assert_refused(service.decide(50), mount)  # refused at once while down
            assert_not_ready(service, mount, "audit_log: writes failed", "ENOSPC")
            assert service.http.get("/healthz").status_code == 200  # alive: not to be restarted

            filler.unlink()
            recovers(service)
        check_the_log(service.data, service)


def test_a_read_only_audit_log_then_writable_again_without_a_restart(
    trained_models: Path, tmp_path: Path, clean_env: None
) -> None:
    with tmpfs("24m") as mount:
        with serve(mount, trained_models, tmp_path, permissions_hold=True) as service:
            for i in range(6):
                assert service.decide(i).status_code == 200
            log_dir = service.data / "audit" / "log"
            modes = {p: p.stat().st_mode & 0o777 for p in (log_dir, *log_dir.rglob("*"))}
            for path, mode in modes.items():
                path.chmod(mode & 0o555)
            # Open files still take writes, so readiness must look at the permissions.
            assert_not_ready(service, mount, "audit_log: ", "wal directory is not writable")
            assert_refused(service.refuse_a_decision(), mount)
            assert_not_ready(service, mount, "audit_log: writes failed", "EACCES")

            for path, mode in modes.items():
                path.chmod(mode)
            recovers(service)
        check_the_log(service.data, service)
