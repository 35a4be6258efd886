"""What every decision endpoint answers the same way: request ids, errors, model identity, and
the wait for the decision's audit record."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo, new_request_id
from infertrail.monitor import Monitor
from infertrail.privacy.errors import SubjectErasedError
from infertrail.runtime.audit import AUDIT_FUTURE


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: str = Field(description="Kind: invalid_input, invalid_json, forbidden, ...")
    detail: Any
    request_id: str


#: OpenAPI documentation of a decision endpoint's errors.
DECISION_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid JSON."},
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


def model_ref(info: ModelInfo) -> dict[str, str]:
    return {"name": info.name, "version": info.version, "sha256": info.sha256}


async def durable_audit_seq(
    ev: InferenceEvent, settings: Settings, rid: str
) -> int | JSONResponse | None:
    """The decision's audit seq once its record is durable (None when audit is off or not
    awaited), or the error to answer instead: a decision that could not be recorded is not
    returned (503), and an erased subject is not silently given a new pseudonym (409)."""
    receipt = ev.extra.get(AUDIT_FUTURE)
    if receipt is None or not settings.audit_wait_durable:
        return None
    try:
        seq: int = (await asyncio.wrap_future(receipt)).seq
    except SubjectErasedError as exc:
        return error_response(409, "subject_erased", str(exc), rid)
    except Exception as exc:
        return error_response(503, "audit_unavailable", f"audit log write failed: {exc}", rid)
    return seq
