"""The audit log page through a real service: size, the newest checkpoint and the history checked
against the verifier key, a wrong key caught, the last verification, the history's tail read."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier, open_checkpoint
from infertrail.audit.framing import encode_frame, read_frames
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.verifier_state import StateFile, default_state_path
from infertrail.console.pages.auditlog import _TAIL_BYTES, _newest_frames
from infertrail.events import ModelInfo

from .conftest import ConsoleApp

MODEL = ModelInfo("credit", "1.0", "a" * 64)


@pytest.fixture
def logged(console_app: ConsoleApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConsoleApp:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for i in range(25):
        with console_app.runtime.observe(MODEL, {"x": i}) as ev:
            ev.confidence = 0.9
    assert console_app.runtime.audit is not None and console_app.runtime.audit.flush(10)
    return console_app


def test_every_role_sees_the_checkpoints_verified(logged: ConsoleApp) -> None:
    trail = logged.runtime.audit
    assert trail is not None
    key = verifier_key_path(logged.runtime.settings.signing_key_file).read_text().strip()
    logged.login("engineer")
    page = logged.client.get("/ui/auditlog.json").json()
    assert page["size"] == trail.log.size >= 25
    newest = page["newest"]
    assert newest["verified"] is True and newest["problem"] is None
    checked = open_checkpoint(newest["note"].encode(), NoteVerifier.from_key(key))
    assert newest["size"] == checked.size == trail.log.size
    assert page["verifier_key"] == key
    assert page["history"] and all(cp["verified"] for cp in page["history"])
    sizes = [cp["size"] for cp in page["history"]]
    assert sizes == sorted(sizes, reverse=True)
    assert page["witnesses"] is None and page["timestamps"] is None
    assert page["verification"]["found"] is False
    html = logged.client.get("/ui/auditlog").text
    assert "✓ signature verified" in html and f"{trail.log.size:,}" in html
    assert "No witnesses are configured" in html and "No timestamp authority" in html


def test_a_checkpoint_signed_by_another_key_does_not_verify(logged: ConsoleApp) -> None:
    pub = verifier_key_path(logged.runtime.settings.signing_key_file)
    _, other = NoteSigner.generate(logged.runtime.settings.audit_origin)
    pub.write_text(other + "\n")
    logged.login("auditor")
    page = logged.client.get("/ui/auditlog.json").json()
    assert page["newest"]["verified"] is False and page["newest"]["size"] is None
    assert page["newest"]["problem"]
    html = logged.client.get("/ui/auditlog").text
    assert "✗ does not verify" in html
    pub.write_text("not a key")
    page = logged.client.get("/ui/auditlog.json").json()
    assert "malformed" in page["verifier_key_error"]
    assert page["newest"]["verified"] is None and page["newest"]["size"] == page["size"]


def test_the_last_verification_is_shown(logged: ConsoleApp) -> None:
    trail = logged.runtime.audit
    assert trail is not None
    key = verifier_key_path(logged.runtime.settings.signing_key_file).read_text().strip()
    verifier = NoteVerifier.from_key(key)
    origin = trail.log.origin
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    outcome, _ = StateFile(default_state_path(origin)).advance(
        trail.log.latest_checkpoint, verifier, origin, source="test", seen=None, now=at
    )
    assert outcome == "created"
    logged.login("admin")
    got = logged.client.get("/ui/auditlog.json").json()["verification"]
    assert got["found"] is True and got["size"] == trail.log.size and got["conflicts"] == 0
    assert got["checked_at"].startswith("2026-07-01T12:00:00")
    assert (
        "last found the log consistent at 2026-07-01 12:00:00 UTC"
        in logged.client.get("/ui/auditlog").text
    )


@pytest.mark.parametrize(
    ("query", "words"),
    [("n=0", "n: '0' is not a whole number"), ("n=-3", "n: '-3'"), ("n=201", "from 1 to 200"),
     ("n=x", "n: 'x'"), ("seq=1", "seq: unknown parameter")],
)  # fmt: skip
def test_bad_parameters(console_app: ConsoleApp, query: str, words: str) -> None:
    console_app.login("engineer")
    r = console_app.client.get(f"/ui/auditlog.json?{query}")
    assert r.status_code == 400 and words in r.json()["detail"]


def test_history_limit(logged: ConsoleApp) -> None:
    logged.login("engineer")
    assert len(logged.client.get("/ui/auditlog.json?n=1").json()["history"]) == 1


def test_newest_frames_are_read_from_the_end_of_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "history.log"
    payloads = [f"checkpoint {i}\n".encode() * (1 + i % 20) for i in range(6000)]
    path.write_bytes(b"".join(encode_frame(p) for p in payloads))
    assert path.stat().st_size > 2 * _TAIL_BYTES
    assert _newest_frames(path, 5) == payloads[-5:]
    assert _newest_frames(path, 100) == read_frames(path, repair=False)[0][-100:]
    small = tmp_path / "small.log"
    small.write_bytes(b"".join(encode_frame(p) for p in payloads[:3]))
    assert _newest_frames(small, 10) == payloads[:3]
    assert _newest_frames(tmp_path / "missing.log", 3) == []
    # a frame still being written (its header only) reads as nothing rather than garbage
    small.write_bytes(small.read_bytes() + struct.pack("<II", 50, 0))
    assert _newest_frames(small, 10) == []
