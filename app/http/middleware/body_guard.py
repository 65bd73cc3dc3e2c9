"""A pure-ASGI middleware guarding request bodies: size (413), arrival time (408), JSON depth (400).

It checks ``Content-Length`` first (refused without reading anything), then reads the body itself,
counting bytes as they arrive, so a chunked upload or a lying ``Content-Length`` is stopped at the
limit too. The whole body must arrive within ``timeout_s`` seconds, so a client sending a byte a
second cannot hold a connection and a worker for long (408). A body that opens more than
``MAX_JSON_DEPTH`` nested arrays or objects is refused before any JSON parser sees it: Python's
parser would raise ``RecursionError`` on it (a 500). The body (at most ``max_bytes``) is then
replayed to the app; later ``receive`` calls go to the server as usual, so disconnect detection
(SSE) keeps working.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import error_response

MAX_JSON_DEPTH = 64  # requests of this API nest 5 levels at most


class BodyGuardMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send, 413, self._too_large())
            return

        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # nobody left to answer
                    body = message.get("body", b"")
                    size += len(body)
                    if size > self.max_bytes:
                        await self._refuse(scope, send, 413, self._too_large())
                        return
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(
                scope,
                send,
                408,
                f"the request body did not arrive within {self.timeout_s:g} s ({size} bytes received); "
                "send it at once",
            )
            return
        whole = b"".join(chunks)
        depth = json_depth(whole, MAX_JSON_DEPTH)
        if depth > MAX_JSON_DEPTH:
            await self._refuse(
                scope,
                send,
                400,
                f"the request body nests JSON arrays/objects more than {MAX_JSON_DEPTH} levels deep",
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body too large: the limit is {self.max_bytes} bytes"

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        # The rest of the body is not read: the connection cannot be reused.
        response = error_response(Request(scope), status, detail, headers={"Connection": "close"})
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def json_depth(body: bytes, limit: int) -> int:
    """How deeply ``[``/``{`` nest in ``body`` outside strings, counting up to ``limit + 1``.

    Not a validator: malformed JSON is left to the parser. Cheap for ordinary bodies: one with
    fewer openers than the limit is not scanned at all.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
