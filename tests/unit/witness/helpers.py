"""Witness test helpers: a small in-memory log (checkpoints, proofs) and a witness server."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from infertrail.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from infertrail.audit.cosignature import CosignatureSigner
from infertrail.audit.merkle import consistency_proof, leaf_hash, root
from infertrail.audit.witness_protocol import AddCheckpoint

ORIGIN = "log.test/witnessed"


def new_signer(origin: str = ORIGIN) -> NoteSigner:
    return NoteSigner.from_key(NoteSigner.generate(origin)[0])


def new_witness(name: str = "witness.test/w1") -> CosignatureSigner:
    return CosignatureSigner.from_key(CosignatureSigner.generate(name)[0])


@dataclass
class MemoryLog:
    """Leaves ``record-0, record-1, ...`` (or a fork's, from ``fork_at``), signed by ``signer``."""

    signer: NoteSigner = field(default_factory=new_signer)
    fork_at: int | None = None  # leaves from here on differ: another history, same key

    def leaves(self, size: int) -> list[bytes]:
        return [
            leaf_hash(
                (b"fork-%d" if self.fork_at is not None and i >= self.fork_at else b"record-%d") % i
            )
            for i in range(size)
        ]

    def checkpoint(self, size: int) -> bytes:
        cp = Checkpoint(self.signer.name, size, root(self.leaves(size)))
        return sign_checkpoint(cp, self.signer)

    def request(self, old: int, size: int) -> bytes:
        proof = consistency_proof(self.leaves(size), old) if 0 < old < size else []
        return AddCheckpoint(old, tuple(proof), self.checkpoint(size)).encode()


class WitnessServer:
    """A witness (``create_app``) served by uvicorn on a free loopback port, in a thread.

    ``url`` while running; :meth:`stop` ends it (its state is closed, so a new server can take
    it over: a restarted witness).
    """

    def __init__(self, state_path: Path, signer: CosignatureSigner, log_keys: list[str]) -> None:
        import uvicorn

        from infertrail.witness.app import create_app
        from infertrail.witness.logs import KnownLogs
        from infertrail.witness.service import Witness
        from infertrail.witness.state import WitnessState

        self.state = WitnessState(state_path)
        self.witness = Witness(signer, KnownLogs.of(log_keys), self.state)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(self.witness), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"witness server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.state.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
