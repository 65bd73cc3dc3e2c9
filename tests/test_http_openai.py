"""``/v1/chat/completions`` and ``/v1/models`` (fast tier, no model): the OpenAI-compatible face,
through the official ``openai`` client against a real uvicorn server, and its raw stream format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from app.core.errors import LLMError
from app.http.app import create_app
from app.services import Services
from tests.fakes import BrokenEngine, BusyEngine, ScriptedBackend, with_backend, with_engine
from tests.helpers import LiveServer, app_client

QUESTION = "Which papers quantize vision transformers after training?"
USER = {"role": "user", "content": "What is post-training quantization?"}


def ask(question: str = QUESTION, **extra: object) -> dict[str, Any]:
    return {"model": "paperqa", "messages": [{"role": "user", "content": question}], **extra}


@pytest.fixture(scope="module")
def server(contract_services: Services) -> Iterator[LiveServer]:
    with LiveServer(create_app(services=contract_services)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["paperqa"]


def test_non_stream(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="paperqa", messages=[{"role": "user", "content": QUESTION}], max_tokens=50, temperature=0
    )
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    text = choice.message.content or ""
    answer, _, appendix = text.partition("\n\nSources:\n")
    citations = (completion.model_extra or {})["citations"]
    assert citations and answer
    expected = []
    for c in citations:  # each cited title, then the evidence sentences behind it
        expected += [
            f"[{c['marker']}] {c['title']}",
            *(f'    evidence: "{e["text"]}"' for e in c["evidence"]),
        ]
    assert appendix.splitlines() == expected and len(expected) > len(citations)


def test_stream(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model="paperqa", messages=messages)
    stream = client.chat.completions.create(
        model="paperqa", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    parts, finish, ids, usage = [], [], set(), None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert finish == ["stop"] and len(ids) == 1 and usage is not None
    text = "".join(parts)
    assert text == whole.choices[0].message.content
    assert "\n\nSources:\n[1] " in text


def test_follow_up_and_extras(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="anything",
        messages=[
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": "Several papers do [1]."},
            {"role": "user", "content": "Which one uses log2 quantizers?"},
        ],
        extra_body={"top_k": 3, "mode": "hybrid"},
    )
    assert completion.model == "paperqa"
    assert 1 <= len((completion.model_extra or {})["citations"]) <= 3


def test_bad_input_through_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="paperqa", messages=[{"role": "user", "content": " "}])
    assert "empty" in str(raised.value)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="paperqa", messages=[{"role": "user", "content": " "}], stream=True
        )


def test_raw_stream_format(server: LiveServer) -> None:
    with httpx.Client(timeout=60) as http:
        response = http.post(f"{server.url}/v1/chat/completions", json=ask(stream=True))
    assert response.status_code == 200
    blocks = [b for b in response.text.split("\n\n") if b.strip() and not b.startswith(":")]
    assert all(b.startswith("data: ") for b in blocks)
    assert blocks[-1] == "data: [DONE]"
    chunks = [json.loads(b[6:]) for b in blocks[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    last = chunks[-2]["citations"][-1]
    assert chunks[-2]["choices"][0]["delta"]["content"].endswith(
        f'evidence: "{last["evidence"][-1]["text"]}"'
    )


BAD_BODIES: dict[str, Any] = {
    "empty question": {"model": "paperqa", "messages": [{"role": "user", "content": "  "}]},
    "no messages": {"model": "paperqa", "messages": []},
    "unknown role": {"model": "paperqa", "messages": [{"role": "wizard", "content": "hi"}]},
    "no user message": {"model": "paperqa", "messages": [{"role": "assistant", "content": "x"}]},
    "user content null": {"model": "paperqa", "messages": [{"role": "user", "content": None}]},
    "blank text parts": {
        "model": "paperqa",
        "messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}],
    },
    "stream a number": {"model": "paperqa", "messages": [USER], "stream": 1},
    "temperature a string": {"model": "paperqa", "messages": [USER], "temperature": "0.5"},
    "too many parts": {
        "model": "paperqa",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 9}],
    },
    "a part too long": {
        "model": "paperqa",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 4001}]}],
    },
    "too many messages": {"model": "paperqa", "messages": [USER] * 21},
    "too long": {"model": "paperqa", "messages": [{"role": "user", "content": "x" * 4001}]},
    "image part": {
        "model": "paperqa",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
    },
    "temperature out of range": {"model": "paperqa", "messages": [USER], "temperature": 9},
    "top_k out of range": {"model": "paperqa", "messages": [USER], "top_k": 0},
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_input_is_4xx_in_openai_format(contract_services: Services, case: str) -> None:
    async with app_client(create_app(services=contract_services)) as http:
        response = await http.post("/v1/chat/completions", json=BAD_BODIES[case])
    assert response.status_code in (400, 422), (case, response.text)
    body = response.json()
    assert isinstance(body["detail"], str) and body["error"]["message"] == body["detail"]
    assert body["error"]["type"] == "invalid_request_error"


async def test_a_failed_model_is_503_in_openai_format_with_the_fallback(contract_services: Services) -> None:
    services = with_backend(contract_services, ScriptedBackend(LLMError("LLM endpoint error: 500")))
    async with app_client(create_app(services=services)) as http:
        response = await http.post("/v1/chat/completions", json=ask())
        assert response.status_code == 503 and response.headers["retry-after"]
        body = response.json()
        assert "LLM endpoint error: 500" in body["error"]["message"]
        assert body["fallback"]["object"] == "chat.completion" and body["fallback"]["citations"]

        stream = await http.post("/v1/chat/completions", json=ask(stream=True))
    lines = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, lines[:-1]) if c.get("choices")
    )
    assert "LLM endpoint error: 500" in text and "\n\nSources:\n[1] " in text


async def test_busy_and_broken_engines_in_openai_format(contract_services: Services) -> None:
    from app.core.errors import LLMBusy

    busy = with_engine(contract_services, BusyEngine(LLMBusy("The model is busy; retry in a moment.")))
    async with app_client(create_app(services=busy)) as http:
        response = await http.post("/v1/chat/completions", json=ask())
    assert response.status_code == 503 and "busy" in response.json()["error"]["message"]

    async with app_client(create_app(services=with_engine(contract_services, BrokenEngine()))) as http:
        response = await http.post("/v1/chat/completions", json=ask(stream=True))
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(lines[-2][6:])["error"]["message"] and lines[-1] == "data: [DONE]"
    assert BrokenEngine.SECRET not in response.text


def test_a_refusal_lists_the_closest_papers_apart_from_sources(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="paperqa",
        messages=[{"role": "user", "content": "What is the best recipe for chocolate chip cookies?"}],
    )
    text = completion.choices[0].message.content or ""
    extra = completion.model_extra or {}
    assert extra["refused"] is True and extra["citations"] == [] and extra["suggestions"]
    assert "Sources:" not in text and "Closest papers in the index" in text
    assert all(s["title"] in text for s in extra["suggestions"])
