"""Request explorer: the on-call view of one request, "why was this prediction bad?".

From a request id, a trace id or an audit seq: the span tree with timings, the log lines and
the metric exemplars (the local telemetry files, ``telemetry.readback``); the audit record with
its inclusion proof checked here against the current signed checkpoint; the drift verdicts of
the window the request fell in; the model's identity and card; and similar requests of that
window (same decision, nearby confidence) from the lake. Without an id, ``?model=`` (and
``?version=``, the overview's links) lists that model's newest requests to pick one from.

Telemetry is for every logged-in role. The record, its proof and the similar requests are
decisions: they need ``read_decisions``, and each view is self-audited (the proof through the
compliance query service, the similar requests as their own ``access_query`` record). A role
without it sees the telemetry and a note saying which role shows the record, never the record.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infertrail.audit.evidence import check_evidence
from infertrail.audit.keys import verifier_key_path
from infertrail.compliance.access import Permission
from infertrail.compliance.filters import QueryError, QueryFilters, TimeWindow, parse_window
from infertrail.compliance.queries import ACCESS_EVENT, NotFoundError
from infertrail.console.app import Console, PageContext, PageError
from infertrail.console.explorer_data import (
    Located,
    find_inference,
    locate_seq,
    recent_requests,
    request_window,
    similar_requests,
)
from infertrail.events import InvalidRequestId, validate_request_id
from infertrail.telemetry import conventions as c
from infertrail.telemetry.readback import RequestTelemetry, find_request, iter_spans

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftReport
    from infertrail.runtime.assembly import Runtime

__all__ = ["audit_section", "drift_section", "register"]

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
#: Where a request id that is not a UUIDv7 (so carries no time) is looked for by default.
_DEFAULT_LOOKBACK = timedelta(hours=24)
_MAX_WINDOW_DAYS = 7
#: Similar requests: confidence within this distance, and how many are listed.
_SIMILAR_RADIUS = 0.05
_SIMILAR_LIMIT = 20
#: Around a record with no drift window covering it, the similar requests' window.
_SIMILAR_SPAN = timedelta(minutes=30)
#: A drift window starts when its first sampled event reaches the drift sink, just after the
#: inference's record time: that much earlier still counts as inside.
_WINDOW_SLACK_S = 5.0
#: Without an id but with ``?model=``: that model's newest requests of the last hour.
_RECENT_SPAN = timedelta(hours=1)
_RECENT_LIMIT = 50
_CARD_FIELDS = ("task", "score", "attributes", "not_scored", "thresholds", "explanation")


def register(console: Console) -> None:
    @console.page("explorer", title="Request explorer")
    def explorer(ctx: PageContext) -> dict[str, Any]:
        return explore(ctx)


def explore(ctx: PageContext) -> dict[str, Any]:
    """The page's data (see the module doc); empty form when nothing is asked."""
    kind, value = _lookup(ctx)
    may_read = ctx.may(Permission.READ_DECISIONS)
    out: dict[str, Any] = {
        "query": {"kind": kind, "value": value, "from": ctx.param("from"), "to": ctx.param("to")},
        "may_read_decisions": may_read,
        "found": False,
        "recent": None,
    }
    if kind == "":
        if ctx.param("model"):
            out["recent"] = _recent(ctx)
        return out
    runtime = ctx.runtime
    telemetry = None
    located: Located | None = None
    if kind == "seq":
        located = _locate_seq(runtime, int(value))
    else:
        request_id = value if kind == "request_id" else _request_of_trace(runtime, value)
        if request_id is not None:
            telemetry = _telemetry(runtime, request_id)
        located = _locate(ctx, kind, value, request_id, telemetry)
    if telemetry is None and located is not None and located.request_id is not None:
        telemetry = _telemetry(runtime, located.request_id)
    if telemetry is None and located is None:
        raise PageError(
            404,
            f"no request with {kind.replace('_', ' ')} {value} in the telemetry files or the "
            "audit log" + ("" if kind == "seq" else " (in the window searched)"),
        )
    out["found"] = True
    out["located"] = None if located is None else located.to_dict(decisions=may_read)
    out["telemetry"] = _telemetry_dict(telemetry, runtime.settings.telemetry_files)
    model_name = located.model_name if located else _span_model(telemetry)
    ts = located.ts if located else _span_time(telemetry)
    report = _covering_report(runtime, model_name, ts)
    out["drift"] = drift_section(report, model_name, runtime)
    out["model"] = _model_section(runtime, model_name, located)
    out["record"] = None
    out["similar"] = None
    if located is not None and may_read and runtime.compliance is not None:
        try:
            evidence, access_seq = runtime.compliance.queries.proof(ctx.caller, located.seq)
        except NotFoundError as exc:
            raise PageError(404, str(exc)) from None
        out["record"] = audit_section(evidence, _verifier_key(runtime))
        out["record"]["access_seq"] = access_seq
        out["similar"] = _similar(ctx, located, out["record"]["fields"], report)
    return out


# -- the query -----------------------------------------------------------------------------


def _lookup(ctx: PageContext) -> tuple[str, str]:
    """(kind, value) of the one id asked for: ``request_id``, ``trace_id`` or ``seq``.

    The form's single ``id`` field is read by its shape (digits: a seq; 32 lowercase hex: a
    trace id; otherwise a request id); links may name the kind as the parameter instead.
    """
    given = [(k, ctx.param(k)) for k in ("id", "request_id", "trace_id", "seq") if ctx.param(k)]
    if not given:
        return "", ""
    if len(given) > 1:
        names = ", ".join(k for k, _ in given)
        raise PageError(400, f"give one of id, request_id, trace_id or seq, not {names}")
    field, value = given[0]
    if field == "id":
        if value.isdigit():
            field = "seq"
        elif _TRACE_ID.fullmatch(value):
            field = "trace_id"
        else:
            field = "request_id"
    if field == "seq":
        if not value.isdigit() or len(value) > 16:
            raise PageError(422, f"seq: must be a record number (0 or more), got {value[:40]!r}")
        return "seq", str(int(value))
    if field == "trace_id":
        if not _TRACE_ID.fullmatch(value):
            raise PageError(
                422, f"trace_id: must be 32 lowercase hex digits, got {len(value)} characters"
            )
        return "trace_id", value
    try:
        return "request_id", validate_request_id(value)
    except InvalidRequestId as exc:
        raise PageError(422, f"request_id: {exc}") from None


def _window(
    ctx: PageContext, request_id: str | None, telemetry: RequestTelemetry | None
) -> TimeWindow:
    """Where the record is looked for: the ``from``/``to`` given, else the time the id or
    the telemetry tells, else the last 24 hours."""
    start, end = ctx.param("from"), ctx.param("to")
    if start or end:
        try:
            return parse_window(start or None, end or None, _MAX_WINDOW_DAYS)
        except QueryError as exc:
            raise PageError(422, str(exc)) from None
    by_id = request_window(request_id) if request_id else None
    if by_id is not None:
        return by_id
    when = _span_time(telemetry)
    if when is not None:
        return TimeWindow(when - timedelta(minutes=5), when + timedelta(minutes=30))
    now = datetime.now(UTC)
    return TimeWindow(now - _DEFAULT_LOOKBACK, now + timedelta(minutes=1))


def _locate(
    ctx: PageContext,
    kind: str,
    value: str,
    request_id: str | None,
    telemetry: RequestTelemetry | None,
) -> Located | None:
    engine = ctx.runtime.compliance.engine if ctx.runtime.compliance else None
    window = _window(ctx, request_id, telemetry)
    if engine is None:
        return None
    if request_id is not None:
        return find_inference(engine, "request_id", request_id, window)
    return find_inference(engine, "trace_id", value, window)


def _locate_seq(runtime: Runtime, seq: int) -> Located | None:
    if runtime.compliance is None:
        raise PageError(404, "this service keeps no audit log: there is no record to look up")
    try:
        located = locate_seq(runtime.compliance.engine, seq)
    except LookupError as exc:
        raise PageError(404, str(exc)) from None
    if located is None:
        raise PageError(
            404,
            f"record {seq} is not an inference (an access or privacy record): nothing to explore",
        )
    return located


def _recent(ctx: PageContext) -> dict[str, Any]:
    """The newest requests of ``?model=`` (and ``?version=``), to pick one to explore: the
    columns its spans carry too (no decision, no subject), so no role is shown more."""
    start, end = ctx.param("from"), ctx.param("to")
    try:
        if start or end:
            window = parse_window(start or None, end or None, _MAX_WINDOW_DAYS)
        else:
            now = datetime.now(UTC)
            window = TimeWindow(now - _RECENT_SPAN, now + timedelta(minutes=1))
        filters = QueryFilters.create(
            window, model_name=ctx.param("model"), model_version=ctx.param("version") or None
        )
    except QueryError as exc:
        param = {"model_name": "model", "model_version": "version"}.get(exc.field, exc.field)
        raise PageError(422, f"{param}: {exc.message}") from None
    assert filters.model_name is not None
    rows = []
    if ctx.runtime.compliance is not None:
        rows = recent_requests(
            ctx.runtime.compliance.engine,
            model_name=filters.model_name,
            model_version=filters.model_version,
            window=window,
            limit=_RECENT_LIMIT,
        )
    return {
        "model": filters.model_name,
        "version": filters.model_version,
        "window": window.to_dict(),
        "limit": _RECENT_LIMIT,
        "rows": [r.to_dict_telemetry() for r in rows],
    }


# -- telemetry -----------------------------------------------------------------------------


def _request_of_trace(runtime: Runtime, trace_id: str) -> str | None:
    """The request id the trace's spans carry (from the telemetry files), if any."""
    if not runtime.settings.telemetry_files:
        return None
    for span in iter_spans(runtime.settings.telemetry_dir, trace_id):
        rid = span.attributes.get(c.REQUEST_ID)
        if span.trace_id == trace_id and isinstance(rid, str):
            return rid
    return None


def _telemetry(runtime: Runtime, request_id: str) -> RequestTelemetry | None:
    if not runtime.settings.telemetry_files:
        return None
    return find_request(runtime.settings.telemetry_dir, request_id)


def _telemetry_dict(view: RequestTelemetry | None, files_on: bool) -> dict[str, Any]:
    if view is None:
        note = (
            "no spans of this request in the telemetry files yet (they are exported in "
            "batches, every few seconds; rotated files past the size limit are deleted)"
            if files_on
            else "this service writes no telemetry files (telemetry_files = false)"
        )
        return {"available": False, "note": note, "spans": [], "logs": [], "exemplars": []}
    start = min((s.start_ns for s in view.spans), default=0)
    total = max((s.end_ns for s in view.spans), default=start) - start
    spans = []
    for depth, s in view.tree():
        offset = (s.start_ns - start) / 1e6
        spans.append(
            {
                "depth": depth,
                "name": s.name,
                "span_id": s.span_id,
                "kind": s.kind.removeprefix("SPAN_KIND_").lower(),
                "status": s.status.removeprefix("STATUS_CODE_").lower(),
                "start_ms": offset,
                "duration_ms": s.duration_ms,
                # The bar of a Gantt-like row, in percent of the trace (0 when it is empty).
                "bar_left": 100 * (s.start_ns - start) / total if total else 0.0,
                "bar_width": max(100 * (s.end_ns - s.start_ns) / total, 0.5) if total else 100.0,
                "label": s.attributes.get(c.PREDICTION_LABEL),
                "confidence": s.attributes.get(c.PREDICTION_CONFIDENCE),
                "attributes": {k: _short(v) for k, v in sorted(s.attributes.items())},
            }
        )
    return {
        "available": True,
        "request_id": view.request_id,
        "trace_id": view.trace_id,
        "total_ms": total / 1e6,
        "spans": spans,
        "logs": [
            {
                "time": _ns_time(r["time_ns"]),
                "severity": r["severity"] or None,
                "span_id": r["span_id"] or None,
                "body": json.dumps(r["body"], separators=(",", ":"), default=str)
                if not isinstance(r["body"], str)
                else r["body"],
            }
            for r in view.logs
        ],
        "exemplars": [
            {
                "metric": e.metric,
                "value": e.value,
                "span_id": e.span_id,
                "time": _ns_time(e.time_ns),
            }
            for e in view.exemplars
        ],
    }


def _short(value: Any) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:199] + "\u2026"


def _ns_time(ns: int) -> str | None:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat() if ns else None


def _span_model(view: RequestTelemetry | None) -> str | None:
    for s in view.spans if view else ():
        name = s.attributes.get(c.MODEL_NAME)
        if isinstance(name, str):
            return name
    return None


def _span_time(view: RequestTelemetry | None) -> datetime | None:
    if view is None or not view.spans:
        return None
    return datetime.fromtimestamp(min(s.start_ns for s in view.spans) / 1e9, UTC)


# -- the audit record ----------------------------------------------------------------------


def _verifier_key(runtime: Runtime) -> str | None:
    """The log's public key as the service published it (``<signing key>.pub``)."""
    try:
        return verifier_key_path(runtime.settings.signing_key_file).read_text().strip()
    except OSError:
        return None


def audit_section(evidence: dict[str, Any], verifier_key: str | None) -> dict[str, Any]:
    """The record of ``evidence`` and the check of its inclusion proof, done here with only
    the public key (what ``infertrail audit check-proof`` does): a record changed after the
    log signed it shows "does not verify" and why."""
    try:
        fields = json.loads(evidence["record"])
    except (KeyError, TypeError, ValueError):
        fields = None
    if verifier_key is None:
        ok, reason = False, "the log's verifier key file is missing: nothing to check against"
    else:
        result = check_evidence(evidence, verifier_key)
        ok, reason = result.ok, result.reason
    return {
        "seq": evidence.get("seq"),
        "fields": fields if isinstance(fields, dict) else {},
        "verified": ok,
        "reason": reason,
        "origin": evidence.get("origin"),
        "tree_size": evidence.get("tree_size"),
        "leaf_hash": evidence.get("leaf_hash"),
        "proof_length": len(evidence.get("inclusion_proof") or []),
        "checkpoint": evidence.get("checkpoint"),
        "evidence": evidence,
    }


def _similar(
    ctx: PageContext, located: Located, fields: dict[str, Any], report: DriftReport | None
) -> dict[str, Any]:
    """Same model and decision, confidence within the radius, in the drift window (or half an
    hour around the record); recorded as an access_query before it is shown."""
    assert ctx.runtime.compliance is not None
    if report is not None:
        window = TimeWindow(
            datetime.fromtimestamp(report.started_at - _WINDOW_SLACK_S, UTC),
            datetime.fromtimestamp(report.closed_at + 1, UTC),
        )
        basis = "the drift window the request fell in"
    else:
        window = TimeWindow(located.ts - _SIMILAR_SPAN, located.ts + _SIMILAR_SPAN)
        basis = "30 minutes either side (no closed drift window covers the request)"
    confidence = fields.get("confidence")
    confidence = float(confidence) if isinstance(confidence, int | float) else None
    decision = fields.get("decision")
    rows = similar_requests(
        ctx.runtime.compliance.engine,
        model_name=located.model_name or "",
        decision=decision if isinstance(decision, str) else None,
        confidence=confidence,
        window=window,
        exclude_seq=located.seq,
        radius=_SIMILAR_RADIUS,
        limit=_SIMILAR_LIMIT,
    )
    queries = ctx.runtime.compliance.queries
    receipt = queries.recorder.append(
        ACCESS_EVENT,
        actor=ctx.caller.actor(),
        subject=None,
        request_id=ctx.caller.request_id,
        details={
            "operation": "similar_requests",
            "seq": located.seq,
            **window.to_dict(),
            "model_name": located.model_name,
            "decision": decision,
            "result_count": len(rows),
            "outcome": "ok",
        },
    )
    return {
        "basis": basis,
        "window": window.to_dict(),
        "decision": decision,
        "confidence": confidence,
        "radius": _SIMILAR_RADIUS,
        "rows": [r.to_dict() for r in rows],
        "access_seq": receipt.seq,
    }


# -- drift and the model -------------------------------------------------------------------


def _covering_report(
    runtime: Runtime, model_name: str | None, ts: datetime | None
) -> DriftReport | None:
    """The drift report whose window holds ``ts`` (the newest such), if one was judged."""
    monitor = runtime.drift.get(model_name or "")
    if monitor is None or ts is None:
        return None
    t = ts.timestamp()
    for report in reversed(monitor.reports):
        if report.started_at - _WINDOW_SLACK_S <= t <= report.closed_at:
            return report
    return None


def drift_section(
    report: DriftReport | None, model_name: str | None, runtime: Runtime
) -> dict[str, Any]:
    """The verdicts of the window the request fell in, or why there are none."""
    if report is None:
        if model_name not in runtime.drift:
            note = f"model {model_name or '(unknown)'} is not drift-monitored on this service"
        else:
            note = (
                "no judged drift window covers this request yet (its window is still open, "
                "or it is older than the reports kept in memory)"
            )
        return {"available": False, "note": note}
    return {
        "available": True,
        "started_at": report.started_at,
        "closed_at": report.closed_at,
        "n_samples": report.n_samples,
        "dataset_drift": report.dataset_drift,
        "drift_score": report.drift_score,
        "share_drifted": report.share_drifted,
        "n_drifted": report.n_drifted,
        "correction": report.correction,
        "ood_rate": report.ood_rate,
        "features": [
            {
                "name": f.name,
                "method": f.method,
                "statistic": f.statistic,
                "p_value": f.p_value,
                "distance": f.distance,
                "threshold": f.threshold,
                "drifted": f.drifted,
            }
            for f in sorted(report.features, key=lambda f: (not f.drifted, f.name))
        ],
        "prediction": {
            "label_shares": report.prediction.label_shares,
            "confidence_mean": report.prediction.confidence_mean,
            "low_confidence_rate": report.prediction.low_confidence_rate,
        },
    }


def _model_section(
    runtime: Runtime, model_name: str | None, located: Located | None
) -> dict[str, Any] | None:
    """The served model's identity, whether the record's artifact is the one served now, and
    its card (``<models_dir>/<name>/model.json``) when there is one."""
    if model_name is None:
        return None
    served = next((m for m in runtime.models if m.name == model_name), None)
    card_path = runtime.settings.models_dir / model_name / "model.json"
    card = _card(card_path)
    return {
        "name": model_name,
        "served_version": served.version if served else None,
        "served_sha256": served.sha256 if served else None,
        "record_version": located.model_version if located else None,
        "card": card,
        "card_path": str(card_path) if card is not None else None,
    }


def _card(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in _CARD_FIELDS if k in data}
