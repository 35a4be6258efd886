"""Outcome ingestion: validate a batch whole, store it atomically, audit every accepted outcome.

One service behind both skins (``POST /v1/outcomes`` and ``infertrail outcomes ingest``):

1. the payload is validated completely (:func:`~infertrail.outcomes.schema.parse_outcomes`);
   any problem rejects the batch before anything is written;
2. queued predictions are flushed to the index, so an outcome never misses a prediction the
   Monitor has already handed over;
3. in one SQLite transaction the batch is checked against stored outcomes (a contradiction
   refuses the whole batch, nothing is overwritten), repeats are skipped, unknown request ids
   are set aside and reported, and the new outcomes are inserted;
4. before that transaction commits, one ``outcome`` audit record per new outcome is appended and
   waited for until durable; if the audit log fails, the transaction rolls back (503).

So an accepted outcome is always in both places. The converse holds except when the audit log
fails part-way through a batch: records already queued are still written, so a retry appends
them again (the audit log is at-least-once for outcomes; the store stays exactly-once).
Listeners (the performance windows) see each committed batch of new (outcome, prediction) pairs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.metrics import Meter

from infertrail.audit.ledger import Receipt
from infertrail.audit.receipts import AuditUnavailableError
from infertrail.audit.record import RetentionPolicy, event_record
from infertrail.events import rfc3339_micros
from infertrail.outcomes.index import PredictionIndex
from infertrail.outcomes.schema import Outcome, parse_outcomes
from infertrail.outcomes.store import OutcomeStore, Prediction
from infertrail.telemetry import conventions as c

__all__ = [
    "METRIC_OUTCOMES",
    "AuditUnavailableError",
    "IngestResult",
    "OutcomeAudit",
    "OutcomeService",
    "outcome_record",
]

_log = logging.getLogger("infertrail.outcomes")

# Exported from here as before; conventions.py spells it.
METRIC_OUTCOMES = c.METRIC_OUTCOMES

Listener = Callable[[list[tuple[Outcome, Prediction]]], None]


class AsyncAppender(Protocol):
    """What outcome auditing needs of the log: :meth:`AuditLog.append_async`."""

    def append_async(
        self, record: Mapping[str, Any], timeout: float | None = None
    ) -> Future[Receipt]:
        """Queue ``record``; the future resolves once it is durable."""
        ...


def _unavailable(n: int, exc: Exception) -> AuditUnavailableError:
    return AuditUnavailableError(
        f"the audit log could not record {n} outcome(s): {exc}; nothing was stored, send the "
        "batch again"
    )


def outcome_record(
    outcome: Outcome,
    prediction: Prediction,
    *,
    ts: str,
    retention: RetentionPolicy,
    producer: str,
    service: str | None,
) -> dict[str, Any]:
    """The ``outcome`` audit record (without seq) of one accepted outcome.

    It names the request and the model version that made the prediction; the outcome itself
    (kind, label, value, when it happened) sits in the extra field ``outcome``.
    """
    return event_record(
        "outcome",
        ts=ts,
        retention=retention,
        producer=producer,
        details={
            "kind": outcome.kind,
            "label": outcome.label,
            "value": outcome.value,
            "observed_at": rfc3339_micros(outcome.ts_ns),
        },
        request_id=outcome.request_id,
        service=service,
        team=prediction.team or None,
        endpoint=prediction.endpoint or None,
        model_name=prediction.model,
        model_version=prediction.version or None,
    )


class OutcomeAudit:
    """Appends the ``outcome`` records of a batch and waits until all are durable."""

    def __init__(
        self,
        log: AsyncAppender,
        retention: RetentionPolicy,
        producer: str,
        *,
        service: str | None = None,
        timeout_s: float = 30.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.log = log
        self.retention = retention
        self.producer = producer
        self.service = service
        self.timeout_s = timeout_s
        self._clock_ns = clock_ns

    def record_all(self, pairs: Sequence[tuple[Outcome, Prediction]]) -> list[Receipt]:
        """Append one record per pair; return their receipts once every one is durable."""
        return self.queue_all(pairs)()

    def queue_all(self, pairs: Sequence[tuple[Outcome, Prediction]]) -> Callable[[], list[Receipt]]:
        """Queue one record per pair; the returned function waits until all are durable."""
        ts = rfc3339_micros(self._clock_ns())
        futures = [
            self.log.append_async(
                outcome_record(
                    o,
                    p,
                    ts=ts,
                    retention=self.retention,
                    producer=self.producer,
                    service=self.service,
                ),
                timeout=self.timeout_s,
            )
            for o, p in pairs
        ]
        deadline = time.monotonic() + self.timeout_s

        def wait() -> list[Receipt]:
            return [f.result(timeout=max(deadline - time.monotonic(), 0.0)) for f in futures]

        return wait


@dataclass
class IngestResult:
    """What one batch did."""

    received: int
    accepted: int
    duplicates: int
    unknown: list[str] = field(default_factory=list)
    audit_seqs: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The API's answer: counts, the unknown request ids, the audit log positions."""
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unknown": self.unknown,
            "audit_seq_first": self.audit_seqs[0] if self.audit_seqs else None,
            "audit_seq_last": self.audit_seqs[-1] if self.audit_seqs else None,
        }


class OutcomeService:
    """Validates, stores and audits outcomes; tells listeners about newly joined ones."""

    def __init__(
        self,
        store: OutcomeStore,
        *,
        audit: OutcomeAudit | None = None,
        index: PredictionIndex | None = None,
        batch_max: int = 10_000,
        meter: Meter | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        hand_over_events: Callable[[], object] | None = None,
    ) -> None:
        if batch_max < 1:
            raise ValueError(f"batch_max must be >= 1, got {batch_max}")
        self.store = store
        self.audit = audit
        self.index = index
        # The Monitor hands events to the index in batches (Monitor.flush_events): called
        # before a lookup so a prediction answered before its outcome arrived is indexed.
        self._hand_over_events = hand_over_events
        self.batch_max = batch_max
        self._clock_ns = clock_ns
        self._listeners: list[Listener] = []
        self._counter = (
            None
            if meter is None
            else meter.create_counter(
                METRIC_OUTCOMES,
                unit=c.UNIT_OUTCOME,
                description="Outcomes received, by result: accepted, duplicate, unknown.",
            )
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with the (outcome, prediction) pairs of every committed batch."""
        self._listeners.append(listener)

    def ingest(self, data: Any) -> IngestResult:
        """Validate and store one outcome object or a list of them (see the module docstring).

        Raises OutcomeValidationError (4xx, nothing written), OutcomeConflictError (409, nothing
        written) or AuditUnavailableError (503, nothing written).
        """
        now = self._clock_ns()
        return self.ingest_outcomes(
            parse_outcomes(data, batch_max=self.batch_max, received_ns=now), received_ns=now
        )

    def ingest_outcomes(
        self, outcomes: Sequence[Outcome], *, received_ns: int | None = None
    ) -> IngestResult:
        """Store already-validated outcomes (the CLI validates a whole file first)."""
        now = self._clock_ns() if received_ns is None else received_ns
        if self._hand_over_events is not None:
            self._hand_over_events()
        if self.index is not None and self.index.pending:
            self.index.flush()
        seqs: list[int] = []

        def audit(pairs: list[tuple[Outcome, Prediction]]) -> Callable[[], None]:
            if self.audit is None:
                return lambda: None
            try:
                wait = self.audit.queue_all(pairs)
            except Exception as exc:
                raise _unavailable(len(pairs), exc) from exc

            def durable() -> None:
                try:
                    seqs.extend(r.seq for r in wait())
                except Exception as exc:
                    raise _unavailable(len(pairs), exc) from exc

            return durable

        # The store's transaction serializes batches: audit order is commit order.
        written = self.store.write_outcomes(outcomes, received_ns=now, before_commit=audit)
        result = IngestResult(
            received=len(outcomes),
            accepted=len(written.accepted),
            duplicates=len(written.duplicates),
            unknown=[o.request_id for o in written.unknown],
            audit_seqs=seqs,
        )
        if self._counter is not None:
            for name, n in (
                ("accepted", result.accepted),
                ("duplicate", result.duplicates),
                ("unknown", len(result.unknown)),
            ):
                if n:
                    self._counter.add(n, {c.OUTCOME_RESULT: name})
        if written.accepted:
            for listener in self._listeners:
                try:
                    listener(written.accepted)
                except Exception:  # the outcomes are stored: a listener bug must not undo that
                    _log.exception("outcome listener %r failed", listener)
        return result
