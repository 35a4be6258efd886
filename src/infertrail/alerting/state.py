"""Alert state on disk: one JSON file, replaced atomically (temp file, fsync, rename).

The file holds, per (rule, model), the state machine's position and, while firing, the trigger
transition (so a resolve after a restart carries the same dedup key, labels and start time);
and the outbox of deliveries not yet settled, re-sent on start.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from infertrail.alerting.transitions import Delivery, Transition, parse_utc, utc_iso

STATE_VERSION = 1
AlertKey = tuple[str, str]  # (rule name, model)


class StateFileError(RuntimeError):
    """The state file exists but cannot be used; starting empty would lose resolves."""


@dataclass
class AlertState:
    """Where one (rule, model) stands: counters of consecutive evaluations, and the alert."""

    status: Literal["inactive", "firing"] = "inactive"
    breaches: int = 0
    clean: int = 0
    last_at: datetime | None = None
    active: Transition | None = None

    def to_json(self, key: AlertKey) -> dict[str, Any]:
        """JSON-ready form, with the key spelled out."""
        return {
            "rule": key[0],
            "model": key[1],
            "status": self.status,
            "breaches": self.breaches,
            "clean": self.clean,
            "last_at": utc_iso(self.last_at) if self.last_at else None,
            "active": self.active.to_json() if self.active else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> tuple[AlertKey, AlertState]:
        """Inverse of ``to_json``."""
        status = data["status"]
        if status not in ("inactive", "firing"):
            raise ValueError(f"status must be inactive or firing, got {status!r}")
        active = Transition.from_json(data["active"]) if data.get("active") else None
        if status == "firing" and active is None:
            raise ValueError("a firing alert without its trigger transition")
        state = cls(
            status=status,
            breaches=int(data["breaches"]),
            clean=int(data["clean"]),
            last_at=parse_utc(data["last_at"]) if data.get("last_at") else None,
            active=active,
        )
        return (str(data["rule"]), str(data["model"])), state


class StateStore:
    """Loads and saves the engine's state at ``path`` (``None``: memory only, for tests)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None

    def load(self) -> tuple[dict[AlertKey, AlertState], list[Delivery]]:
        """The saved alerts and outbox; empty when there is no file yet."""
        if self.path is None or not self.path.exists():
            return {}, []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("version") != STATE_VERSION:
                raise ValueError(f"version must be {STATE_VERSION}, got {doc.get('version')!r}")
            alerts = dict(AlertState.from_json(a) for a in doc["alerts"])
            outbox = [Delivery.from_json(d) for d in doc["outbox"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFileError(
                f"alert state file {self.path} is unusable ({type(exc).__name__}: {exc}); "
                "fix it or move it away to start with no alert active"
            ) from exc
        return alerts, outbox

    def save(self, alerts: dict[AlertKey, AlertState], outbox: list[Delivery]) -> None:
        """Write everything to a temp file, fsync it, rename it over the old one, fsync the dir."""
        if self.path is None:
            return
        doc = {
            "version": STATE_VERSION,
            "alerts": [s.to_json(k) for k, s in sorted(alerts.items())],
            "outbox": [d.to_json() for d in outbox],
        }
        data = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # 0600: annotations and custom details may name models and teams nobody else should see.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            # Without this the rename itself may not survive a power cut.
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
