"""Odd text at the boundary (fast tier): valid JSON may carry a lone UTF-16 surrogate (``"\\ud800"``)
or a NUL, which no tokenizer, store or log accepts. Every route cleans such text before it goes
further (a lone surrogate becomes U+FFFD, a control character a space), the same way everywhere:
the request is answered, never a 500 (issue 16, finding 2: main answered 500 "internal error").
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.core.text import clean_text
from app.http.app import create_app
from app.services import Services
from tests.fakes import ScriptedBackend, with_backend
from tests.helpers import app_client
from tests.sse import parse_sse

SURROGATE = "attention \ud800 memory"
NUL = "attention \x00 memory"
ODD = [SURROGATE, NUL, "quantize \udfff vision transformers\x07", "\ud83d alone, then a pair \U0001f600"]


def raw(body: dict[str, Any]) -> bytes:
    """JSON as a client sends it: ``json.dumps`` escapes a lone surrogate as ``\\ud800``."""
    return json.dumps(body).encode("ascii")


def posted(client: httpx.AsyncClient, path: str, body: dict[str, Any]):
    return client.post(path, content=raw(body), headers={"content-type": "application/json"})


@pytest.fixture
async def client(contract_services: Services):
    async with app_client(create_app(services=contract_services)) as c:
        yield c


def test_clean_text_leaves_valid_unicode() -> None:
    for text in ODD:
        cleaned = clean_text(text)
        cleaned.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in cleaned and "\x07" not in cleaned
    assert clean_text(SURROGATE) == "attention \ufffd memory"
    assert clean_text(NUL) == "attention   memory"
    assert clean_text("tabs\tand\nlines\r\n stay; é and 😀 too") == "tabs\tand\nlines\r\n stay; é and 😀 too"


@pytest.mark.parametrize("text", ODD)
async def test_chat_json_answers_odd_text(client: httpx.AsyncClient, text: str) -> None:
    response = await posted(client, "/chat", {"messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    assert response.json()["answer"]


@pytest.mark.parametrize("text", [SURROGATE, NUL])
async def test_chat_stream_answers_odd_text(client: httpx.AsyncClient, text: str) -> None:
    body = {"messages": [{"role": "user", "content": text}], "stream": True}
    response = await posted(client, "/chat", body)
    assert response.status_code == 200
    names = [name for name, _ in parse_sse(response.text)]
    assert "error" not in names and names[-1] == "done", response.text


async def test_follow_up_with_odd_text_in_history(client: httpx.AsyncClient) -> None:
    body = {
        "messages": [
            {"role": "user", "content": SURROGATE},
            {"role": "assistant", "content": "An answer \ud800 with \x00 odd text."},
            {"role": "user", "content": "And which papers quantize \udc00 them?"},
        ]
    }
    response = await posted(client, "/chat", body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_route_answers_odd_text(client: httpx.AsyncClient, stream: bool) -> None:
    body = {
        "model": "paperqa\ud800",
        "messages": [
            {"role": "system", "content": "be brief \x00"},
            {"role": "user", "content": [{"type": "text", "text": SURROGATE}]},
        ],
        "stream": stream,
    }
    response = await posted(client, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    if stream:
        assert '"error"' not in response.text and response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["content"]


async def test_the_model_sees_clean_text(contract_services: Services) -> None:
    backend = ScriptedBackend("Post-training quantization is studied [1].")
    services = with_backend(contract_services, backend)
    async with app_client(create_app(services=services)) as client:
        body = {"messages": [{"role": "user", "content": "quantize \ud800 vision transformers\x00"}]}
        response = await posted(client, "/chat", body)
    assert response.status_code == 200, response.text
    sent = json.dumps([m for call in backend.calls for m in call], ensure_ascii=False)
    sent.encode("utf-8")
    assert "\\u0000" not in sent and "\ufffd" in sent


@pytest.mark.parametrize(
    "query", ["attention%ED%A0%80memory", "attention%00memory", "quantization%FF%FE%07vision"]
)
async def test_search_query_string_with_odd_text(client: httpx.AsyncClient, query: str) -> None:
    """A query string carries bytes: an encoded surrogate, a NUL, invalid UTF-8, a control byte."""
    response = await client.get(f"/search?q={query}")
    assert response.status_code == 200, response.text
    assert "\x00" not in response.json()["query"]


async def test_paper_id_with_a_nul_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/papers/vit%00ptq")
    assert response.status_code == 404, response.text
    assert "no paper with id" in response.json()["detail"]


async def test_a_body_of_only_odd_characters_is_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    response = await posted(client, "/chat", {"messages": [{"role": "user", "content": "\x00\x01"}]})
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]
