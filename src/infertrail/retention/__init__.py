"""Retention enforcement: each month's linking keys crypto-shredded once everything written under
them has expired, the audit log left intact and verifiable.

See docs/retention.md for the key scheme, what shredding does and does not achieve, and the
retention periods of each regime. Names are imported on first use.
"""

from typing import TYPE_CHECKING

from infertrail._lazy import lazy_attributes

if TYPE_CHECKING:
    from infertrail.retention.plan import KeyState, PayloadPeriod, RetentionPlan
    from infertrail.retention.service import (
        RETENTION_EVENT,
        RetentionService,
        RetentionStatus,
        ShredReport,
        retention_service,
    )
    from infertrail.retention.task import RetentionTask

# Submodule -> the names it exports.
_EXPORTS = {
    "plan": ("KeyState", "PayloadPeriod", "RetentionPlan"),
    "service": (
        "RETENTION_EVENT",
        "RetentionService",
        "RetentionStatus",
        "ShredReport",
        "retention_service",
    ),
    "task": ("RetentionTask",),
}

__all__ = [
    "RETENTION_EVENT",
    "KeyState",
    "PayloadPeriod",
    "RetentionPlan",
    "RetentionService",
    "RetentionStatus",
    "RetentionTask",
    "ShredReport",
    "retention_service",
]

__getattr__ = lazy_attributes(
    __name__, {name: f"{__name__}.{module}" for module, names in _EXPORTS.items() for name in names}
)
