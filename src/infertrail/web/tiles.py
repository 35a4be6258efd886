"""The audit log served read-only as C2SP tlog-tiles, for monitors, witnesses and auditors.

Routes under a prefix (``/tlog`` by default; the log's URL is then ``http://host/tlog``):

- ``GET <prefix>/checkpoint``: the newest signed checkpoint, ``text/plain; charset=utf-8``,
  cacheable for two seconds at most (the spec: "a few seconds");
- ``GET <prefix>/tile/<L>/<N>[.p/<W>]``: hash tiles, ``application/octet-stream``, cacheable
  for a year and ``immutable`` (a tile's name fixes its contents);
- ``GET <prefix>/tile/entries/<N>[.p/<W>]``: entry bundles, only when enabled: they carry every
  record's canonical bytes (pseudonymized subjects, decisions), which the compliance API
  otherwise guards. Gzipped for clients that accept it, as the spec recommends.

Only resources the current checkpoint covers exist (404 otherwise); paths must be the
canonical spelling. Storage is read in a worker thread (:class:`~infertrail.audit.tilesource.
LogTiles`); damaged storage answers 500 and is logged, never served.
"""

from __future__ import annotations

import gzip
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from infertrail.audit.framing import LogCorruptedError
from infertrail.audit.tiles import Tile, TileError, parse_tile_path
from infertrail.audit.tilesource import LogTiles, TileUnavailable
from infertrail.web.responses import error_response, request_id_of

__all__ = ["CHECKPOINT_CACHE", "DEFAULT_PREFIX", "TILE_CACHE", "mount_tiles"]

DEFAULT_PREFIX = "/tlog"
CHECKPOINT_CACHE = "public, max-age=2"
TILE_CACHE = "public, max-age=31536000, immutable"
_OCTETS = "application/octet-stream"

log = logging.getLogger("infertrail.web.tiles")


def mount_tiles(
    app: Starlette, source: LogTiles, *, prefix: str = DEFAULT_PREFIX, entries: bool = False
) -> None:
    """Add the tlog-tiles routes for ``source`` under ``prefix`` to ``app`` (not in OpenAPI)."""
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"tiles prefix must start with '/' and not end with one, got {prefix!r}")

    async def checkpoint(request: Request) -> Response:
        try:
            note, _ = await run_in_threadpool(source.checkpoint)
        except TileUnavailable as exc:
            return error_response(404, "not_found", str(exc), request_id_of(request))
        except LogCorruptedError as exc:
            return _damaged(request, exc)
        return Response(note, media_type="text/plain", headers={"Cache-Control": CHECKPOINT_CACHE})

    async def tile(request: Request) -> Response:
        rid = request_id_of(request)
        try:
            wanted = parse_tile_path("tile/" + request.path_params["rest"])
        except TileError as exc:
            return error_response(404, "not_found", f"not a tile: {exc}", rid)
        if wanted.entries and not entries:
            return error_response(404, "not_found", "entry bundles are not served here", rid)
        try:
            data = await run_in_threadpool(_read, source, wanted)
        except TileUnavailable as exc:
            return error_response(404, "not_found", str(exc), rid)
        except (LogCorruptedError, TileError) as exc:
            return _damaged(request, exc)
        headers = {"Cache-Control": TILE_CACHE}
        if wanted.entries:
            headers["Vary"] = "Accept-Encoding"
            if "gzip" in request.headers.get("accept-encoding", ""):
                data = gzip.compress(data, mtime=0)
                headers["Content-Encoding"] = "gzip"
        return Response(data, media_type=_OCTETS, headers=headers)

    app.router.add_route(f"{prefix}/checkpoint", checkpoint, ["GET"], include_in_schema=False)
    app.router.add_route(f"{prefix}/tile/{{rest:path}}", tile, ["GET"], include_in_schema=False)


def _read(source: LogTiles, tile: Tile) -> bytes:
    """The tile as the current checkpoint covers it (one consistent view per request)."""
    _, checkpoint = source.checkpoint()
    return source.read(tile, checkpoint.size)


def _damaged(request: Request, exc: Exception) -> Response:
    # The operator's log has the details; the answer names no path of the server.
    log.error("tlog-tiles: cannot serve %s: %s", request.url.path, exc)
    detail = "the audit log's storage is damaged; the operator must run infertrail audit verify"
    return error_response(500, "log_damaged", detail, request_id_of(request))
