"""infertrail: observability and a tamper-evident audit trail for AI inference.

The public API, imported on first use so that ``import infertrail`` stays cheap:

- :func:`instrument` (FastAPI/Starlette app) and :func:`start` (any process): one call that
  starts everything the settings enable and returns the :class:`Runtime`;
- :class:`Settings`, :class:`ModelInfo`, :class:`Monitor`, :class:`InferenceEvent`;
- :class:`Receipt`, :class:`AuditUnavailableError`, :class:`AuditRefusedError`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "AuditRefusedError": "infertrail.audit.receipts",
    "AuditUnavailableError": "infertrail.audit.receipts",
    "InferenceEvent": "infertrail.events",
    "ModelInfo": "infertrail.events",
    "Monitor": "infertrail.monitor",
    "Receipt": "infertrail.audit.receipts",
    "Runtime": "infertrail.runtime.assembly",
    "Settings": "infertrail.config",
    "instrument": "infertrail.runtime.asgi",
    "start": "infertrail.runtime.assembly",
}

__all__ = [
    "AuditRefusedError",
    "AuditUnavailableError",
    "InferenceEvent",
    "ModelInfo",
    "Monitor",
    "Receipt",
    "Runtime",
    "Settings",
    "instrument",
    "start",
]

if TYPE_CHECKING:
    from infertrail.audit.receipts import AuditRefusedError, AuditUnavailableError, Receipt
    from infertrail.config import Settings
    from infertrail.events import InferenceEvent, ModelInfo
    from infertrail.monitor import Monitor
    from infertrail.runtime.asgi import instrument
    from infertrail.runtime.assembly import Runtime, start


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'infertrail' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
