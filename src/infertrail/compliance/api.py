"""``/v1/audit/...``: the access-controlled, self-auditing compliance API over the audit log.

A thin skin over :class:`~infertrail.compliance.queries.QueryService`, mounted on an app with
:func:`include_compliance_api`. Every route depends on an authentication dependency that checks
the API key (``Authorization: Bearer <key>`` or ``X-API-Key``) and the key's rate limit and
hands the route the :class:`~infertrail.compliance.queries.Caller`; routes only call the
service.

Errors are raised, not returned: the domain errors of the access layer, the service, the privacy
layer, the log and the lake, and FastAPI's own parameter validation errors. The compliance
routes wrap each in a :class:`ComplianceError` carrying its answer (401 no/invalid/revoked key,
403 role, 404 unknown seq or subject, 409 privacy conflict, 422 bad parameters naming them, 429
rate limit with Retry-After, 503 log or lake unavailable), count denials (401/403/429) in
``infertrail.audit.access.denied`` and log them (by route template, never the path or query
sent), and the handler :func:`include_compliance_api` registers renders it as
``{"error", "detail", "request_id"}``. The service also writes 403s to
the audit log. Routes are sync: DuckDB and durable appends block, so FastAPI runs them in its
thread pool.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run
# time, and ``Authenticated`` is local to compliance_router (it closes over users and limiter).

import base64
import dataclasses
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import metrics
from pydantic import BaseModel, ConfigDict, Field

from infertrail.audit.ledger import LogClosedError, LogFailedError
from infertrail.audit.record import EVENT_TYPES
from infertrail.compliance.access import AccessError, RateLimited, RateLimiter, UserStore
from infertrail.compliance.engine import LakeIntegrityError
from infertrail.compliance.export import csv_chunks, json_chunks
from infertrail.compliance.filters import (
    DEFAULT_PAGE_SIZE,
    FILTER_TEXT_PATTERN,
    MAX_PAGE_SIZE,
    PSEUDONYM_PATTERN,
    QueryError,
)
from infertrail.compliance.queries import Caller, Export, NotFoundError, QueryService, RecordsQuery
from infertrail.privacy.errors import AccessRefusedError, PrivacyError
from infertrail.privacy.policy import MAX_TEXT_CHARS, MIN_JUSTIFICATION_CHARS
from infertrail.privacy.pseudonyms import MAX_SUBJECT_ID_CHARS
from infertrail.telemetry import conventions as c
from infertrail.web.responses import ErrorResponse, error_response, request_id_of

__all__ = [
    "METRIC_ACCESS_DENIED",
    "PREFIX",
    "ComplianceError",
    "compliance_router",
    "include_compliance_api",
]

_log = logging.getLogger("infertrail.compliance")

METRIC_ACCESS_DENIED = c.METRIC_AUDIT_ACCESS_DENIED
#: Where the routes are mounted.
PREFIX = "/v1/audit"
#: Record numbers have at most 16 digits: beyond any log, and within the lake's 64-bit seq.
_MAX_SEQ = 10**16 - 1
#: The export encodings of :data:`infertrail.compliance.export.FORMATS`, as a type FastAPI
#: validates and documents (an enum in the OpenAPI schema).
ExportFormat = Literal["json", "csv"]

_bearer = HTTPBearer(auto_error=False, description="An API key from `infertrail users add`.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Same key, other header.")
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
HeaderKey = Annotated[str | None, Security(_api_key)]


class RecordRow(BaseModel):
    """One record: seq, typed fields, the canonical record text, leaf hash and proof."""

    model_config = ConfigDict(extra="allow")
    seq: int
    ts: str
    event_type: str | None
    subject: str | None = Field(description="Pseudonym; never a raw subject id.")
    record: str = Field(description="The canonical (RFC 8785) JSON the leaf hash is taken over.")
    leaf_hash: str = Field(description="hex SHA-256(0x00 || record)")
    inclusion_proof: list[str] | None = Field(description="RFC 9162 proof, base64 hashes.")


class CheckpointResponse(BaseModel):
    """The latest signed checkpoint: the log's size and Merkle root, signed."""

    origin: str
    tree_size: int
    root: str = Field(description="base64 Merkle root")
    checkpoint: str = Field(description="The signed C2SP checkpoint note.")


class RecordsPage(CheckpointResponse):
    """One page of records, each provable against the page's checkpoint."""

    filters: dict[str, Any]
    subject: dict[str, Any] | None = Field(
        description="For subject_id queries: resolved, unknown, or erased (when, by whom)."
    )
    count: int
    rows: list[RecordRow]
    next_cursor: str | None = Field(description="Pass as cursor= (same filters) for more.")
    access_seq: int = Field(description="Seq of the access_query record this query wrote.")


class ErasureRequest(BaseModel):
    """Whom to erase, and why (the reason is written to the audit log)."""

    model_config = ConfigDict(extra="forbid")
    subject_id: str = Field(min_length=1, max_length=MAX_SUBJECT_ID_CHARS)
    justification: str = Field(
        description=f"Why ({MIN_JUSTIFICATION_CHARS} to {MAX_TEXT_CHARS} characters once "
        "leading and trailing whitespace is dropped; no personal data).",
        json_schema_extra={"minLength": MIN_JUSTIFICATION_CHARS, "maxLength": MAX_TEXT_CHARS},
    )


class ErasureResponse(BaseModel):
    """The erasure receipt: when, by whom, why, what was deleted, and its seq in the log."""

    erased_at: str
    actor: dict[str, Any]
    reason: str
    receipt_seq: int
    mapping_rows: int
    data_keys: int
    payloads: int


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorResponse,
        "description": "No API key, or a malformed, unknown or revoked one.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "example": "Bearer"}},
    },
    403: {
        "model": ErrorResponse,
        "description": "The key's role lacks the permission (the refusal is audited).",
    },
    404: {"model": ErrorResponse, "description": "No such record or subject."},
    422: {
        "model": ErrorResponse,
        "description": 'Bad parameters; detail is [{"field", "message"}].',
    },
    429: {
        "model": ErrorResponse,
        "description": "The key's rate limit is exhausted.",
        "headers": {
            "Retry-After": {
                "description": "Seconds until the key may send another request.",
                "schema": {"type": "integer"},
            }
        },
    },
    503: {
        "model": ErrorResponse,
        "description": "The access could not be audited, or stored data disagrees with itself.",
    },
}


class ComplianceError(HTTPException):
    """An error raised by a compliance route, with its answer: status, kind, detail, headers.

    The compliance routes wrap the errors they answer in this type, and
    :func:`include_compliance_api` registers the handler for it. Handlers for the domain types
    themselves would not do: an app has one handler per exception type, so one for TimeoutError
    or PrivacyError would also answer those errors from the app's other routes (and replace any
    handler the app has for them); telling routes apart by path breaks as soon as the router is
    included under another prefix or another router shares this one. Only compliance routes
    raise this type. Being an HTTPException, it still gets its status and headers (with a body
    of ``{"detail"}``) from FastAPI's default handler in an app that only includes
    :func:`compliance_router`; as for any HTTPException, a handler the app registers for the
    status code takes precedence.
    """

    def __init__(
        self,
        cause: Exception,
        status: int,
        kind: str,
        detail: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, headers)
        self.cause = cause
        self.kind = kind

    @classmethod
    def of(cls, exc: Exception) -> Self | None:
        """The answer to ``exc``, or None when the API has none (a bug: the app answers 500)."""
        match exc:
            case RateLimited():
                retry_after = str(max(1, math.ceil(exc.retry_after)))
                return cls(exc, exc.status, exc.kind, str(exc), {"Retry-After": retry_after})
            case AccessError():
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return cls(exc, exc.status, exc.kind, str(exc), headers)
            case QueryError():
                problem = {"field": exc.field, "message": exc.message}
                return cls(exc, 422, "invalid_query", [problem])
            case RequestValidationError():
                return cls(exc, 422, "invalid_query", _problems(exc))
            case NotFoundError():
                return cls(exc, 404, "not_found", str(exc))
            case AccessRefusedError():
                return cls(exc, 403, "forbidden", str(exc))
            case PrivacyError():
                return cls(exc, 409, "privacy_conflict", str(exc))
            case LogFailedError() | LogClosedError() | TimeoutError():
                # No access record could be written, so no data may be handed out.
                return cls(exc, 503, "audit_unavailable", f"audit log unavailable: {exc}")
            case LakeIntegrityError():
                return cls(exc, 503, "integrity_error", str(exc))
        return None


def _problems(exc: RequestValidationError) -> list[dict[str, str]]:
    """FastAPI's validation errors as ``[{"field", "message"}]``, fields named as sent."""
    problems = []
    for error in exc.errors():
        if error["type"] == "json_invalid":
            # Its loc is ("body", <offset>): the body as a whole is unreadable.
            reason = error.get("ctx", {}).get("error", "")
            problems.append({"field": "body", "message": f"{error['msg']}: {reason}"})
            continue
        # loc is (source, name, ...): "query", "path" or "body", then the (aliased) name.
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc[1:]) or loc[0]
        message = str(error["msg"])
        if error["type"] == "missing" and loc[0] == "query" and field in ("from", "to"):
            message = (
                "is required: every query names its window [from, to), each a date "
                "(2026-07-01) or an RFC 3339 time, e.g. from=2026-07-01&to=2026-10-01"
            )
        problems.append({"field": field, "message": message})
    return problems


def _route_class(denied: metrics.Counter) -> type[APIRoute]:
    """A route class whose routes raise the errors they answer as ComplianceError.

    Denials are counted in ``denied`` and logged here, where the route is known, so that they
    are accounted for however the app answers them.
    """

    class ComplianceRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                # Without RequestIdMiddleware every lookup would invent another id; the
                # caller's audit record, the log line and the error body must share one.
                request.state.request_id = request_id_of(request)
                try:
                    return await handler(request)
                except Exception as exc:
                    error = ComplianceError.of(exc)
                    if error is None:
                        raise
                    _account(request, error, denied)
                    raise error from exc

            return answer

    return ComplianceRoute


def _account(request: Request, error: ComplianceError, denied: metrics.Counter) -> None:
    """Count and log a refused request; log a 503 (the audit log or the lake is failing).

    Both name the route template, never the request's path or query: the metric stays
    low-cardinality and neither carries a value the caller sent (docs/privacy.md).
    """
    rid = request_id_of(request)
    template = getattr(request.scope.get("route"), "path", None)
    route = template if isinstance(template, str) else PREFIX
    if isinstance(error.cause, AccessError):
        denied.add(1, {c.HTTP_RESPONSE_STATUS_CODE: error.status_code, c.HTTP_ROUTE: route})
        _log.warning(
            "compliance API %s %s refused (%s): %s", request.method, route, rid, error.cause
        )
    elif error.status_code >= 500:
        _log.error("compliance API %s: %s", rid, error.detail)


async def _answer(request: Request, exc: Exception) -> Response:
    """The exception handler: a ComplianceError as ``{"error", "detail", "request_id"}``."""
    assert isinstance(exc, ComplianceError)
    response = error_response(exc.status_code, exc.kind, exc.detail, request_id_of(request))
    response.headers.update(exc.headers or {})
    return response


#: A window bound: a date (midnight UTC) or an RFC 3339 time (filters.parse_instant).
_INSTANT = {"anyOf": [{"format": "date"}, {"format": "date-time"}]}
_FILTER_TEXT = {"pattern": FILTER_TEXT_PATTERN}


def _record_filters(
    start: Annotated[
        str,
        Query(
            alias="from",
            description="Window start (inclusive): a date or RFC 3339 time.",
            json_schema_extra=_INSTANT,
        ),
    ],
    end: Annotated[
        str,
        Query(
            alias="to",
            description="Window end (exclusive), after from, at most 366 days later.",
            json_schema_extra=_INSTANT,
        ),
    ],
    subject_id: Annotated[
        str | None,
        Query(
            description="Real subject id (compliance; needs a justification).",
            json_schema_extra={"minLength": 1, "maxLength": MAX_SUBJECT_ID_CHARS},
        ),
    ] = None,
    pseudonym: Annotated[
        str | None,
        Query(
            description="Subject pseudonym (auditor), as records carry it.",
            json_schema_extra={"pattern": PSEUDONYM_PATTERN},
        ),
    ] = None,
    model_name: Annotated[str | None, Query(json_schema_extra=_FILTER_TEXT)] = None,
    model_version: Annotated[str | None, Query(json_schema_extra=_FILTER_TEXT)] = None,
    decision: Annotated[str | None, Query(json_schema_extra=_FILTER_TEXT)] = None,
    event_type: Annotated[
        str | None, Query(json_schema_extra={"enum": sorted(EVENT_TYPES)})
    ] = None,
    justification: Annotated[
        str | None,
        Query(
            description="Why (required with subject_id; written to the log).",
            json_schema_extra={"maxLength": MAX_TEXT_CHARS},
        ),
    ] = None,
) -> RecordsQuery:
    """The filters records and export share, as given (the service validates them; the schema
    states its rules, except those across parameters: the window's order and length, and
    subject_id with a justification and without a pseudonym)."""
    return RecordsQuery(
        start, end, subject_id, pseudonym, model_name, model_version, decision, event_type,
        justification,
    )  # fmt: skip


RecordFilters = Annotated[RecordsQuery, Depends(_record_filters)]


@dataclasses.dataclass(frozen=True, slots=True)
class _Page:
    """Which page of records (``records`` only).

    A dependency of its own so that the OpenAPI schema lists these after the filters, as the
    docs do: FastAPI lists a route's own parameters before those of its dependencies.
    """

    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page (same filters).")
    ] = None
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = (
        DEFAULT_PAGE_SIZE
    )


Paging = Annotated[_Page, Depends()]


def _export_headers(result: Export, fmt: ExportFormat) -> dict[str, str]:
    """The download name, and the checkpoint and counts a CSV body has no room for."""
    window = result.filters.window
    name = f"audit-export-{window.start:%Y%m%d}-{window.end:%Y%m%d}.{fmt}"
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Audit-Checkpoint": base64.b64encode(result.checkpoint.note).decode(),
        "X-Audit-Tree-Size": str(result.checkpoint.size),
        "X-Audit-Count": str(result.count),
        "X-Audit-Access-Seq": str(result.access_seq),
    }


def compliance_router(
    service: QueryService,
    users: UserStore,
    *,
    limiter: RateLimiter | None = None,
    meter: metrics.Meter | None = None,
) -> APIRouter:
    """The ``/v1/audit`` routes over ``service``, authenticated against ``users``.

    Mount them with :func:`include_compliance_api`, which also registers the handler that
    renders their errors; an app that only includes this router answers them as
    ``{"detail"}`` (right status and headers, no ``error`` or ``request_id``). ``limiter``
    defaults to 5 requests/s with a burst of 20 per key; ``meter`` (the service's OpenTelemetry
    meter) receives the denial counter.
    """
    limiter = limiter or RateLimiter(5.0, 20)
    meter = meter or metrics.get_meter(c.SCOPE_COMPLIANCE)
    denied = meter.create_counter(
        METRIC_ACCESS_DENIED,
        unit=c.UNIT_REQUEST,
        description="Compliance API requests refused: 401 no valid key, 403 role, 429 rate.",
    )
    router = APIRouter(
        prefix=PREFIX, tags=["audit"], responses=_ERRORS, route_class=_route_class(denied)
    )

    def authenticated(request: Request, bearer: BearerKey, api_key: HeaderKey) -> Caller:
        """The caller holding a valid key with a request left in its rate (else 401, 429)."""
        user = users.authenticate(bearer.credentials if bearer is not None else api_key)
        limiter.take(user.name)
        return Caller(user, "http", request_id=request_id_of(request))

    # First in every route: FastAPI solves dependencies in order and validates the route's own
    # parameters after them, so a request is authenticated (401, 429) before its parameters are
    # judged (422); only a body that is not JSON is refused earlier, as FastAPI reads it first.
    Authenticated = Annotated[Caller, Security(authenticated)]

    @router.get("/records", response_model=RecordsPage)
    def records(caller: Authenticated, filters: RecordFilters, page: Paging) -> JSONResponse:
        """Records in a time window, by subject, model, decision or event type, with proofs."""
        q = dataclasses.replace(filters, cursor=page.cursor, limit=page.limit)
        return JSONResponse(service.query(caller, q).to_dict())

    @router.get(
        "/export",
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
        response_class=StreamingResponse,
    )
    def export(
        caller: Authenticated,
        filters: RecordFilters,
        fmt: Annotated[
            ExportFormat, Query(alias="format", description="json (one document) or csv.")
        ] = "json",
        proofs: Annotated[
            bool, Query(description="Attach an inclusion proof to every row.")
        ] = True,
    ) -> StreamingResponse:
        """Every matching record, streamed as JSON or CSV (the access record is written first)."""
        result = service.export(caller, filters, proofs=proofs)
        headers = _export_headers(result, fmt)
        if fmt == "csv":
            return StreamingResponse(csv_chunks(result), media_type="text/csv", headers=headers)
        return StreamingResponse(
            json_chunks(result), media_type="application/json", headers=headers
        )

    @router.get("/proof/{seq}")
    def proof(
        caller: Authenticated,
        seq: Annotated[int, Path(ge=0, le=_MAX_SEQ, description="The record's seq in the log.")],
    ) -> JSONResponse:
        """Inclusion evidence (infertrail-proof/1) for one record, against the latest checkpoint."""
        evidence, access_seq = service.proof(caller, seq)
        return JSONResponse(evidence, headers={"X-Audit-Access-Seq": str(access_seq)})

    @router.get("/checkpoint", response_model=CheckpointResponse)
    def checkpoint(caller: Authenticated) -> JSONResponse:
        """The latest signed checkpoint, covering every committed record."""
        return JSONResponse(service.checkpoint(caller).to_dict())

    @router.post(
        "/erasure",
        response_model=ErasureResponse,
        responses={
            409: {
                "model": ErrorResponse,
                "description": "The privacy layer refuses the erasure in its current state.",
            }
        },
    )
    def erasure(caller: Authenticated, body: ErasureRequest) -> JSONResponse:
        """Crypto-erase a subject (compliance): mapping and data key deleted, receipt logged."""
        r = service.erase(caller, body.subject_id, body.justification)
        return JSONResponse(
            {
                "erased_at": r.erased_at,
                "actor": r.actor.model_dump(),
                "reason": r.reason,
                "receipt_seq": r.receipt_seq,
                "mapping_rows": r.mapping_rows,
                "data_keys": r.data_keys,
                "payloads": r.payloads,
            }
        )

    return router


def include_compliance_api(
    app: FastAPI,
    service: QueryService,
    users: UserStore,
    *,
    limiter: RateLimiter | None = None,
    meter: metrics.Meter | None = None,
) -> None:
    """Mount the compliance API on ``app``: the routes and the handler answering their errors.

    Call it before the app serves its first request (Starlette reads the handlers then). The
    arguments are :func:`compliance_router`'s.
    """
    app.include_router(compliance_router(service, users, limiter=limiter, meter=meter))
    app.add_exception_handler(ComplianceError, _answer)
