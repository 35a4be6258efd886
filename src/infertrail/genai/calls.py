"""Generations through a Monitor: one call, one event, one span, whether streamed or not.

:class:`GenAI` is the API for any generate function (the ``openai`` wrapper,
:mod:`infertrail.genai.openai`, is built on it)::

    genai = GenAI(runtime.monitor, provider="openai", server_address="api.example.com")
    with genai.chat("gpt-4o-mini", messages, params={"temperature": 0.2}) as call:
        answer = client_call(...)
        call.finish(answer.text, finish_reasons=["stop"], input_tokens=12, output_tokens=40)

A streamed call ends when its stream does: :meth:`GenAI.stream` (or :meth:`GenAI.astream`)
wraps the stream, records each content chunk (:meth:`GenerationCall.token`: a clock read and
a list append, well under the 2 us a token may cost) and ends the call on exhaustion, on an
error, or when the consumer stops reading (``close()``, a client disconnect): the call is then
recorded as cancelled, with the tokens received so far.

At the end the event goes to the Monitor's sinks like any inference: the audit record (prompt
and answer as keyed digests, runtime/audit.py), cost per token, drift of prompt lengths and
embeddings, the GenAI metrics. Token counts come from the response's usage when the caller
gives them, else from ``count_tokens`` (a tokenizer), else (streams) from the chunk count,
and ``usage_source`` says which.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind

from infertrail.events import (
    GENAI_REQUEST_PARAMS,
    AttributeValue,
    Generation,
    InferenceEvent,
    ModelInfo,
    message_text,
    prompt_text,
)
from infertrail.monitor import ActiveInference, Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry.genai import GenAIConventions
from infertrail.telemetry.genai import conventions as genai_conventions
from infertrail.telemetry.redaction import redact_text

__all__ = ["GenAI", "GenerationCall", "check_messages"]

T = TypeVar("T")
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
#: The version recorded for a model known only by name (a remote provider's).
REMOTE_VERSION = "remote"


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """Chat messages as a list of dicts with a known ``role``; ValueError naming the fault.

    A plain string is a completion prompt and becomes one user message.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, bytes) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} objects")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be an object, got {type(m).__name__}")
        role = m.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}")
        checked.append(dict(m))
    return checked


def _check_params(params: Mapping[str, Any] | None) -> dict[str, AttributeValue | tuple[str, ...]]:
    if not params:
        return {}
    out: dict[str, AttributeValue | tuple[str, ...]] = {}
    for name, value in params.items():
        if name not in GENAI_REQUEST_PARAMS:
            raise ValueError(
                f"unknown generation parameter {name!r}; valid: {sorted(GENAI_REQUEST_PARAMS)}"
            )
        if value is None:
            continue
        if isinstance(value, str) and name == "stop_sequences":
            value = (value,)
        if isinstance(value, list | tuple):
            value = tuple(str(v) for v in value)
        elif not isinstance(value, bool | int | float | str):
            raise ValueError(f"parameter {name} must be a number or string, got {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {name} must be finite, got {value!r}")
        out[name] = value
    return out


class GenerationCall:
    """One generation in progress; end it with :meth:`finish` + :meth:`end` (or a ``with``)."""

    __slots__ = ("_active", "_genai", "_parts", "event", "generation")

    def __init__(self, genai: GenAI, active: ActiveInference, generation: Generation) -> None:
        self._genai = genai
        self._active = active
        self._parts: list[str] = []
        self.event: InferenceEvent = active.event
        self.generation = generation
        generation.started_ns = active.started_ns

    def token(self, text: str) -> None:
        """Record one content chunk of a stream, as it arrives (the hot path of a stream)."""
        now = time.perf_counter_ns()
        gen = self.generation
        if not gen.first_token_ns:
            gen.first_token_ns = now
        gen.last_token_ns = now
        gen.chunks += 1
        self._parts.append(text)

    def finish(
        self,
        text: str | None = None,
        *,
        finish_reasons: Iterable[str] = (),
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
    ) -> None:
        """What the answer was: its text (default: the streamed chunks), why it stopped, usage.

        Token counts given here are the response's own (``usage_source`` "response").
        """
        gen = self.generation
        if text is not None:
            gen.response_text = text
            if not gen.stream:
                gen.chunks = 1
        if finish_reasons:
            gen.finish_reasons = tuple(str(r) for r in finish_reasons)
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if input_tokens is not None or output_tokens is not None:
            gen.input_tokens, gen.output_tokens = input_tokens, output_tokens
            gen.usage_source = "response"
        if response_model is not None:
            gen.response_model = response_model
        if response_id is not None:
            gen.response_id = response_id

    def cancel(self) -> None:
        """The consumer stopped reading before the end: recorded with the tokens so far."""
        self.generation.cancelled = True

    def fail(self, exc: BaseException) -> None:
        """The call failed with ``exc`` (error status, its class as ``error.type``)."""
        self._active.fail(exc)

    def end(self) -> None:
        """Complete the usage, attach opt-in content, end the span, send the event on. Once."""
        gen, ev = self.generation, self.event
        if gen.response_text is None and self._parts:
            gen.response_text = "".join(self._parts)
        self._genai._complete_usage(ev, gen)
        ev.tokens_in, ev.tokens_out = gen.input_tokens, gen.output_tokens
        conv = genai_conventions()
        if conv.capture != "off":
            self._genai._attach_content(self._active, conv)
        self._active.end()


class GenAI:
    """Generations of one provider recorded through ``monitor`` (see the module doc).

    ``provider``: ``gen_ai.provider.name`` (``openai``, ``infertrail``, ...); ``server_address``
    and ``server_port`` name a remote model server; ``span_kind`` is CLIENT for a remote
    model, INTERNAL for one in this process. ``count_tokens`` counts tokens where the response
    gives no usage. ``pseudonymize`` maps a subject id to its pseudonym for opt-in content
    (runtime: the audit trail's mapping table).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        provider: str,
        server_address: str | None = None,
        server_port: int | None = None,
        span_kind: SpanKind = SpanKind.CLIENT,
        count_tokens: Callable[[str], int] | None = None,
        pseudonymize: Callable[[str], str] | None = None,
        content_max_chars: int = 4096,
    ) -> None:
        if not provider or not isinstance(provider, str):
            raise ValueError(f"provider must be a non-empty string, got {provider!r}")
        if server_port is not None and not 0 < server_port < 65536:
            raise ValueError(f"server_port must be in 1..65535, got {server_port}")
        if content_max_chars < 0:
            raise ValueError(f"content_max_chars must be >= 0, got {content_max_chars}")
        self.monitor = monitor
        self.provider = provider
        self.server_address = server_address
        self.server_port = server_port
        self.span_kind = span_kind
        self.count_tokens = count_tokens
        self.pseudonymize = pseudonymize
        self.content_max_chars = content_max_chars

    # -- starting a call -------------------------------------------------------------------
    def begin(
        self,
        model: ModelInfo | str,
        messages: Any,
        *,
        operation: str = "chat",
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
        subject: str | None = None,
        tenant: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
        span: bool = True,
    ) -> GenerationCall:
        """Start a call that ends later (:meth:`GenerationCall.end`); see :meth:`chat`.

        ``model``: the served artifact's identity, or the name a remote provider knows it by.
        The span is not made current: a stream's end runs where its consumer is.
        ``span=False``: no span of its own, the event takes the current span's ids (a call
        another instrumentation traces, :meth:`infertrail.monitor.Monitor.begin`).
        """
        checked = check_messages(messages) if operation != "embeddings" else messages
        info = model if isinstance(model, ModelInfo) else ModelInfo(model, REMOTE_VERSION, "")
        if not info.name:
            raise ValueError("model must name the model asked for")
        gen = Generation(
            operation=operation,
            provider=self.provider,
            request_model=info.name,
            params=_check_params(params),
            stream=stream,
            server_address=self.server_address,
            server_port=self.server_port,
            external=not span,
        )
        active = self.monitor.begin(
            info,
            checked,
            input_size=len(prompt_text(checked)) if operation != "embeddings" else None,
            subject=subject,
            tenant=tenant,
            request_id=request_id,
            endpoint=endpoint,
            generation=gen,
            span_kind=self.span_kind,
            attach=not stream,
            span=span,
        )
        return GenerationCall(self, active, gen)

    @contextmanager
    def chat(
        self, model: ModelInfo | str, messages: Any, **kwargs: Any
    ) -> Iterator[GenerationCall]:
        """A call as a ``with`` block (its span current inside); an exception fails it, a
        cancelled task (the client went away) records it as cancelled."""
        call = self.begin(model, messages, **kwargs)
        try:
            yield call
        except asyncio.CancelledError:  # the caller went away (a client disconnect)
            call.cancel()
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            call.end()

    # -- streams ---------------------------------------------------------------------------
    def stream(
        self, call: GenerationCall, chunks: Iterable[T], text_of: Callable[[T], str | None]
    ) -> Generator[T, None, None]:
        """Pass ``chunks`` through, recording each one's text; end ``call`` with the stream."""
        completed = False
        try:
            for chunk in chunks:
                text = text_of(chunk)
                if text:
                    call.token(text)
                yield chunk
            completed = True
        except GeneratorExit:
            call.cancel()
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            _end_stream(call, completed)

    async def astream(
        self, call: GenerationCall, chunks: AsyncIterator[T], text_of: Callable[[T], str | None]
    ) -> AsyncGenerator[T, None]:
        """:meth:`stream` for an async stream; a cancelled task counts as a cancelled call."""
        completed = False
        try:
            async for chunk in chunks:
                text = text_of(chunk)
                if text:
                    call.token(text)
                yield chunk
            completed = True
        except GeneratorExit:
            call.cancel()
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                call.cancel()
            else:
                call.fail(exc)
            raise
        finally:
            _end_stream(call, completed)

    # -- at the end ------------------------------------------------------------------------
    def _complete_usage(self, ev: InferenceEvent, gen: Generation) -> None:
        """Token counts the response did not give: from the tokenizer, else the chunk count."""
        if gen.input_tokens is not None and gen.output_tokens is not None:
            return
        count = self.count_tokens
        if count is not None:
            if gen.input_tokens is None:
                gen.input_tokens = count(_all_text(ev.inputs))
            if gen.output_tokens is None:
                gen.output_tokens = count(gen.response_text or "")
            gen.usage_source = gen.usage_source or "tokenizer"
        elif gen.output_tokens is None and gen.stream:
            gen.output_tokens = gen.chunks
            gen.usage_source = gen.usage_source or "chunks"

    def _attach_content(self, active: ActiveInference, conv: GenAIConventions) -> None:
        """Opt-in message content, redacted, on the span and/or its details event."""
        ev, gen = active.event, active.event.generation
        assert gen is not None
        pseudonym = None
        if ev.subject and self.pseudonymize is not None:
            try:
                pseudonym = self.pseudonymize(ev.subject)
            except Exception:  # an erased subject: the text keeps REDACTED in its place
                pseudonym = None

        def clean(text: str) -> str:
            return redact_text(
                text, subject=ev.subject, pseudonym=pseudonym, max_chars=self.content_max_chars
            )

        inputs = [
            {
                "role": m.get("role"),
                "parts": [{"type": "text", "content": clean(message_text(m.get("content")))}],
            }
            for m in ev.inputs or ()
            if isinstance(m, Mapping)
        ]
        outputs = [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": clean(gen.response_text or "")}],
                "finish_reason": gen.finish_reasons[0] if gen.finish_reasons else "error",
            }
        ]
        attrs = {
            c.GENAI_INPUT_MESSAGES: json.dumps(inputs, ensure_ascii=False),
            c.GENAI_OUTPUT_MESSAGES: json.dumps(outputs, ensure_ascii=False),
        }
        if conv.capture in ("span", "span_and_event"):
            active.span.set_attributes(attrs)
        if conv.capture in ("event", "span_and_event"):
            active.span.add_event(c.EVENT_NAME_GENAI_OPERATION_DETAILS, attrs)


def _all_text(messages: Any) -> str:
    """Every message's text, for counting the prompt's tokens with a tokenizer."""
    if isinstance(messages, str):
        return messages
    return "\n".join(
        message_text(m.get("content")) for m in messages or () if isinstance(m, Mapping)
    )


def _end_stream(call: GenerationCall, completed: bool) -> None:
    """End a stream's call; one left unfinished without an error or close() (abandoned, then
    garbage-collected) is recorded as cancelled too."""
    if not completed and not call.generation.cancelled and call.event.status == "ok":
        call.cancel()
    call.end()
