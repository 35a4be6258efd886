"""``POST /v1/chat/completions``: the demo LLM behind an OpenAI-compatible, audited endpoint.

The official ``openai`` client (and any OpenAI-compatible one) talks to it unchanged, with
``base_url`` pointing at the service and model ``demo-llm``:

- non-streaming: a ``chat.completion`` object with ``usage``, plus the extra field
  ``audit_receipt`` (the ``openai`` client keeps unknown fields: ``completion.audit_receipt``);
- streaming (``"stream": true``): server-sent events, one ``chat.completion.chunk`` per
  ``data:`` line, the first carrying the assistant role, then the content, then one with the
  ``finish_reason``; with ``stream_options.include_usage`` a last chunk with empty ``choices``
  and the ``usage``, as OpenAI sends it; then ``data: [DONE]``. The audit receipt is the
  ``audit_receipt`` field of the **last chunk before** ``[DONE]``: the usage chunk when usage
  was asked for, else the ``finish_reason`` chunk. A streamed answer reaches the caller before
  its record is durable (the record holds the whole answer, so it can only be written at the
  end); when the record then cannot be written, the stream ends with an ``error`` event
  instead of the receipt and without ``[DONE]``.

Every refusal is answered in OpenAI's error shape, ``{"error": {"message", "type", "param",
"code"}}``, so the ``openai`` client raises the matching exception class with the message
(400 ``BadRequestError``, 404 ``NotFoundError``); it is counted against the model like the
other routes' rejections, never recorded as a decision. The body's ``user`` is the end user:
the event's subject, pseudonymized by the audit trail before anything is stored. No tenant is
taken from the request, like the other routes.

Each call is one GenAI event (:class:`~infertrail.genai.GenAI`, provider ``infertrail``, an
INTERNAL span: the model runs in this process) whose token counts are the model's own. The
model runs off the event loop, one ``next()`` at a time; a client that disconnects mid-stream
stops the generation at once (Starlette does not close a response's iterator, so the response
does) and the call is recorded as cancelled with the tokens generated so far.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry.trace import SpanKind
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from infertrail.audit.receipts import AuditRefusedError, AuditUnavailableError
from infertrail.config import Settings
from infertrail.genai import GenAI, GenerationCall
from infertrail.models.llm import MAX_STOP, NAME, DemoLLM, Stream
from infertrail.monitor import Monitor
from infertrail.web.responses import durable_audit_receipt, request_id_of

__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "ChatCompletionRequest",
    "Refusal",
    "llm_router",
]

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
#: The end user's id (``user``): what the audit trail pseudonymizes, so bounded like one.
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}$"
_USER_RULE = (
    "1-128 characters of letters, digits, '.', '_', ':', '@' or '-', starting with a letter "
    "or digit"
)
_log = logging.getLogger("infertrail.server.llm")


class TextPart(BaseModel):
    """A text content part (``{"type": "text", "text": ...}``); the model reads no others."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[TextPart] = Field(
        description="A string, or text parts, joined by newlines."
    )

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        if isinstance(content, list):
            for i, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise ValueError(
                        f"part {i} is not a text part: the demo LLM reads only "
                        "{'type': 'text', 'text': ...} parts"
                    )
        elif not isinstance(content, str):
            raise ValueError(
                f"must be a string or a list of text parts, got {type(content).__name__}"
            )
        return content

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request the demo LLM implements."""

    model_config = ConfigDict(extra="forbid")
    model: StrictStr = Field(description=f"{NAME!r}, the only model served here.")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1, description="Deprecated by OpenAI.")
    max_completion_tokens: StrictInt | None = Field(
        None, ge=1, description="Default: what the context leaves after the prompt."
    )
    temperature: StrictFloat | None = Field(None, ge=0, le=2, description="Default 1.")
    top_p: StrictFloat | None = Field(None, gt=0, le=1, description="Default 1.")
    n: StrictInt | None = Field(None, description="Only 1: one choice per request.")
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = Field(
        None, description=f"Up to {MAX_STOP} non-empty strings."
    )
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    user: StrictStr | None = Field(
        None,
        description=f"The end user's id ({_USER_RULE}): the audit subject, stored only "
        "pseudonymized.",
        pattern=USER_PATTERN,
    )

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n is not None and n != 1:
            raise ValueError(f"n must be 1: the demo LLM generates one choice per request, got {n}")
        return n

    @field_validator("stop", mode="before")
    @classmethod
    def _stops(cls, stop: Any) -> Any:
        stops = [stop] if isinstance(stop, str) else stop
        if stops is None:
            return None
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError(f"must be a non-empty string or a list of up to {MAX_STOP} of them")
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, got {len(stops)}")
        return stop


class Refusal(Exception):
    """A request answered with an OpenAI error instead of a completion: OpenAI's shape,
    ``{"error": {"message", "type", "param", "code"}}``, which its clients turn into an
    exception carrying ``message``."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def error(self) -> dict[str, Any]:
        """The body's ``error`` object."""
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"message": self.message, "type": kind, "param": self.param, "code": self.code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error()}, self.status)


def _param(loc: Sequence[int | str]) -> str:
    """A pydantic location as OpenAI names a parameter: ``messages[0].role``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("str", "list[TextPart]", "list[str]"):  # union members
            out += f".{part}" if out else str(part)
    return out


def _refusal(exc: ValidationError) -> Refusal:
    """The first problem of an invalid body, named as OpenAI would (never echoing ``user``)."""
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return Refusal(400, "We could not parse the JSON body of your request: it is not JSON.")
    e = min(errors, key=lambda e: len(e["loc"]))  # a union's members report several
    param = _param(e["loc"])
    if e["type"] == "extra_forbidden":
        return Refusal(400, f"Unrecognized request argument supplied: {param}", param=param)
    if e["type"] == "missing":
        return Refusal(400, f"Missing required parameter: '{param}'.", param=param)
    if param == "user":
        got = e.get("input")
        size = f"{len(got)} characters" if isinstance(got, str) else type(got).__name__
        return Refusal(400, f"user must be {_USER_RULE}; got {size}", param=param)
    message = str(e.get("ctx", {}).get("error", "")) or e["msg"]
    if e["type"] != "value_error":
        message = f"{message}, got {json.dumps(e.get('input'))[:60]}"
    return Refusal(400, f"Invalid '{param}': {message}.", param=param, code="invalid_value")


class _Checked:
    """A valid request: the model's messages and sampling arguments, the call's parameters."""

    def __init__(self, body: ChatCompletionRequest, model: DemoLLM) -> None:
        if body.model != NAME:
            raise Refusal(
                404,
                f"The model `{body.model[:100]}` does not exist: this service serves {NAME!r}.",
                param="model",
                code="model_not_found",
            )
        if body.max_tokens is not None and body.max_completion_tokens is not None:
            raise Refusal(
                400,
                "Give max_tokens or max_completion_tokens, not both (max_tokens is deprecated).",
                param="max_tokens",
            )
        if body.stream_options is not None and not body.stream:
            raise Refusal(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        self.messages = [{"role": m.role, "content": m.text} for m in body.messages]
        prompt = model.prompt_tokens(self.messages)
        asked = body.max_completion_tokens or body.max_tokens
        if prompt + (asked or 1) > model.context:
            wanted = (
                f"you requested {prompt + asked} tokens ({prompt} in the messages, "
                f"{asked} in the completion). Please reduce the length of the messages or "
                "completion."
                if asked
                else f"your messages resulted in {prompt} tokens, which leaves no room for a "
                "completion. Please reduce the length of the messages."
            )
            raise Refusal(
                400,
                f"This model's maximum context length is {model.context} tokens. However, "
                + wanted,
                param="messages",
                code="context_length_exceeded",
            )
        self.sampling: dict[str, Any] = {
            "max_tokens": asked or model.context - prompt,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "seed": body.seed,
            "stop": body.stop,
        }
        stops = [body.stop] if isinstance(body.stop, str) else body.stop
        given = {
            "max_tokens": asked,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "seed": body.seed,
            "stop_sequences": tuple(stops) if stops else None,
            "choice.count": body.n,
        }
        self.params = {k: v for k, v in given.items() if v is not None}
        self.stream = bool(body.stream)
        self.include_usage = body.stream_options is not None and body.stream_options.include_usage
        self.user = body.user


def _usage(stream: Stream) -> dict[str, int]:
    return {
        "prompt_tokens": stream.prompt_tokens,
        "completion_tokens": stream.completion_tokens,
        "total_tokens": stream.prompt_tokens + stream.completion_tokens,
    }


class _Streamed:
    """One streamed completion: the model's :class:`Stream` through :meth:`GenAI.stream`.

    :meth:`next` runs in a worker thread, one at a time; :meth:`close` runs on the event loop
    once no ``next()`` is running (anyio waits for a worker thread before it delivers a
    cancellation) and ends the call exactly once: a stream not read to its end is recorded as
    cancelled, with the model's token counts so far, and the model's generator is closed.
    """

    def __init__(
        self, genai: GenAI, call: GenerationCall, stream: Stream, finish: Callable[[], None]
    ) -> None:
        self.call = call
        self.stream = stream
        self._finish = finish  # the outcome and usage, set before GenAI.stream ends the call
        self._pieces = self._run()
        self._chunks = genai.stream(call, self._pieces, text_of=str)
        self.ended = False  # the call was ended (exhausted, failed or closed)

    def _run(self) -> Generator[str, None, None]:
        yield from self.stream  # on close(), ``yield from`` closes the Stream too
        self._finish()

    def next(self) -> str | None:
        """The next piece of text, None at the end (the call has then ended)."""
        try:
            piece = next(self._chunks, None)
        except BaseException:
            self.ended = True
            raise
        if piece is None:
            self.ended = True
        return piece

    def close(self) -> None:
        if self.ended:
            return
        self.ended = True
        s = self.stream
        self.call.finish(input_tokens=s.prompt_tokens, output_tokens=s.completion_tokens)
        if inspect.getgeneratorstate(self._chunks) == inspect.GEN_CREATED:
            # Never started: GenAI.stream's own cancel and end would not run.
            self.call.cancel()
            self.call.end()
        self._chunks.close()
        self._pieces.close()


class _EventStream(StreamingResponse):
    """Server-sent events whose generation is closed however the response ends."""

    def __init__(self, streamed: _Streamed, content: AsyncIterator[bytes]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._streamed.close()


def _sse(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def llm_router(
    monitor: Monitor,
    model: DemoLLM,
    settings: Settings,
    *,
    pseudonymize: Callable[[str], str] | None = None,
) -> APIRouter:
    """The chat completions endpoint of ``model``, every call observed through ``monitor``.

    ``pseudonymize``: the audit trail's subject pseudonyms, for opt-in message content.
    """
    router = APIRouter(tags=["llm"])
    genai = GenAI(
        monitor,
        provider="infertrail",
        span_kind=SpanKind.INTERNAL,
        count_tokens=model.count_tokens,
        pseudonymize=pseudonymize,
    )
    fingerprint = f"fp_{model.info.sha256[:12]}"

    def refuse(rid: str, r: Refusal) -> JSONResponse:
        telemetry = f"{r.param or 'body'}: {r.code or 'invalid_request'}"  # no values
        monitor.record_rejection(
            model.info,
            error_type="invalid_input" if r.status == 400 else "not_found",
            message=telemetry,
            request_id=rid,
            endpoint=CHAT_COMPLETIONS_PATH,
        )
        return r.response()

    async def receipt_of(call: GenerationCall) -> dict[str, Any] | None:
        """The call's audit receipt; a Refusal (503/409) when its record was not written."""
        try:
            receipt = await durable_audit_receipt(call.event, settings)
        except AuditUnavailableError as exc:
            _log.error("request %s: completion not recorded: %s", call.event.request_id, exc)
            raise Refusal(
                503,
                "the completion could not be recorded in the audit log, so none is returned",
                code="audit_unavailable",
            ) from exc
        except AuditRefusedError as exc:
            raise Refusal(409, str(exc), param="user", code=exc.kind) from exc
        return None if receipt is None else receipt.to_dict()

    def head(cid: str, created: int) -> dict[str, Any]:
        return {"id": cid, "created": created, "model": NAME, "system_fingerprint": fingerprint}

    @router.post(
        CHAT_COMPLETIONS_PATH,
        responses={
            200: {
                "description": "A chat.completion object, or with stream=true server-sent "
                "chat.completion.chunk events ending with [DONE]; audit_receipt beside them.",
                "content": {"text/event-stream": {}},
            },
            400: {"description": "Invalid parameters (OpenAI's error shape)."},
            404: {"description": "Unknown model (OpenAI's error shape)."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": ChatCompletionRequest.model_json_schema()}
                },
            }
        },
    )
    async def chat_completions(request: Request) -> Any:
        """Complete a chat with the demo LLM (OpenAI's chat completions API)."""
        rid = request_id_of(request)
        try:
            body = ChatCompletionRequest.model_validate_json(await request.body())
            checked = _Checked(body, model)
        except ValidationError as exc:
            return refuse(rid, _refusal(exc))
        except Refusal as r:
            return refuse(rid, r)
        stream = model.stream(checked.messages, **checked.sampling)
        cid, created = f"chatcmpl-{rid}", int(time.time())
        begin: dict[str, Any] = {
            "params": checked.params,
            "subject": checked.user,
            "request_id": rid,
            "endpoint": CHAT_COMPLETIONS_PATH,
        }
        if not checked.stream:
            with genai.chat(model.info, checked.messages, **begin) as call:
                text = await run_in_threadpool(lambda: "".join(stream))
                reason = stream.finish_reason or "stop"
                call.finish(
                    text,
                    finish_reasons=[reason],
                    input_tokens=stream.prompt_tokens,
                    output_tokens=stream.completion_tokens,
                    response_model=NAME,
                    response_id=cid,
                )
            try:
                receipt = await receipt_of(call)
            except Refusal as r:
                return r.response()
            message = {"role": "assistant", "content": text, "refusal": None}
            return JSONResponse(
                {
                    **head(cid, created),
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
                    ],
                    "usage": _usage(stream),
                    "audit_receipt": receipt,
                }
            )

        call = genai.begin(model.info, checked.messages, stream=True, **begin)

        def finish() -> None:
            call.finish(
                finish_reasons=[stream.finish_reason or "stop"],
                input_tokens=stream.prompt_tokens,
                output_tokens=stream.completion_tokens,
                response_model=NAME,
                response_id=cid,
            )

        streamed = _Streamed(genai, call, stream, finish)
        usage_field = {"usage": None} if checked.include_usage else {}

        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {
                **head(cid, created),
                "object": "chat.completion.chunk",
                "choices": [choice],
                **usage_field,
            }

        async def events() -> AsyncIterator[bytes]:
            yield _sse(chunk({"role": "assistant", "content": ""}))
            while True:
                try:
                    piece = await run_in_threadpool(streamed.next)
                except Exception as exc:  # the call is recorded as failed
                    _log.error("request %s: generation failed: %r", rid, exc)
                    yield _sse({"error": Refusal(500, "the generation failed").error()})
                    return
                if piece is None:
                    break
                yield _sse(chunk({"content": piece}))
            try:
                receipt = {"audit_receipt": await receipt_of(call)}
            except Refusal as r:
                yield _sse({"error": r.error()})
                return
            last = chunk({}, stream.finish_reason or "stop")
            if checked.include_usage:
                yield _sse(last)
                last = {**head(cid, created), "object": "chat.completion.chunk", "choices": []}
                last["usage"] = _usage(stream)
            yield _sse({**last, **receipt})
            yield b"data: [DONE]\n\n"

        return _EventStream(streamed, events())

    return router
