"""The app as a whole (fast tier, no model): health, docs, the page, start-up and shutdown.

Runs the real app, store, retrieval and answering pipeline over a small store built with the
hashing embedder (:mod:`tests.fakes`). What the real index adds is in ``test_api_real.py``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.embeddings import embedding_identity
from app.core.settings import Settings
from app.http.app import create_app
from app.services import Services
from tests.fakes import FAKE_PAPERS, HashingEmbedding
from tests.helpers import LiveServer, app_client

QUESTION = "Which papers quantize vision transformers after training?"


def ask(question: str = QUESTION, **extra: object) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], **extra}


async def test_health(contract_services: Services) -> None:
    async with app_client(create_app(services=contract_services)) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    lexical = body.pop("lexical_index")
    assert lexical["status"] == "ok" and lexical["version"].startswith("v-"), lexical
    assert body == {
        "ready": True,
        "papers": len(FAKE_PAPERS),
        "chunks": contract_services.chunks.count(),
        "embedding_model": embedding_identity(contract_services.settings),
        "llm_backend": "extractive",
        "llm_model": None,
        "collection": contract_services.settings.collection,
        "store": "embedded",
    }


def test_head_works_wherever_get_does_for_health_and_the_page(contract_services: Services) -> None:
    """Load balancers and uptime checkers use HEAD (issue 16, finding 5: main answered 405).
    Over a real uvicorn server, which sends the headers of the GET and no body."""
    with (
        LiveServer(create_app(services=contract_services)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        for path, kind in (
            ("/health", "application/json"),
            ("/", "text/html"),
            ("/static/app.js", "javascript"),
            ("/static/style.css", "text/css"),
        ):
            get, head = http.get(path), http.head(path)
            assert head.status_code == get.status_code == 200, (path, head.status_code)
            assert kind in head.headers["content-type"] and head.content == b"", path
            assert head.headers.get("content-length") == get.headers.get("content-length"), path


async def test_docs_and_openapi(contract_services: Services) -> None:
    async with app_client(create_app(services=contract_services)) as client:
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
    for path in ("/chat", "/v1/chat/completions", "/v1/models", "/papers/{paper_id}", "/search", "/health"):
        assert path in spec["paths"], path


async def test_chat_page_and_static_files(contract_services: Services) -> None:
    async with app_client(create_app(services=contract_services)) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/app.js" in page.text and "/static/style.css" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await client.get("/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
        assert (await client.get("/static/style.css")).status_code == 200


async def test_not_ready_until_lifespan(contract_services: Services) -> None:
    app = create_app(services=contract_services)  # lifespan not run: no services yet
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/health")).status_code == 503
        response = await client.post("/chat", json=ask())
        assert response.status_code == 503 and "starting" in response.json()["detail"]
        assert response.headers["retry-after"]


async def test_factory_loads_and_closes_its_own_services(
    fake_store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.http.app as http_app

    built: list[Services] = []
    real_build = http_app.build_services

    def build(settings: Settings) -> Services:  # the real loader, with the fake embedder
        built.append(real_build(settings, embed_model=HashingEmbedding()))
        return built[-1]

    monkeypatch.setattr(http_app, "build_services", build)
    app = create_app(fake_store)
    async with app_client(app) as client:
        assert app.state.ready and app.state.services is built[0]
        assert (await client.get("/health")).json()["ready"] is True
    assert app.state.ready is False
    assert len(built) == 1


async def test_a_missing_index_starts_not_ready_and_says_what_to_do(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.http.app as http_app

    real_build = http_app.build_services
    monkeypatch.setattr(http_app, "build_services", lambda s: real_build(s, embed_model=HashingEmbedding()))
    settings = settings_factory(collection="never_built", store_retry_s=60)
    app = create_app(settings)
    async with app_client(app) as client:
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["ready"] is False
        response = await client.get("/search", params={"q": QUESTION})
        assert response.status_code == 503
        assert "python -m ingest" in response.json()["detail"]


def test_uvicorn_factory_import_string() -> None:
    from uvicorn.importer import import_from_string

    factory = import_from_string("app.http.app:create_app")
    assert callable(factory) and factory is create_app
