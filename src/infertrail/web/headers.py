"""ASGI middleware: the response headers every instrumented app sends.

- ``X-Content-Type-Options: nosniff``: a JSON answer (which may echo a caller's field names) is
  never rendered as HTML by a browser that guesses types;
- ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``: no page of the service is
  framed by another site, and no URL (with its query) leaks to another through the Referer;
- ``Cache-Control: no-store`` on the audit and privacy routes: their answers hold decisions and
  proofs about people, which no shared cache may keep.

A header the app set itself is left as it is.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infertrail.telemetry.redaction import is_private_path

__all__ = ["SecurityHeadersMiddleware"]

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE = ((b"cache-control", b"no-store"),)


class SecurityHeadersMiddleware:
    """Adds the headers above to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _ALWAYS + (_NO_STORE if is_private_path(scope.get("path", "")) else ())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
