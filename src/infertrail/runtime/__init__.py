"""The runtime layer: the only code that assembles a running service from Settings.

:class:`Runtime` starts telemetry, the Monitor and its sinks, the audit trail, drift, alert
rules, SLOs, cost, outcomes and the compliance query service in one order and stops them in the
reverse one (``runtime/assembly.py`` documents both). :func:`instrument` wires it into a
FastAPI/Starlette app in one call; :func:`start` serves a process without a web framework.
Feature packages never import each other to start a service; this package does.
"""

from infertrail.audit.receipts import AuditRefusedError, AuditUnavailableError, Receipt
from infertrail.runtime.assembly import Runtime, start

__all__ = [
    "AuditRefusedError",
    "AuditUnavailableError",
    "Receipt",
    "Runtime",
    "instrument",
    "runtime_of",
    "start",
]


def __getattr__(name: str) -> object:
    # The web integration needs Starlette (the [server] extra): imported only when used.
    if name in ("instrument", "runtime_of"):
        from infertrail.runtime import asgi

        return getattr(asgi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
