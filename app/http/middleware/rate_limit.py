"""A per-client token bucket: ``PAPERQA_RATE_LIMIT_PER_MINUTE`` requests a minute per client address.

Each client address gets a bucket of that many tokens, refilled continuously at that rate per
minute, so a burst up to the limit passes and a steady flood is held to the rate. An empty bucket
answers 429 with ``Retry-After`` (seconds until the next token). ``/health`` is exempt. Buckets
are kept in memory and pruned, so many addresses cannot grow it without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import error_response

EXEMPT_PATHS = ("/health",)
MAX_CLIENTS = 10_000  # past this, full (idle) buckets are dropped


class TokenBuckets:
    """Pure logic: ``take(client, now)`` -> 0.0 if allowed, else seconds until a token is back."""

    def __init__(self, per_minute: int, max_clients: int = MAX_CLIENTS) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def take(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_clients:
                self._prune(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate
        self._buckets = {c: (t, at) for c, (t, at) in self._buckets.items() if now - at < full_after}

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.per_minute = per_minute
        self.buckets = TokenBuckets(per_minute)
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.buckets.take(client, self.clock())
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        response = error_response(
            Request(scope),
            429,
            f"too many requests from {client}: the limit is {self.per_minute} a minute; "
            f"retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
