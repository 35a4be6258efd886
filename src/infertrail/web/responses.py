"""What every decision endpoint answers the same way: request ids, errors, model identity, and
the wait for the decision's audit record."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.applications import Starlette

from infertrail.audit.receipt_check import RECEIPT_FORMAT
from infertrail.audit.receipts import (
    AuditRefusedError,
    AuditUnavailableError,
    Receipt,
    receipt_of_async,
)
from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo, new_request_id
from infertrail.monitor import Monitor

__all__ = [
    "DECISION_ERRORS",
    "AuditReceipt",
    "ErrorResponse",
    "ModelRef",
    "audit_fields",
    "durable_audit_receipt",
    "durable_audit_seq",
    "error_response",
    "install_error_handlers",
    "model_ref",
    "problems_summary",
    "reject",
    "request_id_of",
]

_log = logging.getLogger("infertrail.web")


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: str = Field(description="Kind: invalid_input, invalid_json, forbidden, ...")
    detail: Any
    request_id: str


class ModelRef(BaseModel):
    """The identity of the model that made a decision, as every decision response gives it."""

    name: str
    version: str
    sha256: str = Field(description="SHA-256 of the model artifact.")


class AuditReceipt(BaseModel):
    """The decision's audit receipt: proof, checkable with only the log's public key, that the
    audit log held the decision's record before it was answered (docs/receipts.md)."""

    format: Literal["infertrail-receipt/1"] = RECEIPT_FORMAT
    origin: str = Field(description="The audit log: the origin its signed checkpoints name.")
    shard: str = Field(description="Which log of a fleet wrote it (a label, not signed).")
    seq: int = Field(description="The record's position in the log.")
    leaf_hash: str = Field(description="RFC 6962 leaf hash of the record: 64 lowercase hex.")
    tlog_proof: str = Field(
        description="C2SP tlog-proof (c2sp.org/tlog-proof): the record's index, its inclusion "
        "proof and the checkpoint the log signed for the record's group commit."
    )


#: OpenAPI documentation of a decision endpoint's errors.
DECISION_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid JSON."},
    409: {"model": ErrorResponse, "description": "The subject was erased."},
    422: {"model": ErrorResponse, "description": "Missing, unknown or invalid fields."},
    503: {"model": ErrorResponse, "description": "The decision could not be audited."},
}


def request_id_of(request: Request) -> str:
    """The id RequestIdMiddleware validated or generated (a new one if it did not run)."""
    rid: str = request.scope.get("state", {}).get("request_id") or new_request_id()
    return rid


def error_response(status: int, kind: str, detail: Any, rid: str) -> JSONResponse:
    """The one error shape: ``{"error", "detail", "request_id"}``."""
    return JSONResponse({"error": kind, "detail": detail, "request_id": rid}, status)


def reject(
    monitor: Monitor,
    model: ModelInfo,
    endpoint: str,
    status: int,
    kind: str,
    detail: Any,
    message: str,
    rid: str,
) -> JSONResponse:
    """Answer a request refused before inference, counted, logged and traced like any other."""
    monitor.record_rejection(
        model, error_type=kind, message=message, request_id=rid, endpoint=endpoint
    )
    return error_response(status, kind, detail, rid)


def problems_summary(problems: Sequence[Mapping[str, Any]]) -> str:
    """What telemetry records of a refused body: each problem's field and kind, no value.

    The answer to the caller names values (they sent them); the log line and span of the
    rejection must not, and an unknown field's name is itself a value the caller chose.
    """
    return "; ".join(
        f"{'(unknown field)' if p.get('type') == 'extra_forbidden' else p.get('field')}: "
        f"{p.get('type')}"
        for p in problems
    )


def model_ref(info: ModelInfo) -> dict[str, str]:
    """The :class:`ModelRef` of a served model, as a response dict."""
    return {"name": info.name, "version": info.version, "sha256": info.sha256}


async def durable_audit_receipt(ev: InferenceEvent, settings: Settings) -> Receipt | None:
    """The decision's audit receipt once its record is durable and signed; None when audit is
    off or not awaited (``audit_wait_durable``).

    Raises AuditUnavailableError (answered 503: a decision that could not be recorded is not
    returned) or AuditRefusedError (answered 409, e.g. an erased subject is not silently given
    a new pseudonym) through the handlers of :func:`install_error_handlers`.
    """
    if not settings.audit_wait_durable:
        return None
    return await receipt_of_async(ev.audit)


async def durable_audit_seq(ev: InferenceEvent, settings: Settings) -> int | None:
    """The decision's audit seq once its record is durable (:func:`durable_audit_receipt`)."""
    receipt = await durable_audit_receipt(ev, settings)
    return None if receipt is None else receipt.seq


async def audit_fields(ev: InferenceEvent, settings: Settings) -> dict[str, Any]:
    """``audit_seq`` and ``audit_receipt`` of a decision response, once its record is durable
    (both None when audit is off or not awaited); raises as :func:`durable_audit_receipt`."""
    receipt = await durable_audit_receipt(ev, settings)
    if receipt is None:
        return {"audit_seq": None, "audit_receipt": None}
    return {"audit_seq": receipt.seq, "audit_receipt": receipt.to_dict()}


def install_error_handlers(app: Starlette) -> None:
    """Answer the audit errors of decision endpoints in the one error shape (503 and 409)."""

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The detail (paths, OS errors) is for the operator's log, not for the caller.
        rid = request_id_of(request)
        _log.error("request %s: decision not returned: %s", rid, exc)
        detail = "the decision could not be recorded in the audit log, so none is returned"
        return error_response(503, "audit_unavailable", detail, rid)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        kind = exc.kind if isinstance(exc, AuditRefusedError) else "audit_refused"
        return error_response(409, kind, str(exc), request_id_of(request))

    app.add_exception_handler(AuditUnavailableError, unavailable)
    app.add_exception_handler(AuditRefusedError, refused)
