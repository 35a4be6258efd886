"""What the engine hands to notifiers: transitions of an alert and their deliveries.

A ``Transition`` is self-contained (labels, rendered annotations, dedup key, receivers), so a
notifier builds its payload from it alone and a transition read back from the state file after a
restart is delivered exactly like a fresh one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

from infertrail.alerting.rules import Severity

# trigger/resolve change the alert's state; refresh re-asserts a firing alert to receivers
# that expire alerts on their own (Alertmanager), and is never a new page.
TransitionKind = Literal["trigger", "resolve", "refresh"]


def utc_iso(at: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z, the format every payload uses."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Inverse of ``utc_iso`` (accepts any ISO 8601 string with an offset)."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return at.astimezone(UTC)


@dataclass(frozen=True)
class Transition:
    """One change (or re-assertion) of one alert: a rule for a model."""

    kind: TransitionKind
    rule: str
    model: str
    signal: str
    value: float
    threshold: float
    comparison: str
    severity: Severity
    dedup_key: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    started_at: datetime
    at: datetime
    receivers: tuple[str, ...] = ()
    custom_details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The rendered ``summary`` annotation (always present)."""
        return self.annotations["summary"]

    @property
    def alert_id(self) -> tuple[str, str]:
        """(rule, model): the state-machine key this transition belongs to."""
        return (self.rule, self.model)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as RFC 3339; a non-finite value as a string)."""
        out = asdict(self)
        out["labels"] = dict(self.labels)
        out["annotations"] = dict(self.annotations)
        out["custom_details"] = dict(self.custom_details)
        out["receivers"] = list(self.receivers)
        out["started_at"] = utc_iso(self.started_at)
        out["at"] = utc_iso(self.at)
        if not math.isfinite(self.value):  # JSON has no inf; keep it readable and reversible
            out["value"] = str(self.value)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transition:
        """Inverse of ``to_json``."""
        return cls(
            kind=cast(TransitionKind, data["kind"]),
            rule=str(data["rule"]),
            model=str(data["model"]),
            signal=str(data["signal"]),
            value=float(data["value"]),
            threshold=float(data["threshold"]),
            comparison=str(data["comparison"]),
            severity=cast(Severity, data["severity"]),
            dedup_key=str(data["dedup_key"]),
            labels=dict(data["labels"]),
            annotations=dict(data["annotations"]),
            started_at=parse_utc(data["started_at"]),
            at=parse_utc(data["at"]),
            receivers=tuple(data["receivers"]),
            custom_details=dict(data.get("custom_details", {})),
        )


@dataclass(frozen=True)
class Delivery:
    """One transition for one receiver. Durable deliveries stay in the outbox until settled."""

    id: str
    receiver: str
    transition: Transition
    durable: bool = True

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the state file's outbox."""
        return {"id": self.id, "receiver": self.receiver, "transition": self.transition.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delivery:
        """Inverse of ``to_json`` (only durable deliveries are ever stored)."""
        return cls(
            id=str(data["id"]),
            receiver=str(data["receiver"]),
            transition=Transition.from_json(data["transition"]),
        )


# Called once per submitted delivery, from any thread, with True when it was delivered and
# False when it was given up (refused, out of retries, queue full).
SettledCallback = Callable[[Delivery, bool], None]


class Dispatch(Protocol):
    """Where the engine sends deliveries; ``NotifierDispatch`` is the real one."""

    def submit(self, delivery: Delivery, on_settled: SettledCallback) -> None:
        """Queue ``delivery``; must not block and must not raise."""
        ...
