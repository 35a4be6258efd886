"""Reads the local OTLP-JSON telemetry files back: the span tree, log lines and metric
exemplars of one request, correlated by trace id (what ``infertrail trace`` prints).

Each stream is read across its rotated files, oldest first, then the file being written
(:func:`infertrail.telemetry.files.telemetry_files`); a rotated file pruned meanwhile is skipped.
Lines that cannot mention the request (its id, or its trace id, absent from the raw text) are
skipped without being parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infertrail.telemetry import conventions as c
from infertrail.telemetry.files import LOGS_FILE, METRICS_FILE, TRACES_FILE, telemetry_files


@dataclass
class SpanView:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str
    kind: str = "SPAN_KIND_UNSPECIFIED"  # SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT, ...

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class ExemplarView:
    metric: str
    value: float
    trace_id: str
    span_id: str
    time_ns: int


@dataclass
class RequestTelemetry:
    request_id: str
    trace_id: str
    spans: list[SpanView] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    exemplars: list[ExemplarView] = field(default_factory=list)

    def tree(self) -> list[tuple[int, SpanView]]:
        """Spans depth-first from the root(s), with their depth, children by start time."""
        ids = {s.span_id for s in self.spans}
        children: dict[str, list[SpanView]] = {}
        for s in self.spans:
            parent = s.parent_span_id if s.parent_span_id in ids else ""
            children.setdefault(parent, []).append(s)
        out: list[tuple[int, SpanView]] = []

        def walk(parent: str, depth: int) -> None:
            for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
                out.append((depth, s))
                walk(s.span_id, depth + 1)

        walk("", 0)
        return out


def _any_value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "kvlistValue" in v:
        return {
            kv["key"]: _any_value(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])
        }
    if "arrayValue" in v:
        return [_any_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _any_value(kv.get("value", {})) for kv in items or []}


_STATUS_NAMES = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}


def _status_name(code: int | str) -> str:
    """OTLP/JSON writes enums as integers; files from older writers may carry the names."""
    return code if isinstance(code, str) else _STATUS_NAMES.get(code, str(code))


_KIND_NAMES = {
    0: "SPAN_KIND_UNSPECIFIED",
    1: "SPAN_KIND_INTERNAL",
    2: "SPAN_KIND_SERVER",
    3: "SPAN_KIND_CLIENT",
    4: "SPAN_KIND_PRODUCER",
    5: "SPAN_KIND_CONSUMER",
}


def _kind_name(kind: Any) -> str:
    """OTLP/JSON's span kind (its enum number, or already its name) as its name."""
    return kind if isinstance(kind, str) else _KIND_NAMES.get(kind, str(kind))


def _needle(value: str | None) -> str | None:
    """``value`` as it appears inside a JSON string, if that is certain; else None (no filter)."""
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return None if '"' in value or "\\" in value or "/" in value else value


def _lines(path: Path, contains: str | None = None) -> Iterator[dict[str, Any]]:
    """The JSON lines of ``path``'s stream (rotated files first); with ``contains``, only lines
    whose text holds it."""
    needle = _needle(contains)
    for part in telemetry_files(path):
        try:
            f = part.open(encoding="utf-8")
        except FileNotFoundError:  # never written, or pruned since it was listed
            continue
        with f:
            for line in f:
                if line.strip() and (needle is None or needle in line):
                    yield json.loads(line)


def iter_spans(tdir: Path, contains: str | None = None) -> Iterator[SpanView]:
    """Spans of the traces files (with ``contains``: of lines holding that text)."""
    for req in _lines(tdir / TRACES_FILE, contains):
        for rs in req.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    yield SpanView(
                        name=s.get("name", ""),
                        trace_id=s.get("traceId", ""),
                        span_id=s.get("spanId", ""),
                        parent_span_id=s.get("parentSpanId", ""),
                        start_ns=int(s.get("startTimeUnixNano", 0)),
                        end_ns=int(s.get("endTimeUnixNano", 0)),
                        attributes=_attrs(s.get("attributes")),
                        status=_status_name(s.get("status", {}).get("code", 0)),
                        kind=_kind_name(s.get("kind", 0)),
                    )


def iter_logs(tdir: Path, contains: str | None = None) -> Iterator[dict[str, Any]]:
    """Log records flattened to dicts with traceId/spanId, severity and body."""
    for req in _lines(tdir / LOGS_FILE, contains):
        for rl in req.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    yield {
                        "trace_id": r.get("traceId", ""),
                        "span_id": r.get("spanId", ""),
                        "severity": r.get("severityText", ""),
                        "time_ns": int(r.get("timeUnixNano", 0)),
                        "body": _any_value(r.get("body", {})),
                    }


def iter_exemplars(tdir: Path, contains: str | None = None) -> Iterator[ExemplarView]:
    """Exemplars of the metrics files (with ``contains``: of lines holding that text)."""
    for req in _lines(tdir / METRICS_FILE, contains):
        for rm in req.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    for kind in ("histogram", "sum", "gauge"):
                        for dp in m.get(kind, {}).get("dataPoints", []):
                            for ex in dp.get("exemplars", []):
                                value = ex.get("asDouble", ex.get("asInt", 0))
                                yield ExemplarView(
                                    metric=m.get("name", ""),
                                    value=float(value),
                                    trace_id=ex.get("traceId", ""),
                                    span_id=ex.get("spanId", ""),
                                    time_ns=int(ex.get("timeUnixNano", 0)),
                                )


def find_request(tdir: Path, request_id: str) -> RequestTelemetry | None:
    """Everything the telemetry files hold about one request id; None if it is unknown."""
    trace_id = next(
        (
            s.trace_id
            for s in iter_spans(tdir, request_id)
            if s.attributes.get(c.REQUEST_ID) == request_id
        ),
        None,
    )
    if trace_id is None:
        return None
    view = RequestTelemetry(request_id, trace_id)
    view.spans = [s for s in iter_spans(tdir, trace_id) if s.trace_id == trace_id]
    view.logs = [r for r in iter_logs(tdir, trace_id) if r["trace_id"] == trace_id]
    seen = set()
    for ex in iter_exemplars(tdir, trace_id):
        # Cumulative exports repeat an exemplar until a newer one replaces it: show it once.
        key = (ex.metric, ex.span_id, ex.time_ns)
        if ex.trace_id == trace_id and key not in seen:
            seen.add(key)
            view.exemplars.append(ex)
    return view


def _span_summary(attrs: dict[str, Any]) -> str:
    """What a span answered: its label and confidence, or a generation's model and tokens.

    A value the span does not carry is left out, never shown as zero.
    """
    parts = []
    if c.PREDICTION_LABEL in attrs:
        parts.append(f"label={attrs[c.PREDICTION_LABEL]}")
    if isinstance(attrs.get(c.PREDICTION_CONFIDENCE), int | float):
        parts.append(f"confidence={attrs[c.PREDICTION_CONFIDENCE]:.3f}")
    for key, name in (
        (c.GENAI_RESPONSE_MODEL, "model"),
        (c.GENAI_USAGE_INPUT_TOKENS, "input_tokens"),
        (c.GENAI_USAGE_OUTPUT_TOKENS, "output_tokens"),
    ):
        if key in attrs:
            parts.append(f"{name}={attrs[key]}")
    ttft = attrs.get(c.GENAI_RESPONSE_TIME_TO_FIRST_CHUNK)
    if isinstance(ttft, int | float):
        parts.append(f"ttft={ttft * 1000:.1f}ms")
    reasons = attrs.get(c.GENAI_RESPONSE_FINISH_REASONS)
    if reasons:
        parts.append(f"finish={','.join(map(str, reasons))}")
    return "  " + " ".join(parts) if parts else ""


def format_request(view: RequestTelemetry) -> str:
    """A human-readable report: span tree with timings, log lines, exemplars."""
    lines = [f"request {view.request_id}", f"trace   {view.trace_id}", "", "spans:"]
    for depth, s in view.tree():
        extra = _span_summary(s.attributes)
        status = (
            "" if s.status == "STATUS_CODE_UNSET" else f" [{s.status.removeprefix('STATUS_CODE_')}]"
        )
        lines.append(
            f"  {'  ' * depth}{s.name}  {s.duration_ms:.3f} ms  span={s.span_id}{status}{extra}"
        )
    lines += ["", "logs:"]
    lines += [f"  {json.dumps(r['body'], separators=(',', ':'))}" for r in view.logs] or [
        "  (none yet)"
    ]
    lines += ["", "metric exemplars:"]
    lines += [f"  {e.metric} = {e.value:g}  span={e.span_id}" for e in view.exemplars] or [
        "  (none: one exemplar per histogram bucket and export interval is kept)"
    ]
    return "\n".join(lines)
