"""The compliance side of a service: the query service over its audit log, and its users."""

from __future__ import annotations

from dataclasses import dataclass

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import open_signer
from infertrail.compliance import LakeQuery, QueryService, UserStore, users_db_path
from infertrail.config import Settings
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S
from infertrail.runtime.audit import AuditTrail

__all__ = ["ComplianceAccess"]


@dataclass
class ComplianceAccess:
    """The access-controlled, self-auditing query service over one audit trail."""

    engine: LakeQuery
    queries: QueryService
    users: UserStore

    @classmethod
    def open(cls, settings: Settings, trail: AuditTrail) -> ComplianceAccess:
        """Queries over ``trail``'s log and lake, users from ``<data_dir>/access/users.db``."""
        verifier = NoteVerifier.from_key(open_signer(settings).verifier_key)
        engine = LakeQuery(trail.log, settings.lake_url, verifier)
        try:
            users = UserStore(users_db_path(settings.data_dir))
        except BaseException:
            engine.close()
            raise
        return cls(engine, QueryService(engine, trail.privacy.recorder, trail.privacy), users)

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Close the query engine and the users database (before the trail they read)."""
        try:
            self.engine.close()
        finally:
            self.users.close()
