"""The HTTP API with the real bundled model (SmolLM2 via llama-cpp) on a real uvicorn server.

Each answer takes several seconds on a laptop CPU, so this module asks only a handful of questions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from app.answering.llm import LocalBackend
from app.answering.types import AnswerResult
from app.services import Services
from tests.helpers import LiveServer
from tests.sse import sse_events

pytestmark = pytest.mark.slow

QUESTION = "Which papers quantize vision transformers after training?"
ANSWER_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def http(local_server: LiveServer):
    with httpx.Client(base_url=local_server.url, timeout=ANSWER_TIMEOUT_S) as client:
        yield client


def check_result(result: AnswerResult, services: Services) -> None:
    assert result.backend == "local", f"fell back: {result.fallback_reason}"
    assert result.fallback_reason is None
    assert result.model == services.backend.model
    assert result.answer.strip()
    assert not result.refused and result.sources
    assert {c.paper_id for c in result.citations} <= {s.paper_id for s in result.sources}
    assert result.usage.completion_tokens > 0 and result.timings.generate_ms > 0


def test_health_reports_the_local_model(http: httpx.Client, local_services: Services) -> None:
    body = http.get("/health").json()
    assert body["ready"] is True and body["llm_backend"] == "local"
    assert body["llm_model"] == local_services.backend.model


def test_chat_json_with_the_real_model(http: httpx.Client, local_services: Services) -> None:
    response = http.post("/chat", json={"messages": [{"role": "user", "content": QUESTION}]})
    assert response.status_code == 200
    check_result(AnswerResult.model_validate(response.json()), local_services)


def test_chat_stream_with_the_real_model(http: httpx.Client, local_services: Services) -> None:
    arrivals: list[tuple[str, float, object]] = []
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    started = time.monotonic()
    with http.stream("POST", "/chat", json=body) as response:
        assert response.status_code == 200
        for name, data in sse_events(response.iter_lines()):
            arrivals.append((name, time.monotonic() - started, json.loads(data)))
    names = [name for name, _, _ in arrivals]
    assert names[0] == "sources" and names[-1] == "done", names
    # Checked sentence by sentence: each delta is a sentence that passed the claim check (or the
    # evidence replacing one that did not), released as soon as it is complete.
    assert set(names[1:-1]) == {"delta"} and names.count("delta") >= 1, names
    first_delta = next(t for name, t, _ in arrivals if name == "delta")
    assert first_delta < arrivals[-1][1], "the deltas came as the model wrote, before the end"
    result = AnswerResult.model_validate(arrivals[-1][2])
    check_result(result, local_services)
    streamed = "".join(data["text"] for name, _, data in arrivals if name == "delta")
    assert streamed.strip() and len(streamed) >= len(result.answer) // 2
    assert [s["paper_id"] for s in arrivals[0][2]] == [s.paper_id for s in result.sources]


def test_openai_client_with_the_real_model(local_server: LiveServer) -> None:
    client = openai.OpenAI(
        base_url=f"{local_server.url}/v1", api_key="unused", max_retries=0, timeout=ANSWER_TIMEOUT_S
    )
    messages = [{"role": "user", "content": QUESTION}]

    completion = client.chat.completions.create(model="paperqa", messages=messages)
    text = completion.choices[0].message.content
    citations = completion.model_extra["citations"]
    assert text.strip() and completion.choices[0].finish_reason == "stop"
    for citation in citations:
        assert f"[{citation['marker']}] {citation['title']}" in text

    parts, finish = [], []
    for chunk in client.chat.completions.create(model="paperqa", messages=messages, stream=True):
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    streamed = "".join(parts)
    assert finish == ["stop"] and streamed.strip()
    if "\n\nSources:\n" in streamed:
        assert streamed.split("\n\nSources:\n")[-1].startswith("[1] ")


LONG_QUESTIONS = (
    "Describe in detail, paper by paper, how each of these papers quantizes vision transformers after training.",
    "Explain at length every method these papers use for efficient attention over long sequences.",
    QUESTION,
)


def test_disconnect_stops_the_model(http: httpx.Client, local_services: Services) -> None:
    """Hanging up while the model writes stops it before its end. The client hangs up as soon as the
    model is generating (it holds its lock), whatever has been sent by then; the backend counts the
    generations it stopped early. If the model ends on its own in between (a fast CPU, a short
    answer), another, longer question is tried."""
    backend = local_services.backend
    assert isinstance(backend, LocalBackend)
    for question in LONG_QUESTIONS:
        stopped = backend.stopped_early
        body = {"messages": [{"role": "user", "content": question}], "stream": True}
        with http.stream("POST", "/chat", json=body) as response:
            first = next(sse_events(response.iter_lines()))
            assert first[0] == "sources", first
            generating = wait_until(backend._lock.locked, timeout_s=60)
        # Hung up. The model checks for it at each token; reading a long prompt comes before the
        # first one and takes seconds on a busy CPU, hence a bound far above a token's time.
        assert wait_until(lambda: not backend._lock.locked(), timeout_s=120), "kept generating"
        if generating and backend.stopped_early == stopped + 1:
            return  # it was stopped, not done
        wait_until_idle(local_services)
    pytest.fail("the model ended every answer on its own before the client hung up")


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_until_idle(services: Services, timeout_s: float = 120) -> None:
    wait_until(lambda: not services.backend._lock.locked(), timeout_s)
