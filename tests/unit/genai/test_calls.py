"""The GenAI API: one span, one event, the conventions' metrics, audit digests, the guard."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.trace import SpanKind
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infertrail.audit.record import validate_record
from infertrail.config import Settings
from infertrail.events import InferenceEvent, ModelInfo, drift_inputs
from infertrail.genai import GenAI, GenerationCall
from infertrail.monitor import Monitor
from infertrail.runtime.assembly import Runtime
from infertrail.telemetry import conventions as c
from infertrail.telemetry import genai as genai_conventions
from infertrail.telemetry.readback import find_request, format_request, iter_logs, iter_spans

MESSAGES = [
    {"role": "system", "content": "You write short reviews."},
    {"role": "user", "content": "Write a review of a phone."},
]


@pytest.fixture
def latest(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The pinned conventions (the stability opt-in), read afresh for this test."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    genai_conventions.reset()
    yield
    genai_conventions.reset()


@pytest.fixture
def monitor(settings: Settings) -> Iterator[Monitor]:
    m = Monitor(settings)
    yield m
    m.shutdown()


def _metrics(monitor: Monitor) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(monitor.telemetry.prometheus_registry).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _stream(pieces: list[str], delay_s: float = 0.0) -> Iterator[str]:
    for piece in pieces:
        if delay_s:
            time.sleep(delay_s)
        yield piece


def test_chat_span_follows_the_pinned_conventions(
    latest: None, monitor: Monitor, settings: Settings
) -> None:
    genai = GenAI(monitor, provider="openai", server_address="llm.internal", server_port=8443)
    params = {"temperature": 0.2, "max_tokens": 40, "stop_sequences": "END"}
    with genai.chat("gpt-x", MESSAGES, params=params) as call:
        call.finish(
            "A solid phone.",
            finish_reasons=["stop"],
            input_tokens=21,
            output_tokens=5,
            response_model="gpt-x-2026",
            response_id="chatcmpl-1",
        )
    monitor.flush()
    (span,) = [s for s in iter_spans(settings.telemetry_dir) if s.name == "chat gpt-x"]
    a = span.attributes
    assert a[c.GENAI_OPERATION_NAME] == "chat"
    assert a[c.GENAI_PROVIDER_NAME] == "openai" and c.GENAI_SYSTEM not in a
    assert (a[c.GENAI_REQUEST_MODEL], a[c.GENAI_RESPONSE_MODEL]) == ("gpt-x", "gpt-x-2026")
    assert a[c.GENAI_REQUEST_TEMPERATURE] == 0.2 and a[c.GENAI_REQUEST_MAX_TOKENS] == 40
    assert list(a[c.GENAI_REQUEST_STOP_SEQUENCES]) == ["END"]
    assert (a[c.GENAI_USAGE_INPUT_TOKENS], a[c.GENAI_USAGE_OUTPUT_TOKENS]) == (21, 5)
    assert list(a[c.GENAI_RESPONSE_FINISH_REASONS]) == ["stop"]
    assert (a[c.SERVER_ADDRESS], a[c.SERVER_PORT]) == ("llm.internal", 8443)
    assert a[c.GENAI_RESPONSE_ID] == "chatcmpl-1"
    assert c.GENAI_INPUT_MESSAGES not in a  # content is opt-in
    assert span.kind == "SPAN_KIND_CLIENT"
    # the text is nowhere in telemetry by default
    for path in settings.telemetry_dir.iterdir():
        assert "solid phone" not in path.read_text() and "Write a review" not in path.read_text()


def test_without_the_opt_in_the_instrumentations_default_names(
    monkeypatch: pytest.MonkeyPatch, monitor: Monitor, settings: Settings
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    genai_conventions.reset()
    try:
        with GenAI(monitor, provider="openai").chat("gpt-x", MESSAGES) as call:
            call.finish("ok", finish_reasons=["stop"], input_tokens=3, output_tokens=1)
        monitor.flush()
    finally:
        genai_conventions.reset()
    (span,) = [s for s in iter_spans(settings.telemetry_dir) if s.name == "chat gpt-x"]
    assert span.attributes[c.GENAI_SYSTEM] == "openai"
    assert c.GENAI_PROVIDER_NAME not in span.attributes


def test_a_stream_is_timed_from_its_chunks_and_counted_by_the_tokenizer(
    latest: None, monitor: Monitor, settings: Settings
) -> None:
    genai = GenAI(
        monitor,
        provider="infertrail",
        span_kind=SpanKind.INTERNAL,
        count_tokens=lambda t: len(t.split()),
    )
    call = genai.begin(ModelInfo("demo-llm", "1.0.0", "ab" * 32), MESSAGES, stream=True)
    pieces = ["A ", "good ", "phone ", "indeed."]
    out = list(genai.stream(call, _stream(pieces, delay_s=0.01), text_of=lambda p: p))
    assert out == pieces
    gen = call.event.generation
    assert gen is not None
    assert gen.response_text == "A good phone indeed."
    assert gen.chunks == 4 and gen.output_tokens == 4 and gen.usage_source == "tokenizer"
    ttft, tpot = gen.time_to_first_token_s, gen.time_per_output_token_s
    assert ttft is not None and 0.005 < ttft < 1.0
    assert tpot is not None and 0.005 < tpot < 1.0
    assert gen.input_tokens is not None and gen.input_tokens > 0
    assert (call.event.tokens_in, call.event.tokens_out) == (gen.input_tokens, 4)
    monitor.flush()
    (span,) = [s for s in iter_spans(settings.telemetry_dir) if s.name == "chat demo-llm"]
    assert span.kind == "SPAN_KIND_INTERNAL"
    assert span.attributes[c.GENAI_REQUEST_STREAM] is True
    assert span.attributes[c.GENAI_STREAM_CHUNKS] == 4
    assert span.attributes[c.GENAI_RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(ttft)
    m = _metrics(monitor)
    ttft_count = [v for labels, v in m["gen_ai_server_time_to_first_token_seconds_count"]]
    assert ttft_count == [1.0]
    tokens = {labels["gen_ai_token_type"]: v for labels, v in m["gen_ai_client_token_usage_sum"]}
    assert tokens == {"input": float(gen.input_tokens), "output": 4.0}
    log = next(iter_logs(settings.telemetry_dir))
    assert log["body"]["gen_ai"]["output_tokens"] == 4
    assert log["body"]["gen_ai"]["outcome"] == "ok"


def test_closing_a_stream_early_records_a_cancelled_call_with_the_tokens_so_far(
    latest: None, monitor: Monitor, settings: Settings
) -> None:
    genai = GenAI(monitor, provider="openai")
    call = genai.begin("gpt-x", MESSAGES, stream=True)
    wrapped = genai.stream(call, _stream(["a", "b", "c", "d", "e"]), text_of=lambda p: p)
    assert [next(wrapped), next(wrapped)] == ["a", "b"]
    wrapped.close()  # what a client disconnect does to the server's stream
    gen = call.event.generation
    assert gen is not None and gen.cancelled and gen.outcome == "cancelled"
    assert gen.output_tokens == 2 and gen.usage_source == "chunks"
    assert call.event.status == "ok"  # the caller left; the model did not fail
    monitor.flush()
    (span,) = [s for s in iter_spans(settings.telemetry_dir) if s.name == "chat gpt-x"]
    assert span.attributes[c.GENAI_CANCELLED] is True
    outcomes = _metrics(monitor)["infertrail_gen_ai_outcomes_total"]
    assert [(labels["infertrail_gen_ai_outcome"], v) for labels, v in outcomes] == [
        ("cancelled", 1.0)
    ]


def test_an_error_mid_stream_fails_the_call_and_propagates(
    latest: None, monitor: Monitor, settings: Settings
) -> None:
    def broken() -> Iterator[str]:
        yield "a"
        raise ConnectionResetError("peer went away at 10.1.2.3")

    genai = GenAI(monitor, provider="openai")
    call = genai.begin("gpt-x", MESSAGES, stream=True)
    with pytest.raises(ConnectionResetError):
        list(genai.stream(call, broken(), text_of=lambda p: p))
    assert call.event.status == "error"
    assert call.event.error_type == "ConnectionResetError"
    monitor.flush()
    (span,) = [s for s in iter_spans(settings.telemetry_dir) if s.name == "chat gpt-x"]
    assert span.status == "STATUS_CODE_ERROR"
    m = _metrics(monitor)
    errors = [labels for labels, _ in m["gen_ai_client_operation_duration_seconds_count"]]
    assert errors[0]["error_type"] == "ConnectionResetError"
    # server timings count successful responses only
    assert "gen_ai_server_time_to_first_token_seconds_count" not in m


def test_an_async_stream_cancelled_by_its_task_is_a_cancelled_call(
    latest: None, monitor: Monitor
) -> None:
    asyncio.run(_cancel_an_async_stream(monitor))


async def _cancel_an_async_stream(monitor: Monitor) -> None:
    async def chunks() -> AsyncIterator[str]:
        for piece in ["x", "y"]:
            yield piece
        await asyncio.sleep(10)
        yield "never"

    genai = GenAI(monitor, provider="openai")
    call = genai.begin("gpt-x", MESSAGES, stream=True)
    seen: list[str] = []

    async def consume() -> None:
        async for piece in genai.astream(call, chunks(), text_of=lambda p: p):
            seen.append(piece)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gen = call.event.generation
    assert seen == ["x", "y"]
    assert gen is not None and gen.cancelled and gen.output_tokens == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role must be one of"),
        ({"messages": ["hi"]}, r"messages\[0\] must be an object"),
        ({"params": {"temprature": 0.1}}, "unknown generation parameter 'temprature'"),
        ({"params": {"temperature": float("nan")}}, "must be finite"),
        ({"params": {"max_tokens": {"a": 1}}}, "must be a number or string"),
    ],
)
def test_bad_calls_are_refused_before_anything_is_recorded(
    monitor: Monitor, kwargs: dict[str, object], message: str
) -> None:
    genai = GenAI(monitor, provider="openai")
    args = {"messages": MESSAGES, **kwargs}
    with pytest.raises(ValueError, match=message):
        genai.begin("gpt-x", args.pop("messages"), **args)  # type: ignore[arg-type]
    assert monitor.flush_events(5)


def test_bad_finish_values_are_refused(monitor: Monitor) -> None:
    with pytest.raises(ValueError, match="output_tokens must be an int >= 0"):  # noqa: SIM117
        with GenAI(monitor, provider="openai").chat("gpt-x", MESSAGES) as call:
            call.finish("x", output_tokens=-1)


def test_content_is_opt_in_redacted_and_pseudonymized(
    latest: None, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_and_event")
    genai_conventions.reset()
    monitor = Monitor(settings)
    try:
        genai = GenAI(
            monitor, provider="openai", pseudonymize=lambda s: "p-0001", content_max_chars=60
        )
        messages = [
            {"role": "user", "content": "I am cust-42, mail me at bob@example.com " + "x" * 80}
        ]
        with genai.chat("gpt-x", messages, subject="cust-42") as call:
            call.finish("Call +44 20 7946 0958", finish_reasons=["stop"])
        monitor.flush()
    finally:
        monitor.shutdown()
    (span,) = [s for s in iter_spans(settings.telemetry_dir) if s.name == "chat gpt-x"]
    inputs = json.loads(span.attributes[c.GENAI_INPUT_MESSAGES])
    text = inputs[0]["parts"][0]["content"]
    assert text.startswith("I am p-0001, mail me at REDACTED ")
    assert "characters cut]" in text
    outputs = json.loads(span.attributes[c.GENAI_OUTPUT_MESSAGES])
    assert outputs[0]["parts"][0]["content"] == "Call REDACTED"
    assert outputs[0]["finish_reason"] == "stop"
    raw = "".join(p.read_text() for p in settings.telemetry_dir.iterdir())
    assert "cust-42" not in raw and "bob@example.com" not in raw and "7946" not in raw
    assert c.EVENT_NAME_GENAI_OPERATION_DETAILS in raw


def test_free_text_labels_never_become_series(settings: Settings) -> None:
    settings.telemetry_max_label_values = 3
    monitor = Monitor(settings)
    model = ModelInfo("toy", "1", "")
    try:
        for i in range(30):  # what a user did: the generated text as the label
            with monitor.observe(model, "x") as ev:
                ev.label = f"generated sentence number {i} that goes on and on well past a label"
        for label in ("a", "b", "c", "d", "e", "a"):
            with monitor.observe(model, "x") as ev:
                ev.label = label
        monitor.flush()
        m = _metrics(monitor)
    finally:
        monitor.shutdown()
    by_label = {
        labels["infertrail_prediction_label"]: v for labels, v in m["infertrail_predictions_total"]
    }
    assert by_label == {"other": 32.0, "a": 2.0, "b": 1.0, "c": 1.0}
    overflow = m["infertrail_telemetry_attribute_overflow_total"]
    assert [(labels["attribute"], v) for labels, v in overflow] == [(c.PREDICTION_LABEL, 32.0)]


def test_drift_inputs_of_a_generation_are_its_shape(monitor: Monitor) -> None:
    genai = GenAI(monitor, provider="openai")
    with genai.chat("gpt-x", MESSAGES) as call:
        call.finish("Four words right here.", input_tokens=9, output_tokens=5)
    row = drift_inputs(call.event)
    assert row == {
        "prompt_chars": len("Write a review of a phone."),
        "prompt_tokens": 9,
        "response_chars": len("Four words right here."),
        "response_tokens": 5,
        "prompt": "Write a review of a phone.",
    }
    plain = InferenceEvent(ModelInfo("m", "1", ""), "r", "s", "t", "", inputs=[1.0], input_size=1)
    assert drift_inputs(plain) == [1.0]


def test_the_audit_record_holds_digests_never_the_text(latest: None, settings: Settings) -> None:
    settings.raw_payloads_enabled = True
    runtime = Runtime.start(settings, models=[])
    try:
        genai = runtime.genai("openai")
        with genai.chat("gpt-x", MESSAGES, subject="cust-7", params={"temperature": 0.5}) as call:
            call.finish(
                "A very private answer.",
                finish_reasons=["length"],
                input_tokens=11,
                output_tokens=6,
            )
        receipt = runtime.audit_receipt(call.event, timeout_s=10)
        assert receipt is not None
        assert runtime.audit is not None
        ((_, raw_record),) = list(runtime.audit.log.read(receipt.seq, receipt.seq + 1))
        record = json.loads(raw_record)
    finally:
        runtime.shutdown()
    validate_record(record)
    gen = record["generation"]
    assert gen["finish_reasons"] == ["length"] and gen["output_tokens"] == 6
    assert gen["params"] == {"temperature": 0.5}
    assert len(gen["response_hmac"]) == 64 and len(record["input_hmac"]) == 64
    assert gen["response_hmac"] != record["input_hmac"]
    raw = json.dumps(record)
    assert "private answer" not in raw and "Write a review" not in raw and "cust-7" not in raw
    assert record["subject"] is not None  # the pseudonym


def test_trace_output_shows_no_confidence_a_generation_does_not_have(
    latest: None, monitor: Monitor, settings: Settings
) -> None:
    with GenAI(monitor, provider="openai").chat("gpt-x", MESSAGES, request_id="req-gen-1") as call:
        call.finish("ok", finish_reasons=["stop"], input_tokens=3, output_tokens=1)
    monitor.flush()
    view = find_request(settings.telemetry_dir, "req-gen-1")
    assert view is not None
    text = format_request(view)
    assert "confidence=" not in text
    assert "input_tokens=3 output_tokens=1 finish=stop" in text


def test_a_cancelled_task_inside_a_chat_block_is_a_cancelled_call(monitor: Monitor) -> None:
    async def handler(genai: GenAI) -> None:
        with genai.chat("gpt-x", MESSAGES) as call:
            seen.append(call)
            await asyncio.sleep(10)  # the answer never comes: the client hung up

    async def main() -> None:
        task = asyncio.create_task(handler(GenAI(monitor, provider="openai")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    seen: list[object] = []
    asyncio.run(main())
    (call,) = seen
    assert isinstance(call, GenerationCall)
    assert call.event.status == "ok" and call.event.generation is not None
    assert call.event.generation.cancelled and call.event.generation.outcome == "cancelled"
