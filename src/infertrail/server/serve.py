"""``infertrail serve``: the demo service under uvicorn, stopped cleanly by SIGTERM or SIGINT.

uvicorn turns both signals into a graceful shutdown (in-flight requests finish, at most
``GRACEFUL_S``), after which the app's lifespan stops the runtime: the audit log's final signed
checkpoint covers every acknowledged decision. uvicorn then re-raises the signal so that the
process dies of it; here the shutdown is the intended end, so the process exits 0 instead
(``docker stop`` and ``systemctl stop`` see a clean stop, not a crash).

Once listening it prints where, the data directory, the audit log's origin and verifier key;
with ``--log-level info`` (the default) every request is one JSON access-log line on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Iterator, Sequence

import uvicorn

from infertrail.audit.keys import verifier_key_path
from infertrail.config import Settings
from infertrail.server.app import DemoService, create_app
from infertrail.web.accesslog import ACCESS_LOGGER

__all__ = ["GRACEFUL_S", "configure_logging", "serve"]

#: How long in-flight requests may take to finish after a stop signal.
GRACEFUL_S = 3


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``: access lines as bare JSON, the rest with time and logger."""
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    access = logging.getLogger(ACCESS_LOGGER)
    access_handler = logging.StreamHandler(sys.stderr)
    access_handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [access_handler]
    access.propagate = False


class _Server(uvicorn.Server):
    """uvicorn, with a banner once listening and a plain exit after a stop signal."""

    def __init__(self, config: uvicorn.Config, services: DemoService) -> None:
        super().__init__(config)
        self._services = services

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # The graceful shutdown has run: do not die of the signal afterwards.
            self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(banner(self._services, self._bound()), flush=True)

    def _bound(self) -> Sequence[str]:
        urls = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                urls.append(f"http://{host}:{port}")
        return urls


def banner(services: DemoService, urls: Sequence[str]) -> str:
    """What a starting service tells its operator."""
    s: Settings = services.settings
    vkey = verifier_key_path(s.signing_key_file)
    lines = [
        f"infertrail serve: listening on {', '.join(urls)} (docs /docs, metrics /metrics)",
        f"  data dir      {s.data_dir.resolve()}",
    ]
    if s.audit_enabled:
        lines += [
            f"  audit origin  {s.audit_origin}",
            f"  verifier key  {vkey.read_text().strip() if vkey.is_file() else '(none yet)'}",
        ]
    for info in services.runtime.models:
        lines.append(f"  model         {info.name} {info.version} sha256={info.sha256[:16]}...")
    lines.append("  stop with Ctrl-C or SIGTERM (a final signed audit checkpoint is written)")
    return "\n".join(lines)


def serve(services: DemoService, host: str, port: int, log_level: str) -> None:
    """Serve until SIGTERM/SIGINT; the runtime is stopped when the app's lifespan ends."""
    configure_logging(log_level)
    app = create_app(services, close_on_shutdown=True, freeze_gc=True, access_log=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,  # ours is structured and carries the request and trace ids
        timeout_graceful_shutdown=GRACEFUL_S,
        log_config=None,  # keep the logging configured above
    )
    _Server(config, services).run()
