"""The HTTP API with the real bundled model (SmolLM2 via llama-cpp) on a real uvicorn server.

Each answer takes several seconds on a laptop CPU, so this module asks only a handful of questions.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

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
    """Hanging up mid-answer stops generation. Sentences are released once checked, so the model
    may finish a short answer before the first one arrives: then another, longer one is tried."""
    observed = False
    for question in LONG_QUESTIONS:
        body = {"messages": [{"role": "user", "content": question}], "stream": True}
        with http.stream("POST", "/chat", json=body) as response:
            for name, _ in sse_events(response.iter_lines()):
                if name == "delta":
                    break
            # Is the model generating right now (it holds its lock)?
            observed = local_services.backend._lock.locked()
        if observed:
            break
        wait_until_idle(local_services)
    assert observed, "the model had finished before the first sentence arrived, for every question"
    # ... it stops soon after the client hung up, well before a whole answer would be written.
    deadline = time.monotonic() + 5
    while local_services.backend._lock.locked():
        assert time.monotonic() < deadline, "the model kept generating after the client left"
        time.sleep(0.05)


def wait_until_idle(services: Services, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while services.backend._lock.locked() and time.monotonic() < deadline:
        time.sleep(0.1)
