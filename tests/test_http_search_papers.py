"""``GET /search`` and ``GET /papers/{id}`` (fast tier, no model)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.http.app import create_app
from app.services import Services
from tests.fakes import FAKE_PAPERS
from tests.helpers import app_client

QUESTION = "Which papers quantize vision transformers after training?"
OFF_TOPIC = "What is the best recipe for chocolate chip cookies?"


@pytest.fixture
async def client(contract_services: Services):
    async with app_client(create_app(services=contract_services)) as c:
        yield c


async def test_search(client: httpx.AsyncClient) -> None:
    response = await client.get("/search", params={"q": QUESTION, "k": 3, "mode": "hybrid"})
    assert response.status_code == 200
    body = response.json()
    assert body["covered"] is True and body["top_similarity"] >= body["relevance_floor"]
    assert body["mode"] == "hybrid" and len(body["results"]) == 3
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    assert body["results"][0]["paper_id"] == "vit-ptq"
    assert body["results"][0]["url"] == "https://example.org/vit-ptq"
    for result in body["results"]:
        assert result["title"] and result["paper_id"] and result["passage"] and result["score"] > 0
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)

    bm25 = (await client.get("/search", params={"q": QUESTION, "mode": "bm25"})).json()
    assert bm25["mode"] == "bm25" and 1 <= len(bm25["results"]) <= 5  # settings.top_k

    off = (await client.get("/search", params={"q": OFF_TOPIC})).json()
    assert off["covered"] is False and off["top_similarity"] < off["relevance_floor"]


async def test_search_does_not_go_through_the_answering_engine(
    contract_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no(*_: object, **__: object) -> Any:
        raise AssertionError("/search must not call the answering engine")

    monkeypatch.setattr(type(contract_services.engine), "answer", no)
    monkeypatch.setattr(type(contract_services.engine), "events", no)
    async with app_client(create_app(services=contract_services)) as client:
        assert (await client.get("/search", params={"q": QUESTION})).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x", "k": 0},
        {"q": "x", "k": 51},
        {"q": "x", "k": "many"},
        {"q": "x", "mode": "magic"},
        {"q": "x" * 4001},
    ],
)
async def test_search_bad_input(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/search", params=params)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


async def test_paper_by_id(client: httpx.AsyncClient) -> None:
    hit = (await client.get("/search", params={"q": QUESTION, "k": 1})).json()["results"][0]
    response = await client.get(f"/papers/{hit['paper_id']}")
    assert response.status_code == 200
    paper = response.json()
    source = next(p for p in FAKE_PAPERS if p["id"] == hit["paper_id"])
    assert paper["paper_id"] == hit["paper_id"] and paper["title"] == source["title"] == hit["title"]
    assert paper["abstract"] == source["abstract"]
    assert hit["passage"][:40] in paper["abstract"]
    assert paper["url"] == source["url"] and paper["source"] and paper["n_chunks"] >= 1
    assert "content_hash" not in paper["metadata"]


@pytest.mark.parametrize("paper_id", ["nope", "arxiv:hep-th/9901001", "t-0000000000000000"])
async def test_paper_404(client: httpx.AsyncClient, paper_id: str) -> None:
    response = await client.get(f"/papers/{paper_id}")
    assert response.status_code == 404
    assert paper_id in response.json()["detail"] and "no paper" in response.json()["detail"]


async def test_search_reports_coverage_and_suggestions(client: httpx.AsyncClient) -> None:
    covered = (await client.get("/search", params={"q": QUESTION})).json()
    assert covered["covered"] and covered["coverage"] == "similar" and covered["suggestions"] == []
    off = (await client.get("/search", params={"q": OFF_TOPIC})).json()
    assert not off["covered"] and off["coverage"] == "no paper is close enough"
    assert off["suggestions"] and [s["paper_id"] for s in off["suggestions"]] == [
        r["paper_id"] for r in off["results"][: len(off["suggestions"])]
    ]


async def test_search_puts_a_named_paper_first(client: httpx.AsyncClient) -> None:
    body = (await client.get("/search", params={"q": "tell me about linformer"})).json()
    assert body["covered"] and body["coverage"] == "named"
    assert body["results"][0]["paper_id"] == "linformer"
