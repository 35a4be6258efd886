"""``POST /v1/credit/score``: the credit model behind a validated, audited HTTP endpoint.

The request is one applicant id and the 20 attributes of german.doc under readable names (the
table is in docs/credit-model.md). The body is validated here, not by FastAPI's handler, so that
every 4xx names the field *and* what would be valid, and looks the same whichever app mounts the
router. The decision, score, interval, confidence and explanation are set on the
:class:`~infertrail.events.InferenceEvent`, so the audit record carries them; the applicant id is
only the event's ``subject``, which the audit trail pseudonymizes before anything is stored.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    create_model,
)

from infertrail.config import Settings
from infertrail.models.credit import ATTRIBUTE_NAMES, ATTRIBUTES, Attribute, CreditModel
from infertrail.models.reason_codes import REASON_CODES_VERSION
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

__all__ = ["CREDIT_SCORE_PATH", "CreditApplication", "CreditScoreResponse", "credit_router"]

CREDIT_SCORE_PATH = "/v1/credit/score"
APPLICANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}$"
_APPLICANT_ID_RULE = (
    "1-128 characters of letters, digits, '.', '_', ':', '@' or '-', starting with a letter "
    "or digit"
)
_FIELDS = ("applicant_id", *ATTRIBUTE_NAMES)


def _integral(value: Any) -> Any:
    """A float with no fraction as the integer it is (JSON Schema's integer: ``54.0`` is 54).

    Anything else is left for the strict integer check to refuse (``54.5``, ``true``, ``"54"``).
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An attribute's number: a JSON integer, also written with a zero fraction (``54.0``).
Integral = Annotated[StrictInt, BeforeValidator(_integral)]


def _field(number: int, a: Attribute) -> tuple[Any, Any]:
    description = f"german.doc attribute {number}, {a.label}: {a.allowed()}."
    if a.categorical:
        # A Literal over the codes: the OpenAPI schema lists them as an enum.
        return Literal.__getitem__(a.codes), Field(description=description)
    return Integral, Field(ge=a.low, le=a.high, description=description)


CreditApplication: type[BaseModel] = create_model(
    "CreditApplication",
    __config__=ConfigDict(extra="forbid", strict=True),
    __doc__="An applicant id and the 20 attributes of the German credit data.",
    applicant_id=(
        Annotated[str, StringConstraints(pattern=APPLICANT_ID_PATTERN)],
        Field(description=f"The applicant's id ({_APPLICANT_ID_RULE}); stored only pseudonymized."),
    ),
    **{a.name: _field(n, a) for n, a in enumerate(ATTRIBUTES, start=1)},  # type: ignore[call-overload]
)


class ReasonCode(BaseModel):
    code: str = Field(description="Stable reason code, e.g. CHK-A11.")
    text: str = Field(description="Consumer-facing reason text.")
    contribution: float = Field(description="The attribute's attribution (log-odds, < 0).")


class Explanation(BaseModel):
    method: str
    output: str = Field(description="What the values explain: log-odds of good credit risk.")
    base_value: float = Field(description="Model output at the background (training mean).")
    values: dict[str, float] = Field(
        description="Exact SHAP value per attribute; base_value + their sum = the log-odds."
    )


class CreditScoreResponse(BaseModel):
    request_id: str
    trace_id: str
    decision: Literal["approve", "refer", "decline"]
    score: float = Field(description="Probability of good credit risk.")
    ci_low: float = Field(description="Lower bound of the 90% bootstrap interval of the score.")
    ci_high: float = Field(description="Upper bound of the 90% bootstrap interval of the score.")
    confidence: float = Field(description="Share of bootstrap models reaching the same decision.")
    reason_codes: list[ReasonCode] = Field(
        description="Principal reasons (at most 4, most adverse first); empty when approved."
    )
    reason_codes_version: str
    explanation: Explanation
    model: ModelRef
    audit_seq: int | None = Field(
        None, description="Position of the decision's audit record in the log, once durable."
    )
    audit_receipt: AuditReceipt | None = Field(
        None,
        description="Proof that the audit log held the decision's record before it was "
        "answered, checkable with only the log's public key (docs/receipts.md).",
    )


_ALLOWED: dict[str, Any] = {
    "applicant_id": _APPLICANT_ID_RULE,
    **{
        a.name: list(a.codes) if a.categorical else {"min": a.low, "max": a.high}
        for a in ATTRIBUTES
    },
}
_EXPECTED: dict[str, str] = {
    "applicant_id": _APPLICANT_ID_RULE,
    **{a.name: a.allowed() for a in ATTRIBUTES},
}


def _problem(error: Any) -> dict[str, Any]:
    """One pydantic error as {field, message, type, allowed}, the message naming valid values."""
    loc, kind = error["loc"], error["type"]
    if not loc:
        return {
            "field": "body",
            "message": "the body must be a JSON object with the fields " + ", ".join(_FIELDS),
            "type": kind,
            "allowed": list(_FIELDS),
        }
    field = str(loc[0])
    if kind == "extra_forbidden":
        return {
            "field": field[:64],
            "message": f"{field[:64]!r} is not a field of this API; valid: {', '.join(_FIELDS)}",
            "type": kind,
            "allowed": list(_FIELDS),
        }
    if kind == "missing":
        message = f"{field} is required: {_EXPECTED[field]}"
    elif field == "applicant_id":
        # The id is personal data: say what is wrong with it without echoing it into logs.
        value = error.get("input")
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        message = f"applicant_id must be {_APPLICANT_ID_RULE}; got {got}"
    else:
        message = f"{field} is {repr(error.get('input'))[:40]}; expected {_EXPECTED[field]}"
    return {"field": field, "message": message, "type": kind, "allowed": _ALLOWED[field]}


def credit_router(monitor: Monitor, model: CreditModel, settings: Settings) -> APIRouter:
    """The credit-scoring endpoint, observing every decision (and rejection) through ``monitor``."""
    router = APIRouter(tags=["credit"])

    refuse = functools.partial(reject, monitor, model.info, CREDIT_SCORE_PATH)

    @router.post(
        CREDIT_SCORE_PATH,
        response_model=CreditScoreResponse,
        responses=DECISION_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CreditApplication.model_json_schema()}},
            }
        },
    )
    async def score(request: Request) -> Any:
        """Score one applicant: decision, score and interval, reasons, exact explanation."""
        rid = request_id_of(request)
        try:
            application = CreditApplication.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if any(e["type"] == "json_invalid" for e in errors):
                msg = "request body is not valid JSON: " + "; ".join(
                    str(e.get("ctx", {}).get("error", e["msg"])) for e in errors
                )
                return refuse(400, "invalid_json", msg, msg, rid)
            detail = [_problem(e) for e in errors]
            return refuse(422, "invalid_input", detail, problems_summary(detail), rid)
        inputs = application.model_dump(exclude={"applicant_id"})
        subject: str = application.applicant_id  # type: ignore[attr-defined]
        with monitor.observe(
            model.info,
            inputs,
            input_size=len(inputs),
            subject=subject,
            request_id=rid,
            endpoint=CREDIT_SCORE_PATH,
        ) as ev:
            a = model.assess(inputs)
            ev.label = ev.decision = a.decision
            ev.score, ev.confidence, ev.ci_low, ev.ci_high = (
                a.score,
                a.confidence,
                a.ci_low,
                a.ci_high,
            )
            ev.explanation = explanation = a.explanation(REASON_CODES_VERSION)
        audit = await audit_fields(ev, settings)
        return {
            "request_id": rid,
            "trace_id": ev.trace_id_hex,
            "decision": a.decision,
            "score": a.score,
            "ci_low": a.ci_low,
            "ci_high": a.ci_high,
            "confidence": a.confidence,
            "reason_codes": [
                {"code": r.code, "text": r.text, "contribution": r.contribution} for r in a.reasons
            ],
            "reason_codes_version": REASON_CODES_VERSION,
            "explanation": {
                "method": explanation["method"],
                "output": explanation["output"],
                "base_value": a.base_value,
                "values": a.attributions,
            },
            "model": model_ref(model.info),
            **audit,
        }

    return router
