"""Overview: per model and version, traffic, latency, errors, confidence, drift, SLOs, cost,
open alerts, over a time range. (Placeholder until the overview data lands.)"""

from __future__ import annotations

from typing import Any

from infertrail.console.app import Console, PageContext


def register(console: Console) -> None:
    @console.page("overview", title="Overview")
    def overview(ctx: PageContext) -> dict[str, Any]:
        return {"models": [{"name": m.name, "version": m.version} for m in ctx.runtime.models]}
