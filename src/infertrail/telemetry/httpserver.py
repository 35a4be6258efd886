"""The HTTP server span and ``http.server.request.duration`` of an ASGI app, at a small cost.

:class:`HttpServerTelemetry` is a pure ASGI middleware doing the job of
``opentelemetry-instrumentation-asgi``/``-fastapi`` under ``OTEL_SEMCONV_STABILITY_OPT_IN=http``
with one SDK span per request and no per-message work: the parent context is extracted from the
request headers by the global propagator, one SERVER span is started with the request's
attributes and made current around the app (the app's spans are its children), and the
response status is read from the ``http.response.start`` message alone. The route template is
read after the app has routed the request (:class:`_RouteTemplates`), and the duration
histogram's attributes come from a cache: the span's attributes are the only ones a request
builds.

What the span and the app's calls on it may show is redacted: the query string per
:class:`QueryRedaction`, from the span's creation on, and exception messages everywhere (the
app's current span is a :class:`~infertrail.telemetry.redacting.RedactingSpan`).

Span names and attributes are those of the instrumentation (checked against 0.66b2),
``server.address`` included (the server's socket address, with its port unless 80). Where
this middleware differs:

- the span starts named ``{method}`` and without ``http.route`` (a sampler sees no route); it
  is renamed ``{method} {route}`` when it ends;
- ``excluded_paths`` are searched in the path, not in the full URL;
- an exception escaping the app leaves the status description ``Type: REDACTED`` (the
  instrumentation's 500 overwrote it with none); after a response other than 5xx started, it
  also sets ``error.type`` to the exception's type;
- the span ends when the app returns (background tasks included, as the duration always was),
  not at the response's last body message;
- a Host route has no template (the instrumentation used the raw path);
- no ``receive``/``send`` spans, background-task spans, header capture, response propagator,
  WebSocket spans or metrics other than the duration.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Iterable, MutableMapping, Sequence
from time import perf_counter
from typing import Any

from opentelemetry import context, trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.semconv._incubating.attributes.user_agent_attributes import (
    USER_AGENT_SYNTHETIC_TYPE,
)
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.http import detect_synthetic_user_agent, sanitize_method
from opentelemetry.util.types import AttributeValue
from starlette.routing import Match, Route

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redacting import RedactingSpan
from infertrail.telemetry.redaction import REDACTED, QueryRedaction, exception_type

__all__ = ["HttpServerTelemetry", "MetricAttributes", "RecordDuration"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]
Carrier = dict[str, list[str]]  # a request's propagation headers, by name

#: The attributes of one ``http.server.request.duration`` measurement, as (key, value) pairs.
MetricAttributes = tuple[tuple[str, str | int], ...]
#: Records one request's duration in seconds, with its attributes and its span's context.
RecordDuration = Callable[[float, MetricAttributes, SpanContext], None]

# The methods the conventions name (opentelemetry.util.http.sanitize_method); others: _OTHER.
_KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
_USER_AGENT = b"user-agent"
# Attribute sets cached beyond this many come from clients (status codes, protocol versions):
# the cache stops growing and the rest are built per request.
_MAX_CACHED_ATTRIBUTE_SETS = 4096


def _decode(value: bytes) -> str:
    """A header name or value as the instrumentation decodes it (UTF-8, else escaped)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("unicode_escape")


class _Propagated(Getter[Carrier]):
    """Reads the propagation headers of a request, gathered by name (lower case, as in ASGI)."""

    def get(self, carrier: Carrier, key: str) -> list[str] | None:
        """Every value of header ``key``, or None."""
        return carrier.get(key.lower())

    def keys(self, carrier: Carrier) -> list[str]:
        """The names of the propagation headers the request has."""
        return list(carrier)


_PROPAGATED = _Propagated()


def _excluded(paths: Collection[str]) -> re.Pattern[str] | None:
    """One pattern searching for any of ``paths`` (regular expressions), or None if none."""
    if isinstance(paths, str):
        raise TypeError(
            f"excluded_paths is a collection of patterns, not one string: {paths!r} "
            "(split a comma-separated list first)"
        )
    entries = [p.strip() for p in paths if p.strip()]  # an empty one would match every path
    for entry in entries:
        try:
            re.compile(entry)
        except re.error as err:
            raise ValueError(f"excluded path {entry!r} is not a regular expression: {err}") from err
    return re.compile("|".join(f"(?:{e})" for e in entries)) if entries else None


class HttpServerTelemetry:
    """ASGI middleware: the HTTP server span and duration of every request (see the module doc).

    ``tracer`` starts the spans (an SDK tracer: redaction happens here); ``record_duration``
    gets each request's duration and must not raise; ``redaction`` says what the query string
    may show; requests whose path matches one of ``excluded_paths`` (regular expressions,
    searched) get neither span nor measurement; ``propagator`` extracts the parent context
    (default: the global one, read per request) from the request headers it names in its
    ``fields`` (all that W3C trace context and baggage read).
    WebSocket and lifespan traffic passes through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer,
        record_duration: RecordDuration,
        redaction: QueryRedaction,
        excluded_paths: Collection[str] = (),
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._app = app
        self._tracer = tracer
        self._record_duration = record_duration
        self._redaction = redaction
        self._excluded = _excluded(excluded_paths)
        self._propagator = propagator
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[bytes] = frozenset()
        self._routes = _RouteTemplates()
        self._metric_attributes: dict[tuple[Any, ...], MetricAttributes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection: HTTP requests traced and measured, the rest passed through."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        if self._excluded is not None and self._excluded.search(path):
            await self._app(scope, receive, send)
            return
        start = perf_counter()
        raw_method: str = scope["method"]
        method = raw_method if raw_method in _KNOWN_METHODS else sanitize_method(raw_method)
        span_method = "HTTP" if method == "_OTHER" else method
        root_path: str = scope.get("root_path", "")
        propagator, fields = self._propagation()
        headers: Headers = scope.get("headers") or ()
        user_agent: bytes | None = None
        carrier: Carrier = {}
        for name, value in headers:
            if name == _USER_AGENT:
                if user_agent is None:
                    user_agent = value
            elif name in fields:
                carrier.setdefault(_decode(name), []).append(_decode(value))

        raw_query: bytes = scope.get("query_string", b"")
        query = self._redaction(path, raw_query) if raw_query else None
        attributes = _request_attributes(scope, path, raw_method, method, query, user_agent)

        # Inside another instrumented server span: a child of it, as the instrumentation does.
        parent: context.Context | None = None
        kind = SpanKind.INTERNAL
        if trace.get_current_span() is trace.INVALID_SPAN:
            kind = SpanKind.SERVER
            parent = (
                propagator.extract(carrier, getter=_PROPAGATED) if carrier else context.Context()
            )
        span = self._tracer.start_span(span_method, parent, kind, attributes)
        current: Span = span
        if span.is_recording():
            redacting = RedactingSpan(span)
            if query is not None:
                redacting.show_query(query)
            current = redacting
        token = context.attach(trace.set_span_in_context(current, parent))

        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: Exception | None = None
        try:
            await self._app(scope, receive, send_status)
        except Exception as exc:
            error = exc
            if not status:
                status = 500  # what the server answers for it
            raise
        finally:
            seconds = perf_counter() - start
            context.detach(token)
            route = self._routes.template(scope, root_path)
            error_type = str(status) if status >= 500 else exception_type(error) if error else None
            if span.is_recording():
                _finish(span, current, span_method, route, status, error_type, error)
            span.end()
            self._record_duration(
                seconds,
                self._attributes(method, route, status, scope, error_type),
                span.get_span_context(),
            )

    def _propagation(self) -> tuple[TextMapPropagator, frozenset[bytes]]:
        """The propagator and the header names it reads (global one: as set now)."""
        propagator = self._propagator or get_global_textmap()
        if propagator is not self._fields_of:
            self._fields = frozenset(f.lower().encode("latin-1") for f in propagator.fields)
            self._fields_of = propagator
        return propagator, self._fields

    def _attributes(
        self, method: str, route: str | None, status: int, scope: Scope, error_type: str | None
    ) -> MetricAttributes:
        """The duration's attributes (the stable conventions' set), cached by their values."""
        scheme: str | None = scope.get("scheme")
        version: str | None = scope.get("http_version")
        key = (method, route, status, scheme, version, error_type)
        cached = self._metric_attributes.get(key)
        if cached is not None:
            return cached
        pairs: list[tuple[str, str | int]] = [(HTTP_REQUEST_METHOD, method)]
        if scheme:
            pairs.append((URL_SCHEME, scheme))
        if route:
            pairs.append((c.HTTP_ROUTE, route))
        if status:
            pairs.append((c.HTTP_RESPONSE_STATUS_CODE, status))
        if version:
            pairs.append((NETWORK_PROTOCOL_VERSION, version))
        if error_type:
            pairs.append((c.ERROR_TYPE, error_type))
        built = tuple(pairs)
        if len(self._metric_attributes) < _MAX_CACHED_ATTRIBUTE_SETS:
            self._metric_attributes[key] = built
        return built


def _request_attributes(
    scope: Scope,
    path: str,
    raw_method: str,
    method: str,
    query: str | None,
    user_agent: bytes | None,
) -> dict[str, AttributeValue]:
    """The span's creation attributes, as the instrumentation sets them (only non-empty ones)."""
    host, port = scope.get("server") or ("0.0.0.0", 80)
    attributes: dict[str, AttributeValue] = {
        HTTP_REQUEST_METHOD: method,
        c.SERVER_ADDRESS: host if str(port) == "80" else f"{host}:{port}",
    }
    if method != raw_method:
        attributes[HTTP_REQUEST_METHOD_ORIGINAL] = raw_method
    scheme = scope.get("scheme")
    if scheme:
        attributes[URL_SCHEME] = scheme
    if port:
        attributes[c.SERVER_PORT] = int(port)
    version = scope.get("http_version")
    if version:
        attributes[NETWORK_PROTOCOL_VERSION] = version
    if path:
        attributes[URL_PATH] = path
    if query is not None:
        attributes[c.URL_QUERY] = query
    if user_agent:
        agent = _decode(user_agent)
        attributes[USER_AGENT_ORIGINAL] = agent
        synthetic = detect_synthetic_user_agent(agent)
        if synthetic:
            attributes[USER_AGENT_SYNTHETIC_TYPE] = synthetic
    client = scope.get("client")
    if client is not None:
        if client[0]:
            attributes[CLIENT_ADDRESS] = client[0]
        if client[1]:
            attributes[CLIENT_PORT] = int(client[1])
    return attributes


def _finish(
    span: Span,
    current: Span,
    span_method: str,
    route: str | None,
    status: int,
    error_type: str | None,
    error: Exception | None,
) -> None:
    """What the response says about the request, on its (recording) span."""
    attributes: dict[str, AttributeValue] = {}
    if route:
        attributes[c.HTTP_ROUTE] = route
        span.update_name(f"{span_method} {route}")
    if status:
        attributes[c.HTTP_RESPONSE_STATUS_CODE] = status
    if error_type:
        attributes[c.ERROR_TYPE] = error_type
    span.set_attributes(attributes)
    if error is not None:
        # The event the FastAPI instrumentation records (not marked escaped), message redacted.
        current.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {REDACTED}"))
    elif status >= 500:
        span.set_status(Status(StatusCode.ERROR))


class _RouteTemplates:
    """The route template of a request, from what the app's router chose for it.

    After routing, the scope holds the router (``scope["router"]``: the outermost one, mounted
    apps' routers keep it) and what it chose: the route (``scope["route"]``: Starlette's router
    and FastAPI's own routes set it) and always its endpoint (``scope["endpoint"]``: a mount's
    app). Either is looked up in an index of the outermost router's routes, flattened as the
    FastAPI instrumentation flattens them (included routers' routes carry their prefixes).
    What the index cannot tell (the routes of a mounted app, an endpoint serving two routes)
    is matched as the instrumentation matches it, against the request as it came in.
    """

    def __init__(self) -> None:
        self._router: object | None = None
        self._size = 0
        self._entries: tuple[tuple[Any, str | None], ...] = ()
        self._by_served: dict[int, tuple[tuple[Any, str | None], ...]] = {}

    def template(self, scope: Scope, root_path: str) -> str | None:
        """The template of the route that served ``scope`` (None if no route did)."""
        router: Any = scope.get("router")
        served = scope.get("route")
        if served is None:
            served = scope.get("endpoint")
        if router is None or served is None:
            return None
        if router is not self._router:
            self._index(router)
        candidates = self._by_served.get(id(served))
        if candidates is None and len(router.routes) != self._size:  # routes added since
            self._index(router)
            candidates = self._by_served.get(id(served))
        if candidates is not None and len(candidates) == 1:
            return candidates[0][1]
        probe = {
            "type": "http",
            "path": scope["path"],
            "root_path": root_path,
            "method": scope["method"],
            "headers": scope.get("headers") or [],
        }
        return _match(candidates or self._entries, probe)

    def _index(self, router: Any) -> None:
        entries: list[tuple[Any, str | None]] = []
        by_served: dict[int, list[tuple[Any, str | None]]] = {}
        routes = router.routes
        for original, matchable in _flatten(routes):
            entry = (matchable, getattr(matchable, "path", None))  # a Host has no path
            entries.append(entry)
            # What a route puts in scope["endpoint"]: its endpoint, or a mount's (host's) app.
            endpoint = getattr(original, "endpoint", None) or getattr(original, "app", None)
            for served in (original, endpoint):
                if served is not None:
                    by_served.setdefault(id(served), []).append(entry)
        # The entries hold the routes and endpoints: no id here is reused while the index lives.
        self._entries = tuple(entries)
        self._by_served = {key: tuple(value) for key, value in by_served.items()}
        self._size = len(routes)
        self._router = router


def _flatten(routes: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(the route that will be in the scope, what matches it with its full template) of each."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # Starlette alone: its routes are flat already
        return [(route, route) for route in routes]
    return [(ctx.original_route, ctx) for ctx in iter_route_contexts(routes)]


def _match(entries: Iterable[tuple[Any, str | None]], probe: Scope) -> str | None:
    """The template of the first full match, else of the last partial one (the instrumentation's
    rule; ``Route.matches`` called directly, as it does, past FastAPI's scope-aware override)."""
    template = None
    for matchable, path in entries:
        if isinstance(matchable, Route):
            match, _ = Route.matches(matchable, probe)
        else:
            match, _ = matchable.matches(probe)
        if match is Match.FULL:
            return path
        if match is Match.PARTIAL:
            template = path
    return template
