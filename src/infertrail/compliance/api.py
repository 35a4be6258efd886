"""``/v1/audit/...``: the access-controlled, self-auditing compliance API over the audit log.

A thin skin over :class:`~infertrail.compliance.queries.QueryService`: it authenticates the API key
(``Authorization: Bearer <key>`` or ``X-API-Key``), applies the per-key rate limit, and maps
errors to typed responses: 401 no/invalid/revoked key, 403 role, 404 unknown seq or subject,
422 bad parameters (naming them), 429 rate limit (with Retry-After), 503 log or lake unavailable.
Denials (401/403/429) are counted in ``infertrail.audit.access.denied`` and logged; the service
also writes 403s to the audit log. Handlers are sync: DuckDB and durable appends block, so
FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import metrics
from pydantic import BaseModel, ConfigDict, Field

from infertrail.audit.ledger import LogClosedError, LogFailedError
from infertrail.compliance.access import AccessError, RateLimited, RateLimiter, UserStore
from infertrail.compliance.engine import LakeIntegrityError
from infertrail.compliance.export import FORMATS, csv_chunks, json_chunks
from infertrail.compliance.filters import DEFAULT_PAGE_SIZE, QueryError
from infertrail.compliance.queries import Caller, NotFoundError, QueryService, RecordsQuery
from infertrail.privacy.errors import AccessRefusedError, PrivacyError
from infertrail.web.responses import request_id_of

__all__ = ["METRIC_ACCESS_DENIED", "compliance_router"]

_log = logging.getLogger("infertrail.compliance")

METRIC_ACCESS_DENIED = "infertrail.audit.access.denied"
PREFIX = "/v1/audit"

_bearer = HTTPBearer(auto_error=False, description="An API key from `infertrail users add`.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Same key, other header.")
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
HeaderKey = Annotated[str | None, Security(_api_key)]


class ErrorResponse(BaseModel):
    error: str = Field(description="Kind: unauthenticated, forbidden, invalid_query, ...")
    detail: Any
    request_id: str


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
    origin: str
    tree_size: int
    root: str = Field(description="base64 Merkle root")
    checkpoint: str = Field(description="The signed C2SP checkpoint note.")


class RecordsPage(CheckpointResponse):
    filters: dict[str, Any]
    subject: dict[str, Any] | None = Field(
        description="For subject_id queries: resolved, unknown, or erased (when, by whom)."
    )
    count: int
    rows: list[RecordRow]
    next_cursor: str | None = Field(description="Pass as cursor= (same filters) for more.")
    access_seq: int = Field(description="Seq of the access_query record this query wrote.")


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_id: str = Field(min_length=1, max_length=256)
    justification: str = Field(description="Why (10 to 1000 characters, no personal data).")


class ErasureResponse(BaseModel):
    erased_at: str
    actor: dict[str, Any]
    reason: str
    receipt_seq: int
    mapping_rows: int
    data_keys: int
    payloads: int


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 422, 429, 503)
}


def compliance_router(
    service: QueryService,
    users: UserStore,
    *,
    limiter: RateLimiter | None = None,
    meter: metrics.Meter | None = None,
) -> APIRouter:
    """The ``/v1/audit`` endpoints over ``service``, authenticated against ``users``.

    ``limiter`` defaults to 5 requests/s with a burst of 20 per key; ``meter`` (the service's
    OpenTelemetry meter) receives the denial counter.
    """
    limiter = limiter or RateLimiter(5.0, 20)
    meter = meter or metrics.get_meter("infertrail.compliance")
    denied = meter.create_counter(
        METRIC_ACCESS_DENIED,
        unit="{request}",
        description="Compliance API requests refused: 401 no valid key, 403 role, 429 rate.",
    )
    router = APIRouter(prefix=PREFIX, tags=["audit"], responses=_ERRORS)

    def error(status: int, kind: str, detail: Any, rid: str, **headers: str) -> JSONResponse:
        body = {"error": kind, "detail": detail, "request_id": rid}
        return JSONResponse(body, status, headers=headers or None)

    def handle(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None,
        api_key: str | None,
        action: Callable[[Caller], Response],
    ) -> Response:
        rid = request_id_of(request)
        path = request.url.path
        try:
            key = bearer.credentials if bearer is not None else api_key
            user = users.authenticate(key)
            limiter.take(user.name)
            return action(Caller(user, "http", request_id=rid))
        except AccessError as exc:
            denied.add(1, {"http.response.status_code": exc.status, "url.path": path})
            _log.warning("compliance API %s %s refused (%s): %s", request.method, path, rid, exc)
            headers = {}
            if isinstance(exc, RateLimited):
                headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            elif exc.status == 401:
                headers["WWW-Authenticate"] = "Bearer"
            return error(exc.status, exc.kind, str(exc), rid, **headers)
        except QueryError as exc:
            detail = [{"field": exc.field, "message": exc.message}]
            return error(422, "invalid_query", detail, rid)
        except NotFoundError as exc:
            return error(404, "not_found", str(exc), rid)
        except AccessRefusedError as exc:
            return error(403, "forbidden", str(exc), rid)
        except PrivacyError as exc:
            return error(409, "privacy_conflict", str(exc), rid)
        except (LogFailedError, LogClosedError, TimeoutError) as exc:
            # No access record could be written, so no data may be handed out.
            _log.error("compliance API %s: audit log unavailable: %s", rid, exc)
            return error(503, "audit_unavailable", f"audit log unavailable: {exc}", rid)
        except LakeIntegrityError as exc:
            _log.error("compliance API %s: %s", rid, exc)
            return error(503, "integrity_error", str(exc), rid)

    def records_query(
        start: str | None,
        end: str | None,
        subject_id: str | None,
        pseudonym: str | None,
        model_name: str | None,
        model_version: str | None,
        decision: str | None,
        event_type: str | None,
        justification: str | None,
        cursor: str | None = None,
        limit: str | None = None,
    ) -> RecordsQuery:
        size = DEFAULT_PAGE_SIZE
        if limit is not None:
            try:
                size = int(limit)
            except ValueError:
                raise QueryError("limit", f"{limit[:20]!r} is not an integer") from None
        return RecordsQuery(
            start, end, subject_id, pseudonym, model_name, model_version, decision, event_type,
            justification, cursor, size,
        )  # fmt: skip

    @router.get("/records", response_model=RecordsPage)
    def records(
        request: Request,
        start: str | None = Query(None, alias="from", description="Window start (inclusive)."),
        end: str | None = Query(None, alias="to", description="Window end (exclusive)."),
        subject_id: str | None = Query(None, description="Real subject id (compliance)."),
        pseudonym: str | None = Query(None, description="Subject pseudonym (auditor)."),
        model_name: str | None = None,
        model_version: str | None = None,
        decision: str | None = None,
        event_type: str | None = None,
        justification: str | None = Query(None, description="Required with subject_id."),
        cursor: str | None = None,
        limit: str | None = Query(None, description=f"Page size, default {DEFAULT_PAGE_SIZE}."),
        bearer: BearerKey = None,
        api_key: HeaderKey = None,
    ) -> Response:
        """Records in a time window, by subject, model, decision or event type, with proofs."""

        def run(caller: Caller) -> Response:
            q = records_query(
                start, end, subject_id, pseudonym, model_name, model_version, decision,
                event_type, justification, cursor, limit,
            )  # fmt: skip
            return JSONResponse(service.query(caller, q).to_dict())

        return handle(request, bearer, api_key, run)

    @router.get(
        "/export",
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
        response_class=StreamingResponse,
    )
    def export(
        request: Request,
        format: str = Query("json", description="json (one document) or csv."),
        proofs: bool = Query(True, description="Attach an inclusion proof to every row."),
        start: str | None = Query(None, alias="from"),
        end: str | None = Query(None, alias="to"),
        subject_id: str | None = None,
        pseudonym: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        decision: str | None = None,
        event_type: str | None = None,
        justification: str | None = None,
        bearer: BearerKey = None,
        api_key: HeaderKey = None,
    ) -> Response:
        """Every matching record, streamed as JSON or CSV (the access record is written first)."""

        def run(caller: Caller) -> Response:
            if format not in FORMATS:
                raise QueryError("format", f"{format[:20]!r} is not one of {list(FORMATS)}")
            q = records_query(
                start, end, subject_id, pseudonym, model_name, model_version, decision,
                event_type, justification,
            )  # fmt: skip
            result = service.export(caller, q, proofs=proofs)
            window = result.filters.window
            name = f"audit-export-{window.start:%Y%m%d}-{window.end:%Y%m%d}.{format}"
            headers = {
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Audit-Checkpoint": base64.b64encode(result.checkpoint.note).decode(),
                "X-Audit-Tree-Size": str(result.checkpoint.size),
                "X-Audit-Count": str(result.count),
                "X-Audit-Access-Seq": str(result.access_seq),
            }
            if format == "csv":
                return StreamingResponse(csv_chunks(result), media_type="text/csv", headers=headers)
            return StreamingResponse(
                json_chunks(result), media_type="application/json", headers=headers
            )

        return handle(request, bearer, api_key, run)

    @router.get("/proof/{seq}")
    def proof(
        request: Request,
        seq: str,
        bearer: BearerKey = None,
        api_key: HeaderKey = None,
    ) -> Response:
        """Inclusion evidence (infertrail-proof/1) for one record, against the latest checkpoint."""

        def run(caller: Caller) -> Response:
            if not seq.isdecimal() or len(seq) > 16:
                raise QueryError("seq", f"{seq[:20]!r} is not a record number (0, 1, 2, ...)")
            evidence, access_seq = service.proof(caller, int(seq))
            return JSONResponse(evidence, headers={"X-Audit-Access-Seq": str(access_seq)})

        return handle(request, bearer, api_key, run)

    @router.get("/checkpoint", response_model=CheckpointResponse)
    def checkpoint(
        request: Request,
        bearer: BearerKey = None,
        api_key: HeaderKey = None,
    ) -> Response:
        """The latest signed checkpoint, covering every committed record."""
        return handle(
            request, bearer, api_key, lambda c: JSONResponse(service.checkpoint(c).to_dict())
        )

    @router.post("/erasure", response_model=ErasureResponse)
    def erasure(
        request: Request,
        body: ErasureRequest,
        bearer: BearerKey = None,
        api_key: HeaderKey = None,
    ) -> Response:
        """Crypto-erase a subject (compliance): mapping and data key deleted, receipt logged."""

        def run(caller: Caller) -> Response:
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

        return handle(request, bearer, api_key, run)

    return router
