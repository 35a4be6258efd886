"""One call wires infertrail into a FastAPI or Starlette app: :func:`instrument`.

It starts (or takes) a :class:`~infertrail.runtime.Runtime` and adds to the app:

- the HTTP server span of every request and the ``http.server.request.duration`` histogram
  with exemplars, from infertrail's HTTP layer (telemetry/httpserver.py: the stable HTTP
  semantic conventions, as the OpenTelemetry instrumentation emits them) through infertrail's
  providers, its query string and exception messages redacted (docs/privacy.md, "Telemetry");
  FastAPI's own telemetry is turned off for the app (it would trace and measure each request a
  second time, and log exception messages);
- a validated ``X-Request-ID`` on every request and response; inside a handler,
  ``runtime.observe(...)`` picks up the request id and the route without being told;
- ``GET /metrics`` (Prometheus text format: infertrail's metrics and the HTTP ones);
- optionally a readiness route (``readiness_path``, e.g. ``/readyz``): 200 while the audit log,
  the lake and the privacy databases can take writes, else 503 in the one error shape naming
  the failing components (:meth:`~infertrail.runtime.Runtime.health`);
- exception handlers answering an unrecorded decision 503 and an erased subject 409, so a
  handler simply awaits ``runtime.audit_receipt_async(event)``;
- request hardening (web/guard.py): every request body must be ``application/json`` (415),
  within its route's size limit (413), UTF-8, not nested too deeply and free of lone
  surrogates (400/422); FastAPI's validation errors, 404 and 405 answered in the one error
  shape; the settings ``http_*`` say how (``http_raw_body_paths`` for non-JSON bodies);
- security headers on every answer (web/headers.py: nosniff, no framing, no referrer, and
  ``Cache-Control: no-store`` on the audit and privacy routes);
- for a FastAPI app, ``/docs`` and ``/redoc`` served with their assets from the app itself (no
  CDN), and its OpenAPI document listing those answers and ``/metrics``;
- optionally the audit log read-only as C2SP tlog-tiles (``tiles_api``: ``/tlog/checkpoint``,
  ``/tlog/tile/...``, web/tiles.py), for ``infertrail audit monitor`` and witnesses;
- optionally the web console under ``/ui`` (``console``: docs/console.md), the compliance API
  (``/v1/audit/...``), the outcomes API (``/v1/outcomes``) and
  one structured access-log line per request;
- the runtime's shutdown at the end of the app's lifespan (uvicorn and gunicorn run it on
  SIGTERM and SIGINT): a final signed checkpoint covering every acknowledged decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.runtime.assembly import Runtime
from infertrail.runtime.drift import ProfileSource
from infertrail.telemetry.httpserver import HttpServerTelemetry
from infertrail.telemetry.redaction import QueryRedaction
from infertrail.web.accesslog import AccessLogMiddleware
from infertrail.web.guard import GuardPolicy, RequestGuardMiddleware
from infertrail.web.handlers import install_request_error_handlers
from infertrail.web.headers import SecurityHeadersMiddleware
from infertrail.web.requestid import RequestIdMiddleware
from infertrail.web.responses import error_response, install_error_handlers, request_id_of

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["RUNTIME_STATE", "instrument", "runtime_of"]

#: ``app.state.<this>`` holds the app's runtime.
RUNTIME_STATE = "infertrail"
#: Requests that get no HTTP span (probes and scrapes would drown the traces).
DEFAULT_EXCLUDED_URLS = "healthz,readyz,livez,metrics"

_UNKNOWN_MODEL = ModelInfo("unknown", "", "")


#: Where ``instrument(app, console=True)`` mounts the web console.
CONSOLE_PREFIX = "/ui"


def instrument(
    app: Starlette,
    settings: Settings | None = None,
    *,
    models: Sequence[ModelInfo] = (),
    profiles: Mapping[str, ProfileSource] | None = None,
    runtime: Runtime | None = None,
    metrics_path: str | None = "/metrics",
    readiness_path: str | None = None,
    compliance_api: bool = False,
    outcomes_api: bool = False,
    tiles_api: bool = False,
    console: bool = False,
    access_log: bool = False,
    excluded_urls: str = DEFAULT_EXCLUDED_URLS,
    shutdown_with_app: bool = True,
) -> Runtime:
    """Instrument ``app`` (see the module docstring) and return its runtime.

    ``settings``, ``models`` and ``profiles`` start a new runtime (:meth:`Runtime.start`);
    pass ``runtime`` instead to use one already started. Call before the app serves its first
    request (Starlette builds its middleware stack then). ``shutdown_with_app=False`` leaves
    stopping the runtime to the caller. ``readiness_path`` (off by default: the app may have
    its own) adds the readiness route at that path. ``tiles_api`` serves the audit log as
    tlog-tiles under the settings' ``tiles_prefix`` (entry bundles only with ``tiles_entries``).
    """
    if runtime is None:
        runtime = Runtime.start(settings, models, profiles=profiles)
    elif settings is not None or models or profiles:
        raise ValueError("pass either a started runtime or settings/models/profiles, not both")
    monitor = runtime.monitor
    telemetry = runtime.telemetry
    if monitor is None or telemetry is None or not runtime.running:
        raise RuntimeError("the runtime is not running")
    if getattr(app.state, RUNTIME_STATE, None) is not None:
        raise RuntimeError("this app is already instrumented by infertrail")
    setattr(app.state, RUNTIME_STATE, runtime)

    def on_rejected(rid: str, kind: str, message: str, path: str) -> None:
        # Refused before any route ran: the model is known only when the app serves one.
        model = runtime.models[0] if len(runtime.models) == 1 else _UNKNOWN_MODEL
        monitor.record_rejection(
            model, error_type=kind, message=message, request_id=rid, endpoint=path
        )

    def on_invalid_request_id(rid: str, message: str, path: str) -> None:
        on_rejected(rid, "invalid_request_id", message, path)

    # Added first, so inside the request id: its refusals carry the id.
    policy = GuardPolicy.from_settings(runtime.settings)
    if console:  # the console's forms are urlencoded, not JSON
        policy = replace(policy, raw_body_paths=(*policy.raw_body_paths, CONSOLE_PREFIX))
    app.add_middleware(RequestGuardMiddleware, policy=policy, on_reject=on_rejected)
    app.add_middleware(RequestIdMiddleware, on_invalid=on_invalid_request_id)
    if access_log:
        app.add_middleware(AccessLogMiddleware)  # outside the request id: logs its 400s too
    app.add_middleware(SecurityHeadersMiddleware)  # on every answer, the refusals included
    _instrument_http(app, runtime, excluded_urls)
    install_error_handlers(app)
    install_request_error_handlers(app)
    if _is_fastapi(app):
        from infertrail.web.docs import serve_docs_offline
        from infertrail.web.openapi import document_instrumentation

        serve_docs_offline(cast("FastAPI", app))
        document_instrumentation(
            cast("FastAPI", app),
            metrics_path=metrics_path,
            metrics_content_type=CONTENT_TYPE_LATEST,
        )
    if metrics_path is not None:

        async def metrics(_request: Request) -> Response:
            # The Monitor records metrics in batches off the request path: hand it everything
            # queued so far, so a scrape counts every request answered before it.
            await run_in_threadpool(monitor.flush_events, 2.0)
            body = generate_latest(telemetry.prometheus_registry)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        app.router.add_route(metrics_path, metrics, methods=["GET"], include_in_schema=False)
    if readiness_path is not None:
        app.router.add_route(
            readiness_path, _readiness(runtime), methods=["GET"], include_in_schema=False
        )
    if (compliance_api or outcomes_api) and not _is_fastapi(app):
        raise TypeError("the compliance and outcomes APIs are FastAPI routers: app is not FastAPI")
    if compliance_api:
        if runtime.compliance is None:
            raise RuntimeError("the compliance API needs the audit trail (audit_enabled)")
        from infertrail.compliance.access import RateLimiter
        from infertrail.compliance.api import include_compliance_api

        include_compliance_api(
            cast("FastAPI", app),
            runtime.compliance.queries,
            runtime.compliance.users,
            limiter=RateLimiter(
                runtime.settings.compliance_rate_per_s, runtime.settings.compliance_burst
            ),
            meter=telemetry.meter,
        )
    if outcomes_api:
        if runtime.outcomes is None:
            raise RuntimeError("the outcomes API needs outcomes_enabled")
        cast("FastAPI", app).include_router(runtime.outcomes.router())
    if tiles_api:
        if runtime.audit is None:
            raise RuntimeError("the tiles API serves the audit log: it needs audit_enabled")
        from infertrail.audit.tilesource import LogTiles
        from infertrail.web.tiles import mount_tiles

        cfg = runtime.settings
        mount_tiles(
            app,
            LogTiles(cfg.audit_log_dir, cfg.lake_url),
            prefix=cfg.tiles_prefix,
            entries=cfg.tiles_entries,
        )
    if console:
        if runtime.compliance is None:
            raise RuntimeError("the console needs the audit trail and its users (audit_enabled)")
        from infertrail.console import include_console

        include_console(app, runtime, prefix=CONSOLE_PREFIX)
    if shutdown_with_app:
        app.router.lifespan_context = _stopping(app.router.lifespan_context, runtime)
    return runtime


def runtime_of(app: Starlette) -> Runtime:
    """The runtime :func:`instrument` attached to ``app``."""
    runtime = getattr(app.state, RUNTIME_STATE, None)
    if not isinstance(runtime, Runtime):
        raise LookupError("this app is not instrumented by infertrail")
    return runtime


def _instrument_http(app: Starlette, runtime: Runtime, excluded_urls: str) -> None:
    """The HTTP server span and ``http.server.request.duration``, around every middleware.

    :class:`~infertrail.telemetry.httpserver.HttpServerTelemetry` with the runtime's tracer (a
    compact span per request, built off the request path) and its batched duration histogram.
    The span's query string and exception messages are redacted before anything records them:
    values of the ``telemetry_query_allowlist`` parameters only are kept, and none on the audit
    and privacy routes. The histogram's attributes carry no query (method, route template,
    status, scheme, protocol version).
    """
    telemetry = runtime.telemetry
    assert telemetry is not None
    _turn_off_native_telemetry(app)
    app.add_middleware(
        HttpServerTelemetry,
        tracer=telemetry.tracer,
        record_duration=telemetry.record_http_duration,
        redaction=QueryRedaction(frozenset(runtime.settings.telemetry_query_allowlist)),
        excluded_paths=[p for p in excluded_urls.split(",") if p],
    )


def _turn_off_native_telemetry(app: Starlette) -> None:
    """Turn off FastAPI's own telemetry for ``app``: infertrail's HTTP layer does its job.

    FastAPI 0.16x traces, measures and logs each request itself through the global providers
    (``FastAPI(telemetry=...)``), which infertrail installs: left on, every request would get a
    second server span, a second ``http.server.request.duration`` series and one span per
    dependency, endpoint and serialization step, and its logs would carry exception messages
    (docs/privacy.md keeps those out of telemetry). FastAPI turns it off the same way when
    ``opentelemetry-instrumentation-fastapi`` instruments an app. The settings live in the
    app's ``_telemetry`` dict, read per request; older FastAPI versions have none.
    """
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict):
        config.update(tracing=False, metrics=False, logs=False, operation_spans=False)


def _is_fastapi(app: Starlette) -> bool:
    try:
        from fastapi import FastAPI
    except ImportError:  # a Starlette app, FastAPI not installed
        return False
    return isinstance(app, FastAPI)


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def _stopping(inner: Lifespan, runtime: Runtime) -> Lifespan:
    """The app's own lifespan, followed by the runtime's shutdown (even if the app's fails)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        try:
            async with inner(app) as state:
                yield state
        finally:
            await run_in_threadpool(runtime.shutdown)

    return lifespan


def _readiness(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    """The readiness route: 200 with each component's "ok", or 503 naming what fails.

    The 503's detail names components and kinds of fault, never the server's paths. Liveness
    is not asked here: a process waiting for its disk is alive and must not be restarted.
    """

    async def readiness(request: Request) -> Response:
        # A thread: the storage checks are system calls, which a hung file system can block.
        health = await run_in_threadpool(runtime.health)
        if health.ready:
            body = {
                "status": "ready",
                "models": [m.name for m in runtime.models],
                "components": health.to_dict(),
            }
            return JSONResponse(body)
        return error_response(503, "not_ready", health.problems(), request_id_of(request))

    return readiness
