"""Events, prices and fake clocks for the cost tests."""

from __future__ import annotations

from dataclasses import dataclass

from infertrail.cost.prices import PriceTable, parse_price_table
from infertrail.events import InferenceEvent, ModelInfo

NS = 1_000_000_000
HOUR = 1_772_359_200  # 2026-03-01T10:00:00Z, Unix seconds
H10 = HOUR * NS

# Round rates so that the expected costs can be worked out by hand:
# 1 CPU-second = 0.001, 1 GPU-second = 0.002, 1 GiB-second of RAM = 0.0001.
PRICES = {
    "versions": [
        {
            "version": "test-2026",
            "effective_from": "2026-01-01T00:00:00Z",
            "cpu_core_hour": 3.6,
            "gpu_hour": 7.2,
            "ram_gib_hour": 0.36,
            "models": {
                "llm": {
                    "per_request": 0.01,
                    "per_million_input_tokens": 2.0,
                    "per_million_output_tokens": 10.0,
                }
            },
        }
    ]
}


def prices() -> PriceTable:
    return parse_price_table(PRICES)


def event(
    *,
    team: str,
    model: str,
    version: str = "1",
    endpoint: str = "/v1/x",
    tenant: str | None = None,
    at_ns: int = H10,
    cpu_s: float = 0.0,
    wall_s: float = 0.0,
    accel_s: float | None = None,
    tokens: tuple[int, int] | None = None,
    status: str = "ok",
) -> InferenceEvent:
    ev = InferenceEvent(
        model=ModelInfo(model, version, "0" * 64),
        request_id="r",
        service="svc",
        team=team,
        endpoint=endpoint,
        inputs=[1],
        input_size=1,
        tenant=tenant,
        start_time_ns=at_ns,
        duration_ns=round(wall_s * NS),
        cpu_ns=round(cpu_s * NS),
        accelerator_seconds=accel_s,
    )
    if tokens is not None:
        ev.tokens_in, ev.tokens_out = tokens
    if status == "error":
        ev.status, ev.error_type = "error", "ValueError"
    return ev


@dataclass
class FakeClocks:
    """Wall clock, process CPU clock and RSS that a test moves by hand."""

    wall_ns: int = H10
    cpu_ns: int = 0
    rss: int = 2 * 2**30

    def wall(self) -> int:
        return self.wall_ns

    def cpu(self) -> int:
        return self.cpu_ns

    def memory(self) -> int:
        return self.rss
