"""The MCP server over streamable HTTP, as an ASGI endpoint the FastAPI app routes ``/mcp`` to.

:class:`McpEndpoint` is the endpoint; :meth:`McpEndpoint.running` is its lifespan, which the app
runs inside its own (``app.http.app``): the SDK's session manager needs a running task group, and
a manager runs only once, so each lifespan gets a new one. Outside it the endpoint answers 503.

Stateless and plain JSON: every POST carries one JSON-RPC message and gets its answer as JSON, with
no session held in memory and no stream left open, so it works behind any proxy, with several
workers, and never holds up shutdown. The tools send nothing unasked, so there is no
server-to-client stream: ``GET`` (and ``DELETE``, which ends a session, of which there are none)
answer 405, as the MCP specification allows, rather than open a stream that never carries anything.

The app's middlewares (API key, rate limit, body guard, request log) apply to ``/mcp`` like to any
route. When the app listens on loopback, the SDK's DNS-rebinding guard is on: a ``Host`` other than
a loopback name is refused (421), and so is an ``Origin`` other than loopback or
``PAPERQA_CORS_ORIGINS`` (403).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from app.core.settings import Settings

MCP_PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def transport_security(settings: Settings) -> TransportSecuritySettings | None:
    """The DNS-rebinding guard for a service on loopback; None (off) for one bound elsewhere, where
    the ``Host`` clients use is not known here (``PAPERQA_API_KEY`` guards such a service)."""
    if settings.host not in LOOPBACK_HOSTS:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[h for name in _LOOPBACK_NAMES for h in (name, f"{name}:*")],
        allowed_origins=[
            *(o for name in _LOOPBACK_NAMES for o in (f"http://{name}", f"http://{name}:*")),
            *settings.cors_origins,
        ],
    )


class McpEndpoint:
    """An ASGI app serving ``server`` over streamable HTTP while :meth:`running`."""

    def __init__(self, server: MCPServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self._manager: StreamableHTTPSessionManager | None = None

    def _new_manager(self) -> StreamableHTTPSessionManager:
        # streamable_http_app() makes a new session manager and makes it server.session_manager;
        # the Starlette app it returns is not used: the FastAPI app routes to this endpoint.
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            max_request_body_size=self.settings.max_body_bytes,
            transport_security=transport_security(self.settings),
            host=self.settings.host,
        )
        return self.server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve requests until the block ends; then the requests still running are cancelled.

        The session manager's task group lives in a task of its own: an anyio task group must be
        left in the task that entered it, and a lifespan may be entered and left in two different
        tasks (pytest-asyncio fixtures do that)."""
        manager = self._new_manager()
        started, stop = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with manager.run():
                self._manager = manager
                started.set()
                try:
                    await stop.wait()
                finally:
                    self._manager = None

        task = asyncio.create_task(serve(), name="mcp-session-manager")
        waiting = asyncio.create_task(started.wait())
        try:
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # it failed to start: raise why
            yield
        finally:
            waiting.cancel()
            stop.set()
            await task  # the manager cancels what still runs; quick

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self._manager
        if scope.get("method") != "POST":
            response = JSONResponse(
                {"detail": f"{MCP_PATH} takes MCP messages by POST only (streamable HTTP, no SSE stream)"},
                status_code=405,
                headers={"Allow": "POST"},
            )
        elif manager is None:
            response = JSONResponse(
                {"detail": "the MCP endpoint is starting or stopping; retry in a moment"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        else:
            await manager.handle_request(scope, receive, send)
            return
        await response(scope, receive, send)
