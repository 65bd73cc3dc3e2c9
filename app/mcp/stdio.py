"""The MCP server over stdio, for clients that start it as a subprocess (``python -m app.mcp``).

The handshake and ``tools/list`` are answered at once; the services (store, embedder, retriever,
LLM) load in a worker thread meanwhile, and a tool call waits for them. When loading fails (no
index yet, store down, bad settings) each tool call reports why, as a tool error, and the next call
tries again: run ``python -m ingest`` and ask again, no restart needed. The wire is stdout; the
SDK points file descriptor 1 at stderr while it serves, so nothing else written there (a library's
print, a native log line) can corrupt it, and logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from app.core.settings import Settings
from app.core.store import store_errors
from app.mcp.server import build_server
from app.services import Services, build_services

log = logging.getLogger(__name__)


class ServicesLoader:
    """Loads the services once in a worker thread; a failed load is tried again on the next call."""

    def __init__(self, settings: Settings, build: Callable[[Settings], Services] = build_services) -> None:
        self.settings = settings
        self._build = build
        self._loading: asyncio.Future[Services] | None = None
        self._services: Services | None = None

    def _load(self) -> Services:
        with store_errors(self.settings):  # a store that dies mid-way is "unavailable" too
            services = self._build(self.settings)
        log.info(
            "ready: %d papers, LLM backend %s", services.retriever.n_papers, services.engine.backend_name
        )
        return services

    def start(self) -> None:
        """Start loading now, if it is not loading or loaded already (call it from the event loop)."""
        if self._services is None and self._loading is None:
            self._loading = asyncio.ensure_future(run_in_threadpool(self._load))

    async def __call__(self) -> Services:
        """The loaded services; waits for the load, or raises why it failed."""
        if self._services is not None:
            return self._services
        self.start()
        loading = self._loading
        assert loading is not None
        try:
            # Shielded: a tool call that is cancelled does not cancel the load others wait for.
            services = await asyncio.shield(loading)
        except Exception as exc:
            if self._loading is loading:
                self._loading = None  # the next call loads again
            log.error("the services could not be loaded: %s", exc)
            raise
        self._services = services
        return services

    async def aclose(self, wait_s: float = 30.0) -> None:
        """Close the services; a load still under way (a thread cannot be cancelled) is waited for,
        at most ``wait_s`` seconds, and what it loaded closed too."""
        loading, self._loading = self._loading, None
        if self._services is None and loading is not None:
            done, _ = await asyncio.wait([loading], timeout=wait_s)
            if loading in done and not loading.cancelled() and loading.exception() is None:
                self._services = loading.result()
        if self._services is not None:
            await self._services.aclose()
            self._services = None


async def serve_stdio(settings: Settings) -> None:
    """Serve the tools over this process's stdin and stdout until stdin closes."""
    loader = ServicesLoader(settings)
    server = build_server(loader)
    loader.start()
    try:
        await server.run_stdio_async()
    finally:
        await loader.aclose()
