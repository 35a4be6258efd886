"""Exception handlers answering the framework's own errors in the one error shape.

FastAPI answers a request it cannot validate (``RequestValidationError``) and Starlette one it
cannot route (``HTTPException``: 404, 405) with ``{"detail": ...}``. These handlers answer them
as ``{"error", "detail", "request_id"}`` like every other error of an instrumented app:

- a body that is not JSON: 400 ``invalid_json``;
- a body, query, path or header parameter that does not validate: 422 ``invalid_input`` with
  ``detail: [{"field", "message", "type"}]`` (fields named as sent; values never echoed);
- any ``HTTPException``: its status and headers, ``error`` named after the status.

An app that registered its own handler for either type keeps it. These answers are not counted
as the model's rejections: the request never reached a model (a route that validates its own
body, as the served models do, counts its refusals itself).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from infertrail.web.responses import error_response, request_id_of

__all__ = ["HTTP_ERROR_KINDS", "install_request_error_handlers", "validation_problems"]

#: The ``error`` of an HTTPException's answer, by status.
HTTP_ERROR_KINDS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
_NO_BODY = (204, 205, 304)
_SOURCES = ("body", "query", "path", "header", "cookie")


def validation_problems(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """FastAPI's validation errors as ``[{"field", "message", "type"}]``, without inputs.

    ``loc`` is (source, name, ...): the field is the rest, as sent (``pixels.3``), or the
    source alone when the whole of it is wrong. pydantic's ``msg`` never holds the input.
    """
    problems = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ())]
        rest = loc[1:] if loc and loc[0] in _SOURCES else loc
        field = ".".join(rest) or (loc[0] if loc else "body")
        problems.append({"field": field, "message": str(e.get("msg")), "type": str(e.get("type"))})
    return problems


def install_request_error_handlers(app: Starlette) -> None:
    """Answer validation errors and HTTPExceptions in the one shape (see the module docstring)."""

    async def invalid_request(request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        errors: list[dict[str, Any]] = list(getattr(exc, "errors", list)())
        if any(e.get("type") == "json_invalid" for e in errors):
            reasons = sorted({str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors})
            message = "request body is not valid JSON: " + "; ".join(reasons)
            return error_response(400, "invalid_json", message, rid)
        return error_response(422, "invalid_input", validation_problems(errors), rid)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code in _NO_BODY or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=exc.headers)
        kind = HTTP_ERROR_KINDS.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, kind, exc.detail, request_id_of(request))
        response.headers.update(exc.headers or {})
        return response

    validation_error, defaults = _fastapi_types()
    if validation_error is not None and _unclaimed(app, validation_error, defaults):
        app.add_exception_handler(validation_error, invalid_request)
    if _unclaimed(app, HTTPException, defaults):
        app.add_exception_handler(HTTPException, http_error)


def _fastapi_types() -> tuple[type[Exception] | None, tuple[Any, ...]]:
    """FastAPI's RequestValidationError and its default handlers (None, () without FastAPI)."""
    try:
        from fastapi import exception_handlers
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # a Starlette app without FastAPI installed
        return None, ()
    defaults = (
        exception_handlers.http_exception_handler,
        exception_handlers.request_validation_exception_handler,
    )
    return RequestValidationError, defaults


def _unclaimed(app: Starlette, exc_type: type[Exception], defaults: tuple[Any, ...]) -> bool:
    """True when the app has no handler of its own for ``exc_type`` (FastAPI's don't count)."""
    handler = app.exception_handlers.get(exc_type)
    return handler is None or handler in defaults
