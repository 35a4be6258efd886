"""ASGI middleware: one structured access-log line per HTTP request.

Each line is a JSON object on the ``infertrail.access`` logger (INFO): method, path, route,
status, duration, client, request id and trace id, so a line leads straight to the request's
spans (``infertrail trace REQUEST_ID``). Query strings are not logged: they can carry personal
data (a subject id in a compliance query), and the route names the endpoint without them.
"""

from __future__ import annotations

import logging
import time

import orjson
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ACCESS_LOGGER", "AccessLogMiddleware"]

ACCESS_LOGGER = "infertrail.access"
_log = logging.getLogger(ACCESS_LOGGER)


class AccessLogMiddleware:
    """Logs every HTTP request once it is answered (or fails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding
        ctx = trace.get_current_span().get_span_context()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            client = scope.get("client")
            line = {
                "event": "http_request",
                "method": scope.get("method"),
                "path": scope.get("path"),
                "route": route if isinstance(route, str) else None,
                "status": status,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
                "request_id": scope.get("state", {}).get("request_id"),
                "trace_id": f"{ctx.trace_id:032x}" if ctx.is_valid else None,
            }
            _log.info(orjson.dumps(line).decode())
