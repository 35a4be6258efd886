"""The witness over HTTP (the ``server`` extra): ``add-checkpoint``, and its newest cosigned views.

- ``POST /add-checkpoint``: c2sp.org/tlog-witness (the URL the witness is given is its
  submission prefix); bodies over :data:`MAX_REQUEST_SIZE` are refused with 413 before they
  are read whole.
- ``GET /checkpoint/<origin>``: the newest checkpoint the witness cosigned for that log, with
  the log's signature and the witness's cosignature (``text/plain; charset=utf-8``), 404 if
  none. Not part of tlog-witness, whose read API is still to be specified: it is how
  ``infertrail audit verify`` asks a witness what it saw, out of the log operator's reach.

Nothing else is served (no documentation pages): a witness exposes as little as it can.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from infertrail.audit.cosigned import CHECKPOINT_ROUTE, NOT_COSIGNED
from infertrail.audit.witness_protocol import ADD_CHECKPOINT_PATH, MAX_REQUEST_SIZE
from infertrail.witness.service import TEXT, Answer, Witness

__all__ = ["create_app"]


def create_app(witness: Witness) -> FastAPI:
    """The witness's ASGI app."""
    app = FastAPI(title="infertrail witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(ADD_CHECKPOINT_PATH)
    async def add_checkpoint(request: Request) -> Response:
        body = await _read_body(request, MAX_REQUEST_SIZE)
        if body is None:
            answer = Answer.error(413, f"request body is over {MAX_REQUEST_SIZE} bytes")
        else:
            # Signature checks, the proof and an fdatasync: off the event loop.
            answer = await run_in_threadpool(witness.add_checkpoint, body)
        # As the header, not media_type: Starlette would add "; charset=utf-8" to text types,
        # and clients match text/x.tlog.size exactly (Tessera does).
        return Response(answer.body, answer.status, headers={"content-type": answer.content_type})

    @app.get(CHECKPOINT_ROUTE + "{origin:path}")
    async def checkpoint(origin: str) -> Response:
        note = witness.checkpoint(origin)
        if note is None:
            return Response(
                NOT_COSIGNED + repr(origin[:100]).encode() + b"\n", 404, media_type=TEXT
            )
        return Response(note, 200, media_type=TEXT, headers={"Cache-Control": "no-store"})

    return app


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
