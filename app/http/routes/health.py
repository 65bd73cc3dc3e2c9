"""``GET /health``: ready or not, what is loaded, how big the index is."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.core.store import heartbeat
from app.http.schemas import Health
from app.services import Services

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_S = 2.0


def _count(collection: Any) -> int | None:
    try:
        return collection.count()
    except Exception:  # the store went away: report it, don't fail the health check
        return None


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> JSONResponse:
    services: Services | None = getattr(request.app.state, "services", None)
    ready = bool(getattr(request.app.state, "ready", False)) and services is not None
    if services is None:
        return JSONResponse(Health(ready=False).model_dump(), status_code=503)
    settings = services.settings
    # A cheap heartbeat with a short timeout first: a dead or hung store must not hang the check.
    timeout_s = min(HEARTBEAT_TIMEOUT_S, settings.store_timeout_s)
    down = await run_in_threadpool(heartbeat, services.client, settings, timeout_s)
    if down is not None:
        log.warning("health: %s", down)
    papers = None if down else await run_in_threadpool(_count, services.papers)
    chunks = None if down else await run_in_threadpool(_count, services.chunks)
    body = Health(
        ready=ready and papers is not None,
        papers=papers,
        chunks=chunks,
        embedding_model=services.embed_model_name,
        llm_backend=services.engine.backend_name,
        llm_model=services.backend.model if services.backend is not None else None,
        collection=settings.collection,
        store="server" if settings.uses_chroma_server else "embedded",
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
