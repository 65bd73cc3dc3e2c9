"""Limits that fit the use (fast tier; issue 15, part 3): the rate limit counts the real client
behind a trusted reverse proxy and nobody else's word for it; the project's own clients wait out
a 429 instead of failing; ``python -m eval --url`` labels a run with what the server really runs."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

from app.client import PacedTransport, paced_sync_client, retry_after_seconds, server_identity
from app.core.errors import InvalidSettings
from app.core.settings import load_settings
from app.http.app import create_app
from app.http.middleware.rate_limit import client_address, parse_networks
from app.services import Services
from eval.__main__ import with_server_identity
from eval.config import parse_config
from tests.helpers import LiveServer

QUESTION = "Which papers quantize vision transformers after training?"
PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


# --- who is the client ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", [], "203.0.113.9"),
        # Not a trusted proxy: the header is the client's own word, ignored.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # A trusted proxy: the address it received the request from.
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        # A client's forged entry stays on the left, never read.
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        # A chain of trusted proxies is walked through.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.5"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1", "10.0.0.5"], "198.51.100.1"),
        # Everything trusted: the left-most.
        ("127.0.0.1", ["10.1.1.1, 10.0.0.5"], "10.1.1.1"),
        # Unreadable hop: stop there, at the last address a trusted proxy vouched for.
        ("127.0.0.1", ["6.6.6.6, garbage"], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
        ("fd00::1", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("127.0.0.1", [], "127.0.0.1"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_means_the_header_is_never_read() -> None:
    assert client_address("127.0.0.1", ["198.51.100.1"], []) == "127.0.0.1"


def test_trusted_proxies_are_checked_at_start(clean_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERQA_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    assert load_settings().trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    monkeypatch.setenv("PAPERQA_TRUSTED_PROXIES", "127.0.0.1,proxy.local")
    with pytest.raises(InvalidSettings, match="proxy.local"):
        load_settings()
    assert ipaddress.ip_address("10.2.3.4") in PROXIES[1]


async def _statuses(app: Any, peer: str, forwarded: str | None, n: int) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=(peer, 123))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
        return [(await client.get("/search", params={"q": QUESTION})).status_code for _ in range(n)]


def app_with(services: Services, **overrides: Any) -> Any:
    return create_app(services.settings.model_copy(update=overrides), services)


async def test_behind_a_trusted_proxy_each_user_has_an_allowance(contract_services: Services) -> None:
    app = app_with(contract_services, rate_limit_per_minute=3, trusted_proxies=["127.0.0.1"])
    async with app.router.lifespan_context(app):
        assert await _statuses(app, "127.0.0.1", "198.51.100.1", 4) == [200, 200, 200, 429]
        # Another user behind the same proxy is not limited by the first one's use.
        assert await _statuses(app, "127.0.0.1", "198.51.100.2", 3) == [200, 200, 200]
        # The first user cannot dodge the limit by writing another address in front.
        assert await _statuses(app, "127.0.0.1", "1.2.3.4, 198.51.100.1", 1) == [429]


async def test_a_forged_header_from_an_untrusted_address_does_not_dodge_the_limit(
    contract_services: Services,
) -> None:
    app = app_with(contract_services, rate_limit_per_minute=3, trusted_proxies=["127.0.0.1"])
    async with app.router.lifespan_context(app):
        statuses = []
        for i in range(4):
            statuses += await _statuses(app, "203.0.113.9", f"198.51.100.{i}", 1)
        assert statuses == [200, 200, 200, 429]


# --- clients that wait out a 429 -------------------------------------------------------------
def test_retry_after_seconds() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_a_paced_client_works_against_the_default_limit(contract_services: Services) -> None:
    """A quick check of a local server (more searches than the burst allows) gets all 200s: the
    client waits out each 429's Retry-After. Rate 60 a minute here (1 s per token), so it is short."""
    app = app_with(contract_services, rate_limit_per_minute=60)
    with LiveServer(app) as server:
        with httpx.Client(base_url=server.url, timeout=30) as plain:
            unpaced = [plain.get("/search", params={"q": QUESTION}).status_code for _ in range(63)]
        assert 429 in unpaced, "the limit did not trip: the test shows nothing"
        with paced_sync_client(server.url, timeout=30) as paced:
            statuses = [paced.get("/search", params={"q": QUESTION}).status_code for _ in range(5)]
            transport = paced._transport
        assert statuses == [200] * 5
        assert getattr(transport, "retries", 0) >= 1 and getattr(transport, "waited_s", 0) >= 1.0


async def test_a_paced_client_gives_up_past_its_budget(contract_services: Services) -> None:
    app = app_with(contract_services, rate_limit_per_minute=1)
    async with app.router.lifespan_context(app):
        inner = httpx.ASGITransport(app=app, client=("10.1.1.1", 1))
        transport = PacedTransport(inner, max_wait_s=5.0)  # Retry-After will be ~60 s
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/search", params={"q": QUESTION})).status_code == 200
            refused = await client.get("/search", params={"q": QUESTION})
        assert refused.status_code == 429 and transport.retries == 0


def test_eval_labels_a_url_run_with_the_server_s_backend(contract_services: Services) -> None:
    """The fake services answer extractively: main labelled such a run ``local``."""
    with LiveServer(create_app(services=contract_services)) as server:
        assert server_identity(server.url)["llm_backend"] == "extractive"
        config = with_server_identity(parse_config("hybrid:c200:k5"), server.url, "")
    assert config.llm_backend == "extractive"
    assert "extractive" in config.label and server.url in config.label
