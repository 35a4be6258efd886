"""The FastAPI application: demo inference endpoints, health, readiness and ``/metrics``."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

# Must be set before the HTTP instrumentation initialises: emit the stable HTTP conventions
# (``http.server.request.duration`` in seconds) rather than the old experimental ones.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.compliance import LakeQuery, QueryService, UserStore, users_db_path
from infertrail.compliance.api import compliance_router
from infertrail.config import Settings
from infertrail.cost.attribution import CostAttribution
from infertrail.events import ModelInfo
from infertrail.models import PROFILE_BUILDERS
from infertrail.models.credit import CreditModel
from infertrail.models.digits import DigitsModel
from infertrail.models.sentiment import SentimentModel
from infertrail.monitor import Monitor
from infertrail.runtime.audit import AuditTrail, open_signer
from infertrail.runtime.drift import DriftWiring, start_drift_monitoring
from infertrail.runtime.outcomes import OutcomeLoop
from infertrail.server.credit import CREDIT_SCORE_PATH, credit_router
from infertrail.server.digits import DIGITS_PATH, digits_router
from infertrail.telemetry.http import http_meter_provider
from infertrail.web.requestid import RequestIdMiddleware
from infertrail.web.responses import (
    ErrorResponse,
    durable_audit_seq,
    error_response,
    model_ref,
    request_id_of,
)

SENTIMENT_PATH = "/v1/sentiment"


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(description="The text to classify (1 to max_text_chars characters).")


class SentimentResponse(BaseModel):
    request_id: str
    trace_id: str
    label: str = Field(description="negative or positive")
    score: float = Field(description="Probability that the text is positive.")
    confidence: float = Field(description="Probability of the predicted label.")
    model: ModelRef
    audit_seq: int | None = Field(
        None, description="Position of the decision's audit record in the log, once durable."
    )


@dataclass
class Services:
    """What the endpoints use; built at start-up, closed at shutdown."""

    settings: Settings
    monitor: Monitor
    sentiment: SentimentModel
    credit: CreditModel
    digits: DigitsModel
    audit: AuditTrail | None = None
    drift: DriftWiring | None = None
    outcomes: OutcomeLoop | None = None
    query: QueryService | None = None
    users: UserStore | None = None
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Close the audit trail (final seal and checkpoint), then telemetry. Idempotent."""
        closers, self.closers = self.closers, []
        if closers:
            self.monitor.flush()  # queued events reach the sinks before those close
        for close in reversed(closers):
            close()
        self.monitor.shutdown()


def build_services(settings: Settings) -> Services:
    """Load and verify the models, start the monitor and the audit trail.

    Fails clearly when a model is missing or corrupt, or when the audit log is held by another
    process or damaged beyond automatic repair.
    """
    settings.ensure_dirs()
    sentiment = SentimentModel.load(settings.models_dir)
    credit = CreditModel.load(settings.models_dir)
    digits = DigitsModel.load(settings.models_dir)
    monitor = Monitor(settings)
    services = Services(settings, monitor, sentiment, credit, digits)
    if settings.audit_enabled:
        try:
            services.audit = AuditTrail.open(settings)
        except BaseException:
            monitor.shutdown()
            raise
        monitor.add_sink(services.audit, on_request_thread=True)
        services.closers.append(services.audit.close)
        try:
            open_compliance(services, services.audit)
        except BaseException:
            services.close()
            raise
    if settings.drift_enabled:
        try:
            services.drift = start_drift_monitoring(
                settings, monitor, [sentiment.info, digits.info], builders=PROFILE_BUILDERS
            )
        except BaseException:
            services.close()
            raise
        services.closers.append(services.drift.close)
    try:
        if settings.cost_enabled:
            cost = CostAttribution.open(settings, meter=monitor.telemetry.meter)
            monitor.add_sink(cost)
            services.closers.append(cost.close)
        if settings.outcomes_enabled:
            engine = services.drift.engine if services.drift else None
            services.outcomes = OutcomeLoop.open(
                settings, monitor, audit=services.audit, engine=engine
            )
            services.closers.append(services.outcomes.close)
    except BaseException:
        services.close()
        raise
    return services


def open_compliance(services: Services, trail: AuditTrail) -> None:
    """The compliance query service and its users (closed before the trail they read)."""
    settings = services.settings
    verifier = NoteVerifier.from_key(open_signer(settings).verifier_key)
    engine = LakeQuery(trail.log, settings.lake_url, verifier)
    services.closers.append(engine.close)
    services.query = QueryService(engine, trail.privacy.recorder, trail.privacy)
    services.users = UserStore(users_db_path(settings.data_dir))
    services.closers.append(services.users.close)


_UNKNOWN_MODEL = ModelInfo("unknown", "", "")


def create_app(
    services: Services, *, close_on_shutdown: bool = False, freeze_gc: bool = False
) -> FastAPI:
    """Build the service around started ``services`` (the caller owns them unless told).

    ``freeze_gc`` (for a server process, not for tests that build many apps): at start-up,
    move every object alive then (modules, models, the app) out of the cyclic garbage
    collector's reach. Telemetry keeps many short-lived objects queued for up to a second, so
    they reach the oldest generation and trigger full collections, which scanned the ~150k
    start-up objects in ~85 ms each (~85 us per inference, bench/overhead.py); frozen, a full
    collection takes a few ms. Frozen objects are never collected, a fixed cost at start-up.
    """
    settings = services.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if freeze_gc:
            gc.collect()  # what is garbage now must not be frozen with the rest
            gc.freeze()
        try:
            yield
        finally:
            if close_on_shutdown:
                services.close()

    app = FastAPI(
        title="infertrail demo service",
        version=settings.service_version,
        lifespan=lifespan,
        responses={400: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    )
    # Instrument now, before Starlette builds its middleware stack on the first call.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=services.monitor.telemetry.tracer_provider,
        meter_provider=http_meter_provider(services.monitor.telemetry.meter_provider),
        excluded_urls="healthz,readyz,metrics",
        exclude_spans=["receive", "send"],
    )

    def reject(request_id: str, message: str, path: str, error_type: str) -> None:
        models = {
            SENTIMENT_PATH: services.sentiment.info,
            CREDIT_SCORE_PATH: services.credit.info,
            DIGITS_PATH: services.digits.info,
        }
        model = models.get(path, _UNKNOWN_MODEL)
        services.monitor.record_rejection(
            model, error_type=error_type, message=message, request_id=request_id, endpoint=path
        )

    app.add_middleware(
        RequestIdMiddleware,
        on_invalid=lambda rid, msg, path: reject(rid, msg, path, "invalid_request_id"),
    )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        rid = request_id_of(request)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            msg = "request body is not valid JSON: " + "; ".join(
                str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors
            )
            reject(rid, msg, request.url.path, "invalid_json")
            return error_response(400, "invalid_json", msg, rid)
        detail = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                "message": e.get("msg"),
                "type": e.get("type"),
            }
            for e in errors
        ]
        reject(rid, str(detail), request.url.path, "invalid_input")
        return error_response(422, "invalid_input", detail, rid)

    @app.post(SENTIMENT_PATH, response_model=SentimentResponse)
    async def sentiment(body: SentimentRequest, request: Request) -> Any:
        s = services
        rid = request_id_of(request)
        text = body.text
        limit = s.settings.max_text_chars
        problem = None
        if not text.strip():
            problem = "text must contain at least one non-whitespace character"
        elif len(text) > limit:
            problem = f"text has {len(text)} characters; the limit is {limit}"
        if problem:
            detail = [{"field": "text", "message": problem, "type": "value_error"}]
            reject(rid, problem, SENTIMENT_PATH, "invalid_input")
            return error_response(422, "invalid_input", detail, rid)
        model = s.sentiment
        with s.monitor.observe(
            model.info, text, input_size=len(text), request_id=rid, endpoint=SENTIMENT_PATH
        ) as ev:
            p = model.predict(text)
            ev.label, ev.score, ev.confidence = p.label, p.score, p.confidence
        audit_seq = await durable_audit_seq(ev, s.settings, rid)
        if isinstance(audit_seq, JSONResponse):
            return audit_seq
        return {
            "audit_seq": audit_seq,
            "request_id": rid,
            "trace_id": ev.trace_id_hex,
            "label": p.label,
            "score": p.score,
            "confidence": p.confidence,
            "model": model_ref(model.info),
        }

    app.include_router(credit_router(services.monitor, services.credit, settings))
    app.include_router(digits_router(services.monitor, services.digits, settings))
    if services.outcomes is not None:
        app.include_router(services.outcomes.router())
    if services.query is not None and services.users is not None:
        app.include_router(
            compliance_router(
                services.query, services.users, meter=services.monitor.telemetry.meter
            )
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {
            "status": "ready",
            "models": [m.info.name for m in (services.sentiment, services.credit, services.digits)],
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        # The monitor records metrics in batches off the request path: hand it everything
        # queued so far, so a scrape counts every request answered before it.
        await run_in_threadpool(services.monitor.flush_events, 2.0)
        registry = services.monitor.telemetry.prometheus_registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
