"""Clients of the service's HTTP API that pace themselves: the project's own tools (``python -m eval
... --url``, the benchmarks) use them, so a run against a server on default settings waits out the
rate limit instead of failing.

An answer 429 (rate limited) is retried after its ``Retry-After``, as long as the total wait stays
within ``max_wait_s``; any other answer, and a 429 without a usable ``Retry-After``, is returned as
it is. ``python -m eval`` also reads ``/health`` to label a run with the backend and model the
server really uses (:func:`server_identity`).
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429})
MAX_WAIT_S = 300.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _delay(response: httpx.Response, waited: float, max_wait_s: float) -> float | None:
    if response.status_code not in RETRY_STATUSES:
        return None
    delay = retry_after_seconds(response.headers.get("retry-after"))
    if delay is None or waited + delay > max_wait_s:
        return None
    return delay


class PacedTransport(httpx.AsyncBaseTransport):
    """An async transport that waits out ``Retry-After`` on 429 and sends the request again."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, max_wait_s: float = MAX_WAIT_S) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.max_wait_s = max_wait_s
        self.waited_s = 0.0  # over the transport's life: what pacing cost a run
        self.retries = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        waited = 0.0
        while True:
            response = await self.inner.handle_async_request(request)
            delay = _delay(response, waited, self.max_wait_s)
            if delay is None:
                return response
            await response.aclose()
            await asyncio.sleep(delay)
            waited += delay
            self.waited_s += delay
            self.retries += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class PacedSyncTransport(httpx.BaseTransport):
    """The same for a synchronous ``httpx.Client``."""

    def __init__(self, inner: httpx.BaseTransport | None = None, max_wait_s: float = MAX_WAIT_S) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.max_wait_s = max_wait_s
        self.waited_s = 0.0
        self.retries = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        waited = 0.0
        while True:
            response = self.inner.handle_request(request)
            delay = _delay(response, waited, self.max_wait_s)
            if delay is None:
                return response
            response.close()
            time.sleep(delay)
            waited += delay
            self.waited_s += delay
            self.retries += 1

    def close(self) -> None:
        self.inner.close()


def paced_client(base_url: str = "", api_key: str = "", **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for the service: bearer key if given, 429s waited out."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(base_url=base_url, headers=headers, transport=PacedTransport(), **kwargs)


def paced_sync_client(base_url: str = "", api_key: str = "", **kwargs: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=base_url, headers=headers, transport=PacedSyncTransport(), **kwargs)


def server_identity(url: str, api_key: str = "", timeout_s: float = 10.0) -> dict[str, Any]:
    """What a running server says it answers with (``GET /health``): backend, model, embedder, store."""
    with paced_sync_client(url, api_key, timeout=timeout_s) as http:
        response = http.get("/health")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict) or "llm_backend" not in body:
        raise httpx.HTTPStatusError(
            f"{url}/health answered HTTP {response.status_code} without the service's health body; "
            "is this a paperqa-lite server?",
            request=response.request,
            response=response,
        )
    keys = ("llm_backend", "llm_model", "embedding_model", "collection", "store", "ready", "papers")
    return {key: body.get(key) for key in keys}
