"""``GET /health`` (and ``HEAD``): ready or not, what is loaded, how big the index is.

It answers within :data:`HEALTH_DEADLINE_S` whatever the store does: the heartbeat and the counts
run on the store gate's own health-check threads (never behind requests waiting on the store), and
a check that has not finished by the deadline reports the store as not answering.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.core.settings import Settings
from app.core.store import heartbeat, where
from app.http.schemas import Health, LexicalIndexHealth
from app.services import Services

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

HEALTH_DEADLINE_S = 1.5
HEARTBEAT_TIMEOUT_S = 1.0

Probe = tuple[str | None, int | None, int | None]


def _count(collection: Any) -> int | None:
    try:
        return int(collection.count())
    except Exception:  # the store went away: report it, don't fail the health check
        return None


def _unguarded(collection: Any) -> Any:
    return getattr(collection, "unguarded", collection)


def _probe(services: Services) -> Probe:
    """Heartbeat, then the two counts. Blocking."""
    settings = services.settings
    down = heartbeat(services.client, settings, min(HEARTBEAT_TIMEOUT_S, settings.store_timeout_s))
    if down is not None:
        return down, None, None
    return None, _count(_unguarded(services.papers)), _count(_unguarded(services.chunks))


async def _checked(services: Services, settings: Settings) -> Probe:
    if services.gate is None:  # services assembled by hand (tests): no deadline needed
        return _probe(services)
    try:
        return await services.gate.probe(lambda: _probe(services), HEALTH_DEADLINE_S)
    except TimeoutError:
        return (
            f"the {where(settings)} did not answer the health check within {HEALTH_DEADLINE_S:g} s",
            None,
            None,
        )


def _lexical(services: Services) -> LexicalIndexHealth:
    status = services.retriever.lexical.status
    return LexicalIndexHealth(status=status.status, detail=status.detail, version=status.version)


@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> JSONResponse:
    services: Services | None = getattr(request.app.state, "services", None)
    ready = bool(getattr(request.app.state, "ready", False)) and services is not None
    if services is None:
        return JSONResponse(Health(ready=False).model_dump(), status_code=503)
    settings = services.settings
    down, papers, chunks = await _checked(services, settings)
    if down is not None:
        log.warning("health: %s", down)
    body = Health(
        ready=ready and papers is not None,
        papers=papers,
        chunks=chunks,
        embedding_model=services.embed_model_name,
        llm_backend=services.engine.backend_name,
        llm_model=services.backend.model if services.backend is not None else None,
        collection=settings.collection,
        store="server" if settings.uses_chroma_server else "embedded",
        lexical_index=_lexical(services),
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
