"""The official ``openai`` client, recorded: one call, one event, through :class:`GenAI`.

One call instruments every client, sync and async, of the process::

    from infertrail.genai.openai import attribution, instrument_openai

    handle = instrument_openai(runtime)  # or a GenAI (its monitor, tokenizer, pseudonyms)
    with attribution(subject="user-42", tenant="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    handle.uninstrument()

It replaces ``create`` of ``Completions``, ``AsyncCompletions``, ``Embeddings`` and
``AsyncEmbeddings`` on the classes, as opentelemetry-instrumentation-openai-v2 does, so a
client made before or after is covered. Each call is a generation (docs/genai.md): the span
``chat <model>`` (kind CLIENT, ``server.address``/``server.port`` from the client's
``base_url``), the GenAI metrics, the audit record, cost and drift. A streamed answer is
handed back as a thin proxy of openai's ``Stream``: iterating it records each chunk; the call
ends when the stream is exhausted, fails or is closed (``close()`` before the end: recorded as
cancelled, with the tokens so far). Usage of a stream comes from the server only when the
caller asked for it (``stream_options={"include_usage": True}``); else the chunks are counted.

Nothing infertrail-specific is sent to OpenAI: who a call is for comes from
:func:`attribution` (a context variable), the request id and endpoint from the current HTTP
request as for every inference.

Beside the OpenTelemetry ``openai`` instrumentation (either order): infertrail's wrapper sits
directly on openai's method, under any wrapper added before or after it. When one is there,
the call's span is that instrumentation's, and infertrail records its event without a span of
its own (``span=False``), carrying that span's ids. With instrumentation suppressed
(``opentelemetry.instrumentation.utils.suppress_instrumentation``) calls go through untouched.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import FunctionType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from infertrail.genai.calls import GenAI, GenerationCall

__all__ = ["Instrumentation", "attribution", "instrument_openai"]

_log = logging.getLogger("infertrail.genai.openai")

#: openai's request kwargs recorded as gen_ai.request.* parameters, by their suffix.
_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "stop": "stop_sequences",
    "seed": "seed",
    "n": "choice.count",
}
# The methods wrapped: (module, class, operation, async).
_TARGETS = (
    ("openai.resources.chat.completions", "Completions", "chat", False),
    ("openai.resources.chat.completions", "AsyncCompletions", "chat", True),
    ("openai.resources.embeddings", "Embeddings", "embeddings", False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "embeddings", True),
)


@dataclass(frozen=True, slots=True)
class _Attribution:
    subject: str | None
    tenant: str | None


_attribution: ContextVar[_Attribution | None] = ContextVar("infertrail_openai_attribution")


@contextmanager
def attribution(*, subject: str | None = None, tenant: str | None = None) -> Iterator[None]:
    """Calls made inside are for ``subject`` (pseudonymized in the audit trail) and ``tenant``.

    A context variable, so it follows the code into threads started with a copied context and
    into asyncio tasks; the request to OpenAI carries nothing of it.
    """
    token = _attribution.set(_Attribution(subject, tenant))
    try:
        yield
    finally:
        _attribution.reset(token)


class Instrumentation:
    """What :func:`instrument_openai` installed; :meth:`uninstrument` takes it out again."""

    def __init__(self, template: GenAI, count_tokens: Callable[[str], int] | None) -> None:
        self._template = template
        self._count_tokens = count_tokens if count_tokens is not None else template.count_tokens
        self._servers: dict[tuple[str | None, int | None], GenAI] = {}
        # (class, the wrapper installed, openai's own method)
        self._installed: list[tuple[type, Callable[..., Any], Callable[..., Any]]] = []

    @property
    def active(self) -> bool:
        """True until :meth:`uninstrument`."""
        return bool(self._installed)

    def uninstrument(self) -> None:
        """Put openai's methods back (under any wrapper added around infertrail's). Idempotent."""
        global _current
        with _lock:
            for cls, wrapper, original in self._installed:
                _replace(cls, wrapper, original)
            self._installed.clear()
            if _current is self:
                _current = None

    # -- per call --------------------------------------------------------------------------
    def _genai_for(self, resource: Any) -> GenAI:
        """The GenAI of the client's server (``base_url`` host and port, 443 left out)."""
        url = getattr(getattr(resource, "_client", None), "base_url", None)
        host = getattr(url, "host", None) or None
        port = getattr(url, "port", None)
        if port == 443:
            port = None
        key = (host, port)
        found = self._servers.get(key)
        if found is None:
            t = self._template
            found = self._servers[key] = GenAI(
                t.monitor,
                provider=t.provider,
                server_address=host,
                server_port=port,
                span_kind=SpanKind.CLIENT,
                count_tokens=self._count_tokens,
                pseudonymize=t.pseudonymize,
                content_max_chars=t.content_max_chars,
            )
        return found

    def _begin(
        self, resource: Any, operation: str, kwargs: dict[str, Any], cls: type, wrapper: Any
    ) -> tuple[GenAI, GenerationCall] | None:
        """Start the call's record; None (the call goes through untouched) if it cannot be."""
        model = kwargs.get("model")
        if operation == "chat":
            messages = kwargs.get("messages")
            if messages is not None and not isinstance(messages, list | tuple | str):
                messages = kwargs["messages"] = list(messages)  # an iterator is read once
            inputs: Any = messages
        else:
            inputs = kwargs.get("input")
        who = _attribution.get(None)
        genai = self._genai_for(resource)
        try:
            call = genai.begin(
                model if isinstance(model, str) else "",
                inputs,
                operation=operation,
                params=_params_of(kwargs),
                stream=operation == "chat" and kwargs.get("stream") is True,
                subject=who.subject if who else None,
                tenant=who.tenant if who else None,
                # Another wrapper around infertrail's (the OpenTelemetry instrumentation)
                # traces this call: its span is the call's, infertrail's event joins it.
                span=cls.__dict__.get("create") is wrapper,
            )
        except ValueError as exc:  # a request infertrail cannot read is still the user's call
            _log.warning("openai call not recorded: %s", exc)
            return None
        return genai, call


_lock = threading.Lock()
_current: Instrumentation | None = None


def instrument_openai(
    genai_or_runtime: Any, *, count_tokens: Callable[[str], int] | None = None
) -> Instrumentation:
    """Record every call of every ``openai`` client through a GenAI or a Runtime.

    ``genai_or_runtime``: a :class:`GenAI` (its monitor, provider, tokenizer, pseudonyms and
    content limit are used; the server comes from each client) or a Runtime (its
    ``genai("openai")``). ``count_tokens`` counts tokens where a response gives no usage.
    A second call while instrumented is a no-op returning the same handle.
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        if isinstance(genai_or_runtime, GenAI):
            template = genai_or_runtime
        elif callable(getattr(genai_or_runtime, "genai", None)):
            template = genai_or_runtime.genai("openai")
        else:
            raise TypeError(
                "instrument_openai needs a GenAI or a Runtime, got "
                f"{type(genai_or_runtime).__name__}"
            )
        import importlib

        inst = Instrumentation(template, count_tokens)
        for module, name, operation, is_async in _TARGETS:
            cls = getattr(importlib.import_module(module), name)
            original = _innermost(cls.__dict__["create"])
            wrapper = _make_wrapper(inst, cls, original, operation, is_async)
            _install(cls, wrapper, original)
            inst._installed.append((cls, wrapper, original))
        _current = inst
        return inst


# -- installing under other wrappers -------------------------------------------------------
def _is_wrapper(obj: Any) -> bool:
    """A wrapping proxy (wrapt's FunctionWrapper), not a function with ``__wrapped__`` set.

    ``type()``, not ``isinstance``: a wrapt proxy passes itself off as the function it wraps.
    """
    return type(obj) is not FunctionType and hasattr(obj, "__wrapped__")


def _innermost(method: Any) -> Any:
    """openai's own method under the wrappers around it."""
    while _is_wrapper(method):
        method = method.__wrapped__
    return method


def _install(cls: type, wrapper: Any, original: Any) -> None:
    """Put ``wrapper`` directly over ``original``: on the class, or inside its wrappers."""
    holder = cls.__dict__["create"]
    if holder is original:
        setattr(cls, "create", wrapper)  # noqa: B010 (the name is a constant, the intent a patch)
        return
    while holder.__wrapped__ is not original:
        holder = holder.__wrapped__
    holder.__wrapped__ = wrapper


def _replace(cls: type, wrapper: Any, original: Any) -> None:
    """Undo :func:`_install`, wherever ``wrapper`` now is (a wrapper may have come or gone)."""
    holder: Any = cls.__dict__.get("create")
    if holder is wrapper:
        setattr(cls, "create", original)  # noqa: B010
        return
    while _is_wrapper(holder):
        if holder.__wrapped__ is wrapper:
            holder.__wrapped__ = original
            return
        holder = holder.__wrapped__


def _make_wrapper(
    inst: Instrumentation, cls: type, original: Any, operation: str, is_async: bool
) -> Callable[..., Any]:
    """The ``create`` that records: sync or async, chat or embeddings."""
    if is_async:

        @functools.wraps(original)
        async def acreate(self: Any, *args: Any, **kwargs: Any) -> Any:
            if otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY):
                return await original(self, *args, **kwargs)
            begun = inst._begin(self, operation, kwargs, cls, acreate)
            if begun is None:
                return await original(self, *args, **kwargs)
            genai, call = begun
            try:
                result = await original(self, *args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                call.end()
                raise
            return _settle(genai, call, result)

        return acreate

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY):
            return original(self, *args, **kwargs)
        begun = inst._begin(self, operation, kwargs, cls, create)
        if begun is None:
            return original(self, *args, **kwargs)
        genai, call = begun
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            call.end()
            raise
        return _settle(genai, call, result)

    return create


def _settle(genai: GenAI, call: GenerationCall, result: Any) -> Any:
    """Record a response and end the call; a stream is returned as a recording proxy.

    A raw response (``with_raw_response``) is parsed as its caller will parse it (the body is
    already read; the parse is cached); a raw stream, or a ``with_streaming_response`` one
    whose body is still unread, is recorded without its answer.
    """
    from openai import AsyncStream, Stream
    from openai._legacy_response import LegacyAPIResponse

    if isinstance(result, Stream):
        return _RecordedStream(genai, call, result)
    if isinstance(result, AsyncStream):
        return _RecordedAsyncStream(genai, call, result)
    try:
        if not call.generation.stream:
            raw = isinstance(result, LegacyAPIResponse)
            _record_response(call, result.parse() if raw else result)
    finally:
        call.end()
    return result


def _record_response(call: GenerationCall, response: Any) -> None:
    """A whole response: choice 0's text, every choice's finish reason, usage, model, id."""
    usage = getattr(response, "usage", None)
    choices = getattr(response, "choices", None)
    text = None
    reasons: list[str] = []
    if choices:
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None) or ""
        reasons = [ch.finish_reason for ch in choices if getattr(ch, "finish_reason", None)]
    call.finish(
        text,
        finish_reasons=reasons,
        input_tokens=getattr(usage, "prompt_tokens", None),
        output_tokens=getattr(usage, "completion_tokens", None) if choices else None,
        response_model=getattr(response, "model", None),
        response_id=getattr(response, "id", None),
    )


def _params_of(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The request's parameters, as sent (openai's NOT_GIVEN / omit sentinels left out)."""
    params: dict[str, Any] = {}
    for key, name in _PARAMS.items():
        value = kwargs.get(key)
        if isinstance(value, bool | int | float | str | list | tuple):
            params[name] = value
    return params


def _chunk_reader(call: GenerationCall) -> Callable[[Any], str | None]:
    """Per chunk: the content of choice 0; finish reasons, model, id and usage on the way."""
    gen = call.generation
    reasons: list[str] = []

    def text_of(chunk: Any) -> str | None:
        if gen.response_id is None:
            call.finish(response_model=chunk.model or None, response_id=chunk.id or None)
        usage = chunk.usage
        if usage is not None:  # include_usage: a last chunk with no choices
            call.finish(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
        choices = chunk.choices
        if not choices:
            return None
        for choice in choices:
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
                call.finish(finish_reasons=reasons)
        first = choices[0]
        if first.index != 0:
            return None
        delta = first.delta
        return delta.content if delta is not None else None

    return text_of


class _RecordedStream:
    """openai's ``Stream`` as the caller knows it, each chunk recorded on the way through.

    Anything else (``response``, ...) is the stream's own attribute.
    """

    def __init__(self, genai: GenAI, call: GenerationCall, stream: Any) -> None:
        self._call = call
        self._stream = stream
        self._started = False
        # GenAI.stream is a generator: close() runs its end (the call cancelled, ended).
        self._chunks = genai.stream(call, stream, _chunk_reader(call))

    def __iter__(self) -> _RecordedStream:
        return self

    def __next__(self) -> Any:
        self._started = True
        return next(self._chunks)

    def __enter__(self) -> _RecordedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading: the call ends (cancelled if the stream was not at its end)."""
        if self._started:
            self._chunks.close()
        else:  # never read: the generator's own end would never run
            self._call.cancel()
            self._call.end()
            self._started = True
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _RecordedAsyncStream:
    """openai's ``AsyncStream`` as the caller knows it, each chunk recorded on the way."""

    def __init__(self, genai: GenAI, call: GenerationCall, stream: Any) -> None:
        self._call = call
        self._stream = stream
        self._started = False
        self._chunks = genai.astream(call, stream, _chunk_reader(call))

    def __aiter__(self) -> _RecordedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        self._started = True
        return await self._chunks.__anext__()

    async def __aenter__(self) -> _RecordedAsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading: the call ends (cancelled if the stream was not at its end)."""
        if self._started:
            await self._chunks.aclose()
        else:
            self._call.cancel()
            self._call.end()
            self._started = True
        await self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
