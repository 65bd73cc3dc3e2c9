"""A pure-ASGI middleware requiring ``Authorization: Bearer <PAPERQA_API_KEY>`` when a key is set.

Open without the key: ``GET /health`` (for load balancers), ``GET /`` and ``/static/*`` (the chat
page, which then sends the key the user saved in its Settings). Everything else, the API docs
included, answers 401 with ``WWW-Authenticate: Bearer`` without the right key. Keys are compared in
constant time (``hmac.compare_digest``); neither the key nor the header is ever logged.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import error_response

PUBLIC_PATHS = ("/health", "/")
PUBLIC_PREFIX = "/static/"


def is_public(method: str, path: str) -> bool:
    if method not in ("GET", "HEAD"):
        return False
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and hmac.compare_digest(token.encode("latin-1", "replace"), self._key):
            await self.app(scope, receive, send)
            return
        if token is None:
            detail = "this service needs an API key: send the header 'Authorization: Bearer <key>'"
            challenge = 'Bearer realm="paperqa"'
        else:
            detail = "the API key is not valid; check the key you were given"
            challenge = 'Bearer realm="paperqa", error="invalid_token"'
        response = error_response(Request(scope), 401, detail, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)
