"""An OpenAI-compatible LLM endpoint that fails in every way we know, through the real service.

The service is the real one (``create_app`` over ``build_services`` on a small store made with the
hashing embedder of :mod:`tests.fakes`, the ``openai`` backend with ``llm_timeout_s=3`` and ``llm_retries=2``); the endpoint is a real HTTP
server on 127.0.0.1 that misbehaves on purpose (``tests/misbehaving_llm.py``). Whatever the
endpoint does, the service answers within the timeout: ``POST /chat`` with 503 and an extractive
``fallback``, the stream with an ``error`` event then ``done``, ``/v1/chat/completions`` with an
OpenAI-style 503 or, streaming, the extractive text after a note. Never a hang, never a 500.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.answering.types import AnswerResult
from app.http.app import create_app
from app.services import Services, build_services
from tests.fakes import HashingEmbedding
from tests.helpers import app_client
from tests.misbehaving_llm import MisbehavingLLM
from tests.sse import parse_sse

# No model is loaded, but the failure modes wait out real timeouts (about a minute in all).
pytestmark = pytest.mark.slow

TIMEOUT_S = 3.0
# Retrieval, the extractive answer and HTTP on a busy 2-core machine, on top of the LLM deadline.
SLACK_S = 12.0
QUESTION = "Which papers quantize vision transformers after training?"
FAILING_MODES = ["down", "error500", "slow", "malformed", "cut", "stall"]


def ask(**extra: object) -> dict:
    return {"messages": [{"role": "user", "content": QUESTION}], **extra}


@pytest.fixture(scope="module")
def llm() -> Iterator[MisbehavingLLM]:
    with MisbehavingLLM("ok", slow_s=60) as server:
        yield server


def openai_services(fake_store, base_url: str, **overrides: object) -> Services:
    values: dict[str, object] = {
        "llm_backend": "openai",
        "openai_base_url": base_url,
        "llm_model": "misbehaving",
        "llm_timeout_s": TIMEOUT_S,
        "llm_retries": 2,
        "rate_limit_per_minute": 0,
    }
    settings = fake_store.model_copy(update={**values, **overrides})
    return build_services(settings, embed_model=HashingEmbedding())


@pytest.fixture(scope="module")
def served(fake_store, llm: MisbehavingLLM) -> Services:
    return openai_services(fake_store, llm.base_url)


@pytest.fixture(scope="module")
def down(fake_store) -> Services:
    from bench.processes import free_port

    return openai_services(fake_store, f"http://127.0.0.1:{free_port()}/v1")


async def client_for(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(services=services), timeout_s=120) as client:
        yield client


@pytest.fixture
async def client(
    request, served: Services, down: Services, llm: MisbehavingLLM
) -> AsyncIterator[httpx.AsyncClient]:
    mode = request.param
    llm.mode = "ok" if mode == "down" else mode
    llm.requests.clear()
    async for c in client_for(down if mode == "down" else served):
        yield c
    llm.mode = "ok"


async def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def check_fallback(result: AnswerResult) -> None:
    assert result.backend == "extractive" and result.fallback_reason
    assert result.answer.strip() and result.citations and not result.refused
    assert {c.paper_id for c in result.citations} <= {s.paper_id for s in result.sources}


@pytest.mark.parametrize("client", FAILING_MODES, indirect=True)
async def test_chat_json_is_503_with_an_extractive_fallback(client: httpx.AsyncClient) -> None:
    response, seconds = await timed(client.post("/chat", json=ask()))
    assert seconds < TIMEOUT_S + SLACK_S, f"took {seconds:.1f} s"
    assert response.status_code == 503, response.text
    assert "Traceback" not in response.text
    body = response.json()
    fallback = AnswerResult.model_validate(body["fallback"])
    check_fallback(fallback)
    assert fallback.fallback_reason in body["detail"]
    assert response.headers["retry-after"]


@pytest.mark.parametrize("client", FAILING_MODES, indirect=True)
async def test_chat_stream_ends_with_error_then_done(client: httpx.AsyncClient) -> None:
    response, seconds = await timed(client.post("/chat", json=ask(stream=True)))
    assert seconds < TIMEOUT_S + SLACK_S, f"took {seconds:.1f} s"
    assert response.status_code == 200
    events = [(name, json.loads(data)) for name, data in parse_sse(response.text)]
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done", names
    assert names.count("error") == 1 and names.index("error") < names.index("done"), names
    error = events[names.index("error")][1]["message"]
    assert "extractive answer" in error
    done = AnswerResult.model_validate(events[-1][1])
    check_fallback(done)
    assert done.fallback_reason in error
    assert "Traceback" not in response.text


@pytest.mark.parametrize("client", FAILING_MODES, indirect=True)
async def test_openai_json_is_503_in_openai_format(client: httpx.AsyncClient) -> None:
    response, seconds = await timed(client.post("/v1/chat/completions", json={"model": "paperqa", **ask()}))
    assert seconds < TIMEOUT_S + SLACK_S, f"took {seconds:.1f} s"
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"]["type"] == "server_error" and body["error"]["code"] == 503
    assert "language model failed" in body["error"]["message"]
    fallback = body["fallback"]
    assert fallback["object"] == "chat.completion" and fallback["citations"]
    assert "\n\nSources:\n[1] " in fallback["choices"][0]["message"]["content"]


@pytest.mark.parametrize("client", FAILING_MODES, indirect=True)
async def test_openai_stream_sends_the_fallback_after_a_note(client: httpx.AsyncClient) -> None:
    body = {"model": "paperqa", "stream": True, **ask()}
    response, seconds = await timed(client.post("/v1/chat/completions", json=body))
    assert seconds < TIMEOUT_S + SLACK_S, f"took {seconds:.1f} s"
    assert response.status_code == 200
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert all("error" not in chunk for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "showing an extractive answer instead" in text
    assert "\n\nSources:\n[1] " in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("client", ["flaky"], indirect=True)
async def test_two_500s_then_ok_is_retried_with_backoff(
    client: httpx.AsyncClient, llm: MisbehavingLLM
) -> None:
    response = await client.post("/chat", json=ask())
    assert response.status_code == 200, response.text
    result = AnswerResult.model_validate(response.json())
    assert result.backend == "openai" and result.fallback_reason is None
    assert result.citations
    assert len(llm.requests) == 3, "two failures, then the answer"
    gaps = [b.at - a.at for a, b in zip(llm.requests, llm.requests[1:], strict=False)]
    assert all(gap >= 0.3 for gap in gaps), f"retried without backoff: {gaps}"

    llm.requests.clear()  # the same before streaming has started
    response = await client.post("/chat", json=ask(stream=True))
    names = [name for name, _ in parse_sse(response.text)]
    assert "error" not in names and names[-1] == "done"
    assert len(llm.requests) == 3 and all(seen.stream for seen in llm.requests)


async def test_retries_are_bounded(fake_store, llm: MisbehavingLLM) -> None:
    """With one retry allowed, two 500s are one too many: 2 requests, then the fallback."""
    services = openai_services(fake_store, llm.base_url, llm_retries=1)
    llm.mode, llm.fail_times = "flaky", 2
    llm.requests.clear()
    try:
        async for client in client_for(services):
            response = await client.post("/chat", json=ask())
            assert response.status_code == 503
            assert "500" in response.json()["detail"]
            assert len(llm.requests) == 2
    finally:
        llm.mode = "ok"
        await services.aclose()


@pytest.mark.parametrize("client", ["ok"], indirect=True)
async def test_a_healthy_endpoint_answers_200(client: httpx.AsyncClient, llm: MisbehavingLLM) -> None:
    response = await client.post("/chat", json=ask())
    assert response.status_code == 200
    assert AnswerResult.model_validate(response.json()).backend == "openai"
    assert len(llm.requests) == 1
