"""telemetry/redacting.py: a span that never records a raw query or exception message.

:class:`RedactingSpan` is wrapped around a real SDK span whose output is kept in memory, and
everything the span ends up holding (name, attributes, events, links, status) is searched for
the raw values. How the HTTP layer hands it to the app is tested in ``test_httpserver.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Status, StatusCode

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redacting import RedactingSpan
from infertrail.telemetry.redaction import REDACTED

RAW = "applicant-7Q4ZK9"  # the raw subject id the spans are given


@dataclass
class Recorded:
    """An SDK tracer provider whose finished spans are kept in memory."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    def wrapped(self, **attributes: str) -> RedactingSpan:
        """A redacting span around a fresh SDK span started with ``attributes`` as they are."""
        return RedactingSpan(self.provider.get_tracer("t").start_span("s", attributes=attributes))

    def span(self) -> ReadableSpan:
        (span,) = self.exporter.get_finished_spans()
        return span


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Recorded(provider, exporter)
    provider.shutdown()


def test_a_query_attribute_shows_redacted_whole_until_the_query_is_shown(
    recorded: Recorded,
) -> None:
    span = recorded.wrapped()
    span.set_attribute(c.URL_QUERY, f"subject_id={RAW}")
    span.set_attribute(c.URL_FULL, f"http://h/v1/x?subject_id={RAW}")
    span.set_attribute(c.HTTP_TARGET, f"/v1/x?subject_id={RAW}")
    span.set_attribute(c.HTTP_URL, "http://h/v1/x")  # no query: kept as it is
    assert dict(span.attributes or {}) == {
        c.URL_QUERY: REDACTED,
        c.URL_FULL: "http://h/v1/x?REDACTED",
        c.HTTP_TARGET: "/v1/x?REDACTED",
        c.HTTP_URL: "http://h/v1/x",
    }
    span.show_query("subject_id=REDACTED&model=m1")
    span.end()
    assert dict(recorded.span().attributes or {}) == {
        c.URL_QUERY: "subject_id=REDACTED&model=m1",
        c.URL_FULL: "http://h/v1/x?subject_id=REDACTED&model=m1",
        c.HTTP_TARGET: "/v1/x?subject_id=REDACTED&model=m1",
        c.HTTP_URL: "http://h/v1/x",
    }


def test_once_shown_the_query_is_what_later_attributes_show(recorded: Recorded) -> None:
    span = recorded.wrapped()
    span.show_query("model=m1")
    span.set_attributes({c.URL_QUERY: f"model=m1&subject_id={RAW}", "kept": "as is"})
    span.end()
    assert dict(recorded.span().attributes or {}) == {c.URL_QUERY: "model=m1", "kept": "as is"}


def test_a_recorded_exception_keeps_its_type_and_frames_not_its_messages(
    recorded: Recorded,
) -> None:
    def fails() -> None:
        try:
            raise KeyError(RAW)
        except KeyError as err:
            raise ValueError(f"bad subject {RAW}") from err

    span = recorded.wrapped()
    with pytest.raises(ValueError) as caught:
        fails()
    span.record_exception(caught.value, attributes={"note": "kept", c.EXCEPTION_MESSAGE: RAW})
    span.end()
    (event,) = recorded.span().events
    attributes = dict(event.attributes or {})
    assert event.name == c.EVENT_NAME_EXCEPTION
    assert attributes[c.EXCEPTION_TYPE] == "ValueError"
    assert attributes[c.EXCEPTION_MESSAGE] == REDACTED
    assert attributes[c.EXCEPTION_ESCAPED] == "False"
    assert attributes["note"] == "kept"
    stacktrace = str(attributes[c.EXCEPTION_STACKTRACE])
    assert "in fails" in stacktrace and "KeyError" in stacktrace  # the cause's frames too
    assert RAW not in recorded.span().to_json()


def test_a_status_description_keeps_the_exception_type_only(recorded: Recorded) -> None:
    first, second = recorded.wrapped(), recorded.wrapped()
    first.set_status(Status(StatusCode.ERROR, f"LookupError: no decisions for {RAW}"))
    second.set_status(StatusCode.ERROR, f"subject {RAW} unknown")
    first.end()
    second.end()
    descriptions = [s.status.description for s in recorded.exporter.get_finished_spans()]
    assert descriptions == ["LookupError: REDACTED", REDACTED]


def test_event_and_link_attributes_and_hand_set_exception_text_are_redacted(
    recorded: Recorded,
) -> None:
    other = recorded.wrapped()
    span = recorded.wrapped()
    span.add_event("noted", {c.URL_QUERY: RAW, c.EXCEPTION_STACKTRACE: f"Error: {RAW}"})
    span.add_link(other.get_span_context(), {c.HTTP_URL: f"http://h/?subject_id={RAW}"})
    span.set_attribute(c.EXCEPTION_MESSAGE, RAW)
    span.update_name("GET /v1/x")
    span.end()
    other.end()
    (finished,) = [s for s in recorded.exporter.get_finished_spans() if s.name == "GET /v1/x"]
    (event,) = finished.events
    assert dict(event.attributes or {}) == {c.URL_QUERY: REDACTED, c.EXCEPTION_STACKTRACE: REDACTED}
    (link,) = finished.links
    assert dict(link.attributes or {}) == {c.HTTP_URL: "http://h/?REDACTED"}
    assert link.context.span_id == other.get_span_context().span_id
    assert (finished.attributes or {})[c.EXCEPTION_MESSAGE] == REDACTED


def test_an_exception_leaving_the_span_as_a_block_is_recorded_redacted(
    recorded: Recorded,
) -> None:
    with pytest.raises(KeyError), recorded.wrapped():
        raise KeyError(RAW)
    span = recorded.span()
    assert span.status.description == "KeyError: REDACTED"
    assert [e.name for e in span.events] == [c.EVENT_NAME_EXCEPTION]
    assert (span.events[0].attributes or {})[c.EXCEPTION_ESCAPED] == "True"
    assert RAW not in span.to_json()


def test_the_wrapper_reads_as_its_sdk_span(recorded: Recorded) -> None:
    span = recorded.wrapped(kind="kept")
    assert span.is_recording()
    assert span.name == "s"  # an SDK span property, read through
    assert dict(span.attributes or {}) == {"kind": "kept"}
    span.end()
    assert not span.is_recording()
    assert recorded.span().context == span.get_span_context()


def test_around_a_non_recording_span_every_call_is_harmless() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    span = RedactingSpan(provider.get_tracer("t").start_span("s"))
    assert not span.is_recording()
    span.set_attribute(c.URL_QUERY, RAW)
    span.record_exception(ValueError(RAW))
    span.set_status(StatusCode.ERROR, RAW)
    span.show_query("q=REDACTED")
    with pytest.raises(ValueError), span:
        raise ValueError(RAW)
    assert not span.get_span_context().trace_flags.sampled


# Distinctive secrets: a prefix no span field holds, then any text (its own characters may well
# appear in a span's JSON, the secret as a whole must not).
SECRETS = st.text(min_size=0, max_size=24).map(lambda text: f"S3CR3T-{text}")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=SECRETS, value=SECRETS, description=SECRETS)
def test_no_message_query_value_or_description_reaches_the_sdk_span(
    message: str, value: str, description: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = RedactingSpan(provider.get_tracer("t").start_span("s"))
    span.set_attribute(c.URL_QUERY, f"q={value}")
    span.set_attribute(c.URL_FULL, f"http://h/p?q={value}")
    span.record_exception(RuntimeError(message))
    span.set_status(StatusCode.ERROR, description)
    span.end()
    (finished,) = exporter.get_finished_spans()
    recorded = repr(
        (
            dict(finished.attributes or {}),
            [dict(e.attributes or {}) for e in finished.events],
            finished.status.description,
        )
    )
    assert "S3CR3T-" not in recorded
