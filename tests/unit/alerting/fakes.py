"""Local HTTP receivers standing in for PagerDuty, Slack and a webhook, on 127.0.0.1.

Each one validates what it receives against the documented schema and answers like the real
service (PagerDuty: 202 or 400 with the errors; Slack: 200 "ok" or 400 "invalid_payload"), and
can be scripted to answer 429/5xx first, to exercise retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# -- schemas ------------------------------------------------------------------------------------
# PagerDuty Events API v2, "Send an Alert Event" (developer.pagerduty.com, events-API-v2).
PD_TOP_LEVEL = {
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "images",
    "links",
    "client",
    "client_url",
}
PD_PAYLOAD = {
    "summary",
    "source",
    "severity",
    "timestamp",
    "component",
    "group",
    "class",
    "custom_details",
}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}


def validate_pagerduty(body: Any) -> list[str]:
    """Problems with an Events API v2 alert event (empty list: valid)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    problems = [f"unknown top-level key {k!r}" for k in body if k not in PD_TOP_LEVEL]
    for key in ("routing_key", "event_action"):
        if not isinstance(body.get(key), str) or not body[key]:
            problems.append(f"{key} is required (non-empty string)")
    action = body.get("event_action")
    if action not in PD_ACTIONS:
        problems.append(f"event_action must be one of {sorted(PD_ACTIONS)}, got {action!r}")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("dedup_key must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve"):
        if dedup is None:
            problems.append(f"{action} needs a dedup_key")
        return problems
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return [*problems, "payload is required for a trigger"]
    problems += [f"unknown payload key {k!r}" for k in payload if k not in PD_PAYLOAD]
    for key in ("summary", "source", "severity"):
        if not isinstance(payload.get(key), str) or not payload[key]:
            problems.append(f"payload.{key} is required (non-empty string)")
    if len(payload.get("summary", "")) > 1024:
        problems.append("payload.summary is longer than 1024 characters")
    if payload.get("severity") not in PD_SEVERITIES:
        problems.append(f"payload.severity must be one of {sorted(PD_SEVERITIES)}")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"payload.timestamp is not ISO 8601: {payload['timestamp']!r}")
    for key in ("component", "group", "class"):
        if key in payload and not isinstance(payload[key], str):
            problems.append(f"payload.{key} must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        problems.append("payload.custom_details must be an object")
    return problems


def validate_slack(body: Any) -> list[str]:
    """Problems with an incoming-webhook message (text is required; blocks are typed)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    problems = []
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        problems.append("text is required")
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        problems.append("blocks must be a list of at most 50 blocks")
    else:
        problems += [
            f"block {i} has no type"
            for i, b in enumerate(blocks)
            if not isinstance(b, dict) or "type" not in b
        ]
    return problems


def validate_webhook(body: Any) -> list[str]:
    """Problems with infertrail's generic webhook body."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    missing = {"schema", "kind", "rule", "model", "dedup_key", "value", "at"} - body.keys()
    return [f"missing {k}" for k in sorted(missing)]


# -- the server ---------------------------------------------------------------------------------
@dataclass
class Scripted:
    """A canned answer for one request, before validation takes over."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int
    problems: list[str]


class FakeReceiver:
    """A threaded HTTP server on a free loopback port; use as a context manager."""

    def __init__(
        self,
        validate: Callable[[Any], list[str]],
        *,
        ok_status: int = 200,
        ok_body: Callable[[Any], str] = lambda body: "ok",
        script: list[Scripted] | None = None,
    ) -> None:
        self.validate = validate
        self.ok_status = ok_status
        self.ok_body = ok_body
        self.script = list(script or [])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def accepted(self) -> list[Received]:
        """Requests answered with 2xx."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def __enter__(self) -> FakeReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], str]:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
            if scripted is not None:
                status, extra, text, problems = scripted.status, scripted.headers, scripted.body, []
            else:
                problems = ["body is not JSON"] if body is None else self.validate(body)
                if headers.get("content-type", "").split(";")[0] != "application/json":
                    problems.append(f"content-type is {headers.get('content-type')!r}")
                status = 400 if problems else self.ok_status
                text = json.dumps({"errors": problems}) if problems else self.ok_body(body)
                extra = {}
            self.received.append(Received(path, headers, body, status, problems))
        return status, extra, text

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, text = fake._answer(self.path, headers, raw)
                data = text.encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def pagerduty_receiver(**kwargs: Any) -> FakeReceiver:
    """A PagerDuty Events API v2 stand-in: 202 with the documented success body."""

    def ok(body: Any) -> str:
        return json.dumps(
            {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")}
        )

    return FakeReceiver(validate_pagerduty, ok_status=202, ok_body=ok, **kwargs)


def slack_receiver(**kwargs: Any) -> FakeReceiver:
    """A Slack incoming-webhook stand-in."""
    return FakeReceiver(validate_slack, **kwargs)


def webhook_receiver(**kwargs: Any) -> FakeReceiver:
    """A generic webhook that checks infertrail's transition JSON."""
    return FakeReceiver(validate_webhook, **kwargs)
