"""Direct OTLP/JSON encoding of SDK spans and log records.

Going through the protobuf messages and ``MessageToDict`` cost ~150 us per span and ~300 us per
log record here (bench/overhead.py), more than the inference itself. This module builds the same
JSON straight from the SDK objects, following the OTLP/JSON rules: lowerCamelCase keys, trace
and span ids as hex, enum values as integers, 64-bit integers as decimal strings.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope


def any_value(v: Any) -> dict[str, Any]:
    """An OTLP AnyValue. Subclasses (numpy scalars, enums) are converted to the plain type, so
    one odd attribute can never make a whole export batch unserializable."""
    if isinstance(v, str):
        return {"stringValue": str(v)}
    if isinstance(v, bool):
        return {"boolValue": bool(v)}
    if isinstance(v, int):
        return {"intValue": str(int(v))}
    if isinstance(v, float):
        return {"doubleValue": float(v)}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    if isinstance(v, Mapping):
        return {"kvlistValue": {"values": key_values(v)}}
    if isinstance(v, Sequence):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    if v is None:
        return {}
    if hasattr(v, "item"):  # numpy scalars that are not float/int subclasses (np.float32, ...)
        return any_value(v.item())
    return {"stringValue": str(v)}


def key_values(attrs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """OTLP KeyValues. Exact str and float values (nearly all of ours) skip :func:`any_value`'s
    isinstance chain: this loop runs for every attribute of every span and log record."""
    out = []
    for k, v in (attrs or {}).items():
        t = type(v)
        if t is str:
            out.append({"key": k, "value": {"stringValue": v}})
        elif t is float:
            out.append({"key": k, "value": {"doubleValue": v}})
        else:
            out.append({"key": k, "value": any_value(v)})
    return out


def _resource(r: Resource) -> dict[str, Any]:
    return {"attributes": key_values(r.attributes)}


def _scope(s: InstrumentationScope | None) -> dict[str, Any]:
    if s is None:
        return {}
    out: dict[str, Any] = {"name": s.name}
    if s.version:
        out["version"] = s.version
    return out


def _grouped(
    items: Iterable[Any], resource_of: Any, scope_of: Any
) -> list[tuple[Any, Any, list[Any]]]:
    """(resource, scope, items) groups in first-seen order: one resource/scope block each."""
    groups: dict[tuple[int, int], tuple[Any, Any, list[Any]]] = {}
    for item in items:
        res, scope = resource_of(item), scope_of(item)
        key = (id(res), id(scope))
        if key not in groups:
            groups[key] = (res, scope, [])
        groups[key][2].append(item)
    return list(groups.values())


def _span(s: ReadableSpan) -> dict[str, Any]:
    ctx = s.get_span_context()
    assert ctx is not None  # SDK spans always have a context
    out: dict[str, Any] = {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
        "name": s.name,
        # OTLP numbers kinds from 1 (INTERNAL); the Python SDK numbers them from 0.
        "kind": s.kind.value + 1,
        "startTimeUnixNano": str(s.start_time or 0),
        "endTimeUnixNano": str(s.end_time or 0),
        "attributes": key_values(s.attributes),
        "flags": int(ctx.trace_flags) | 0x100,  # bit 8: the parent's remoteness is known
        "status": {"code": s.status.status_code.value},
    }
    if s.parent is not None:
        out["parentSpanId"] = f"{s.parent.span_id:016x}"
        if s.parent.is_remote:
            out["flags"] |= 0x200
    if s.status.description:
        out["status"]["message"] = s.status.description
    if s.events:
        out["events"] = [
            {
                "timeUnixNano": str(e.timestamp),
                "name": e.name,
                "attributes": key_values(e.attributes),
            }
            for e in s.events
        ]
    if s.links:
        out["links"] = [
            {
                "traceId": f"{link.context.trace_id:032x}",
                "spanId": f"{link.context.span_id:016x}",
                "attributes": key_values(link.attributes),
            }
            for link in s.links
        ]
    return out


def traces_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An ExportTraceServiceRequest as OTLP/JSON."""
    return {
        "resourceSpans": [
            {
                "resource": _resource(res),
                "scopeSpans": [{"scope": _scope(scope), "spans": [_span(s) for s in group]}],
            }
            for res, scope, group in _grouped(
                spans, lambda s: s.resource, lambda s: s.instrumentation_scope
            )
        ]
    }


def _log(r: ReadableLogRecord) -> dict[str, Any]:
    rec = r.log_record
    out: dict[str, Any] = {
        "timeUnixNano": str(rec.timestamp or 0),
        "observedTimeUnixNano": str(rec.observed_timestamp or rec.timestamp or 0),
        "body": any_value(rec.body),
        "attributes": key_values(rec.attributes),
    }
    if rec.severity_number is not None:
        out["severityNumber"] = rec.severity_number.value
    if rec.severity_text:
        out["severityText"] = rec.severity_text
    if rec.trace_id:
        out["traceId"] = f"{rec.trace_id:032x}"
    if rec.span_id:
        out["spanId"] = f"{rec.span_id:016x}"
    if rec.trace_flags is not None:
        out["flags"] = int(rec.trace_flags)
    if rec.event_name:
        out["eventName"] = rec.event_name
    return out


def logs_request(records: Sequence[ReadableLogRecord]) -> dict[str, Any]:
    """An ExportLogsServiceRequest as OTLP/JSON."""
    return {
        "resourceLogs": [
            {
                "resource": _resource(res),
                "scopeLogs": [{"scope": _scope(scope), "logRecords": [_log(r) for r in group]}],
            }
            for res, scope, group in _grouped(
                records, lambda r: r.resource, lambda r: r.instrumentation_scope
            )
        ]
    }


# -- batches of log records straight from their fields (no SDK objects) -----------------------

_VALUE_KEY = {str: "stringValue", float: "doubleValue", bool: "boolValue"}


def _fast_value(v: Any) -> dict[str, Any]:
    key = _VALUE_KEY.get(type(v))
    if key is not None:
        return {key: v}
    return any_value(v)


class LogEntry(tuple[int, int, int, int, int, str, Mapping[str, Any], str]):
    """One log record's fields, in the order OTLP needs them, and nothing else.

    (time_unix_nano, trace_id, span_id, trace_flags, severity_number, severity_text, body,
    event_name). A plain tuple: building one is the only per-record work on the caller's side.
    """

    __slots__ = ()

    def __new__(
        cls,
        time_unix_nano: int,
        trace_id: int,
        span_id: int,
        trace_flags: int,
        severity_number: int,
        severity_text: str,
        body: Mapping[str, Any],
        event_name: str,
    ) -> LogEntry:
        fields = (
            time_unix_nano, trace_id, span_id, trace_flags, severity_number, severity_text, body,
            event_name,
        )  # fmt: skip
        return tuple.__new__(cls, fields)


def log_entries_request(
    resource: Resource,
    scope: InstrumentationScope,
    entries: Sequence[LogEntry],
    observed_unix_nano: int,
) -> dict[str, Any]:
    """An ExportLogsServiceRequest as OTLP/JSON, built from :class:`LogEntry` tuples.

    The same JSON :func:`logs_request` makes from SDK records (a map body as ``kvlistValue``,
    ids as hex, flags as an integer), at a fraction of the cost: no SDK record per entry, and
    the body's values typed by one dict lookup each.
    """
    records = []
    for t, trace_id, span_id, flags, severity, severity_text, body, event_name in entries:
        stamp = str(t)
        rec: dict[str, Any] = {
            "timeUnixNano": stamp,
            "observedTimeUnixNano": str(observed_unix_nano),
            "body": {
                "kvlistValue": {
                    "values": [{"key": k, "value": _fast_value(v)} for k, v in body.items()]
                }
            },
            "attributes": [],
            "severityNumber": severity,
            "severityText": severity_text,
            "flags": flags,
            "eventName": event_name,
        }
        if trace_id:
            rec["traceId"] = f"{trace_id:032x}"
        if span_id:
            rec["spanId"] = f"{span_id:016x}"
        records.append(rec)
    return {
        "resourceLogs": [
            {
                "resource": _resource(resource),
                "scopeLogs": [{"scope": _scope(scope), "logRecords": records}],
            }
        ]
    }
