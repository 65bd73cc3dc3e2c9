"""A per-client token bucket: ``PAPERQA_RATE_LIMIT_PER_MINUTE`` requests a minute per client address.

Each client address gets a bucket of that many tokens, refilled continuously at that rate per
minute, so a burst up to the limit passes and a steady flood is held to the rate. An empty bucket
answers 429 with ``Retry-After`` (seconds until the next token). ``/health`` is exempt. Buckets
are kept in memory and pruned, so many addresses cannot grow it without bound.

The client is the address the connection comes from. Behind a reverse proxy every request comes
from the proxy, so when the connection comes from an address in ``PAPERQA_TRUSTED_PROXIES`` the
client is read from ``X-Forwarded-For`` instead: the right-most address in it that is not itself a
trusted proxy (each proxy appends the address it received the request from, so what a client
writes into the header itself stays on the left, where it is never read). From any other address
the header is ignored, so no client can forge it to dodge the limit.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import error_response

EXEMPT_PATHS = ("/health",)
MAX_CLIENTS = 10_000  # past this, full (idle) buckets are dropped


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> list[Network]:
    """``PAPERQA_TRUSTED_PROXIES`` entries (addresses or CIDR networks); raises ValueError on a bad one."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """Who a request counts against: ``peer`` (the connection's address), or, when ``peer`` is a
    trusted proxy, the right-most ``X-Forwarded-For`` address that is not a trusted proxy."""
    if peer is None:
        return "unknown"
    peer_address = _address(peer)
    if peer_address is None or not proxies or not _trusted(peer_address, proxies):
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # unreadable: nothing left of it can be trusted either
        client = str(address)
        if not _trusted(address, proxies):
            break
    return client


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
    def __init__(
        self,
        app: ASGIApp,
        per_minute: int,
        trusted_proxies: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.per_minute = per_minute
        self.proxies = parse_networks(trusted_proxies)
        self.buckets = TokenBuckets(per_minute)
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        forwarded = [
            value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"
        ]
        client = client_address(peer, forwarded, self.proxies)
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
