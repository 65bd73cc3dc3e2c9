"""``POST /chat`` (fast tier, no model): JSON and SSE shapes, event order, refusals, bad input,
size limits, how every failure is reported, and client disconnects.

The real app and pipeline over a small store made with the hashing embedder; answers are
extractive or come from a scripted chat backend (:mod:`tests.fakes`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from app.answering.types import AnswerResult
from app.core.errors import LLMBusy, LLMError, StoreUnavailable
from app.http.app import create_app
from app.services import Services
from tests.fakes import (
    FAKE_PAPERS,
    BrokenEngine,
    BusyEngine,
    ScriptedBackend,
    SlowEngine,
    with_backend,
    with_engine,
)
from tests.helpers import LiveServer, app_client
from tests.sse import parse_sse, sse_events

QUESTION = "Which papers quantize vision transformers after training?"
OFF_TOPIC = "What is the best recipe for chocolate chip cookies?"
ALL_TITLES = [p["title"] for p in FAKE_PAPERS]


def ask(question: str = QUESTION, **extra: object) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], **extra}


def events_of(response: httpx.Response) -> list[tuple[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    return [(name, json.loads(data)) for name, data in parse_sse(response.text)]


@pytest.fixture
async def client(contract_services: Services):
    async with app_client(create_app(services=contract_services)) as c:
        yield c


# --- answers ----------------------------------------------------------------------------------------
async def test_chat_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat", json=ask())
    assert response.status_code == 200
    result = AnswerResult.model_validate(response.json())
    assert not result.refused and result.backend == "extractive" and result.fallback_reason is None
    assert result.sources and result.citations and "[1]" in result.answer
    assert result.sources[0].title.startswith("Post-Training Quantization")
    assert {c.paper_id for c in result.citations} <= {s.paper_id for s in result.sources}
    assert [c.marker for c in result.citations] == list(range(1, len(result.citations) + 1))


async def test_chat_stream_event_sequence(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat", json=ask(stream=True))
    assert response.status_code == 200
    events = events_of(response)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done"
    assert names.count("sources") == 1 and names.count("done") == 1
    assert set(names[1:-1]) == {"delta"}, names
    sources = events[0][1]
    done = AnswerResult.model_validate(events[-1][1])
    assert [s["paper_id"] for s in sources] == [s.paper_id for s in done.sources]
    source_titles = {s["title"] for s in sources}
    assert done.citations and {c.title for c in done.citations} <= source_titles
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed.strip() == done.answer.strip()
    for title in ALL_TITLES:  # no paper outside the sources is named in the answer
        if title not in source_titles:
            assert title not in done.answer, title


async def test_stream_and_json_give_the_same_answer(client: httpx.AsyncClient) -> None:
    whole = (await client.post("/chat", json=ask())).json()
    done = events_of(await client.post("/chat", json=ask(stream=True)))[-1][1]
    assert done["answer"] == whole["answer"] and done["citations"] == whole["citations"]


async def test_follow_up_uses_history(client: httpx.AsyncClient) -> None:
    first = (await client.post("/chat", json=ask())).json()
    follow_up = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first["answer"]},
            {"role": "user", "content": "Which of them uses log2 quantizers?"},
        ]
    }
    response = await client.post("/chat", json=follow_up)
    assert response.status_code == 200
    result = response.json()
    assert not result["refused"] and result["citations"]
    assert QUESTION in result["query"], "the retrieval query joins the previous question (concat condensing)"
    assert result["sources"][0]["title"].startswith("RepQ-ViT")


async def test_refuses_off_topic(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat", json=ask(OFF_TOPIC))
    result = response.json()
    assert response.status_code == 200
    assert result["refused"] is True and result["citations"] == [] and result["sources"] == []
    events = events_of(await client.post("/chat", json=ask(OFF_TOPIC, stream=True)))
    assert [name for name, _ in events] == ["sources", "done"]
    assert events[0][1] == [] and events[1][1]["refused"] is True


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
async def test_top_k_and_mode(client: httpx.AsyncClient, mode: str) -> None:
    result = (await client.post("/chat", json=ask(top_k=2, mode=mode))).json()
    assert result["mode"] == mode
    assert 1 <= len(result["sources"]) <= 2


async def test_a_scripted_model_answer_is_checked_sentence_by_sentence(contract_services: Services) -> None:
    """Generate: a supported sentence stays; one citing no retrieved paper is dropped; one whose
    acronym is in no cited abstract is replaced by that paper's evidence. All reported."""
    sources = (await contract_services.engine.answer([{"role": "user", "content": QUESTION}])).sources
    repq = next(s.n for s in sources if s.paper_id == "repq")
    ptq = next(s.n for s in sources if s.paper_id == "vit-ptq")
    backend = ScriptedBackend(
        f"RepQ-ViT decouples quantization and inference with scale reparameterization [{repq}]. "
        f"Another claim [9]. The PTQ recipe needs GPTQ [{ptq}]."
    )
    services = with_backend(contract_services, backend, answer_strategy="generate")
    async with app_client(create_app(services=services)) as client:
        result = (await client.post("/chat", json=ask())).json()
    assert (
        result["backend"] == "openai" and result["strategy"] == "generate" and result["model"] == "scripted"
    )
    assert "RepQ-ViT decouples quantization" in result["answer"]
    assert "Another claim" not in result["answer"] and "GPTQ" not in result["answer"]
    reasons = {u["sentence"].split()[0]: u for u in result["unsupported"]}
    assert (
        reasons["Another"]["action"] == "dropped"
        and "cites no retrieved paper" in reasons["Another"]["reason"]
    )
    assert reasons["The"]["action"] == "replaced" and "GPTQ" in reasons["The"]["reason"]
    assert reasons["The"]["replacement"].startswith("Post-Training Quantization for Vision Transformers [")
    assert {c["paper_id"] for c in result["citations"]} == {"repq", "vit-ptq"}
    assert all(c["evidence"] for c in result["citations"])
    assert result["usage"]["counted_by"] == "backend"
    assert len(backend.calls) == 1 and QUESTION in backend.calls[0][-1]["content"]


# --- bad input ---------------------------------------------------------------------------------------
USER = {"role": "user", "content": "What is post-training quantization?"}
BAD_CHAT_BODIES: dict[str, Any] = {
    "empty question": ask(""),
    "whitespace question": ask(" \n\t "),
    "no messages": {"messages": []},
    "messages missing": {"stream": True},
    "too many messages": {"messages": [USER] * 21},
    "message too long": ask("x" * 4001),
    "earlier message too long": {"messages": [{"role": "assistant", "content": "y" * 4001}, USER]},
    "unknown role": {"messages": [{"role": "tool", "content": "hi"}, USER]},
    "no user message": {"messages": [{"role": "assistant", "content": "ok"}]},
    "an earlier user message blank": {"messages": [{"role": "user", "content": " "}, USER]},
    "only control characters": ask("\u0000\u0007"),
    "stream a number": ask(stream=0),
    "top_k a string": ask(top_k="5"),
    "top_k a fraction": ask(top_k=2.5),
    "messages not a list": {"messages": "hello"},
    "message not an object": {"messages": ["hello"]},
    "content not a string": {"messages": [{"role": "user", "content": 42}]},
    "content missing": {"messages": [{"role": "user"}]},
    "stream not a bool": ask(stream="sometimes"),
    "top_k zero": ask(top_k=0),
    "top_k too big": ask(top_k=51),
    "top_k not a number": ask(top_k="five"),
    "unknown mode": ask(mode="magic"),
    "unknown field": ask(topk=3),
    "body is a list": [USER],
    "body is a string": "hello",
}


@pytest.mark.parametrize("case", list(BAD_CHAT_BODIES))
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_input_is_4xx(client: httpx.AsyncClient, case: str, stream: bool) -> None:
    body = BAD_CHAT_BODIES[case]
    if stream and isinstance(body, dict) and "stream" not in body:
        body = {**body, "stream": True}
    response = await client.post("/chat", json=body)
    assert response.status_code in (400, 422), (case, response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail, case
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"messages=hi", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00", "application/json"),
    ],
)
async def test_non_json_body(client: httpx.AsyncClient, content: bytes, content_type: str) -> None:
    response = await client.post("/chat", content=content, headers={"content-type": content_type})
    assert response.status_code in (400, 422), response.text
    assert isinstance(response.json()["detail"], str)


async def test_error_messages_are_specific(client: httpx.AsyncClient) -> None:
    cases: dict[str, Any] = {
        "too many messages: 21": {"messages": [USER] * 21},
        "too long: 4001 characters": ask("x" * 4001),
        "messages[0].role": {"messages": [{"role": "tool", "content": "hi"}, USER]},
        "no user message": {"messages": [{"role": "assistant", "content": "ok"}]},
        "the question (the last user message) is empty": ask("   "),
        "messages[0] is empty": {"messages": [{"role": "user", "content": "\t"}, USER]},
        "stream: Input should be a valid boolean": ask(stream=0),
        "top_k": ask(top_k=99),
        "not valid JSON": None,
    }
    for expected, body in cases.items():
        if body is None:
            response = await client.post("/chat", content=b"{", headers={"content-type": "application/json"})
        else:
            response = await client.post("/chat", json=body)
        assert expected in response.json()["detail"], (expected, response.json())


async def test_body_over_limit_is_413(client: httpx.AsyncClient, contract_services: Services) -> None:
    limit = contract_services.settings.max_body_bytes
    big = json.dumps(ask("y" * (limit + 10))).encode()
    response = await client.post("/chat", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]

    async def chunks():  # no Content-Length: counted as it streams
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    response = await client.post("/chat", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    # Just under the limit is read as usual (and refused for its content, not its size).
    response = await client.post(
        "/chat", content=b" " * (limit - 10), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_chunked_body_over_limit_is_413_on_a_real_server(contract_services: Services) -> None:
    """A chunked upload (no Content-Length) is counted as it arrives and cut at the limit."""
    limit = contract_services.settings.max_body_bytes

    def body():
        yield b"{" + b" " * (limit + 100) + b"}"

    with LiveServer(create_app(services=contract_services)) as server, httpx.Client(timeout=30) as http:
        response = http.post(
            f"{server.url}/chat", content=body(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


# --- failures ------------------------------------------------------------------------------------------
async def test_a_failed_model_is_503_with_an_extractive_fallback(contract_services: Services) -> None:
    backend = ScriptedBackend(LLMError("LLM endpoint error: connection refused"))
    async with app_client(create_app(services=with_backend(contract_services, backend))) as client:
        response = await client.post("/chat", json=ask())
        assert response.status_code == 503 and response.headers["retry-after"]
        body = response.json()
        assert "connection refused" in body["detail"] and "fallback" in body["detail"]
        fallback = AnswerResult.model_validate(body["fallback"])
        assert (
            fallback.backend == "extractive"
            and fallback.citations
            and "connection refused" in (fallback.fallback_reason or "")
        )

        events = events_of(await client.post("/chat", json=ask(stream=True)))
        names = [name for name, _ in events]
        assert names[0] == "sources" and names[-1] == "done" and "error" in names
        assert names.index("error") < names.index("delta")
        done = AnswerResult.model_validate(events[-1][1])
        assert done.backend == "extractive" and done.citations


async def test_a_model_failing_mid_stream_sends_error_then_the_fallback(contract_services: Services) -> None:
    backend = ScriptedBackend(
        "We quantize vision transformers after training with a small calibration set [1]. More words follow",
        fail_after_words=16,
        error=LLMError("the connection dropped"),
    )
    services = with_backend(contract_services, backend, answer_strategy="generate")
    async with app_client(create_app(services=services)) as client:
        events = events_of(await client.post("/chat", json=ask(stream=True)))
    names = [name for name, _ in events]
    assert names[0] == "sources" and names.count("error") == 1 and names[-1] == "done"
    streamed = "".join(data["text"] for name, data in events[: names.index("error")] if name == "delta")
    assert streamed.startswith("We quantize vision"), "the checked sentence before the failure was streamed"
    assert "the connection dropped" in events[names.index("error")][1]["message"]
    assert events[-1][1]["backend"] == "extractive"


async def test_a_model_that_says_nothing_falls_back(contract_services: Services) -> None:
    async with app_client(
        create_app(services=with_backend(contract_services, ScriptedBackend("  ")))
    ) as client:
        response = await client.post("/chat", json=ask())
    assert response.status_code == 503
    assert response.json()["fallback"]["fallback_reason"] == "the model returned an empty reply"


async def test_a_slow_model_times_out_into_the_fallback(contract_services: Services) -> None:
    backend = ScriptedBackend("one two three four five", delay_s=0.5)
    services = with_backend(contract_services, backend, llm_timeout_s=0.8)
    async with app_client(create_app(services=services)) as client:
        started = time.monotonic()
        events = events_of(await client.post("/chat", json=ask(stream=True)))
    assert time.monotonic() - started < 5
    names = [name for name, _ in events]
    assert "error" in names and names[-1] == "done"
    assert "did not finish within 0.8 s" in events[-1][1]["fallback_reason"]


async def test_busy_is_503_and_an_error_event(contract_services: Services) -> None:
    busy = BusyEngine(LLMBusy("The model is busy (5 requests running or waiting); retry in a moment."))
    async with app_client(create_app(services=with_engine(contract_services, busy))) as client:
        response = await client.post("/chat", json=ask())
        assert response.status_code == 503
        assert "busy" in response.json()["detail"] and response.headers["retry-after"] == "5"
        response = await client.post("/chat", json=ask(stream=True))
    assert response.status_code == 200
    assert events_of(response) == [("error", {"message": str(busy.error)})]


async def test_store_failure_is_503_naming_the_store(
    contract_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: object, **__: object) -> None:
        raise StoreUnavailable("the Chroma server at 127.0.0.1:9 failed (ConnectError); is the server up?")

    monkeypatch.setattr(contract_services.retriever, "search", down)
    async with app_client(create_app(services=contract_services)) as client:
        response = await client.post("/chat", json=ask())
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["detail"].startswith("the paper store is unavailable")
        events = events_of(await client.post("/chat", json=ask(stream=True)))
    assert [name for name, _ in events] == ["error"]
    assert "is the server up?" in events[0][1]["message"]


async def test_an_unexpected_exception_is_500_or_an_error_event_without_internals(
    contract_services: Services,
) -> None:
    async with app_client(create_app(services=with_engine(contract_services, BrokenEngine()))) as client:
        response = await client.post("/chat", json=ask(stream=True))
        assert response.status_code == 200
        assert [name for name, _ in events_of(response)] == ["sources", "delta", "error"]
        assert "secret" not in response.text and "Traceback" not in response.text
        response = await client.post("/chat", json=ask())
    assert response.status_code == 500 and "secret" not in response.text
    assert response.json()["detail"].startswith("internal error")


# --- client disconnects --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
def test_client_disconnect_stops_generation(contract_services: Services, path: str) -> None:
    slow = SlowEngine()
    app = create_app(services=with_engine(contract_services, slow))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        body = ask(stream=True) if path == "/chat" else {"model": "paperqa", **ask(stream=True)}
        with http.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            seen = 0
            for line in response.iter_lines():
                if "piece" in line:
                    seen += 1
                if seen >= 3:
                    break
        # the connection is closed: the pipeline's generator must be closed promptly
        assert slow.closed.wait(timeout=5), "the answer generator was not closed after the disconnect"
        pieces = slow.pieces
        time.sleep(0.5)
        assert slow.pieces <= pieces + 1, "generation went on after the client left"
        assert http.get("/health").json()["ready"] is True


def test_server_survives_disconnects(contract_services: Services) -> None:
    """Several clients hang up mid-stream; the server then answers normally."""
    with (
        LiveServer(create_app(services=contract_services)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        for _ in range(3):
            with http.stream("POST", "/chat", json=ask(stream=True)) as response:
                assert next(sse_events(response.iter_lines()))[0] == "sources"
        response = http.post("/chat", json=ask(stream=True))
        names = [name for name, _ in parse_sse(response.text)]
        assert names[0] == "sources" and names[-1] == "done"
        assert http.post("/chat", json=ask()).status_code == 200


# --- coverage: names, refusals with suggestions ---------------------------------------------------------
async def test_a_question_that_names_a_paper_is_answered_from_it(contract_services: Services) -> None:
    """With a relevance floor no similarity reaches, only the name can cover the question."""
    services = with_backend(contract_services, None, relevance_floor=0.99)
    async with app_client(create_app(services=services)) as client:
        for question in ("What is Linformer?", "how does linformer work", "linformer"):
            result = (await client.post("/chat", json=ask(question))).json()
            assert not result["refused"] and result["coverage"] == "named", (question, result["coverage"])
            assert result["sources"][0]["paper_id"] == "linformer"
            assert result["citations"][0]["paper_id"] == "linformer"
        result = (await client.post("/chat", json=ask("Which papers quantize vision transformers?"))).json()
    assert result["refused"] and result["coverage"] == "no paper is close enough"


async def test_a_refusal_offers_the_closest_papers_not_as_citations(client: httpx.AsyncClient) -> None:
    result = (await client.post("/chat", json=ask(OFF_TOPIC))).json()
    assert result["refused"] and result["citations"] == [] and result["sources"] == []
    suggestions = result["suggestions"]
    assert 1 <= len(suggestions) <= 3
    assert {s["paper_id"] for s in suggestions} <= {p["id"] for p in FAKE_PAPERS}
    assert all(s["title"] not in result["answer"] for s in suggestions)
    done = events_of(await client.post("/chat", json=ask(OFF_TOPIC, stream=True)))[-1][1]
    assert done["refused"] and done["suggestions"] == suggestions
    answered = (await client.post("/chat", json=ask())).json()
    assert answered["suggestions"] == [] and answered["coverage"] == "similar"


async def test_messages_after_the_question_are_ignored(contract_services: Services) -> None:
    """The question is the last user message (what the OpenAPI schema states): a trailing
    assistant or system message does not make the conversation invalid, nor the question."""
    backend = ScriptedBackend("Post-training quantization is studied [1].")
    body = {"messages": [USER, {"role": "assistant", "content": "An earlier draft."}]}
    async with app_client(create_app(services=with_backend(contract_services, backend))) as http:
        response = await http.post("/chat", json=body)
    assert response.status_code == 200, response.text
    assert backend.calls and "An earlier draft." not in str(backend.calls[-1][-1])
    assert USER["content"] in backend.calls[-1][-1]["content"]
