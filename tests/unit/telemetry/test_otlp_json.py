"""The direct OTLP/JSON encoder: total over attribute types, faithful to the OTLP/JSON rules."""

from __future__ import annotations

import json
from enum import Enum

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from infertrail.telemetry.otlp_json import any_value, traces_request


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
