"""Compliance: the subject query with proofs, evidence export, erasure, break-glass, the trail.

Four pages, each the console twin of an operation of the compliance API (docs/compliance-api.md),
gated by the same permission matrix and going through the same services, so every use is in the
audit log exactly as an API call would be (``channel: console``):

- ``compliance`` (``read_decisions``): the time-windowed query (``from``/``to``, a pseudonym or,
  with ``resolve_subject``, a subject's real id and a justification, model, event type,
  decision; paginated by cursor) through :meth:`QueryService.query`, which writes an
  ``access_query`` record before answering; each row's inclusion proof is checked here, as an
  outside verifier would, against the page's signed checkpoint with the log's public key;
- ``compliance/export`` (``read_decisions``): the same filters as one evidence document (the
  API's JSON export: checkpoint, filters, count, rows with proofs); its JSON twin is the
  download (the console frames every answer itself, so the link carries ``download``);
- ``compliance/erase`` (``erase``): a subject's crypto-erasure in two posts, the second
  repeating the subject id, with a justification; the receipt (log seq, what was deleted);
- ``compliance/break-glass`` (``break_glass``): a request's raw payload for an admin with a
  justification; the ``break_glass`` record is durable before the payload is decrypted, and the
  payload is shown in that answer only;
- ``compliance/trail``: the self-audit trail (``access_query``, ``break_glass`` or ``erasure``
  records in a window: who looked at what, when), itself a query and so itself recorded.

Queries are GETs (bookmarkable, like the API's; telemetry redacts query strings); the two
privileged actions are CSRF-checked POSTs. A subject id is personal data: no message here
quotes it, and nothing here logs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from infertrail.audit.evidence import CheckResult, check_evidence
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.ledger import LogClosedError, LogFailedError
from infertrail.audit.record import EVENT_TYPES
from infertrail.compliance.access import Permission
from infertrail.compliance.engine import CheckpointView, LakeIntegrityError, Row
from infertrail.compliance.filters import MAX_PAGE_SIZE, QueryError, QueryFilters
from infertrail.compliance.queries import NotFoundError, QueryService, RecordsQuery
from infertrail.console.app import Console, PageContext, PageError
from infertrail.events import InvalidRequestId, validate_request_id
from infertrail.privacy.errors import AccessRefusedError, PayloadNotFoundError, PrivacyError
from infertrail.privacy.policy import MAX_TEXT_CHARS, MIN_JUSTIFICATION_CHARS
from infertrail.privacy.pseudonyms import MAX_SUBJECT_ID_CHARS

__all__ = ["EXPORT_MAX_ROWS", "PAGE_SIZE", "TRAIL_KINDS", "register"]

#: Rows per page of the query and the trail (``limit`` may ask for up to MAX_PAGE_SIZE).
PAGE_SIZE = 50
#: The console holds an export in memory to answer it: bigger ones go to the API or the CLI,
#: which stream.
EXPORT_MAX_ROWS = 10_000
#: The privileged-action records the self-audit trail lists.
TRAIL_KINDS = ("access_query", "break_glass", "erasure")
_TRAIL_DEFAULT = timedelta(hours=24)
_FILTERS = ("pseudonym", "model_name", "model_version", "decision", "event_type")


def register(console: Console) -> None:
    """Register the compliance pages on ``console``."""

    @console.page("compliance", title="Compliance", permission=Permission.READ_DECISIONS)
    def compliance(ctx: PageContext) -> dict[str, Any]:
        q = _records_query(ctx)
        result = None
        if q is not None:
            with _answering():
                page = _service(ctx).query(ctx.caller, q)
            rows = _checked_rows(ctx, page.rows, page.checkpoint)
            result = {**page.to_dict(), "rows": rows}
            result["verified"] = sum(1 for r in rows if r["proof_check"]["ok"])
            result["download_name"] = _export_name(page.filters)
        return {
            "form": _form_values(ctx),
            "can": _abilities(ctx),
            "event_types": sorted(EVENT_TYPES),
            "trail_kinds": list(TRAIL_KINDS),
            "max_page_size": MAX_PAGE_SIZE,
            "min_justification": MIN_JUSTIFICATION_CHARS,
            "result": result,
        }

    @console.page(
        "compliance/export",
        title="Compliance evidence export",
        template="compliance_export.html",
        permission=Permission.READ_DECISIONS,
        nav=False,
    )
    def export(ctx: PageContext) -> dict[str, Any]:
        q = _records_query(ctx)
        if q is None:
            raise PageError(422, "from: is required: an export names its window [from, to)")
        if ctx.param("cursor"):
            raise PageError(422, "cursor: exports are not paginated; drop the cursor")
        with _answering():
            result = _service(ctx).export(ctx.caller, q, proofs=True)
            if result.count > EXPORT_MAX_ROWS:
                raise PageError(
                    422,
                    f"this export holds {result.count:,} records, more than the console hands "
                    f"out at once ({EXPORT_MAX_ROWS:,}): narrow the window or the filters, or "
                    "stream it with GET /v1/audit/export or `infertrail audit export`",
                )
            rows = [row.to_dict() for batch in result.batches for row in batch]
        # The API's JSON export document (compliance/export.py), plus the file name to save.
        return {
            **result.checkpoint.to_dict(),
            "filters": result.filters.to_dict(),
            "subject": None if result.subject is None else result.subject.to_dict(),
            "count": result.count,
            "access_seq": result.access_seq,
            "rows": rows,
            "download_name": _export_name(result.filters),
        }

    @console.page(
        "compliance/erase",
        title="Erase a subject",
        template="compliance_erase.html",
        permission=Permission.ERASE,
        methods=("GET", "POST"),
        nav=False,
    )
    def erase(ctx: PageContext) -> dict[str, Any]:
        base = {"min_justification": MIN_JUSTIFICATION_CHARS, "max_chars": MAX_TEXT_CHARS}
        if ctx.request.method == "GET":
            return {**base, "step": "start", "subject_id": "", "receipt": None}
        step = ctx.param("step")
        subject_id = _subject_id(ctx.param("subject_id"), "subject_id")
        if step == "confirm":
            return {**base, "step": "confirm", "subject_id": subject_id, "receipt": None}
        if step != "erase":
            raise PageError(400, "step: must be 'confirm' (first post) or 'erase' (second post)")
        confirm = {**base, "step": "confirm", "subject_id": subject_id, "receipt": None}
        if ctx.param("confirm_subject_id") != subject_id:
            raise PageError(
                422,
                "confirm_subject_id: does not match the subject id being erased; type it "
                "again exactly (nothing was erased)",
                data=confirm,
            )
        try:
            with _answering():
                r = _service(ctx).erase(ctx.caller, subject_id, ctx.param("justification"))
        except PageError as exc:
            if exc.status != 422:
                raise
            raise PageError(422, exc.message, data=confirm) from None
        receipt = {
            "erased_at": r.erased_at,
            "actor": r.actor.model_dump(),
            "reason": r.reason,
            "receipt_seq": r.receipt_seq,
            "mapping_rows": r.mapping_rows,
            "data_keys": r.data_keys,
            "payloads": r.payloads,
        }
        # The id is not sent back once erased: the receipt stands without it.
        return {**base, "step": "done", "subject_id": "", "receipt": receipt}

    @console.page(
        "compliance/break-glass",
        title="Break-glass: read a raw payload",
        template="compliance_break_glass.html",
        permission=Permission.BREAK_GLASS,
        methods=("GET", "POST"),
        nav=False,
    )
    def break_glass(ctx: PageContext) -> dict[str, Any]:
        base = {"min_justification": MIN_JUSTIFICATION_CHARS, "max_chars": MAX_TEXT_CHARS}
        if ctx.request.method == "GET":
            return {**base, "request_id": ctx.param("request_id"), "payload": None}
        try:
            request_id = validate_request_id(ctx.param("request_id"))
        except InvalidRequestId as exc:
            raise PageError(422, f"request_id: {str(exc).removeprefix('X-Request-ID ')}") from None
        justification = _justification(ctx.param("justification"))
        service = _service(ctx)
        if service.privacy is None or service.privacy.payloads is None:
            raise PageError(404, "this service keeps no raw payloads (raw_payloads_enabled is off)")
        with _answering():
            payload = service.privacy.payloads.read(request_id, ctx.caller.actor(), justification)
        return {
            **base,
            "request_id": request_id,
            "payload": {
                "request_id": payload.request_id,
                "pseudonym": payload.pseudonym,
                "stored_at": payload.stored_at,
                "inputs": payload.inputs(),
                "inputs_text": json.dumps(payload.inputs(), indent=2, ensure_ascii=False),
                "break_glass_seq": payload.break_glass_seq,
            },
        }

    @console.page(
        "compliance/trail",
        title="Self-audit trail",
        template="compliance_trail.html",
        permission=Permission.READ_DECISIONS,
        nav=False,
    )
    def trail(ctx: PageContext) -> dict[str, Any]:
        kind = ctx.param("kind", "access_query")
        if kind not in TRAIL_KINDS:
            raise PageError(422, f"kind: must be one of {', '.join(TRAIL_KINDS)}")
        now = datetime.now(UTC)
        start = ctx.param("from") or _instant(now - _TRAIL_DEFAULT)
        end = ctx.param("to") or _instant(now + timedelta(minutes=1))
        q = RecordsQuery(
            start,
            end,
            pseudonym=ctx.param("pseudonym") or None,
            event_type=kind,
            cursor=ctx.param("cursor") or None,
            limit=_limit(ctx),
        )
        with _answering():
            page = _service(ctx).query(ctx.caller, q)
        return {
            "kind": kind,
            "trail_kinds": list(TRAIL_KINDS),
            "form": {"from": start, "to": end, "pseudonym": ctx.param("pseudonym")},
            **page.checkpoint.to_dict(),
            "filters": page.filters.to_dict(),
            "entries": [_trail_entry(row, kind) for row in page.rows],
            "count": len(page.rows),
            "next_cursor": page.next_cursor,
            "access_seq": page.access_seq,
        }


# -- parameters ------------------------------------------------------------------------------


def _records_query(ctx: PageContext) -> RecordsQuery | None:
    """The query the parameters ask for, or None when none was asked (the bare form)."""
    names = ("from", "to", "subject_id", *_FILTERS, "justification", "cursor", "limit")
    if not any(ctx.param(name) for name in names):
        return None
    return RecordsQuery(
        ctx.param("from") or None,
        ctx.param("to") or None,
        subject_id=ctx.param("subject_id") or None,
        pseudonym=ctx.param("pseudonym") or None,
        model_name=ctx.param("model_name") or None,
        model_version=ctx.param("model_version") or None,
        decision=ctx.param("decision") or None,
        event_type=ctx.param("event_type") or None,
        justification=ctx.param("justification") or None,
        cursor=ctx.param("cursor") or None,
        limit=_limit(ctx),
    )


def _limit(ctx: PageContext) -> int:
    text = ctx.param("limit")
    if not text:
        return PAGE_SIZE
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise PageError(422, f"limit: must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(text)


def _form_values(ctx: PageContext) -> dict[str, str]:
    names = ("from", "to", "subject_id", *_FILTERS, "justification", "limit")
    return {name: ctx.param(name) for name in names}


def _abilities(ctx: PageContext) -> dict[str, bool]:
    return {
        "resolve_subject": ctx.may(Permission.RESOLVE_SUBJECT),
        "erase": ctx.may(Permission.ERASE),
        "break_glass": ctx.may(Permission.BREAK_GLASS),
    }


def _subject_id(value: str, field: str) -> str:
    """A subject id as the pseudonym table takes it (its value is never quoted back)."""
    if not 1 <= len(value) <= MAX_SUBJECT_ID_CHARS:
        raise PageError(422, f"{field}: must be 1 to {MAX_SUBJECT_ID_CHARS} characters")
    if any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in value):
        raise PageError(422, f"{field}: must not contain control characters")
    return value


def _justification(value: str) -> str:
    if not MIN_JUSTIFICATION_CHARS <= len(value) <= MAX_TEXT_CHARS:
        raise PageError(
            422,
            f"justification: must be {MIN_JUSTIFICATION_CHARS} to {MAX_TEXT_CHARS} characters "
            f"(got {len(value)}): say why, without personal data; it is written to the audit log",
        )
    return value


def _instant(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _export_name(filters: QueryFilters) -> str:
    """The download's file name, as the API's Content-Disposition names it."""
    window = filters.window
    return f"audit-export-{window.start:%Y%m%d}-{window.end:%Y%m%d}.json"


# -- services and their errors ---------------------------------------------------------------


def _service(ctx: PageContext) -> QueryService:
    access = ctx.runtime.compliance
    if access is None:
        raise PageError(
            503, "this service runs without the compliance query service (the audit trail is off)"
        )
    return access.queries


@contextmanager
def _answering() -> Iterator[None]:
    """The errors of the services below as the compliance API answers them (access errors
    pass through: the console answers them itself)."""
    try:
        yield
    except QueryError as exc:
        raise PageError(422, f"{exc.field}: {exc.message}") from None
    except (NotFoundError, PayloadNotFoundError) as exc:
        raise PageError(404, str(exc)) from None
    except AccessRefusedError as exc:
        raise PageError(403, str(exc)) from None
    except PrivacyError as exc:
        raise PageError(409, str(exc)) from None
    except (LogFailedError, LogClosedError, TimeoutError) as exc:
        # No access record could be written, so no data may be handed out.
        raise PageError(503, f"audit log unavailable: {exc}") from None
    except LakeIntegrityError as exc:
        raise PageError(503, f"{exc} (run `infertrail audit verify`)") from None


# -- rows ------------------------------------------------------------------------------------


def _checked_rows(
    ctx: PageContext, rows: list[Row], checkpoint: CheckpointView
) -> list[dict[str, Any]]:
    """Each row's JSON form with ``proof_check``: its evidence checked with the public key only."""
    try:
        vkey = verifier_key_path(ctx.runtime.settings.signing_key_file).read_text().strip()
    except OSError as exc:
        vkey, missing = "", f"the log's verifier key cannot be read: {exc.strerror}"
    else:
        missing = ""
    out = []
    for row in rows:
        if missing:
            check = CheckResult(False, missing)
        else:
            check = check_evidence(row.evidence(checkpoint), vkey)
        out.append({**row.to_dict(), "proof_check": {"ok": check.ok, "reason": check.reason}})
    return out


def _trail_entry(row: Row, kind: str) -> dict[str, Any]:
    """Who did what, when, from one privileged-action record."""
    record = json.loads(row.canonical)
    details: Mapping[str, Any] = record.get(kind) or {}
    actor: Mapping[str, Any] = record.get("actor") or {}
    entry: dict[str, Any] = {
        "seq": row.seq,
        "ts": record.get("ts"),
        "actor": actor.get("id"),
        "role": actor.get("role"),
        "channel": actor.get("channel"),
        "subject": record.get("subject"),
        "request_id": record.get("request_id"),
        "justification": details.get("justification") or details.get("reason"),
    }
    if kind == "access_query":
        filters = details.get("filters") or {}
        entry.update(
            operation=details.get("operation"),
            outcome=details.get("outcome"),
            result_count=details.get("result_count"),
            target=_target(details, filters),
        )
    elif kind == "erasure":
        entry.update(
            operation="erasure",
            outcome="ok",
            result_count=None,
            target=(
                f"mapping rows {details.get('mapping_rows')}, data keys "
                f"{details.get('data_keys')}, payloads {details.get('payloads')}"
            ),
        )
    else:
        entry.update(
            operation="break-glass read",
            outcome="ok",
            result_count=None,
            target=f"raw payload of request {record.get('request_id')}",
        )
    return entry


def _target(details: Mapping[str, Any], filters: Mapping[str, Any]) -> str:
    """What an access looked at, in words: its window and filters, or the record's seq."""
    if "seq" in details:
        return f"record seq {details['seq']}"
    parts = [f"{k}={v}" for k, v in filters.items() if v is not None and k not in ("from", "to")]
    window = f"{filters.get('from', '?')} to {filters.get('to', '?')}" if filters else ""
    if details.get("subject_lookup"):
        parts.append(f"subject id lookup: {details['subject_lookup']}")
    return "; ".join(p for p in (window, *parts) if p)
