"""The compliance query service: role checks, subject resolution, and an audit record per use.

One service layer under two skins (the HTTP router in :mod:`infertrail.compliance.api` and
the CLI in :mod:`infertrail.compliance.cli`). Every query, export and proof is appended to the audit
log as an ``access_query`` record (who, role, channel, filters with the subject as its pseudonym,
justification, result count) *before* any data is handed out, and so is every refusal for lack
of role. "Who looked at user X?" is then the query ``event_type=access_query`` with X's
pseudonym.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from infertrail.audit.ledger import Receipt
from infertrail.audit.record import Actor
from infertrail.compliance.access import AccessDenied, Permission, User, check_role
from infertrail.compliance.engine import CheckpointView, LakeQuery, Row
from infertrail.compliance.filters import (
    DEFAULT_MAX_WINDOW_DAYS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    QueryError,
    QueryFilters,
    decode_cursor,
    encode_cursor,
    parse_window,
)
from infertrail.privacy.erasure import ErasureReceipt
from infertrail.privacy.errors import UnknownSubjectError
from infertrail.privacy.policy import MAX_TEXT_CHARS, MIN_JUSTIFICATION_CHARS
from infertrail.privacy.pseudonyms import MAX_SUBJECT_ID_CHARS, Tombstone
from infertrail.privacy.records import AuditRecorder
from infertrail.privacy.stores import PrivacyService

__all__ = [
    "ACCESS_EVENT",
    "Caller",
    "Export",
    "NotFoundError",
    "QueryResult",
    "QueryService",
    "RecordsQuery",
    "SubjectNotice",
]

_log = logging.getLogger("infertrail.compliance")
ACCESS_EVENT = "access_query"


class NotFoundError(LookupError):
    """The thing asked for does not exist (a seq beyond the log, a subject never seen)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, and through which channel (``http`` or ``cli``) and request."""

    user: User
    channel: str
    request_id: str | None = None
    detail: dict[str, str] = field(default_factory=dict)  # e.g. the OS user of a CLI call

    def actor(self) -> Actor:
        """The ``actor`` object of the audit records this caller causes."""
        return Actor(id=self.user.name, role=self.user.role, channel=self.channel, **self.detail)


@dataclass(frozen=True, slots=True)
class RecordsQuery:
    """The parameters of a query or export, as the caller gave them (validated by the service).

    ``subject_id`` is a person's real id (compliance only, needs a justification);
    ``pseudonym`` is the subject as it appears in records (auditors and up).
    """

    start: str | None
    end: str | None
    subject_id: str | None = None
    pseudonym: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    decision: str | None = None
    event_type: str | None = None
    justification: str | None = None
    cursor: str | None = None
    limit: int = DEFAULT_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class SubjectNotice:
    """How a subject id was resolved: to a pseudonym, to nothing, or to an erasure."""

    status: str  # "resolved", "unknown" or "erased"
    erasure: Tombstone | None

    def to_dict(self) -> dict[str, Any]:
        erasure = None
        if self.erasure is not None:
            erasure = {
                "erased_at": self.erasure.erased_at,
                "by": self.erasure.actor.model_dump(),
                "receipt_seq": self.erasure.receipt_seq,
            }
        return {"lookup": "subject_id", "status": self.status, "erasure": erasure}


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One page of results, proven against ``checkpoint``; ``access_seq`` is its audit record."""

    checkpoint: CheckpointView
    filters: QueryFilters
    rows: list[Row]
    next_cursor: str | None
    subject: SubjectNotice | None
    access_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.checkpoint.to_dict(),
            "filters": self.filters.to_dict(),
            "subject": None if self.subject is None else self.subject.to_dict(),
            "count": len(self.rows),
            "rows": [r.to_dict() for r in self.rows],
            "next_cursor": self.next_cursor,
            "access_seq": self.access_seq,
        }


@dataclass(frozen=True, slots=True)
class Export:
    """An export whose access record is already durable; ``batches`` streams the rows."""

    checkpoint: CheckpointView
    filters: QueryFilters
    count: int
    subject: SubjectNotice | None
    access_seq: int
    batches: Iterator[list[Row]]


class QueryService:
    """Access-controlled, self-auditing queries over one audit log and its lake."""

    def __init__(
        self,
        engine: LakeQuery,
        recorder: AuditRecorder,
        privacy: PrivacyService | None,
        *,
        max_window_days: int = DEFAULT_MAX_WINDOW_DAYS,
    ) -> None:
        if max_window_days < 1:
            raise ValueError(f"max_window_days must be >= 1, got {max_window_days}")
        self.engine = engine
        self.recorder = recorder
        self.privacy = privacy
        self.max_window_days = max_window_days

    # ---- operations ----------------------------------------------------------------------

    def query(self, caller: Caller, q: RecordsQuery) -> QueryResult:
        """One page of matching records, each with its inclusion proof, after auditing it."""
        filters, notice = self._prepare(caller, q, "query")
        if not 1 <= q.limit <= MAX_PAGE_SIZE:
            raise QueryError("limit", f"must be 1 to {MAX_PAGE_SIZE}, got {q.limit}")
        after = -1 if q.cursor is None else decode_cursor(q.cursor, filters)
        checkpoint = self.engine.checkpoint()
        rows: list[Row] = []
        if _searchable(filters, notice):
            for batch in self.engine.rows(
                filters, checkpoint.size, after=after, limit=q.limit + 1, proofs=False
            ):
                rows.extend(batch)
        more = len(rows) > q.limit
        rows = self.engine.prove(rows[: q.limit], checkpoint.size)
        cursor = encode_cursor(rows[-1].seq, filters) if more else None
        receipt = self._record(
            caller, "query", filters, notice, q.justification, len(rows), checkpoint.size
        )
        return QueryResult(checkpoint, filters, rows, cursor, notice, receipt.seq)

    def export(self, caller: Caller, q: RecordsQuery, *, proofs: bool = True) -> Export:
        """Every matching record, streamed; the access record (with the count) comes first."""
        if q.cursor is not None:
            raise QueryError("cursor", "exports are not paginated; drop the cursor")
        filters, notice = self._prepare(caller, q, "export")
        checkpoint = self.engine.checkpoint()
        searchable = _searchable(filters, notice)
        count = self.engine.count(filters, checkpoint.size) if searchable else 0
        receipt = self._record(
            caller, "export", filters, notice, q.justification, count, checkpoint.size
        )
        batches: Iterator[list[Row]] = iter(())
        if searchable:
            batches = self.engine.rows(filters, checkpoint.size, proofs=proofs)
        return Export(checkpoint, filters, count, notice, receipt.seq, batches)

    def proof(self, caller: Caller, seq: int) -> tuple[dict[str, Any], int]:
        """Inclusion evidence for record ``seq`` (``infertrail-proof/1``) and its access seq."""
        self._require(caller, Permission.READ_DECISIONS, "proof", {"seq": seq})
        checkpoint = self.engine.checkpoint()
        try:
            row = self.engine.record(seq, checkpoint.size)
        except LookupError as exc:
            raise NotFoundError(str(exc)) from None
        pseudonym = row.fields.get("subject")
        receipt = self.recorder.append(
            ACCESS_EVENT,
            actor=caller.actor(),
            subject=pseudonym,
            request_id=caller.request_id,
            details=_details("proof", {"seq": seq}, None, 1, checkpoint.size),
        )
        return row.evidence(checkpoint), receipt.seq

    def checkpoint(self, caller: Caller) -> CheckpointView:
        """The latest signed checkpoint (covering every committed record); not audited."""
        self._require(caller, Permission.READ_DECISIONS, "checkpoint", {})
        return self.engine.checkpoint()

    def erase(self, caller: Caller, subject_id: str, justification: str | None) -> ErasureReceipt:
        """Crypto-erase a subject through the privacy layer (which logs the erasure receipt)."""
        self._require(caller, Permission.ERASE, "erasure", {})
        reason = _justification(justification, required=True)
        assert reason is not None
        _check_subject_id(subject_id)
        if self.privacy is None:
            raise NotFoundError("this service has no pseudonym table: nothing can be erased")
        try:
            return self.privacy.erase(subject_id, caller.actor(), reason)
        except UnknownSubjectError:
            raise NotFoundError("no pseudonym was ever issued for that subject id") from None

    # ---- shared steps --------------------------------------------------------------------

    def _prepare(
        self, caller: Caller, q: RecordsQuery, operation: str
    ) -> tuple[QueryFilters, SubjectNotice | None]:
        """Check the role, validate the parameters, resolve the subject (refusals audited)."""
        self._require(caller, Permission.READ_DECISIONS, operation, {}, q)
        if q.subject_id is not None:
            self._require(caller, Permission.RESOLVE_SUBJECT, operation, {}, q)
            if q.pseudonym is not None:
                raise QueryError("pseudonym", "give either subject_id or pseudonym, not both")
        _justification(q.justification, required=q.subject_id is not None)
        window = parse_window(q.start, q.end, self.max_window_days)
        pseudonym, notice = q.pseudonym, None
        if q.subject_id is not None:
            pseudonym, notice = self._resolve(q.subject_id)
        filters = QueryFilters.create(
            window,
            pseudonym=pseudonym,
            model_name=q.model_name,
            model_version=q.model_version,
            decision=q.decision,
            event_type=q.event_type,
        )
        return filters, notice

    def _resolve(self, subject_id: str) -> tuple[str | None, SubjectNotice]:
        _check_subject_id(subject_id)
        if self.privacy is None:
            return None, SubjectNotice("unknown", None)
        pseudonym = self.privacy.pseudonyms.lookup(subject_id)
        tomb = self.privacy.erasure_status(subject_id)
        if pseudonym is not None:
            return pseudonym, SubjectNotice("resolved", tomb)
        return None, SubjectNotice("erased" if tomb is not None else "unknown", tomb)

    def _require(
        self,
        caller: Caller,
        permission: Permission,
        operation: str,
        target: dict[str, Any],
        q: RecordsQuery | None = None,
    ) -> None:
        """check_role, and on refusal append a denied access record before raising."""
        try:
            check_role(caller.user.role, permission)
        except AccessDenied as exc:
            pseudonym = None if q is None else q.pseudonym
            if q is not None and q.subject_id is not None and self.privacy is not None:
                # Resolved for the record only, never shown: who tried to look at X matters.
                try:
                    pseudonym = self.privacy.pseudonyms.lookup(q.subject_id)
                except (TypeError, ValueError):
                    pseudonym = None
            details = _details(operation, target, None, 0, None)
            details.update(outcome="denied", reason=str(exc))
            self.recorder.append(
                ACCESS_EVENT,
                actor=caller.actor(),
                subject=pseudonym,
                request_id=caller.request_id,
                details=details,
            )
            _log.warning(
                "access denied: user %r (role %s) via %s: %s",
                caller.user.name,
                caller.user.role,
                caller.channel,
                exc,
            )
            raise

    def _record(
        self,
        caller: Caller,
        operation: str,
        filters: QueryFilters,
        notice: SubjectNotice | None,
        justification: str | None,
        count: int,
        tree_size: int,
    ) -> Receipt:
        target: dict[str, Any] = {"filters": filters.to_dict()}
        if notice is not None:
            target["subject_lookup"] = notice.status
        return self.recorder.append(
            ACCESS_EVENT,
            actor=caller.actor(),
            subject=filters.pseudonym,
            request_id=caller.request_id,
            details=_details(operation, target, _justification(justification), count, tree_size),
        )


def _searchable(filters: QueryFilters, notice: SubjectNotice | None) -> bool:
    """False when a subject id was asked for but has no pseudonym: nothing can match."""
    return notice is None or filters.pseudonym is not None


def _details(
    operation: str,
    target: dict[str, Any],
    justification: str | None,
    count: int,
    tree_size: int | None,
) -> dict[str, Any]:
    return {
        "operation": operation,
        **target,
        "justification": justification,
        "result_count": count,
        "tree_size": tree_size,
        "outcome": "ok",
    }


def _justification(value: str | None, *, required: bool = False) -> str | None:
    """The stripped justification; QueryError if required and missing, or out of bounds."""
    text = None if value is None else value.strip()
    if not text:
        if required:
            raise QueryError(
                "justification",
                f"is required for this operation: say why ({MIN_JUSTIFICATION_CHARS} to "
                f"{MAX_TEXT_CHARS} characters, no personal data; it is written to the audit log)",
            )
        return None
    low = MIN_JUSTIFICATION_CHARS if required else 1
    if not low <= len(text) <= MAX_TEXT_CHARS:
        raise QueryError(
            "justification", f"must be {low} to {MAX_TEXT_CHARS} characters, got {len(text)}"
        )
    return text


def _check_subject_id(subject_id: str) -> None:
    if not isinstance(subject_id, str) or not 1 <= len(subject_id) <= MAX_SUBJECT_ID_CHARS:
        # Never echo the id: it is personal data and errors end up in logs.
        raise QueryError("subject_id", f"must be 1 to {MAX_SUBJECT_ID_CHARS} characters")
