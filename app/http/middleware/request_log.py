"""One JSON log line per request, on the ``app.requests`` logger (:data:`REQUEST_LOGGER`); the request id also goes back to
the client as ``X-Request-ID``.

Fields: ``request_id``, ``method``, ``path`` (the route's template, e.g. ``/papers/{paper_id}``, so
ids and queries stay out of the log), ``status``, ``duration_ms``, ``client``. Headers, bodies and
query strings are never logged, so neither is an API key. A well-formed ``X-Request-ID`` sent by the
client (a proxy, say) is kept; otherwise one is made.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_LOGGER = "app.requests"
log = logging.getLogger(REQUEST_LOGGER)

_GOOD_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` goes to (``-`` when none does)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", "-")
        if match is Match.PARTIAL and partial is None:
            partial = getattr(route, "path", "-")
    return partial or "-"


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _GOOD_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's route list (filled in after this is built)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        status = 500  # if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": route_template(self.routes, scope),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "client": client[0] if client else None,
                    }
                )
            )
