"""Retention enforcement: crypto-shred each month's keys once everything under them expired.

:meth:`RetentionService.apply` does, in this order, each step durable before the next:

1. in ``payloads.db``, delete the data keys of due key periods and those wrapped under due KEKs,
   with their payloads (so no row outlives its key);
2. in the keyring, destroy every due period key (its secret leaves the file; the entry stays);
3. append one ``retention_purge`` audit record naming the destroyed keys and the counts;
4. note that record's seq on the destroyed keys.

A run stopped between 2 and 4 leaves keys destroyed without a record: the next run records
them (``resumed``). Nothing due: nothing changes and nothing is appended, so ``apply`` is
idempotent. Nothing already in the audit log changes: it still verifies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from infertrail.audit.ledger import Receipt
from infertrail.config import Settings
from infertrail.keyring import Keyring, PeriodKey
from infertrail.privacy.crypto import KEK_PURPOSE
from infertrail.privacy.keys import INPUT_KEY_PURPOSE, periodic_purposes
from infertrail.privacy.raw_payloads import PayloadStore, ShredCounts
from infertrail.privacy.records import AuditRecorder
from infertrail.privacy.stores import PrivacyService
from infertrail.retention.plan import KeyState, PayloadPeriod, RetentionPlan, payload_periods, plan

__all__ = [
    "RETENTION_EVENT",
    "RetentionService",
    "RetentionStatus",
    "ShredReport",
    "retention_service",
]

#: Event type of the record each shredding appends (details under ``record["retention_purge"]``).
RETENTION_EVENT = "retention_purge"
#: Purposes whose keys link records and payloads to what they are about.
LINKING_PURPOSES = (INPUT_KEY_PURPOSE, KEK_PURPOSE)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _key_dict(key: PeriodKey, state: KeyState | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key_id": key.key_id,
        "purpose": key.purpose,
        "period": key.period,
        "keep_until": key.keep_until.isoformat(),
    }
    if state is not None:
        out |= {"state": state, "destroyed": key.destroyed, "receipt_seq": key.receipt_seq}
    return out


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """What is kept until when on ``as_of``, and what :meth:`RetentionService.apply` would do."""

    as_of: date
    keys: tuple[tuple[PeriodKey, KeyState], ...]
    payload_periods: list[PayloadPeriod]
    #: Keys of the linking purposes that are not period keys (from before key periods, or
    #: rotated by hand): retention never destroys them.
    unperiodic_keys: list[str]
    would_shred: ShredCounts

    @property
    def due(self) -> list[PeriodKey]:
        """The keys apply would destroy."""
        return [k for k, s in self.keys if s == "due"]

    @property
    def unrecorded(self) -> list[PeriodKey]:
        """Keys an interrupted run destroyed without its record: apply records them."""
        return [k for k, s in self.keys if s == "unrecorded"]

    @property
    def next_due(self) -> date | None:
        """The first day a key that is live today becomes due."""
        return RetentionPlan(self.as_of, self.keys).next_due

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``infertrail retention status --json``)."""
        return {
            "as_of": self.as_of.isoformat(),
            "keys": [_key_dict(k, s) for k, s in self.keys],
            "payload_periods": [
                asdict(p) | {"keep_until": p.keep_until and p.keep_until.isoformat()}
                for p in self.payload_periods
            ],
            "unperiodic_keys": self.unperiodic_keys,
            "would_destroy": [k.key_id for k in self.due],
            "would_record": [k.key_id for k in self.unrecorded],
            "next_due": self.next_due and self.next_due.isoformat(),
            "would_shred": asdict(self.would_shred),
        }


@dataclass(frozen=True, slots=True)
class ShredReport:
    """What one :meth:`RetentionService.apply` did; ``receipt_seq`` is its audit record."""

    as_of: date
    destroyed: list[PeriodKey]
    resumed: list[PeriodKey]  # destroyed by an interrupted run, recorded by this one
    payload_periods: list[str]
    shredded: ShredCounts
    receipt_seq: int | None  # None: nothing was due

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``infertrail retention apply --json``)."""
        return {
            "as_of": self.as_of.isoformat(),
            "destroyed": [_key_dict(k) for k in self.destroyed],
            "resumed": [_key_dict(k) for k in self.resumed],
            "payload_periods": self.payload_periods,
            "shredded": asdict(self.shredded),
            "receipt_seq": self.receipt_seq,
        }


class RetentionService:
    """Status and enforcement of retention over one keyring, payload store and audit log.

    ``payload_days``: how long raw payloads are kept after their month (the ``kek`` keys' own
    days); ``clock`` gives the current UTC time (a day is due once ``keep_until`` is before
    its date). Thread-safe: one apply at a time.
    """

    def __init__(
        self,
        keyring: Keyring,
        payloads: PayloadStore | None,
        recorder: AuditRecorder | None,
        *,
        payload_days: int,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if payload_days < 0:
            raise ValueError(f"payload_days must be >= 0, got {payload_days}")
        self.keyring = keyring
        self.payloads = payloads
        self.recorder = recorder
        self.payload_days = payload_days
        self._clock = clock
        self._lock = threading.Lock()

    def today(self) -> date:
        """The current UTC date by this service's clock."""
        return self._clock().astimezone(UTC).date()

    def status(self) -> RetentionStatus:
        """Every period key and payload period with its state today; what apply would shred."""
        today = self.today()
        self.keyring.reload()  # keys another process created or destroyed
        keys = plan(self.keyring.period_keys(), today)
        periods = self._payload_periods(today)
        kek_ids, due_periods = self._payload_targets(keys.of_state("due"), periods)
        would = ShredCounts(0, 0)
        if self.payloads is not None:
            would = self.payloads.held(kek_ids=kek_ids, periods=due_periods)
        period_ids = {k.key_id for k, _ in keys.keys}
        unperiodic = [
            key_id
            for purpose in LINKING_PURPOSES
            for key_id in self.keyring.key_ids(purpose)
            if key_id not in period_ids
        ]
        return RetentionStatus(today, keys.keys, periods, unperiodic, would)

    def apply(self) -> ShredReport:
        """Shred what is due today and record it (see the module docstring). Idempotent.

        RuntimeError if keys are due but there is no audit log to record the shredding in.
        """
        with self._lock:
            today = self.today()
            self.keyring.reload()
            keys = plan(self.keyring.period_keys(), today)
            due, unrecorded = keys.of_state("due"), keys.of_state("unrecorded")
            kek_ids, due_periods = self._payload_targets(due, self._payload_periods(today))
            if not (due or unrecorded or due_periods):
                return ShredReport(today, [], [], [], ShredCounts(0, 0), None)
            recorder = self.recorder
            if recorder is None:
                raise RuntimeError(
                    "retention has no audit log attached: shredding must be recorded, so it is "
                    "refused here"
                )
            shredded = ShredCounts(0, 0)
            if self.payloads is not None:
                shredded = self.payloads.shred_keys(kek_ids=kek_ids, periods=due_periods)
            destroyed = [k for k in due if self.keyring.destroy(k.key_id, today=today)]
            receipt = self._record(recorder, today, destroyed, unrecorded, due_periods, shredded)
            recorded = [k.key_id for k in (*destroyed, *unrecorded)]
            if recorded:
                self.keyring.record_destruction(recorded, receipt.seq)
            return ShredReport(today, destroyed, unrecorded, due_periods, shredded, receipt.seq)

    # ---- internals -----------------------------------------------------------------------

    def _payload_periods(self, today: date) -> list[PayloadPeriod]:
        if self.payloads is None:
            return []
        held = {p: (c.data_keys, c.payloads) for p, c in self.payloads.periods().items()}
        return payload_periods(held, self.payload_days, today)

    @staticmethod
    def _payload_targets(
        due: list[PeriodKey], periods: list[PayloadPeriod]
    ) -> tuple[list[str], list[str]]:
        """The KEK ids and the data-key periods whose payload-store rows are shredded."""
        kek_ids = [k.key_id for k in due if k.purpose == KEK_PURPOSE]
        return kek_ids, [p.period for p in periods if p.due]

    @staticmethod
    def _record(
        recorder: AuditRecorder,
        today: date,
        destroyed: list[PeriodKey],
        resumed: list[PeriodKey],
        periods: list[str],
        shredded: ShredCounts,
    ) -> Receipt:
        """Append the ``retention_purge`` record of one run (no pseudonyms, no request ids)."""
        return recorder.append(
            RETENTION_EVENT,
            details={
                "store": "period_keys",
                "method": "crypto-shredding",
                "as_of": today.isoformat(),
                "keys": [_key_dict(k) for k in (*destroyed, *resumed)],
                "resumed": [k.key_id for k in resumed],
                "payload_periods": periods,
                "data_keys": shredded.data_keys,
                "payloads": shredded.payloads,
            },
        )


def retention_service(
    settings: Settings,
    keyring: Keyring,
    privacy: PrivacyService,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> RetentionService:
    """The retention service of a process: its keyring, payload store and audit recorder."""
    return RetentionService(
        keyring,
        privacy.payloads,
        privacy.recorder,
        payload_days=periodic_purposes(settings)[KEK_PURPOSE],
        clock=clock,
    )
