"""Predictions and outcomes for the outcome tests."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from infertrail.audit.ledger import Receipt
from infertrail.outcomes.schema import Outcome
from infertrail.outcomes.store import Prediction

NS = 1_000_000_000
T0 = 1_772_359_200 * NS  # 2026-03-01T10:00:00Z


def prediction(
    rid: str,
    *,
    model: str = "credit",
    version: str = "1.0.0",
    label: str | None = "approve",
    score: float | None = 0.8,
    confidence: float | None = 0.9,
    latency_ms: float = 3.0,
    ts_ns: int = T0,
) -> Prediction:
    return Prediction(
        request_id=rid,
        ts_ns=ts_ns,
        model=model,
        version=version,
        label=label,
        score=score,
        confidence=confidence,
        decision=label,
        latency_ms=latency_ms,
        team="risk",
        endpoint="/v1/credit/score",
    )


def outcome(
    rid: str,
    label: str | None = "1",
    value: float | None = None,
    kind: str = "label",
    ts_ns: int = T0 + 3600 * NS,
) -> Outcome:
    if value is None and label is not None and label.lstrip("-").isdigit():
        value = float(label)
    return Outcome(rid, kind, label, value, ts_ns)


class FakeLog:
    """An audit log stand-in: keeps records, optionally fails; futures resolve at once."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.fail = fail

    def append_async(self, record: Any, timeout: float | None = None) -> Future[Receipt]:
        f: Future[Receipt] = Future()
        if self.fail is not None:
            f.set_exception(self.fail)
        else:
            self.records.append(dict(record))
            f.set_result(Receipt(len(self.records) - 1, b"\0" * 32))
        return f
