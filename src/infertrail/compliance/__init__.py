"""The compliance query interface: DuckDB over the audit lake plus the unsealed tail, with proofs.

:class:`QueryService` is the one service layer under the HTTP router
(:func:`infertrail.compliance.api.compliance_router`) and the CLI
(:mod:`infertrail.compliance.cli`):
it checks roles, resolves subjects, and appends an ``access_query`` audit record for every use.
See docs/compliance-api.md.
"""

from infertrail.compliance.access import (
    PERMISSIONS,
    ROLES,
    AccessDenied,
    AccessError,
    Permission,
    RateLimited,
    RateLimiter,
    Unauthenticated,
    User,
    UserStore,
    users_db_path,
)
from infertrail.compliance.engine import CheckpointView, LakeIntegrityError, LakeQuery, Row
from infertrail.compliance.filters import QueryError, QueryFilters, TimeWindow
from infertrail.compliance.queries import (
    Caller,
    Export,
    NotFoundError,
    QueryResult,
    QueryService,
    RecordsQuery,
)

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "AccessDenied",
    "AccessError",
    "Caller",
    "CheckpointView",
    "Export",
    "LakeIntegrityError",
    "LakeQuery",
    "NotFoundError",
    "Permission",
    "QueryError",
    "QueryFilters",
    "QueryResult",
    "QueryService",
    "RateLimited",
    "RateLimiter",
    "RecordsQuery",
    "Row",
    "TimeWindow",
    "Unauthenticated",
    "User",
    "UserStore",
    "users_db_path",
]
