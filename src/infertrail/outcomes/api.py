"""``POST /v1/outcomes`` and ``GET /v1/outcomes/performance``: the HTTP skin of the service.

The body is parsed and validated here rather than by FastAPI's handler, so that every 4xx
names the item and the field, and looks the same whichever app mounts the router:

- 200: ``{received, accepted, duplicates, unknown: [request ids], audit_seq_first/last}``;
- 400 ``invalid_json``; 422 ``invalid_outcomes`` with ``detail: [{index, field, message}]``;
- 409 ``outcome_conflict`` with ``detail: [{request_id, kind, stored, received}]``;
- 503 ``audit_unavailable``. None of the error answers stored anything.

``GET /v1/outcomes/performance`` takes ``from``/``to`` as RFC 3339 times (422
``invalid_query`` naming the parameter otherwise). A bound beyond the times an outcome can
carry (before 1677-09-21 or after 2262-04-11, the range of 64-bit Unix nanoseconds) is the
same as no bound: ``from=0001-01-01T00:00:00Z`` means "from the start". With estimators, each
group of the answer carries CBPE's estimates beside the realized metrics (``estimated``,
:mod:`~infertrail.outcomes.report_models` describes every field).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from infertrail.events import new_request_id
from infertrail.outcomes.estimated import Estimators
from infertrail.outcomes.ingest import AuditUnavailableError, OutcomeService
from infertrail.outcomes.join import OutcomeSpec, performance_report
from infertrail.outcomes.render import report_as_dict
from infertrail.outcomes.report_models import PerformanceReportOut
from infertrail.outcomes.schema import (
    KIND_PATTERN,
    MAX_TIME_NS,
    MIN_TIME_NS,
    OutcomeIn,
    OutcomeValidationError,
    rfc3339_ns,
)
from infertrail.outcomes.store import OutcomeConflictError
from infertrail.web.responses import ErrorResponse

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


#: The widest performance window, in seconds: ten years.
MAX_EVERY_S = 315_576_000
_REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


def _item_schema() -> dict[str, Any]:
    """The JSON schema of one outcome, with the rules its validators apply."""
    schema = OutcomeIn.model_json_schema()
    props = schema["properties"]
    props["request_id"].update(pattern=_REQUEST_ID_PATTERN, maxLength=128)
    for option in props["ts"]["anyOf"]:
        if option.get("type") == "string":
            option["format"] = "date-time"
    props["ts"]["description"] = (
        "RFC 3339 time of the outcome, from 1677-09-21 to 2262-04-11 (64-bit Unix "
        "nanoseconds); default: receipt."
    )
    for option in props["outcome"]["anyOf"]:
        if option.get("type") == "number":
            option["description"] = "A numeric value (finite)."
    return schema


def query_window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``from``/``to`` as Unix ns; a bound beyond what is stored is no bound (module doc).

    QueryProblem names the parameter that is not an RFC 3339 time.
    """
    bounds: list[int | None] = []
    for name, value in (("from", start), ("to", end)):
        try:
            bounds.append(None if value is None else rfc3339_ns(value))
        except ValueError as exc:
            raise QueryProblem(name, str(exc)) from None
    lo, hi = bounds
    if lo is not None:
        lo = None if lo <= MIN_TIME_NS else min(lo, MAX_TIME_NS)
    if hi is not None:
        hi = None if hi >= MAX_TIME_NS else max(hi, MIN_TIME_NS)
    return lo, hi


class QueryProblem(ValueError):
    """A query parameter of the performance view is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


_ITEM_SCHEMA = _item_schema()


def outcomes_router(
    service: OutcomeService,
    spec_for: Callable[[str], OutcomeSpec],
    estimators: Estimators | None = None,
) -> APIRouter:
    """The outcomes endpoints over ``service``; ``spec_for`` reads each model's outputs,
    ``estimators`` give the performance view its estimates (none without them)."""
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
                            "anyOf": [
                                _ITEM_SCHEMA,
                                {
                                    "type": "array",
                                    "items": _ITEM_SCHEMA,
                                    "minItems": 1,
                                    "maxItems": service.batch_max,
                                },
                            ]
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

    @router.get(
        PERFORMANCE_PATH,
        response_model=PerformanceReportOut,
        responses={422: {"model": ErrorResponse, "description": "Invalid query parameters."}},
    )
    async def get_performance(
        request: Request,
        model: str | None = None,
        version: str | None = None,
        kind: Annotated[
            str, Query(pattern=KIND_PATTERN, description="Outcome kind: label or a KPI name.")
        ] = "label",
        start: Annotated[
            str | None,
            Query(
                alias="from",
                description="RFC 3339 time, inclusive (predictions made from then on).",
                json_schema_extra={"format": "date-time"},
            ),
        ] = None,
        end: Annotated[
            str | None,
            Query(
                alias="to",
                description="RFC 3339 time, exclusive.",
                json_schema_extra={"format": "date-time"},
            ),
        ] = None,
        every_s: Annotated[
            int | None, Query(ge=1, le=MAX_EVERY_S, description="Window in seconds.")
        ] = None,
        bins: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Any:
        """Performance and KPI view of joined outcomes, with estimated beside realized
        performance (the JSON of `outcomes report`)."""
        rid: str = request.scope.get("state", {}).get("request_id") or new_request_id()
        try:
            start_ns, end_ns = query_window(start, end)
        except QueryProblem as exc:
            problem = {"field": exc.field, "message": f"{exc.field} {exc.message}"}
            return error(422, "invalid_query", [problem], rid)
        report = await run_in_threadpool(
            performance_report,
            service.store,
            spec_for,
            kind=kind,
            model=model,
            version=version,
            start_ns=start_ns,
            end_ns=end_ns,
            every_s=every_s,
            bins=bins,
            estimators=estimators,
        )
        return report_as_dict(report)

    return router
