"""The app factory: ``create_app(settings, services)``.

``uvicorn app.http.app:create_app --factory`` builds the settings from the environment; ``python -m app``
does the same and serves on ``settings.host:settings.port``. The services (store, embedder,
retriever, LLM) are loaded once by the lifespan, or passed in ready-made (tests); only services the
app loaded itself are closed on shutdown. When the store is unreachable at start the app starts
anyway, not ready (``/health`` says so, other routes answer 503), and retries in the background
every ``store_retry_s`` seconds. While it serves, a background task keeps the BM25 index in step
with the store (:mod:`app.retrieval.refresh`).

The same tools are served over the Model Context Protocol at ``/mcp`` (:mod:`app.mcp`), behind the
same middlewares. The app's lifespan is the services' lifespan with the MCP session manager running
inside it (:func:`with_mcp`): it starts once the services are loaded (or the app starts not ready)
and stops before they are closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from app.core import offline
from app.core.errors import StoreUnavailable
from app.core.settings import Settings, load_settings
from app.core.store import store_errors
from app.http.errors import install_error_handlers
from app.http.middleware.api_key import ApiKeyMiddleware
from app.http.middleware.body_guard import BodyGuardMiddleware
from app.http.middleware.rate_limit import RateLimitMiddleware
from app.http.middleware.request_log import RequestLogMiddleware
from app.http.openapi import install_openapi
from app.http.routes import chat, health, openai_compat, pages, papers, search
from app.http.routes.pages import STATIC_DIR
from app.mcp.http import MCP_PATH, McpEndpoint
from app.mcp.server import NotReady, build_server
from app.retrieval.refresh import refresh_index
from app.services import Services, build_services

log = logging.getLogger("app")


def make_lifespan(given: Services | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        app.state.tasks = []
        if given is not None:
            _serve(app, given)
        else:
            try:
                _serve(app, await _load(settings))
            except StoreUnavailable as exc:
                # Start anyway, not ready, and keep trying: the store may come up later.
                app.state.not_ready_reason = str(exc)
                log.error("not ready: %s; retrying every %g s", exc, settings.store_retry_s)
                app.state.tasks.append(asyncio.create_task(_keep_loading(app, settings)))
        try:
            yield
        finally:
            app.state.ready = False
            for task in app.state.tasks:
                task.cancel()
            await asyncio.gather(*app.state.tasks, return_exceptions=True)
            if given is None and app.state.services is not None:
                await app.state.services.aclose()

    return lifespan


async def _load(settings: Settings) -> Services:
    def build() -> Services:
        with store_errors(settings):  # a store that dies mid-way is "unavailable" too
            return build_services(settings)

    log.info("loading services (store, embedder, retriever, LLM)...")
    services = await run_in_threadpool(build)
    log.info(
        "ready: %d papers, %d chunks, LLM backend %s (load seconds %s)",
        services.retriever.n_papers,
        services.retriever.n_chunks,
        services.engine.backend_name,
        {k: round(v, 2) for k, v in services.load_seconds.items()},
    )
    return services


async def _keep_loading(app: FastAPI, settings: Settings) -> None:
    """Retry loading every ``store_retry_s`` until it works; only shutdown stops it."""
    while True:
        await asyncio.sleep(settings.store_retry_s)
        try:
            services = await _load(settings)
        except StoreUnavailable as exc:
            if str(exc) != app.state.not_ready_reason:
                log.error("still not ready: %s", exc)
            app.state.not_ready_reason = str(exc)
            continue
        _serve(app, services)
        return


def _serve(app: FastAPI, services: Services) -> None:
    app.state.services = services
    app.state.not_ready_reason = None
    app.state.ready = True
    refresh = refresh_index(services.retriever, services.settings.index_refresh_s)
    app.state.tasks.append(asyncio.create_task(refresh))


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def with_mcp(lifespan: Lifespan, mcp: McpEndpoint) -> Lifespan:
    """``lifespan`` with the MCP endpoint running inside it: started after the services are loaded
    (or the app started not ready), stopped (its requests cancelled) before they are closed."""

    @asynccontextmanager
    async def both(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app), mcp.running():
            yield

    return both


async def services_of(app: FastAPI) -> Services:
    """The loaded services of ``app`` for the MCP tools, or :class:`NotReady` saying why not (the
    same words as the 503 of the other routes)."""
    services: Services | None = app.state.services
    if services is None or not app.state.ready:
        reason = app.state.not_ready_reason
        raise NotReady(
            f"the service is not ready: {reason}"
            if reason
            else "the service is starting or stopping; retry in a moment"
        )
    return services


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    offline.configure()
    settings = settings or (services.settings if services is not None else load_settings())
    mcp = McpEndpoint(build_server(lambda: services_of(app)), settings)
    app = FastAPI(
        title="paperqa-lite",
        summary="Cited answers from research-paper abstracts.",
        version="0.1.0",
        lifespan=with_mcp(make_lifespan(services), mcp),
        debug=False,  # never a traceback in a response, whatever settings.debug says
    )
    app.state.settings = settings
    app.state.services = None
    app.state.ready = False
    app.state.not_ready_reason = None
    app.state.tasks = []

    install_error_handlers(app)
    install_openapi(app, settings)
    # The last added runs first: the request log (so every answer is logged, refusals too), CORS
    # (so even a 401/413/429 carries its headers), the rate limit, the API key, then the body
    # guard, which refuses an oversized, slow or absurdly nested body before anything parses it.
    app.add_middleware(
        BodyGuardMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware,
            per_minute=settings.rate_limit_per_minute,
            trusted_proxies=settings.trusted_proxies,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Mcp-Protocol-Version", "Mcp-Session-Id"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )

    modules = (pages, chat, openai_compat, papers, search, health)
    for module in modules:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The MCP endpoint, an ASGI app, on the exact path (a Mount would redirect /mcp to /mcp/).
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, name="mcp", include_in_schema=False))
    # Added last, so it runs first. It names each request by its route's template.
    routes = [*app.router.routes, *(route for module in modules for route in module.router.routes)]
    app.add_middleware(
        RequestLogMiddleware, routes=[r for r in routes if isinstance(getattr(r, "path", None), str)]
    )
    return app
