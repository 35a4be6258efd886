"""The witness over HTTP (FastAPI app in-process) and its command line.

The protocol's decisions are tested without HTTP (test_witness_service.py); here: what reaches
the decisions through HTTP, bodies too large or of the wrong shape, the read route, the keys
and the usage errors of ``infertrail witness``. A real ``infertrail witness serve`` process is
driven by tests/e2e/test_witnesses.py.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from infertrail.audit.cosignature import CosignatureVerifier
from infertrail.audit.witness_protocol import MAX_REQUEST_SIZE, SIZE_CONTENT_TYPE
from infertrail.witness.app import create_app
from infertrail.witness.cli import witness as witness_cli
from infertrail.witness.logs import KnownLogs
from infertrail.witness.service import Witness
from infertrail.witness.state import WitnessState
from tests.unit.witness.helpers import ORIGIN, MemoryLog, new_witness


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def client(tmp_path: Path, log: MemoryLog) -> Iterator[tuple[TestClient, Witness]]:
    state = WitnessState(tmp_path / "state")
    witness = Witness(new_witness(), KnownLogs.of([log.signer.verifier_key]), state)
    with TestClient(create_app(witness)) as http:
        yield http, witness
    state.close()


def test_add_checkpoint_then_read_it_back(
    client: tuple[TestClient, Witness], log: MemoryLog
) -> None:
    http, witness = client
    r = http.post("/add-checkpoint", content=log.request(0, 5))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    witness.signer.verifier.open(log.checkpoint(5) + r.content)
    r = http.post("/add-checkpoint", content=log.request(0, 9))
    assert (r.status_code, r.content) == (409, b"5\n")
    assert r.headers["content-type"] == SIZE_CONTENT_TYPE
    # The origin has a slash: the read route takes it as it is, or percent-encoded.
    for path in (f"/checkpoint/{ORIGIN}", "/checkpoint/" + ORIGIN.replace("/", "%2F")):
        got = http.get(path)
        assert got.status_code == 200, path
        verifier = CosignatureVerifier.from_key(witness.signer.verifier_key)
        assert verifier.open(got.content).timestamp > 0
    assert http.get("/checkpoint/log.test/unknown").status_code == 404


def test_oversized_bodies_are_413_declared_or_streamed(
    client: tuple[TestClient, Witness],
) -> None:
    http, _ = client
    big = b"old 0\n\n" + b"x" * MAX_REQUEST_SIZE
    assert http.post("/add-checkpoint", content=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(MAX_REQUEST_SIZE // 65536 + 2):
            yield b"x" * 65536

    assert http.post("/add-checkpoint", content=chunks()).status_code == 413


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"garbage", 400),
        (b"old 0\n\nlog.test/witnessed\n5\n\n", 400),  # a note without signatures
        (b"old 0\n\n\x00\x01\n\n\xe2\x80\x94 k AAAA\n", 400),  # control characters
    ],
)
def test_malformed_bodies(client: tuple[TestClient, Witness], body: bytes, status: int) -> None:
    http, _ = client
    r = http.post("/add-checkpoint", content=body)
    assert r.status_code == status and r.content.startswith(b"malformed request")


def test_wrong_keys_over_http(client: tuple[TestClient, Witness], log: MemoryLog) -> None:
    http, _ = client
    stranger = MemoryLog()  # another key under the same origin name
    r = http.post("/add-checkpoint", content=stranger.request(0, 3))
    assert r.status_code == 403


def test_only_the_protocol_routes(client: tuple[TestClient, Witness]) -> None:
    http, _ = client
    assert http.get("/add-checkpoint").status_code == 405
    for path in ("/", "/docs", "/openapi.json", "/metrics"):
        assert http.get(path).status_code == 404, path


# ---- command line ---------------------------------------------------------------------------


def test_keys_init_writes_a_private_key_and_its_verifier_key(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "witness.key"
    runner = CliRunner()
    result = runner.invoke(
        witness_cli, ["keys", "init", "--name", "w.test/1", "--key-file", str(key)]
    )
    assert result.exit_code == 0, result.output
    vkey = result.stdout.strip()
    assert CosignatureVerifier.from_key(vkey).name == "w.test/1"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "witness.key.pub").read_text().strip() == vkey
    again = runner.invoke(
        witness_cli, ["keys", "init", "--name", "w.test/1", "--key-file", str(key)]
    )
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    bad = runner.invoke(
        witness_cli, ["keys", "init", "--name", "bad name", "--key-file", str(tmp_path / "k2")]
    )
    assert bad.exit_code == 2 and "name must be" in bad.output


def test_serve_usage_errors(tmp_path: Path, log: MemoryLog) -> None:
    runner = CliRunner()
    key = tmp_path / "w.key"
    assert (
        runner.invoke(
            witness_cli, ["keys", "init", "--name", "w", "--key-file", str(key)]
        ).exit_code
        == 0
    )
    base = ["serve", "--key-file", str(key), "--state-file", str(tmp_path / "state"), "--port", "0"]
    no_logs = runner.invoke(witness_cli, base)
    assert no_logs.exit_code == 2 and "no log to witness" in no_logs.output
    cosigner_as_log = runner.invoke(
        witness_cli, [*base, "--log", (tmp_path / "w.key.pub").read_text().strip()]
    )
    assert cosigner_as_log.exit_code == 2 and "bad log key" in cosigner_as_log.output
    logs = tmp_path / "logs.txt"
    logs.write_text("witness x y\n")
    bad_file = runner.invoke(witness_cli, [*base, "--logs", str(logs)])
    assert bad_file.exit_code == 2 and "line 1" in bad_file.output
    key.chmod(0o644)
    open_key = runner.invoke(witness_cli, [*base, "--log", log.signer.verifier_key])
    assert open_key.exit_code == 2 and "chmod 600" in open_key.output
    key.chmod(0o600)
    held = WitnessState(tmp_path / "state")
    try:
        busy = runner.invoke(witness_cli, [*base, "--log", log.signer.verifier_key])
        assert busy.exit_code == 2 and "in use by another witness" in busy.output
    finally:
        held.close()
