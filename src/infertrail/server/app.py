"""The demo service: the served models behind FastAPI, wired in by the runtime.

``build_services(settings)`` loads and verifies the models (the three classifiers, and the
demo LLM when the ``[llm]`` extra is installed and the model was trained) and starts a
:class:`~infertrail.runtime.Runtime` for them; ``create_app(services)`` is an ordinary FastAPI
app with their routes, instrumented by :func:`infertrail.runtime.instrument` exactly as a
user's own app would be, with its readiness route at ``/readyz`` (503 while the audit trail
cannot take writes), its audit log as tlog-tiles under ``/tlog``, plus the liveness probe
``/healthz``.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response

from infertrail.config import Settings
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S
from infertrail.models import ESTIMATOR_BUILDERS, PROFILE_BUILDERS
from infertrail.models.credit import CreditModel
from infertrail.models.digits import DigitsModel
from infertrail.models.llm import NAME as LLM_NAME
from infertrail.models.llm import TRAIN_FILE as LLM_TRAIN_FILE
from infertrail.models.llm import DemoLLM
from infertrail.models.sentiment import SentimentModel
from infertrail.monitor import Monitor
from infertrail.runtime import Runtime
from infertrail.runtime.asgi import instrument
from infertrail.server.credit import credit_router
from infertrail.server.digits import digits_router
from infertrail.server.llm import llm_router
from infertrail.server.sentiment import sentiment_router
from infertrail.web.responses import ErrorResponse

__all__ = ["DemoService", "build_services", "create_app", "load_llm"]

_log = logging.getLogger("infertrail.server")


@dataclass
class DemoService:
    """The served demo models and the runtime that observes them."""

    runtime: Runtime
    sentiment: SentimentModel
    credit: CreditModel
    digits: DigitsModel
    llm: DemoLLM | None = None  # served at /v1/chat/completions when loaded

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def monitor(self) -> Monitor:
        monitor = self.runtime.monitor
        if monitor is None:
            raise RuntimeError("the runtime is not running")
        return monitor

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Stop the runtime (final audit checkpoint first). Idempotent."""
        self.runtime.shutdown(timeout_s)


def build_services(settings: Settings) -> DemoService:
    """Load and verify the models, start the runtime for them.

    Fails clearly when a model is missing or corrupt, or when the audit log is held by another
    process or damaged beyond automatic repair.
    """
    settings.ensure_dirs()
    sentiment = SentimentModel.load(settings.models_dir)
    credit = CreditModel.load(settings.models_dir)
    digits = DigitsModel.load(settings.models_dir)
    llm = load_llm(settings)
    runtime = Runtime.start(
        settings,
        [sentiment.info, credit.info, digits.info, *([llm.info] if llm else [])],
        profile_builders=PROFILE_BUILDERS,
        estimator_builders=ESTIMATOR_BUILDERS,
    )
    return DemoService(runtime, sentiment, credit, digits, llm)


def load_llm(settings: Settings) -> DemoLLM | None:
    """The trained demo LLM, or None (logged once, at INFO, with the reason and the remedy).

    It is optional: torch is a large download only the LLM needs (the ``[llm]`` extra), and
    training takes ~40 s, so the service serves the classifiers without it. A trained model
    that fails its check is an error, as for the other models.
    """
    if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")):
        _log.info(
            "demo LLM not served: torch and transformers are not installed "
            "(pip install 'infertrail[llm]', or make demo)"
        )
        return None
    path = settings.models_dir / LLM_NAME
    if not (path / LLM_TRAIN_FILE).is_file():
        _log.info("demo LLM not served: %s is not trained (infertrail train %s)", path, LLM_NAME)
        return None
    from infertrail.models import llm

    model = llm.load(path)
    # One thread per generation: the model is tiny, so torch's intra-op threads only contend
    # (measured on 2 busy cores: 250-490 tokens/s with one thread, 42-99 with two); requests
    # run in parallel on the server's worker threads instead.
    import torch

    torch.set_num_threads(1)
    return model


def create_app(
    services: DemoService,
    *,
    close_on_shutdown: bool = False,
    freeze_gc: bool = False,
    access_log: bool = False,
) -> FastAPI:
    """The demo service around started ``services`` (the caller owns them unless told).

    ``freeze_gc`` (for a server process, not for tests that build many apps): at start-up,
    move every object alive then (modules, models, the app) out of the cyclic garbage
    collector's reach. Telemetry keeps many short-lived objects queued for up to a second, so
    they reach the oldest generation and trigger full collections, which scanned the ~150k
    start-up objects in ~85 ms each (~85 us per inference, bench/overhead.py); frozen, a full
    collection takes a few ms. Frozen objects are never collected, a fixed cost at start-up.
    """
    settings = services.settings
    monitor = services.monitor

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if freeze_gc:
            gc.collect()  # what is garbage now must not be frozen with the rest
            gc.freeze()
        yield

    app = FastAPI(
        title="infertrail demo service",
        version=settings.service_version,
        lifespan=lifespan,
        responses={400: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    )
    instrument(
        app,
        runtime=services.runtime,
        compliance_api=services.runtime.compliance is not None,
        outcomes_api=services.runtime.outcomes is not None,
        access_log=access_log,
        shutdown_with_app=close_on_shutdown,
        readiness_path="/readyz",
        tiles_api=services.runtime.audit is not None,  # /tlog: for `infertrail audit monitor`
        console=services.runtime.compliance is not None,  # /ui: docs/console.md
    )
    # The model routes validate their bodies themselves (naming what is valid) and count
    # their rejections against their model; instrument() answers everything else in the one
    # error shape.
    app.include_router(sentiment_router(monitor, services.sentiment, settings))
    app.include_router(credit_router(monitor, services.credit, settings))
    app.include_router(digits_router(monitor, services.digits, settings))
    audit = services.runtime.audit
    if services.llm is not None:
        pseudonymize = audit.pseudonym if audit is not None else None
        app.include_router(llm_router(monitor, services.llm, settings, pseudonymize=pseudonymize))

    if services.runtime.compliance is not None:

        @app.get("/", include_in_schema=False)
        async def home() -> RedirectResponse:
            return RedirectResponse("/ui/overview", status_code=307)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        # Browsers ask for it whatever the page (the console's JSON twins have no icon link):
        # answered, so that a browser's console shows no 404 for it.
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        # Liveness only: a service waiting for its disk is alive (/readyz says it is not ready).
        return {"status": "ok"}

    return app
