"""``POST /v1/sentiment``: the sentiment model behind a validated, audited HTTP endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from infertrail.config import Settings
from infertrail.models.sentiment import SentimentModel
from infertrail.monitor import Monitor
from infertrail.web.responses import (
    DECISION_ERRORS,
    ModelRef,
    durable_audit_seq,
    model_ref,
    reject,
    request_id_of,
)

__all__ = ["SENTIMENT_PATH", "SentimentRequest", "SentimentResponse", "sentiment_router"]

SENTIMENT_PATH = "/v1/sentiment"


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


def sentiment_router(monitor: Monitor, model: SentimentModel, settings: Settings) -> APIRouter:
    """The sentiment endpoint, observing every decision (and rejection) through ``monitor``."""
    router = APIRouter(tags=["sentiment"])

    @router.post(SENTIMENT_PATH, response_model=SentimentResponse, responses=DECISION_ERRORS)
    async def sentiment(body: SentimentRequest, request: Request) -> Any:
        """Classify one text as negative or positive."""
        rid = request_id_of(request)
        text = body.text
        limit = settings.max_text_chars
        problem = None
        if not text.strip():
            problem = "text must contain at least one non-whitespace character"
        elif len(text) > limit:
            problem = f"text has {len(text)} characters; the limit is {limit}"
        if problem:
            detail = [{"field": "text", "message": problem, "type": "value_error"}]
            return reject(
                monitor, model.info, SENTIMENT_PATH, 422, "invalid_input", detail, problem, rid
            )
        with monitor.observe(
            model.info, text, input_size=len(text), request_id=rid, endpoint=SENTIMENT_PATH
        ) as ev:
            p = model.predict(text)
            ev.label, ev.score, ev.confidence = p.label, p.score, p.confidence
        return {
            "audit_seq": await durable_audit_seq(ev, settings),
            "request_id": rid,
            "trace_id": ev.trace_id_hex,
            "label": p.label,
            "score": p.score,
            "confidence": p.confidence,
            "model": model_ref(model.info),
        }

    return router
