"""The OpenAPI document of an instrumented app, completed with what infertrail adds to it.

Routes document their own answers; what the middleware and handlers of
:func:`infertrail.instrument` answer for every route is added here, when the document is first
built (so routes added after ``instrument()`` get it too):

- every operation with a request body: 400 (not JSON), 413 (too large), 415 (not
  ``application/json``) and 422 (invalid fields) in the one error shape, unless it documents
  them itself;
- ``GET /metrics`` (the Prometheus text format), which is not a FastAPI route.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from infertrail.web.responses import ErrorResponse

__all__ = ["BODY_ERRORS", "document_instrumentation"]

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
#: What the guard and the validation handlers answer for a route that takes a body.
BODY_ERRORS: dict[str, str] = {
    "400": "The body is not valid JSON (or not UTF-8, or nested too deeply).",
    "413": "The body is longer than the route's limit (settings http_body_limits).",
    "415": "The body is not sent as Content-Type: application/json (UTF-8).",
    "422": "Missing, unknown or invalid fields; detail names them.",
}


def document_instrumentation(
    app: FastAPI, *, metrics_path: str | None, metrics_content_type: str
) -> None:
    """Complete ``app``'s OpenAPI document (see the module docstring) when it is built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build(), metrics_path, metrics_content_type)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(
    document: dict[str, Any], metrics_path: str | None, metrics_content_type: str
) -> dict[str, Any]:
    """``document`` with the body errors and the metrics operation added (in place)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                responses = operation.setdefault("responses", {})
                for status, description in BODY_ERRORS.items():
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": _ERROR_REF}},
                        },
                    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ErrorResponse",
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"),
    )
    if metrics_path is not None:
        document["paths"].setdefault(metrics_path, {})["get"] = {
            "summary": "Metrics",
            "description": "Prometheus text format: infertrail's metrics and the HTTP ones.",
            "operationId": "metrics",
            "tags": ["monitoring"],
            "responses": {
                "200": {
                    "description": "The current value of every metric.",
                    "content": {metrics_content_type: {"schema": {"type": "string"}}},
                }
            },
        }
    return document
