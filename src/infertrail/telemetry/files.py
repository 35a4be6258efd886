"""OTLP-JSON lines file exporters: one ``Export*ServiceRequest`` per line, as OTLP/JSON says.

Spans and log records (one per inference: the hot volume) are encoded directly by
:mod:`infertrail.telemetry.otlp_json`; metrics (one export per interval) go through the protobuf
messages and protobuf's JSON mapping, with the differences OTLP/JSON requires: hex trace and span
ids, integer enums. The files are read back by ``infertrail trace`` and by any tool that reads
the Collector's file exporter format.

protobuf and the OTLP encoders are imported at the first metrics export, not with this module:
importing the telemetry setup without OTLP configured loads no protobuf.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from infertrail.telemetry.otlp_json import logs_request, traces_request

if TYPE_CHECKING:
    from google.protobuf.message import Message

TRACES_FILE = "traces.jsonl"
METRICS_FILE = "metrics.jsonl"
LOGS_FILE = "logs.jsonl"

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """Rewrite base64 id fields (protobuf JSON mapping) to the hex form OTLP/JSON mandates."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json_line(message: Message) -> str:
    """One OTLP/JSON line for an export request message."""
    from google.protobuf.json_format import MessageToDict

    as_dict = MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(as_dict), separators=(",", ":")) + "\n"


def _line(request: dict[str, Any]) -> str:
    return orjson.dumps(request).decode() + "\n"


class _JsonLinesFile:
    """Appends lines to a file; one lock, opened lazily, directory created on first write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)


class OtlpJsonSpanExporter(SpanExporter):
    """Writes spans as OTLP/JSON lines."""

    def __init__(self, path: Path) -> None:
        self._file = _JsonLinesFile(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._file.write(_line(traces_request(spans)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class OtlpJsonLogExporter(LogRecordExporter):
    """Writes log records as OTLP/JSON lines."""

    def __init__(self, path: Path) -> None:
        self._file = _JsonLinesFile(path)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self._file.write(_line(logs_request(batch)))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    """Writes metric collections as OTLP/JSON lines (cumulative temporality, as Prometheus)."""

    def __init__(
        self,
        path: Path,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        super().__init__(preferred_temporality, preferred_aggregation)
        self._file = _JsonLinesFile(path)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        self._file.write(otlp_json_line(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None
