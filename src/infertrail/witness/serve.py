"""``infertrail witness serve``: the witness under uvicorn until SIGTERM or SIGINT.

Once listening it prints its name, verifier key, where it listens and how many logs it
follows (port 0 picks a free one, shown there). A stop signal ends requests in flight, closes
the state (every answered cosignature was persisted before its answer) and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Iterator

import uvicorn

from infertrail.witness.app import create_app
from infertrail.witness.service import Witness

__all__ = ["serve"]

_GRACEFUL_S = 3


class _Server(uvicorn.Server):
    """uvicorn, with a banner once listening and a plain exit after a stop signal."""

    def __init__(self, config: uvicorn.Config, witness: Witness) -> None:
        super().__init__(config)
        self._witness = witness

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()  # the graceful stop has run: do not die of it

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            bound = [
                "http://{}:{}".format(*sock.getsockname()[:2])
                for server in self.servers
                for sock in server.sockets
            ]
            w = self._witness
            print(
                f"witness {w.signer.name} listening on {', '.join(bound)}\n"
                f"  verifier key: {w.signer.verifier_key}\n"
                f"  logs: {', '.join(sorted(w.logs.logs))}",
                flush=True,
            )


def serve(witness: Witness, host: str, port: int, log_level: str) -> None:
    """Serve ``witness`` on ``host:port`` until a stop signal."""
    root = logging.getLogger()
    root.setLevel(log_level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    config = uvicorn.Config(
        create_app(witness),
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=log_level.upper() == "DEBUG",
        server_header=False,
        timeout_graceful_shutdown=_GRACEFUL_S,
        log_config=None,  # the handler above
    )
    _Server(config, witness).run()
