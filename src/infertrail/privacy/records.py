"""Audit records of privacy events: erasure, break-glass reads, retention purges, re-enrolment.

Each is a full schema-v1 record (every field present, null where it does not apply) whose
details sit in one extra field named after its event type, e.g. ``record["erasure"]``. They are
appended synchronously: an event is in the log, durable, before the action it records goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from infertrail.audit.ledger import Receipt
from infertrail.audit.record import Actor, RetentionPolicy, event_record
from infertrail.events import rfc3339_micros

__all__ = [
    "SUBJECT_RE_ENROLLED",
    "AuditRecorder",
    "RecordAppender",
    "privacy_record",
]

#: Event type of a new pseudonym issued, by a named actor, to a subject that had been erased.
SUBJECT_RE_ENROLLED = "subject_re_enrolled"


class RecordAppender(Protocol):
    """What the recorder needs of the log: :meth:`infertrail.audit.ledger.AuditLog.append`."""

    def append(self, record: Mapping[str, Any], timeout: float | None = None) -> Receipt:
        """Append ``record``; return once it is durable."""
        ...


def privacy_record(
    event_type: str,
    *,
    ts: str,
    actor: Actor | None,
    subject: str | None,
    request_id: str | None,
    details: Mapping[str, Any],
    retention: RetentionPolicy,
    producer: str,
    service: str | None,
) -> dict[str, Any]:
    """The audit record (without seq) of one privacy event; ``details`` go under its type."""
    return event_record(
        event_type,
        ts=ts,
        retention=retention,
        producer=producer,
        details=details,
        request_id=request_id,
        service=service,
        subject=subject,
        actor=None if actor is None else actor.model_dump(),
    )


class AuditRecorder:
    """Appends privacy-event records to one audit log under one retention policy."""

    def __init__(
        self,
        log: RecordAppender,
        retention: RetentionPolicy,
        producer: str,
        *,
        service: str | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.log = log
        self.retention = retention
        self.producer = producer
        self.service = service
        self._clock_ns = clock_ns

    def append(
        self,
        event_type: str,
        *,
        details: Mapping[str, Any],
        actor: Actor | None = None,
        subject: str | None = None,
        request_id: str | None = None,
    ) -> Receipt:
        """Build the record of one privacy event and append it; returns once it is durable."""
        record = privacy_record(
            event_type,
            ts=rfc3339_micros(self._clock_ns()),
            actor=actor,
            subject=subject,
            request_id=request_id,
            details=details,
            retention=self.retention,
            producer=self.producer,
            service=self.service,
        )
        return self.log.append(record)
