"""Shared helpers for the SLO tests: SLO factories and synthetic inference events."""

from __future__ import annotations

from typing import Any

from infertrail.events import InferenceEvent, ModelInfo, Status
from infertrail.slo.definitions import SLO, SLOSet, parse_slos

T0 = 1_800_000_000  # epoch seconds, a whole day (so every window starts on a boundary)
MODEL = ModelInfo("sentiment", "1", "ab" * 32)


def slo_body(**overrides: Any) -> dict[str, Any]:
    """A valid native SLO body (latency, 99 %) with ``overrides`` applied."""
    body: dict[str, Any] = {
        "name": "sentiment-latency",
        "service": "demo",
        "model": "sentiment",
        "objective": 99,
        "window": "28d",
        "sli": {"kind": "latency", "threshold_seconds": 0.25},
    }
    body.update(overrides)
    return body


def slo_set(*bodies: dict[str, Any]) -> SLOSet:
    """Validated SLOs from native bodies."""
    return parse_slos({"slos": list(bodies) or [slo_body()]})


def make_slo(**overrides: Any) -> SLO:
    """One validated SLO."""
    return slo_set(slo_body(**overrides)).slos[0]


def event(
    t_s: float,
    *,
    duration_s: float = 0.01,
    status: Status = "ok",
    confidence: float | None = 0.9,
    error_type: str | None = None,
    inputs: Any = "text",
    model: ModelInfo = MODEL,
) -> InferenceEvent:
    """An inference that ended at ``t_s`` (epoch seconds) after ``duration_s``."""
    duration_ns = round(duration_s * 1e9)
    return InferenceEvent(
        model=model,
        request_id="r",
        service="demo",
        team="t",
        endpoint="/predict",
        inputs=inputs,
        input_size=1,
        start_time_ns=round(t_s * 1e9) - duration_ns,
        duration_ns=duration_ns,
        confidence=confidence if status == "ok" else None,
        status=status,
        error_type=error_type if status == "error" else None,
    )
