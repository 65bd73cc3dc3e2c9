"""Hostile and unauthorised requests against the real app (fast tier: a small store made with the
hashing embedder, extractive answers):
deeply nested JSON, a client sending its body a byte a second, the API key, CORS, the per-client
rate limit, and the request log (one JSON line per request, never the key, prompts only when
debugging). Oversized bodies (413) are covered in test_http_chat.py."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.http.app import create_app
from app.http.middleware.request_log import REQUEST_LOGGER
from app.services import Services, build_services
from tests.fakes import HashingEmbedding
from tests.helpers import LiveServer
from tests.misbehaving_llm import MisbehavingLLM

QUESTION = "Which papers quantize vision transformers after training?"
KEY = "s3cret-key-for-tests"


def ask(**extra: object) -> dict:
    return {"messages": [{"role": "user", "content": QUESTION}], **extra}


async def open_client(
    app, client_addr: tuple[str, int] = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            yield client


def app_with(services: Services, **overrides: object):
    settings = services.settings.model_copy(update={"rate_limit_per_minute": 0, **overrides})
    return create_app(settings, services)


# --- deeply nested JSON ----------------------------------------------------------------------------
@pytest.fixture
async def roomy(contract_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """Bodies up to 2 MB, so nesting (not size) is what gets refused."""
    async for client in open_client(app_with(contract_services, max_body_bytes=2_000_000)):
        yield client


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"messages": ' + b"[" * 5000,  # unterminated, too
        b'{"messages": [{"role": "user", "content": "hi", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}]}",
    ],
    ids=["lists", "objects", "unterminated", "inside-a-valid-body"],
)
async def test_deeply_nested_json_is_400(roomy: httpx.AsyncClient, path: str, body: bytes) -> None:
    response = await roomy.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert "nests JSON" in response.json()["detail"]
    if path.startswith("/v1/"):
        assert response.json()["error"]["message"] == response.json()["detail"]


async def test_brackets_inside_strings_are_fine(roomy: httpx.AsyncClient) -> None:
    question = QUESTION + " " + "[" * 500 + "]" * 500
    response = await roomy.post("/chat", json={"messages": [{"role": "user", "content": question}]})
    assert response.status_code == 200


async def test_nested_json_within_the_default_size_limit(contract_services: Services) -> None:
    async for client in open_client(app_with(contract_services)):
        body = b"[" * 30_000 + b"]" * 30_000  # 60 kB: under the 64 KiB limit
        response = await client.post("/chat", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        body = b"[" * 100_000 + b"]" * 100_000
        response = await client.post("/chat", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413


# --- a client that sends its body a byte a second -------------------------------------------------
def test_slow_body_is_cut_off_with_408(contract_services: Services) -> None:
    timeout_s = 2.0
    app = app_with(contract_services, body_timeout_s=timeout_s)
    with LiveServer(app) as server:
        body = json.dumps(ask()).encode()
        head = (
            f"POST /chat HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        received = b""
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=1.0) as sock:
            sock.sendall(head)
            for byte in body[:20]:  # at most 20 s: far past the timeout
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # the server closed the connection: read what it said
                    break
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:  # nothing yet: send the next byte a second later
                    continue
                if not chunk:
                    break
                received += chunk
                if b"\r\n\r\n" in received:
                    break
            elapsed = time.monotonic() - started
            sock.settimeout(2.0)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except OSError:
                pass
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
        assert elapsed < timeout_s + 3, f"gave up after {elapsed:.1f} s"
        assert b"did not arrive within 2 s" in received
        # The server is fine afterwards.
        assert httpx.post(f"{server.url}/chat", json=ask(), timeout=60).status_code == 200


# --- the API key ------------------------------------------------------------------------------------
@pytest.fixture
async def keyed(contract_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(app_with(contract_services, api_key=KEY)):
        yield client


async def test_open_paths_need_no_key(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.get("/health")).status_code == 200
    assert (await keyed.get("/")).status_code == 200
    assert (await keyed.get("/static/app.js")).status_code == 200


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/chat", ask()),
        ("POST", "/chat", ask(stream=True)),
        ("GET", "/search?q=quantization", None),
        ("GET", "/papers/anything", None),
        ("POST", "/v1/chat/completions", {"model": "paperqa", **ask()}),
        ("GET", "/v1/models", None),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("POST", "/health", None),
    ],
)
async def test_everything_else_needs_the_key(keyed: httpx.AsyncClient, method: str, path: str, body) -> None:
    for headers, reason in [
        ({}, "needs an API key"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": f"Basic {KEY}"}, "needs an API key"),
        ({"Authorization": f"Bearer {KEY}x"}, "not valid"),
    ]:
        response = await keyed.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (path, headers, response.status_code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert reason in response.json()["detail"]
        assert KEY not in response.text
        if path.startswith("/v1/"):
            assert response.json()["error"]["code"] == 401


async def test_the_right_key_opens_everything(keyed: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    assert (await keyed.post("/chat", json=ask(), headers=auth)).status_code == 200
    assert (await keyed.get("/search", params={"q": QUESTION}, headers=auth)).status_code == 200
    assert (await keyed.get("/v1/models", headers=auth)).status_code == 200
    assert (await keyed.get("/openapi.json", headers={"authorization": f"bearer {KEY}"})).status_code == 200


async def test_keys_are_compared_in_constant_time(keyed: httpx.AsyncClient, monkeypatch) -> None:
    import app.http.middleware.api_key

    calls: list[tuple[bytes, bytes]] = []
    real = app.http.middleware.api_key.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app.http.middleware.api_key.hmac, "compare_digest", spy)
    await keyed.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert calls == [(b"nope", KEY.encode())]


async def test_no_key_configured_means_open(contract_services: Services) -> None:
    async for client in open_client(app_with(contract_services, api_key="")):
        assert (await client.get("/v1/models")).status_code == 200


# --- CORS ---------------------------------------------------------------------------------------------
async def test_cors_allows_only_the_configured_origins(contract_services: Services) -> None:
    app = app_with(contract_services, cors_origins=["http://allowed.test"], api_key=KEY)
    async for client in open_client(app):
        preflight = {
            "Origin": "http://allowed.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        response = await client.options("/chat", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://allowed.test"
        response = await client.options("/chat", headers={**preflight, "Origin": "http://evil.test"})
        assert response.status_code == 400 and "access-control-allow-origin" not in response.headers
        # A refusal still carries the CORS headers, so the page can read why.
        response = await client.post("/chat", json=ask(), headers={"Origin": "http://allowed.test"})
        assert response.status_code == 401
        assert response.headers["access-control-allow-origin"] == "http://allowed.test"
        response = await client.get("/health", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in response.headers


# --- rate limit ---------------------------------------------------------------------------------------
async def test_rate_limit_per_client(contract_services: Services) -> None:
    app = app_with(contract_services, rate_limit_per_minute=5)
    async with app.router.lifespan_context(app):

        def client_from(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 123))
            return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)

        async with client_from("10.9.8.7") as one, client_from("10.9.8.6") as other:
            statuses = [(await one.get("/search", params={"q": QUESTION})).status_code for _ in range(5)]
            assert statuses == [200] * 5
            refused = await one.get("/search", params={"q": QUESTION})
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 12
            assert "5 a minute" in refused.json()["detail"]
            assert (await one.post("/chat", json=ask())).status_code == 429
            refused = await one.post("/v1/chat/completions", json={"model": "paperqa", **ask()})
            assert refused.status_code == 429 and refused.json()["error"]["code"] == 429
            # Health is exempt; another client has its own allowance.
            assert [(await one.get("/health")).status_code for _ in range(10)] == [200] * 10
            assert (await other.get("/search", params={"q": QUESTION})).status_code == 200


# --- logs -----------------------------------------------------------------------------------------------
def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == REQUEST_LOGGER]


async def test_one_json_line_per_request_without_secrets(contract_services: Services, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_with(contract_services, api_key=KEY)
    async for client in open_client(app, client_addr=("10.1.2.3", 4567)):
        auth = {"Authorization": f"Bearer {KEY}"}
        ok = await client.get("/search", params={"q": "secretquery quantization"}, headers=auth)
        paper = await client.get("/papers/arxiv:hep-th/9901001", headers=auth)
        refused = await client.post("/chat", json=ask(), headers={"Authorization": "Bearer wrong-key-xyz"})
        given = await client.get("/health", headers={"X-Request-ID": "proxy-abc.123"})
        chat = await client.post("/chat", json=ask(), headers=auth)
    lines = access_lines(caplog)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/search", 200),
        ("GET", "/papers/{paper_id:path}", 404),
        ("POST", "/chat", 401),
        ("GET", "/health", 200),
        ("POST", "/chat", 200),
    ]
    responses = [ok, paper, refused, given, chat]
    assert [line["request_id"] for line in lines] == [r.headers["x-request-id"] for r in responses]
    assert lines[3]["request_id"] == "proxy-abc.123"
    assert len({line["request_id"] for line in lines}) == 5
    for line in lines:
        assert set(line) == {"request_id", "method", "path", "status", "duration_ms", "client"}
        assert line["client"] == "10.1.2.3" and line["duration_ms"] >= 0
    # Everything the service logged (httpx's own lines are this test's client reporting its URLs).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    for secret in (KEY, "wrong-key-xyz", "Bearer", "secretquery", "hep-th"):
        assert secret not in text, secret
    # The question (a prompt's part) is not logged either.
    assert QUESTION not in text


@pytest.mark.parametrize("debug", [False, True])
async def test_prompts_are_logged_only_when_debugging(fake_store, caplog, debug: bool) -> None:
    from app.http.logs import PROMPT_LOGGERS, keep_prompts_out

    with MisbehavingLLM("ok") as llm:
        settings = fake_store.model_copy(
            update=dict(
                llm_backend="openai",
                openai_base_url=llm.base_url,
                debug=debug,
                rate_limit_per_minute=0,
                llm_timeout_s=10,
            )
        )
        services = build_services(settings, embed_model=HashingEmbedding())
        keep_prompts_out(settings)  # what python -m app does
        caplog.set_level(logging.DEBUG)
        try:
            async for client in open_client(create_app(services=services)):
                response = await client.post("/chat", json=ask())
                assert response.status_code == 200 and response.json()["backend"] == "openai"
        finally:
            for name in PROMPT_LOGGERS:
                logging.getLogger(name).setLevel(logging.NOTSET)
            await services.aclose()
    system_prompt = services.prompts.system.strip().splitlines()[0]
    assert (QUESTION in caplog.text) is debug
    assert (system_prompt in caplog.text) is debug
