"""Shared helpers for the alerting tests: a rule factory, evaluation times, a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from infertrail.alerting.rules import AlertRule

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def window(i: int, minutes: int = 1) -> datetime:
    """The close time of window ``i`` (0-based)."""
    return T0 + timedelta(minutes=minutes * i)


def rule(**overrides: Any) -> AlertRule:
    """A valid drift rule with ``overrides`` applied."""
    body: dict[str, Any] = {
        "name": "digits-drift",
        "signal": "drift.share_drifted",
        "model": "digits",
        "comparison": ">",
        "threshold": 0.3,
        "for_windows": 3,
        "resolve_after": 2,
        "severity": "critical",
        "receivers": ["pd"],
    }
    body.update(overrides)
    return AlertRule.model_validate(body)


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False  # never asked to stop
