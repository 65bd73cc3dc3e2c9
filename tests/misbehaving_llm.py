"""A real OpenAI-compatible HTTP server that misbehaves on purpose, for the LLM-failure tests.

A plain ASGI app served by uvicorn in a thread on ``127.0.0.1:<free port>``. ``POST
/v1/chat/completions`` answers according to ``server.mode``:

``ok``          a normal completion (JSON, or SSE chunks with ``stream: true``)
``error500``    HTTP 500 every time
``flaky``       HTTP 500 for the first ``fail_times`` requests, then ``ok`` (retries with backoff)
``slow``        waits ``slow_s`` seconds before answering (longer than PAPERQA_LLM_TIMEOUT_S)
``malformed``   HTTP 200 whose body is not JSON (``data:`` lines that are not JSON when streaming)
``cut``         starts the reply, then drops the connection mid-body (SSE: after a few chunks)
``stall``       starts the reply (SSE: one chunk), then sends nothing more, ever

"down" (nothing listening) needs no server: use a free port. Every request is recorded in
``server.requests`` (arrival time, ``stream`` flag) so tests can count retries and their spacing.
Sleeps are cut short when the server stops, so stopping it never waits for a stalled reply.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

MODES = ("ok", "error500", "flaky", "slow", "malformed", "cut", "stall")
OK_TEXT = "Post-training quantization of vision transformers is studied [1]."


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    stream: bool


class _Dropped(Exception):
    """Raised after the response started: uvicorn then closes the connection mid-body."""


class MisbehavingLLM:
    """``with MisbehavingLLM("cut") as llm: ... llm.base_url ...``; ``llm.mode`` may be changed."""

    def __init__(self, mode: str = "ok", *, fail_times: int = 2, slow_s: float = 30.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode = mode
        self.fail_times = fail_times
        self.slow_s = slow_s
        self.requests: list[Seen] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(
            self.app,
            log_level="critical",
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"misbehaving-llm-{self.port}",
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> MisbehavingLLM:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the misbehaving LLM server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> MisbehavingLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the server is asked to stop."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._server.should_exit:
            await asyncio.sleep(0.05)

    # --- the ASGI app ---------------------------------------------------------------------------
    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path = scope["path"]
        if scope["method"] == "GET" and path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": "misbehaving", "object": "model"}]})
            return
        if scope["method"] != "POST" or path != "/v1/chat/completions":
            await _json(send, 404, {"error": {"message": f"no route {path}"}})
            return
        try:
            stream = bool(json.loads(body or b"{}").get("stream"))
        except ValueError:
            stream = False
        self.requests.append(Seen(time.monotonic(), stream))
        mode = self.mode
        if mode == "flaky":
            mode = "error500" if len(self.requests) <= self.fail_times else "ok"

        if mode == "error500":
            await _json(send, 500, {"error": {"message": "the model crashed", "type": "server_error"}})
        elif mode == "slow":
            await self._sleep(self.slow_s)
            await self._ok(send, stream)
        elif mode == "malformed":
            if stream:
                await _start(send, 200, "text/event-stream")
                await _chunk(send, b"data: {this is not json\n\n", more=True)
                await _chunk(send, b"data: [DONE]\n\n", more=False)
            else:
                await _start(send, 200, "application/json")
                await _chunk(send, b'{"id": "x", "choices": [ this is not json', more=False)
        elif mode == "cut":
            if stream:
                await _start(send, 200, "text/event-stream")
                for piece in ("Post-training ", "quantization ", "of vision "):
                    await _chunk(send, _sse_delta(piece), more=True)
                    await asyncio.sleep(0.05)
            else:
                await _start(send, 200, "application/json", length=4096)
                await _chunk(send, b'{"id": "chatcmpl-cut", "object": "chat.completion", "choi', more=True)
            raise _Dropped("connection dropped on purpose")
        elif mode == "stall":
            if stream:
                await _start(send, 200, "text/event-stream")
                await _chunk(send, _sse_delta("Post-training "), more=True)
            else:
                await _start(send, 200, "application/json", length=4096)
                await _chunk(send, b'{"id": "chatcmpl-stall", ', more=True)
            await self._sleep(3600)
            raise _Dropped("stopped while stalled")
        else:
            await self._ok(send, stream)

    async def _ok(self, send, stream: bool) -> None:
        if not stream:
            await _json(send, 200, _completion(OK_TEXT))
            return
        await _start(send, 200, "text/event-stream")
        for word in OK_TEXT.split(" "):
            await _chunk(send, _sse_delta(word + " "), more=True)
        await _chunk(send, b"data: [DONE]\n\n", more=False)


async def read_body(receive) -> bytes:
    """The whole request body of an ASGI ``http`` request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def _completion(text: str) -> dict:
    return {
        "id": "chatcmpl-ok",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "misbehaving",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def _sse_delta(text: str) -> bytes:
    chunk = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "misbehaving",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _start(send, status: int, content_type: str, length: int | None = None) -> None:
    headers = [(b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _chunk(send, body: bytes, more: bool) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def _json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await _start(send, status, "application/json", length=len(body))
    await _chunk(send, body, more=False)
