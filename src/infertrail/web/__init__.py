"""The HTTP layer every instrumented app shares: request ids, the access log, the error shape."""

from infertrail.web.accesslog import AccessLogMiddleware
from infertrail.web.requestid import RequestIdMiddleware
from infertrail.web.responses import (
    DECISION_ERRORS,
    ErrorResponse,
    ModelRef,
    durable_audit_seq,
    error_response,
    install_error_handlers,
    request_id_of,
)

__all__ = [
    "DECISION_ERRORS",
    "AccessLogMiddleware",
    "ErrorResponse",
    "ModelRef",
    "RequestIdMiddleware",
    "durable_audit_seq",
    "error_response",
    "install_error_handlers",
    "request_id_of",
]
