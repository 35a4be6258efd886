"""The API documentation pages (Swagger UI, ReDoc) served from the service itself.

FastAPI's ``/docs`` and ``/redoc`` load their JavaScript, CSS, favicon (and ReDoc its fonts)
from third-party hosts, which an offline or locked-down deployment cannot reach and which see
every visit. :func:`serve_docs_offline` replaces both pages with ones whose every asset is
served by the app under :data:`ASSETS_PATH`: the files of Swagger UI (Apache-2.0, SmartBear
Software) and ReDoc (MIT, Redocly) as shipped by the PyPI package ``fastapi-offline`` (MIT),
part of ``infertrail[server]``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

__all__ = ["ASSETS_PATH", "ASSET_FILES", "assets_dir", "serve_docs_offline"]

_log = logging.getLogger("infertrail.web")

#: Where the pages' assets are served.
ASSETS_PATH = "/docs-assets"
#: The files the pages load, all from :data:`ASSETS_PATH`.
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
_PACKAGE = "fastapi_offline"

Page = Callable[[Request], Awaitable[HTMLResponse]]


def assets_dir() -> Path | None:
    """The directory holding :data:`ASSET_FILES`, or None when the package is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    return directory if all((directory / f).is_file() for f in ASSET_FILES) else None


def serve_docs_offline(app: FastAPI) -> None:
    """Replace the app's ``docs_url`` and ``redoc_url`` pages with self-contained ones.

    Without the assets (``fastapi-offline`` not installed) the pages are removed, with a
    warning, rather than served from a CDN. An app with neither page is left alone.
    """
    pages = {app.docs_url: _swagger_page(app), app.redoc_url: _redoc_page(app)}
    pages.pop(None, None)
    if not pages:
        return
    directory = assets_dir()
    routes: list[BaseRoute] = []
    for route in app.router.routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str) or path not in pages:
            routes.append(route)
        elif directory is not None:
            routes.append(Route(path, pages[path], methods=["GET"], include_in_schema=False))
    app.router.routes[:] = routes
    if directory is None:
        _log.warning(
            "API docs pages %s are off: their assets are not installed (package %s, in "
            "infertrail[server]); /openapi.json is still served",
            ", ".join(str(p) for p in pages),
            _PACKAGE.replace("_", "-"),
        )
        return
    app.mount(ASSETS_PATH, StaticFiles(directory=directory), name="infertrail-docs-assets")


def _swagger_page(app: FastAPI) -> Page:
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    return swagger


def _redoc_page(app: FastAPI) -> Page:
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    return redoc
