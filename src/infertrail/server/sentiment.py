"""``POST /v1/sentiment``: the sentiment model behind a validated, audited HTTP endpoint.

The body is validated here, not by FastAPI's handler, so that every rejection is counted
against the sentiment model and looks the same whichever app mounts the router; the OpenAPI
schema states the same rules (1 to ``max_text_chars`` characters, at least one that is not
whitespace).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from infertrail.config import Settings
from infertrail.models.sentiment import SentimentModel
from infertrail.monitor import Monitor
from infertrail.web.handlers import validation_problems
from infertrail.web.responses import (
    DECISION_ERRORS,
    AuditReceipt,
    ModelRef,
    audit_fields,
    model_ref,
    problems_summary,
    reject,
    request_id_of,
)

__all__ = [
    "CONTENT_PATTERN",
    "SENTIMENT_PATH",
    "SentimentRequest",
    "SentimentResponse",
    "request_schema",
    "sentiment_router",
]

SENTIMENT_PATH = "/v1/sentiment"
#: A text must hold one character that is not whitespace. Whitespace is spelled out (what
#: Python's str.isspace() calls whitespace) because ECMA's ``\s``, which OpenAPI's patterns
#: use, is another set: the schema and this check apply one rule.
CONTENT_PATTERN = (
    r"[^\t\n\v\f\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
    r"\u205f\u3000]"
)
_CONTENT = re.compile(CONTENT_PATTERN)


class SentimentRequest(BaseModel):
    """One text to classify."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(description="The text to classify (1 to max_text_chars characters).")


class SentimentResponse(BaseModel):
    """The label of one text, with the decision's ids and audit position."""

    request_id: str
    trace_id: str
    label: str = Field(description="negative or positive")
    score: float = Field(description="Probability that the text is positive.")
    confidence: float = Field(description="Probability of the predicted label.")
    model: ModelRef
    audit_seq: int | None = Field(
        None, description="Position of the decision's audit record in the log, once durable."
    )
    audit_receipt: AuditReceipt | None = Field(
        None,
        description="Proof that the audit log held the decision's record before it was "
        "answered, checkable with only the log's public key (docs/receipts.md).",
    )


def request_schema(max_chars: int) -> dict[str, Any]:
    """The JSON schema of a request body: :class:`SentimentRequest` and its text's rules."""
    schema = SentimentRequest.model_json_schema()
    schema["properties"]["text"].update(minLength=1, maxLength=max_chars, pattern=CONTENT_PATTERN)
    return schema


def text_problem(text: str, max_chars: int) -> str | None:
    """What is wrong with a text (never quoting it: it is personal data); None if nothing."""
    if _CONTENT.search(text) is None:
        return "text must contain at least one non-whitespace character"
    if len(text) > max_chars:
        return f"text has {len(text)} characters; the limit is {max_chars}"
    return None


def sentiment_router(monitor: Monitor, model: SentimentModel, settings: Settings) -> APIRouter:
    """The sentiment endpoint, observing every decision (and rejection) through ``monitor``."""
    router = APIRouter(tags=["sentiment"])
    refuse = functools.partial(reject, monitor, model.info, SENTIMENT_PATH)
    limit = settings.max_text_chars

    @router.post(
        SENTIMENT_PATH,
        response_model=SentimentResponse,
        responses=DECISION_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema(limit)}},
            }
        },
    )
    async def sentiment(request: Request) -> Any:
        """Classify one text as negative or positive."""
        rid = request_id_of(request)
        try:
            body = SentimentRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            if any(e["type"] == "json_invalid" for e in errors):
                msg = "request body is not valid JSON: " + "; ".join(
                    str(e.get("ctx", {}).get("error", e["msg"])) for e in errors
                )
                return refuse(400, "invalid_json", msg, msg, rid)
            detail = validation_problems([dict(e) for e in errors])
            return refuse(422, "invalid_input", detail, problems_summary(detail), rid)
        text = body.text
        problem = text_problem(text, limit)
        if problem:
            detail = [{"field": "text", "message": problem, "type": "value_error"}]
            return refuse(422, "invalid_input", detail, problem, rid)
        with monitor.observe(
            model.info, text, input_size=len(text), request_id=rid, endpoint=SENTIMENT_PATH
        ) as ev:
            p = model.predict(text)
            ev.label, ev.score, ev.confidence = p.label, p.score, p.confidence
        return {
            **await audit_fields(ev, settings),
            "request_id": rid,
            "trace_id": ev.trace_id_hex,
            "label": p.label,
            "score": p.score,
            "confidence": p.confidence,
            "model": model_ref(model.info),
        }

    return router
