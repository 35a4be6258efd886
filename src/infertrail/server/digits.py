"""``POST /v1/digits``: the 8x8 digits classifier behind a validated, audited HTTP endpoint.

The body is ``{"pixels": [64 numbers 0..16]}`` (row-major 8x8, the grey levels of
``sklearn.datasets.load_digits``). It is parsed and checked here rather than by FastAPI's
handler, so that every 422 names the offending element and what would be valid — wrong length,
out of range, NaN or infinite (Python's JSON parser accepts ``NaN`` and ``Infinity``), not a
number — and looks the same whichever app mounts the router. Every decision and every rejection
goes through the :class:`~infertrail.monitor.Monitor`, so it is traced, counted, audited and
sampled into the drift windows like the other endpoints.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from infertrail.config import Settings
from infertrail.models.digits import LABELS, N_PIXELS, PIXEL_MAX, DigitsModel
from infertrail.monitor import Monitor
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

__all__ = ["DIGITS_PATH", "DigitsRequest", "DigitsResponse", "digits_router", "pixel_problems"]

DIGITS_PATH = "/v1/digits"
#: Element problems listed one by one before the rest are summarised.
MAX_LISTED_PROBLEMS = 10
_EXPECTED = f"a number 0..{PIXEL_MAX}"
_SHAPE = f'{{"pixels": [{N_PIXELS} numbers 0..{PIXEL_MAX}]}}'


class DigitsRequest(BaseModel):
    """One 8x8 image, row-major, as grey levels 0..16 (as in scikit-learn's digits)."""

    # The schema states what pixel_problems checks: no other fields, each value in range.
    model_config = ConfigDict(extra="forbid")
    pixels: list[Annotated[float, Field(ge=0, le=PIXEL_MAX)]] = Field(
        min_length=N_PIXELS,
        max_length=N_PIXELS,
        description=f"{N_PIXELS} intensities, each a number 0..{PIXEL_MAX}, row by row.",
    )


class DigitsResponse(BaseModel):
    request_id: str
    trace_id: str
    label: str = Field(description="The predicted digit, '0'..'9'.")
    confidence: float = Field(description="Probability of the predicted digit.")
    probabilities: dict[str, float] = Field(description="Probability of every digit '0'..'9'.")
    model: ModelRef
    audit_seq: int | None = Field(
        None, description="Position of the decision's audit record in the log, once durable."
    )
    audit_receipt: AuditReceipt | None = Field(
        None,
        description="Proof that the audit log held the decision's record before it was "
        "answered, checkable with only the log's public key (docs/receipts.md).",
    )


def _problem(field: str, message: str, kind: str) -> dict[str, Any]:
    return {"field": field, "message": message, "type": kind}


def _key(key: str) -> str:
    """An unknown key as a field name: at most 64 characters, any lone surrogate escaped (the
    answer must stay encodable as UTF-8)."""
    return key[:64].encode("utf-8", "backslashreplace").decode("utf-8")


def _describe(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | bool) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _element_problem(i: int, v: Any) -> dict[str, Any] | None:
    field = f"pixels[{i}]"
    if isinstance(v, bool) or not isinstance(v, int | float):
        kind = "null" if v is None else type(v).__name__
        return _problem(field, f"{field} is {_describe(v)} ({kind}); expected {_EXPECTED}", "type")
    if isinstance(v, float) and math.isnan(v):
        return _problem(field, f"{field} is NaN; expected {_EXPECTED}", "nan")
    if isinstance(v, float) and math.isinf(v):
        return _problem(field, f"{field} is {_describe(v)}; expected {_EXPECTED}", "infinite")
    if not 0 <= v <= PIXEL_MAX:
        return _problem(field, f"{field} is {v!r}; expected {_EXPECTED}", "out_of_range")
    return None


def pixel_problems(body: Any) -> list[dict[str, Any]]:
    """Every problem with a parsed request body, each naming its field; empty when valid."""
    if not isinstance(body, dict):
        return [_problem("body", f"the body must be a JSON object {_SHAPE}", "type")]
    problems = [
        _problem(_key(k), f"{_key(k)!r} is not a field of this API; valid: pixels", "extra")
        for k in body
        if k != "pixels"
    ]
    if "pixels" not in body:
        return [*problems, _problem("pixels", f"pixels is required: {_SHAPE}", "missing")]
    pixels = body["pixels"]
    if not isinstance(pixels, list):
        kind = "null" if pixels is None else type(pixels).__name__
        message = f"pixels must be a list of {N_PIXELS} numbers 0..{PIXEL_MAX}, got {kind}"
        return [*problems, _problem("pixels", message, "type")]
    if len(pixels) != N_PIXELS:
        message = f"pixels has {len(pixels)} values; expected exactly {N_PIXELS} (8x8, row-major)"
        problems.append(_problem("pixels", message, "length"))
    bad = [p for i, v in enumerate(pixels) if (p := _element_problem(i, v)) is not None]
    problems += bad[:MAX_LISTED_PROBLEMS]
    if len(bad) > MAX_LISTED_PROBLEMS:
        more = len(bad) - MAX_LISTED_PROBLEMS
        problems.append(_problem("pixels", f"... and {more} more invalid values", "more"))
    return problems


def digits_router(monitor: Monitor, model: DigitsModel, settings: Settings) -> APIRouter:
    """The digits endpoint, observing every decision (and rejection) through ``monitor``."""
    router = APIRouter(tags=["digits"])

    refuse = functools.partial(reject, monitor, model.info, DIGITS_PATH)

    @router.post(
        DIGITS_PATH,
        response_model=DigitsResponse,
        responses=DECISION_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DigitsRequest.model_json_schema()}},
            }
        },
    )
    async def classify(request: Request) -> Any:
        """Classify one 8x8 digit: label, confidence and the probability of every digit."""
        rid = request_id_of(request)
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            msg = f"request body is not valid JSON: {exc}"
            return refuse(400, "invalid_json", msg, msg, rid)
        except RecursionError:
            # Python's parser recurses per level: thousands of nested arrays exhaust the stack.
            # (infertrail.instrument() refuses such bodies before any route sees them.)
            msg = "request body is not valid JSON: its arrays and objects nest too deeply"
            return refuse(400, "invalid_json", msg, msg, rid)
        problems = pixel_problems(body)
        if problems:
            return refuse(422, "invalid_input", problems, problems_summary(problems), rid)
        pixels = [float(v) for v in body["pixels"]]
        with monitor.observe(
            model.info, pixels, input_size=N_PIXELS, request_id=rid, endpoint=DIGITS_PATH
        ) as ev:
            p = model.predict(pixels)
            ev.label, ev.score, ev.confidence = p.label, p.confidence, p.confidence
            # every digit's probability: what label-free performance estimation reads
            ev.probabilities = dict(zip(LABELS, p.probabilities, strict=True))
        audit = await audit_fields(ev, settings)
        return {
            "request_id": rid,
            "trace_id": ev.trace_id_hex,
            "label": p.label,
            "confidence": p.confidence,
            "probabilities": ev.probabilities,
            "model": model_ref(model.info),
            **audit,
        }

    return router
