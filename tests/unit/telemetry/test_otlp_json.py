"""The direct OTLP/JSON encoder: total over attribute types, faithful to the OTLP/JSON rules."""

from __future__ import annotations

import json
from enum import Enum

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from infertrail.telemetry.otlp_json import (
    LogEntry,
    any_value,
    log_entries_request,
    logs_request,
    traces_request,
)


class Color(Enum):
    RED = "red"


def test_any_value_plain_types() -> None:
    assert any_value("a") == {"stringValue": "a"}
    assert any_value(True) == {"boolValue": True}
    assert any_value(2**40) == {"intValue": str(2**40)}
    assert any_value(0.5) == {"doubleValue": 0.5}
    assert any_value(b"\x00\x01") == {"bytesValue": "AAE="}
    assert any_value([1, "x"]) == {
        "arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}]}
    }
    assert any_value({"k": None}) == {"kvlistValue": {"values": [{"key": "k", "value": {}}]}}


def test_numpy_scalars_and_other_objects_are_serializable() -> None:
    values = [np.float64(0.25), np.float32(0.5), np.int64(3), np.bool_(True), Color.RED]
    encoded = [any_value(v) for v in values]
    assert encoded[0] == {"doubleValue": 0.25}
    assert encoded[1] == {"doubleValue": 0.5}
    assert encoded[2] == {"intValue": "3"}
    assert encoded[3] == {"boolValue": True}
    orjson.dumps(encoded)  # must not raise


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


@given(json_values)
def test_any_value_is_total(v: object) -> None:
    orjson.dumps(any_value(v))


def test_span_encoding_follows_otlp_json() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t", "1.0")
    with (
        tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent,
        tracer.start_as_current_span("child") as child,
    ):
        child.set_attribute("score", np.float64(0.9))
        child.set_status(StatusCode.ERROR, "boom")
    spans = exporter.get_finished_spans()
    doc = json.loads(orjson.dumps(traces_request(spans)))
    (rs,) = doc["resourceSpans"]
    (ss,) = rs["scopeSpans"]
    assert ss["scope"] == {"name": "t", "version": "1.0"}
    by_name = {s["name"]: s for s in ss["spans"]}
    c, p = by_name["child"], by_name["parent"]
    assert c["traceId"] == f"{parent.get_span_context().trace_id:032x}"
    assert c["parentSpanId"] == p["spanId"] == f"{parent.get_span_context().span_id:016x}"
    assert "parentSpanId" not in p
    assert (p["kind"], c["kind"]) == (2, 1)  # SPAN_KIND_SERVER, SPAN_KIND_INTERNAL
    assert c["status"] == {"code": 2, "message": "boom"}  # STATUS_CODE_ERROR
    assert isinstance(c["startTimeUnixNano"], str)
    assert c["attributes"] == [{"key": "score", "value": {"doubleValue": 0.9}}]


_body_values = st.one_of(
    st.text(max_size=20),
    st.floats(allow_nan=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=5), max_size=2),
)


@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(min_size=1, max_size=8), _body_values, max_size=6),
            st.integers(0, 2**128 - 1),
            st.integers(0, 2**64 - 1),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_log_entries_encode_as_the_sdk_records_do(
    plan: list[tuple[dict[str, object], int, int, bool, bool]],
) -> None:
    """The batch encoder writes what logs_request writes for the same records via the SDK."""
    resource = Resource.create({"service.name": "svc"})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("infertrail", "1.0")
    entries = []
    for i, (body, trace_id, span_id, sampled, error) in enumerate(plan):
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        severity = SeverityNumber.ERROR if error else SeverityNumber.INFO
        text = "ERROR" if error else "INFO"
        sc = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
        logger.emit(
            timestamp=1_000 + i,
            observed_timestamp=5_000,
            context=set_span_in_context(NonRecordingSpan(sc)),
            severity_number=severity,
            severity_text=text,
            body=body,
            event_name="infertrail.inference",
        )
        entries.append(
            LogEntry(
                1_000 + i,
                trace_id,
                span_id,
                int(flags),
                severity.value,
                text,
                body,
                "infertrail.inference",
            )
        )
    scope = InstrumentationScope("infertrail", "1.0")
    fast = log_entries_request(resource, scope, entries, 5_000)
    sdk = logs_request(memory.get_finished_logs())
    a, b = orjson.loads(orjson.dumps(fast)), orjson.loads(orjson.dumps(sdk))
    assert a == b
