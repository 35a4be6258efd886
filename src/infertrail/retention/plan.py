"""What retention does on a given day, decided from the period keys alone (pure).

A period key (``input-hmac@2026-03``, ``kek@2026-03``) carries ``keep_until``: the last day
something written under it must stay readable. On any later day it is due: retention destroys
it. The raw-payload data keys of a month follow the same rule with the payload retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from infertrail.keyring import PeriodKey, keep_until

__all__ = ["KeyState", "PayloadPeriod", "RetentionPlan", "key_state", "payload_periods", "plan"]

#: live: must be kept; due: past keep_until, apply destroys it; destroyed: gone, its record
#: appended; unrecorded: destroyed by a run that stopped before appending its record.
KeyState = Literal["live", "due", "destroyed", "unrecorded"]


def key_state(key: PeriodKey, today: date) -> KeyState:
    """The state of ``key`` on ``today`` (UTC)."""
    if key.destroyed is not None:
        return "destroyed" if key.receipt_seq is not None else "unrecorded"
    return "due" if key.keep_until < today else "live"


@dataclass(frozen=True, slots=True)
class PayloadPeriod:
    """The raw-payload data keys of one key period (UTC month) and when they go."""

    period: str
    keep_until: date | None  # None: data keys from before key periods (purged, never shredded)
    data_keys: int
    payloads: int
    due: bool


def payload_periods(
    held: Mapping[str, tuple[int, int]], days: int, today: date
) -> list[PayloadPeriod]:
    """Each key period of the payload store (data keys, payloads) with its keep-until day."""
    out = []
    for period, (data_keys, payloads) in sorted(held.items()):
        until = keep_until(period, days) if period else None
        due = until is not None and until < today
        out.append(PayloadPeriod(period, until, data_keys, payloads, due))
    return out


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """Every period key with its state on ``today``."""

    today: date
    keys: tuple[tuple[PeriodKey, KeyState], ...]

    def of_state(self, state: KeyState) -> list[PeriodKey]:
        """The keys in ``state``."""
        return [key for key, s in self.keys if s == state]

    @property
    def next_due(self) -> date | None:
        """The first day a live key becomes due (None if no key is live)."""
        days = [key.keep_until for key, s in self.keys if s == "live"]
        return min(days) + timedelta(days=1) if days else None


def plan(keys: Iterable[PeriodKey], today: date) -> RetentionPlan:
    """The retention plan of ``keys`` on ``today``."""
    return RetentionPlan(today, tuple((key, key_state(key, today)) for key in keys))
