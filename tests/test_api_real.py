"""The HTTP API over the real index of the bundled corpus (slow tier: the real MiniLM), answered
extractively. The HTTP contract itself (shapes, order, errors, limits) is tested over fakes in the
``test_http_*.py`` files; this file checks what only the real corpus and model can show."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.answering.types import AnswerResult
from app.http.app import create_app
from app.services import Services
from tests.helpers import app_client
from tests.sse import parse_sse

pytestmark = pytest.mark.slow

QUESTION = "Which papers quantize vision transformers after training?"
OFF_TOPIC = "What is the best recipe for chocolate chip cookies?"


def ask(question: str = QUESTION, **extra: object) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], **extra}


@pytest.fixture
async def client(extractive_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(services=extractive_services)) as c:
        yield c


async def test_health_counts_the_bundled_corpus(client: httpx.AsyncClient) -> None:
    body = (await client.get("/health")).json()
    assert body["ready"] is True and body["papers"] == 586 and body["chunks"] >= body["papers"]
    assert body["embedding_model"] == "all-MiniLM-L6-v2/onnx-int8"


async def test_a_quantization_question_is_answered_from_quantization_papers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/chat", json=ask())
    assert response.status_code == 200
    result = AnswerResult.model_validate(response.json())
    assert not result.refused and result.citations
    assert sum("quantiz" in s.title.lower() for s in result.sources) >= 3, [s.title for s in result.sources]
    assert "[1]" in result.answer


async def test_a_follow_up_keeps_the_topic(client: httpx.AsyncClient) -> None:
    first = (await client.post("/chat", json=ask())).json()
    follow_up = {
        "messages": [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first["answer"]},
            {"role": "user", "content": "Which of them handles outliers?"},
        ]
    }
    result = (await client.post("/chat", json=follow_up)).json()
    assert not result["refused"] and result["citations"]
    assert any("quantiz" in s["title"].lower() for s in result["sources"])


async def test_off_topic_is_refused(client: httpx.AsyncClient) -> None:
    result = (await client.post("/chat", json=ask(OFF_TOPIC))).json()
    assert result["refused"] is True and result["citations"] == []
    events = parse_sse((await client.post("/chat", json=ask(OFF_TOPIC, stream=True))).text)
    assert [name for name, _ in events] == ["sources", "done"]
    assert json.loads(events[-1][1])["refused"] is True


async def test_search_on_the_real_index(client: httpx.AsyncClient) -> None:
    body = (await client.get("/search", params={"q": QUESTION, "k": 5})).json()
    assert body["covered"] is True and body["top_similarity"] >= body["relevance_floor"]
    assert sum("quantiz" in r["title"].lower() for r in body["results"]) >= 3
    assert any(r["similarity"] is not None and r["similarity"] > 0.3 for r in body["results"])
    off = (await client.get("/search", params={"q": OFF_TOPIC})).json()
    assert off["covered"] is False and off["top_similarity"] < off["relevance_floor"]


async def test_paper_by_id_holds_the_whole_abstract(
    client: httpx.AsyncClient, extractive_services: Services
) -> None:
    hit = (await client.get("/search", params={"q": QUESTION, "k": 1})).json()["results"][0]
    paper = (await client.get(f"/papers/{hit['paper_id']}")).json()
    stored = extractive_services.papers.get(ids=[hit["paper_id"]], include=["documents"])
    assert paper["abstract"] == stored["documents"][0]
    assert hit["passage"][:60] in paper["abstract"]


async def test_a_lone_surrogate_reaches_no_tokenizer(client: httpx.AsyncClient) -> None:
    """Issue 16, finding 2: the real tokenizer raised TypeError on "\\ud800" and /chat answered 500."""
    body = json.dumps({"messages": [{"role": "user", "content": "attention \ud800 memory"}]})
    response = await client.post("/chat", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    response = await client.get("/search?q=vision%ED%A0%80transformers%00quantization")
    assert response.status_code == 200 and response.json()["results"], response.text
