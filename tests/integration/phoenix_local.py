"""Starts ``phoenix serve`` with every listener on loopback (run with .venv-phoenix's python).

Phoenix's OTLP gRPC listener ignores ``PHOENIX_HOST`` and binds ``[::]:<PHOENIX_GRPC_PORT>`` (all
interfaces); no setting turns that off short of read-only mode, which also blocks ingestion. This
launcher rewrites that address to ``PHOENIX_HOST`` before the server starts. It fails instead of
starting when the address it expects is not the one Phoenix asks for, so an upgrade that changes
the bind cannot silently expose the port.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import grpc.aio._server as grpc_aio_server

_WILDCARD = "[::]"
_HOST = os.environ.get("PHOENIX_HOST", "127.0.0.1")


def _rebind(address: str) -> str:
    if not address.startswith(_WILDCARD + ":"):
        raise SystemExit(f"phoenix_local: unexpected gRPC bind address {address!r}; refusing")
    return _HOST + address[len(_WILDCARD) :]


_insecure = grpc_aio_server.Server.add_insecure_port
_secure = grpc_aio_server.Server.add_secure_port


def _add_insecure_port(self: Any, address: str) -> int:
    return int(_insecure(self, _rebind(address)))


def _add_secure_port(self: Any, address: str, credentials: Any) -> int:
    return int(_secure(self, _rebind(address), credentials))


grpc_aio_server.Server.add_insecure_port = _add_insecure_port
grpc_aio_server.Server.add_secure_port = _add_secure_port

from phoenix.server.main import main  # noqa: E402  (must come after the patch)

if __name__ == "__main__":
    sys.argv = ["phoenix", "serve"]
    sys.exit(main())
