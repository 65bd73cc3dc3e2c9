"""The app factory: ``create_app(settings, services)``.

``uvicorn app.main:create_app --factory`` builds the settings from the environment; ``python -m app``
does the same and serves on ``settings.host:settings.port``. The services (store, embedder,
retriever, LLM) are loaded once by the lifespan, or passed in ready-made (tests); only services the
app loaded itself are closed on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.body_limit import BodySizeLimitMiddleware
from app.errors import install_error_handlers
from app.routes import chat, health, openai_compat, pages, papers, search
from app.routes.pages import STATIC_DIR
from app.services import Services, build_services
from app.settings import Settings

log = logging.getLogger("app")


def make_lifespan(given: Services | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        owned = given is None
        services = given
        if services is None:
            log.info("loading services (store, embedder, retriever, LLM)...")
            services = await run_in_threadpool(build_services, settings)
            log.info(
                "ready: %d papers, %d chunks, LLM backend %s (load seconds %s)",
                services.retriever.n_papers,
                services.retriever.n_chunks,
                services.answerer.backend_name,
                {k: round(v, 2) for k, v in services.load_seconds.items()},
            )
        app.state.services = services
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            if owned:
                await services.aclose()

    return lifespan


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or (services.settings if services is not None else Settings())
    app = FastAPI(
        title="paperqa-lite",
        summary="Cited answers from research-paper abstracts.",
        version="0.1.0",
        lifespan=make_lifespan(services),
        debug=False,  # never a traceback in a response, whatever settings.debug says
    )
    app.state.settings = settings
    app.state.services = None
    app.state.ready = False

    install_error_handlers(app)
    # The last added runs first: CORS (so even a 413 carries its headers), then the body limit,
    # which refuses an oversized body before anything reads it.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    for module in (pages, chat, openai_compat, papers, search, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
