"""``POST /v1/outcomes`` and ``GET /v1/outcomes/performance``: the HTTP skin of the service.

The body is parsed and validated here rather than by FastAPI's handler, so that every 4xx
names the item and the field, and looks the same whichever app mounts the router:

- 200: ``{received, accepted, duplicates, unknown: [request ids], audit_seq_first/last}``;
- 400 ``invalid_json``; 422 ``invalid_outcomes`` with ``detail: [{index, field, message}]``;
- 409 ``outcome_conflict`` with ``detail: [{request_id, kind, stored, received}]``;
- 503 ``audit_unavailable``. None of the error answers stored anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from infertrail.events import new_request_id
from infertrail.outcomes.ingest import AuditUnavailableError, OutcomeService
from infertrail.outcomes.join import OutcomeSpec, performance_report, unix_ns
from infertrail.outcomes.render import report_as_dict
from infertrail.outcomes.schema import OutcomeIn, OutcomeValidationError
from infertrail.outcomes.store import OutcomeConflictError

__all__ = ["OUTCOMES_PATH", "PERFORMANCE_PATH", "IngestResponse", "outcomes_router"]

OUTCOMES_PATH = "/v1/outcomes"
PERFORMANCE_PATH = "/v1/outcomes/performance"


class IngestResponse(BaseModel):
    received: int = Field(description="Outcomes in the request.")
    accepted: int = Field(description="New outcomes stored (and audited).")
    duplicates: int = Field(description="Repeats of stored outcomes: no-ops.")
    unknown: list[str] = Field(description="Request ids with no indexed prediction: not stored.")
    audit_seq_first: int | None = Field(description="Audit log position of the first record.")
    audit_seq_last: int | None = Field(description="Audit log position of the last record.")


class ErrorResponse(BaseModel):
    error: str
    detail: Any
    request_id: str


_ITEM_SCHEMA = OutcomeIn.model_json_schema()
_BATCH_SCHEMA = {"type": "array", "items": _ITEM_SCHEMA}


def outcomes_router(service: OutcomeService, spec_for: Callable[[str], OutcomeSpec]) -> APIRouter:
    """The outcomes endpoints over ``service``; ``spec_for`` reads each model's outputs."""
    router = APIRouter(tags=["outcomes"])

    def error(status: int, kind: str, detail: Any, rid: str) -> JSONResponse:
        return JSONResponse({"error": kind, "detail": detail, "request_id": rid}, status)

    @router.post(
        OUTCOMES_PATH,
        response_model=IngestResponse,
        responses={
            400: {"model": ErrorResponse, "description": "The body is not valid JSON."},
            409: {"model": ErrorResponse, "description": "Contradicts a recorded outcome."},
            422: {"model": ErrorResponse, "description": "Invalid outcomes; none stored."},
            503: {"model": ErrorResponse, "description": "Could not be audited; none stored."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [_ITEM_SCHEMA, {"type": "array", "items": _ITEM_SCHEMA}]
                        }
                    }
                },
            }
        },
    )
    async def post_outcomes(request: Request) -> Any:
        """Record delayed outcomes (ground truth or business KPIs) of earlier predictions."""
        rid: str = request.scope.get("state", {}).get("request_id") or new_request_id()
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "invalid_json", f"request body is not valid JSON: {exc}", rid)
        try:
            result = await run_in_threadpool(service.ingest, data)
        except OutcomeValidationError as exc:
            return error(422, "invalid_outcomes", [p.as_json() for p in exc.problems], rid)
        except OutcomeConflictError as exc:
            return error(409, "outcome_conflict", [c.as_json() for c in exc.conflicts], rid)
        except AuditUnavailableError as exc:
            return error(503, "audit_unavailable", str(exc), rid)
        return result.as_json()

    @router.get(PERFORMANCE_PATH)
    async def get_performance(
        request: Request,
        model: str | None = None,
        version: str | None = None,
        kind: str = "label",
        start: Annotated[
            datetime | None, Query(alias="from", description="RFC 3339, inclusive.")
        ] = None,
        end: Annotated[
            datetime | None, Query(alias="to", description="RFC 3339, exclusive.")
        ] = None,
        every_s: Annotated[int | None, Query(ge=1, description="Window in seconds.")] = None,
        bins: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Any:
        """Performance and KPI view of joined outcomes (the JSON of `outcomes report`)."""
        rid: str = request.scope.get("state", {}).get("request_id") or new_request_id()
        for name, t in (("from", start), ("to", end)):
            if t is not None and t.tzinfo is None:
                return error(422, "invalid_query", f"{name} must carry a UTC offset", rid)
        report = await run_in_threadpool(
            performance_report,
            service.store,
            spec_for,
            kind=kind,
            model=model,
            version=version,
            start_ns=None if start is None else unix_ns(start),
            end_ns=None if end is None else unix_ns(end),
            every_s=every_s,
            bins=bins,
        )
        return report_as_dict(report)

    return router
