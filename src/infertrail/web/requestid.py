"""ASGI middleware: a validated request id on every request, echoed in the response header.

The id is also the current request's (``events.current_request``) while the request runs, so
``Monitor.observe`` inside a handler picks it, and the matched route, up without being told.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infertrail.events import (
    InvalidRequestId,
    RequestContext,
    current_request,
    new_request_id,
    validate_request_id,
)
from infertrail.telemetry import conventions as c

__all__ = ["HEADER", "RequestIdMiddleware"]

HEADER = "x-request-id"


class RequestIdMiddleware:
    """Accepts ``X-Request-ID`` (validated) or generates a UUIDv7; returns it in the response.

    An invalid header is answered with 400 here, before any handler runs, and reported to
    ``on_invalid`` so that it is counted, logged and traced like any other rejected request.
    """

    def __init__(self, app: ASGIApp, on_invalid: Callable[[str, str, str], None]) -> None:
        self.app = app
        self.on_invalid = on_invalid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
                break
        rid = new_request_id()
        if supplied is not None:
            try:
                rid = validate_request_id(supplied)
            except InvalidRequestId as exc:
                # The log line and span say what was wrong, not what was sent.
                reason = f"X-Request-ID refused ({len(supplied)} characters)"
                self.on_invalid(rid, reason, scope.get("path", ""))
                await _send_json(
                    send,
                    400,
                    {"error": "invalid_request_id", "detail": str(exc), "request_id": rid},
                    rid,
                )
                return
        scope.setdefault("state", {})["request_id"] = rid
        trace.get_current_span().set_attribute(c.REQUEST_ID, rid)
        header = (HEADER.encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        token = current_request.set(RequestContext(rid, scope))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request.reset(token)


async def _send_json(send: Send, status: int, body: dict[str, Any], rid: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (HEADER.encode(), rid.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
