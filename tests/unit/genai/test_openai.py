"""The openai client wrapper: the real client against a mock server speaking its wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from infertrail.config import Settings
from infertrail.events import InferenceEvent
from infertrail.genai import GenAI
from infertrail.genai.openai import attribution, instrument_openai
from infertrail.monitor import Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry import genai as genai_conventions
from infertrail.telemetry.setup import Telemetry

MESSAGES = [
    {"role": "system", "content": "You write short reviews."},
    {"role": "user", "content": "Write a review of a phone."},
]
PIECES = ["A ", "solid ", "phone", "."]


def _completion(n: int = 1) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"answer {i}"},
                "finish_reason": "stop" if i == 0 else "length",
                "logprobs": None,
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 7, "total_tokens": 26},
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _sse(include_usage: bool) -> bytes:
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": p}) for p in PIECES]
    events.append(_chunk({}, "stop"))
    if include_usage:
        last = _chunk({})
        last["choices"] = []
        last["usage"] = {"prompt_tokens": 19, "completion_tokens": 4, "total_tokens": 23}
        events.append(last)
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return body.encode()


EMBEDDING = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 5, "total_tokens": 5},
}


class Server:
    """OpenAI's API as httpx.MockTransport handlers: what it answers, what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.status != 200:
            error = {"error": {"message": "boom", "type": "server_error", "code": None}}
            return httpx.Response(self.status, json=error)
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(200, json=EMBEDDING)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=_sse(usage)
            )
        return httpx.Response(200, json=_completion(body.get("n", 1)))

    def client(self, base_url: str = "https://llm.example.com:8443/v1") -> openai.OpenAI:
        transport = httpx.MockTransport(self.handle)
        return openai.OpenAI(
            api_key="test",
            base_url=base_url,
            max_retries=0,
            http_client=httpx.Client(transport=transport),
        )

    def async_client(self) -> openai.AsyncOpenAI:
        async def handle(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self.handle(request)

        return openai.AsyncOpenAI(
            api_key="test",
            base_url="https://llm.example.com:8443/v1",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        )


@pytest.fixture
def latest(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    genai_conventions.reset()
    yield
    genai_conventions.reset()


@pytest.fixture
def default_conventions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    genai_conventions.reset()
    yield
    genai_conventions.reset()


class Recorded:
    """A Monitor whose spans land in memory and whose events are kept."""

    def __init__(self, tmp_path: Path) -> None:
        settings = Settings(
            data_dir=tmp_path / "data",
            telemetry_files=False,
            metric_export_interval_ms=60_000,
            set_global_providers=False,
        )
        self.exporter = InMemorySpanExporter()
        self.telemetry = Telemetry(settings, span_exporters=[self.exporter])
        self.monitor = Monitor(settings, telemetry=self.telemetry)
        self.events: list[InferenceEvent] = []
        self.monitor.add_sink(self.events.append)

    def flush(self) -> list[ReadableSpan]:
        self.monitor.flush()
        return [s for s in self.exporter.get_finished_spans() if s.attributes]

    def genai_spans(self) -> list[ReadableSpan]:
        return [s for s in self.flush() if c.GENAI_OPERATION_NAME in (s.attributes or {})]


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Recorded]:
    r = Recorded(tmp_path)
    yield r
    r.monitor.shutdown()
    r.telemetry.shutdown(5)


@pytest.fixture
def instrumented(rec: Recorded) -> Iterator[Recorded]:
    handle = instrument_openai(GenAI(rec.monitor, provider="openai"))
    yield rec
    handle.uninstrument()


def test_chat_span_usage_and_attribution(latest: None, instrumented: Recorded) -> None:
    server = Server()
    with attribution(subject="user-42", tenant="acme"):
        answer = server.client().chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            temperature=0.2,
            max_completion_tokens=40,
            stop="END",
            seed=7,
            n=2,
        )
    assert answer.choices[0].message.content == "answer 0"  # the caller's response, unchanged
    # nothing infertrail-specific reached OpenAI
    assert set(server.requests[0]) == {
        "model", "messages", "temperature", "max_completion_tokens", "stop", "seed", "n"
    }  # fmt: skip
    [span] = instrumented.genai_spans()
    a = span.attributes or {}
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert a[c.GENAI_PROVIDER_NAME] == "openai"
    assert (a[c.SERVER_ADDRESS], a[c.SERVER_PORT]) == ("llm.example.com", 8443)
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.max_tokens"] == 40
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert (a["gen_ai.request.seed"], a["gen_ai.request.choice.count"]) == (7, 2)
    assert a[c.GENAI_RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert (a[c.GENAI_USAGE_INPUT_TOKENS], a[c.GENAI_USAGE_OUTPUT_TOKENS]) == (19, 7)
    assert a[c.GENAI_USAGE_SOURCE] == "response"
    assert a[c.GENAI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert a[c.GENAI_RESPONSE_ID] == "chatcmpl-1"
    [ev] = instrumented.events
    assert (ev.subject, ev.tenant) == ("user-42", "acme")
    assert ev.generation is not None and ev.generation.response_text == "answer 0"
    assert ev.inputs == MESSAGES
    assert (ev.tokens_in, ev.tokens_out) == (19, 7)


def test_default_conventions_name_the_system(
    default_conventions: None, instrumented: Recorded
) -> None:
    Server().client("https://api.example.com/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    [span] = instrumented.genai_spans()
    a = span.attributes or {}
    assert a[c.GENAI_SYSTEM] == "openai"
    assert c.GENAI_PROVIDER_NAME not in a
    assert a[c.SERVER_ADDRESS] == "api.example.com"
    assert c.SERVER_PORT not in a  # 443, the scheme's own, is left out


def test_stream_records_chunks_ttft_and_usage(latest: None, instrumented: Recorded) -> None:
    server = Server()
    stream = server.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert stream.response.status_code == 200  # openai's Stream attributes still there
    with stream as s:
        texts = [ch.choices[0].delta.content for ch in s if ch.choices]
    assert "".join(t for t in texts if t) == "A solid phone."
    [span] = instrumented.genai_spans()
    a = span.attributes or {}
    assert a[c.GENAI_REQUEST_STREAM] is True
    assert a[c.GENAI_STREAM_CHUNKS] == len(PIECES)
    assert a[c.GENAI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert a[c.GENAI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert (a[c.GENAI_USAGE_INPUT_TOKENS], a[c.GENAI_USAGE_OUTPUT_TOKENS]) == (19, 4)
    assert a[c.GENAI_USAGE_SOURCE] == "response"
    assert a[c.GENAI_RESPONSE_ID] == "chatcmpl-2"
    assert c.GENAI_CANCELLED not in a
    assert instrumented.events[0].generation.response_text == "A solid phone."  # type: ignore[union-attr]


def test_stream_without_usage_counts_chunks_and_adds_no_option(
    latest: None, instrumented: Recorded
) -> None:
    server = Server()
    for _ in server.client().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ):
        pass
    assert "stream_options" not in server.requests[0]
    [span] = instrumented.genai_spans()
    a = span.attributes or {}
    assert a[c.GENAI_USAGE_OUTPUT_TOKENS] == len(PIECES)
    assert a[c.GENAI_USAGE_SOURCE] == "chunks"


def test_close_mid_stream_is_a_cancelled_call(latest: None, instrumented: Recorded) -> None:
    stream = (
        Server()
        .client()
        .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    it = iter(stream)
    got = [next(it) for _ in range(3)]  # the role chunk, then two pieces
    assert got[2].choices[0].delta.content == PIECES[1]
    stream.close()
    stream.close()  # twice: one call, ended once
    [span] = instrumented.genai_spans()
    a = span.attributes or {}
    assert a[c.GENAI_CANCELLED] is True
    assert a[c.GENAI_USAGE_OUTPUT_TOKENS] == 2
    assert span.status.status_code is not StatusCode.ERROR
    assert len(instrumented.events) == 1


def test_stream_closed_before_reading(latest: None, instrumented: Recorded) -> None:
    stream = (
        Server()
        .client()
        .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    stream.close()
    [span] = instrumented.genai_spans()
    assert (span.attributes or {})[c.GENAI_CANCELLED] is True


def test_async_client_plain_and_streamed(latest: None, instrumented: Recorded) -> None:
    server = Server()

    async def main() -> str:
        client = server.async_client()
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        parts = []
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream as s:
            async for chunk in s:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        cut = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        await cut.__anext__()
        await cut.__anext__()
        await cut.close()
        return f"{answer.choices[0].message.content}|{''.join(parts)}"

    assert asyncio.run(main()) == "answer 0|A solid phone."
    plain, streamed, cut = instrumented.genai_spans()
    assert (plain.attributes or {})[c.GENAI_USAGE_OUTPUT_TOKENS] == 7
    s = streamed.attributes or {}
    assert (s[c.GENAI_STREAM_CHUNKS], s[c.GENAI_USAGE_OUTPUT_TOKENS]) == (4, 4)
    assert s[c.GENAI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    k = cut.attributes or {}
    assert (k[c.GENAI_CANCELLED], k[c.GENAI_USAGE_OUTPUT_TOKENS]) == (True, 1)


def test_api_error_fails_the_call_and_propagates(latest: None, instrumented: Recorded) -> None:
    server = Server()
    server.status = 500
    with pytest.raises(openai.InternalServerError):
        server.client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    async def main() -> None:
        await server.async_client().chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )

    with pytest.raises(openai.InternalServerError):
        asyncio.run(main())
    spans = instrumented.genai_spans()
    assert len(spans) == 2
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})[c.ERROR_TYPE] == "InternalServerError"
    assert [e.status for e in instrumented.events] == ["error", "error"]


def test_embeddings(latest: None, instrumented: Recorded) -> None:
    out = (
        Server().client().embeddings.create(model="text-embedding-3-small", input="a phone review")
    )
    assert out.data[0].embedding == [0.1, -0.2, 0.3]
    [span] = instrumented.genai_spans()
    a = span.attributes or {}
    assert span.name == "embeddings text-embedding-3-small"
    assert a[c.GENAI_OPERATION_NAME] == "embeddings"
    assert a[c.GENAI_USAGE_INPUT_TOKENS] == 5
    assert c.GENAI_USAGE_OUTPUT_TOKENS not in a
    gen = instrumented.events[0].generation
    assert gen is not None and gen.response_text is None and gen.outcome == "ok"


def _methods() -> list[Callable[..., Any]]:
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings

    return [
        k.__dict__["create"] for k in (Completions, AsyncCompletions, Embeddings, AsyncEmbeddings)
    ]


def test_idempotent_and_uninstrument_restores(rec: Recorded) -> None:
    before = _methods()
    first = instrument_openai(GenAI(rec.monitor, provider="openai"))
    assert instrument_openai(GenAI(rec.monitor, provider="other")) is first
    assert all(a is not b for a, b in zip(before, _methods(), strict=True))
    first.uninstrument()
    first.uninstrument()
    assert _methods() == before
    assert not first.active
    Server().client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert rec.genai_spans() == []
    with pytest.raises(TypeError, match="GenAI or a Runtime"):
        instrument_openai(rec.monitor)


def test_suppressed_calls_go_through_untouched(latest: None, instrumented: Recorded) -> None:
    with suppress_instrumentation():
        answer = Server().client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content == "answer 0"
    assert instrumented.genai_spans() == []
    assert instrumented.events == []


def test_unreadable_request_is_passed_through(latest: None, instrumented: Recorded) -> None:
    odd = [{"role": "narrator", "content": "x"}]  # the server decides; infertrail only skips
    answer = Server().client().chat.completions.create(model="gpt-4o-mini", messages=odd)  # type: ignore[list-item]
    assert answer.choices[0].message.content == "answer 0"
    assert instrumented.genai_spans() == []


@pytest.mark.parametrize("order", ["otel-first", "infertrail-first"])
def test_beside_opentelemetry_openai_one_span_per_call(
    latest: None, rec: Recorded, order: str
) -> None:
    v2 = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    otel = v2.OpenAIInstrumentor()
    before = _methods()
    kw = {"tracer_provider": rec.telemetry.tracer_provider}
    if order == "otel-first":
        otel.instrument(**kw)
        ours = instrument_openai(GenAI(rec.monitor, provider="openai"))
    else:
        ours = instrument_openai(GenAI(rec.monitor, provider="openai"))
        otel.instrument(**kw)
    try:
        client = Server().client()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        for _ in client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            pass
        client.embeddings.create(model="text-embedding-3-small", input="x")
        spans = rec.genai_spans()
        assert [s.name for s in spans] == [
            "chat gpt-4o-mini",
            "chat gpt-4o-mini",
            "embeddings text-embedding-3-small",
        ]
        assert all(s.instrumentation_scope.name != "infertrail" for s in spans)
        # infertrail's events still flow, carrying the OpenTelemetry span's ids
        assert [(e.trace_id, e.span_id) for e in rec.events] == [
            (s.context.trace_id, s.context.span_id) for s in spans
        ]
        assert rec.events[1].generation.response_text == "A solid phone."  # type: ignore[union-attr]
        assert rec.events[0].tokens_out == 7
    finally:
        if order == "otel-first":
            otel.uninstrument()
            ours.uninstrument()
        else:
            ours.uninstrument()
            otel.uninstrument()
    assert _methods() == before
