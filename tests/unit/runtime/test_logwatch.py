"""LogWatch (``audit monitor``) against static tlog-tiles served on loopback: growth, stall,
rollback, fork, and servers that answer garbage. The end-to-end run against the real service is
tests/e2e/test_monitor.py."""

from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infertrail.alerting import AlertEngine, parse_rules
from infertrail.alerting.testing import RecordingDispatch
from infertrail.audit.checkpoint import NoteSigner, NoteVerifier
from infertrail.audit.cosignature import CosignatureSigner, WitnessPolicy, add_signature_lines
from infertrail.audit.ledger import AuditLog
from infertrail.audit.monitor import HttpLog, witness_quorum
from infertrail.audit.tilesource import LogTiles, publish_tiles
from infertrail.audit.verifier_state import StateFile
from infertrail.runtime.logwatch import LogWatch

ORIGIN = "watch.example/log"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


class StaticLog:
    """Files under ``root`` served over HTTP on 127.0.0.1; ``override`` answers some paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.override: dict[str, tuple[int, bytes]] = {}
        static = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.removeprefix("/log/")
                status, body = static.override.get(path, (0, b""))
                if not status:
                    file = static.root / path
                    status, body = (200, file.read_bytes()) if file.is_file() else (404, b"no")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/log"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Log:
    """A real AuditLog whose tiles are published to the static server's directory."""

    def __init__(self, root: Path, signer: NoteSigner) -> None:
        self.dir = root / "log"
        self.signer = signer
        self.size = 0

    def grow(self, to: int, out: Path, salt: str = "") -> None:
        with AuditLog.open(self.dir, signer=self.signer, origin=ORIGIN, fsync=False) as log:
            while self.size < to:
                log.append({"n": self.size, "salt": salt})
                self.size += 1
        publish_tiles(LogTiles(self.dir), str(out))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[StaticLog, Log, NoteVerifier, Path]]:
    skey, vkey = NoteSigner.generate(ORIGIN)
    signer = NoteSigner.from_key(skey)
    served = StaticLog(tmp_path / "public")
    try:
        yield served, Log(tmp_path, signer), NoteVerifier.from_key(vkey), tmp_path
    finally:
        served.close()


RULES = parse_rules(
    {
        "receivers": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/never-called"}},
        "rules": [
            {"name": n, "signal": s, "comparison": ">", "threshold": t, "receivers": ["hook"]}
            for n, s, t in [
                ("fork", "tlog.fork", 0),
                ("rollback", "tlog.rollback", 0),
                ("invalid", "tlog.invalid", 0),
                ("stalled", "tlog.seconds_since_growth", 60),
            ]
        ],
    }
)


def watcher(
    served: StaticLog, verifier: NoteVerifier, state: Path, clock: Callable[[], datetime]
) -> tuple[LogWatch, RecordingDispatch]:
    dispatch = RecordingDispatch()
    engine = AlertEngine(RULES, dispatch, None)
    watch = LogWatch(HttpLog(served.url), verifier, ORIGIN, StateFile(state), engine=engine,
                     stall_after_s=60, clock=clock)  # fmt: skip
    return watch, dispatch


def test_growth_stall_rollback_and_fork(world: tuple[StaticLog, Log, NoteVerifier, Path]) -> None:
    served, log, verifier, root = world
    now = [T0]
    watch, dispatch = watcher(served, verifier, root / "state.json", lambda: now[0])
    log.grow(300, served.root)
    first = watch.look()
    assert first.ok and first.remembered == "created" and first.observation.grew
    now[0] += timedelta(seconds=10)
    log.grow(700, served.root)
    grew = watch.look()
    assert grew.ok and grew.remembered == "advanced"
    assert "grew from 300 to 700, consistently" in grew.line()
    now[0] += timedelta(seconds=61)
    stalled = watch.look()
    assert not stalled.ok and stalled.stalled and stalled.line().startswith("STALLED: ")
    assert [t.rule for t in dispatch.transitions("trigger")] == ["stalled"]
    # the operator swaps in an older published copy: a smaller tree
    backup = root / "backup"
    shutil.copytree(served.root, backup)
    now[0] += timedelta(seconds=1)
    log.grow(900, served.root)
    assert watch.look().ok  # grew again; the stall resolves
    assert [t.rule for t in dispatch.transitions("resolve")] == ["stalled"]
    (served.root / "checkpoint").write_bytes((backup / "checkpoint").read_bytes())
    now[0] += timedelta(seconds=1)
    rollback = watch.look()
    assert rollback.observation.kind == "rollback" and "size 700" in rollback.line()
    assert "smaller than the remembered size 900" in rollback.line()
    # another log, same key, longer: a fork, proven from its own tiles
    other = Log(root / "other", log.signer)
    fork_dir = root / "fork"
    other.grow(1000, fork_dir, salt="rewritten")
    shutil.rmtree(served.root)
    shutil.copytree(fork_dir, served.root)
    now[0] += timedelta(seconds=1)
    fork = watch.look()
    assert fork.observation.kind == "fork" and fork.to_dict()["evidence"]["consistency_proof"]
    assert {t.rule for t in dispatch.transitions("trigger")} == {"stalled", "rollback", "fork"}
    kept = StateFile(root / "state.json").load(verifier, ORIGIN)
    assert kept is not None and kept.checkpoint.size == 900
    assert [c["kind"] for c in kept.conflicts] == ["rollback", "fork"]


def test_servers_answering_garbage(world: tuple[StaticLog, Log, NoteVerifier, Path]) -> None:
    served, log, verifier, root = world
    watch, _ = watcher(served, verifier, root / "state.json", lambda: T0)
    down = watch.look()
    assert down.observation.kind == "unreachable" and "HTTP 404" in down.observation.detail
    assert down.observation.signals() == {"tlog.unreachable": 1.0, "tlog.seconds_since_growth": 0}
    log.grow(300, served.root)
    served.override["checkpoint"] = (200, b"<html>hello</html>")
    assert watch.look().observation.kind == "invalid"
    served.override["checkpoint"] = (200, b"x" * (300 * 1024))
    assert "over" in watch.look().observation.detail
    other_skey, _ = NoteSigner.generate(ORIGIN)  # the right name, another key
    impostor = NoteSigner.from_key(other_skey).sign(b"watch.example/log\n1\n" + b"A" * 43 + b"=\n")
    served.override["checkpoint"] = (200, impostor)
    assert watch.look().observation.kind == "invalid"
    del served.override["checkpoint"]
    served.override["tile/0/001.p/44"] = (200, b"\x00" * 44 * 32)  # right size, wrong hashes
    first = watch.look()
    assert first.observation.kind == "invalid" and "do not hash to its checkpoint" in first.line()
    served.override["tile/0/001.p/44"] = (200, b"\x00" * 5)  # wrong size
    assert "malformed" in watch.look().observation.detail
    served.override["tile/0/001.p/44"] = (500, b"")
    assert watch.look().observation.kind == "unreachable"
    del served.override["tile/0/001.p/44"]
    assert watch.look().ok  # the honest tiles at last: remembered
    log.grow(600, served.root)
    served.override["tile/0/001"] = (200, b"\x07" * 8192)  # tiles that contradict the checkpoint
    bad = watch.look()
    assert bad.observation.kind == "invalid" and "no consistency proof verifies" in bad.line()
    assert StateFile(root / "state.json").load(verifier, ORIGIN).checkpoint.size == 300  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="http"):
        HttpLog("ftp://example/log")


def test_a_state_that_cannot_be_written_does_not_stop_the_watch(
    world: tuple[StaticLog, Log, NoteVerifier, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, log, verifier, root = world
    watch, _ = watcher(served, verifier, root / "state.json", lambda: T0)
    log.grow(10, served.root)

    def disk_full(self: StateFile, remembered: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StateFile, "_write", disk_full)
    look = watch.look()
    assert look.observation.kind == "ok" and look.remembered == "failed"


def test_witness_quorum_on_the_checkpoint(world: tuple[StaticLog, Log, NoteVerifier, Path]) -> None:
    served, log, verifier, root = world
    signers = [CosignatureSigner.from_key(CosignatureSigner.generate(f"w{i}.example")[0])
               for i in range(3)]  # fmt: skip
    policy = WitnessPolicy.of([s.verifier_key for s in signers], 2)
    watch = LogWatch(HttpLog(served.url), verifier, ORIGIN, StateFile(root / "state.json"),
                     cosignatures=witness_quorum(policy), clock=lambda: T0)  # fmt: skip
    log.grow(10, served.root)
    note = (served.root / "checkpoint").read_bytes()
    body = note[: note.rindex(b"\n\n") + 1]
    one = add_signature_lines(note, [signers[0].cosign(body, 1_700_000_000)])
    served.override["checkpoint"] = (200, one)
    short = watch.look()
    assert short.observation.kind == "invalid" and "1 of the 3 trusted witnesses" in short.line()
    two = add_signature_lines(one, [signers[2].cosign(body, 1_700_000_001)])
    served.override["checkpoint"] = (200, two)
    look = watch.look()
    assert look.ok and "2 of the 3 trusted witnesses cosigned it (w0.example, w2.example" in (
        look.line()
    )
    forged = two.replace(two.splitlines()[-1], two.splitlines()[-1][:-6] + b"AAAAA=")
    served.override["checkpoint"] = (200, forged)
    assert watch.look().observation.kind == "invalid"
