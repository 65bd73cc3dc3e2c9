"""The HTTP API over the real index of the bundled corpus, answered extractively (no LLM).

In process (httpx + ASGITransport, lifespan run by hand) for most endpoints; a real uvicorn server
on 127.0.0.1 for the official ``openai`` client and for client disconnects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from app.answer import AnswerResult, DeltaEvent, DoneEvent, SourcesEvent
from app.embeddings import embedding_identity
from app.llm import LLMBusy
from app.main import create_app
from app.services import Services
from app.settings import Settings

pytest.register_assert_rewrite("tests.service_fixtures")
from tests.service_fixtures import LiveServer, iter_sse_lines, parse_sse, service_settings

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.slow

QUESTION = "Which papers quantize vision transformers after training?"
OFF_TOPIC = "What is the best recipe for chocolate chip cookies?"


def ask(question: str = QUESTION, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


async def open_client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            yield client


@pytest.fixture
async def client(extractive_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_client(create_app(services=extractive_services)):
        yield c


@pytest.fixture(scope="module")
def all_titles(extractive_services: Services) -> list[str]:
    return [m["title"] for m in extractive_services.papers.get(include=["metadatas"])["metadatas"]]


def sse_events(response: httpx.Response) -> list[tuple[str, object]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    return [(name, json.loads(data)) for name, data in parse_sse(response.text)]


# --- health, docs, page -------------------------------------------------------------------------
async def test_health(client: httpx.AsyncClient, extractive_services: Services) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "ready": True,
        "papers": extractive_services.papers.count(),
        "chunks": extractive_services.chunks.count(),
        "embedding_model": embedding_identity(extractive_services.settings),
        "llm_backend": "extractive",
        "llm_model": None,
        "collection": extractive_services.settings.collection,
        "store": "embedded",
    }
    assert body["papers"] > 500 and body["chunks"] >= body["papers"]


async def test_docs_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    for path in ("/chat", "/v1/chat/completions", "/v1/models", "/papers/{paper_id}", "/search", "/health"):
        assert path in spec["paths"], path


async def test_chat_page_and_static_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = await client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert (await client.get("/static/style.css")).status_code == 200


async def test_not_ready_until_lifespan(extractive_services: Services) -> None:
    app = create_app(services=extractive_services)  # lifespan not run: no services yet
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/health")).status_code == 503
        response = await client.post("/chat", json=ask())
        assert response.status_code == 503 and "starting" in response.json()["detail"]


async def test_factory_loads_and_closes_its_own_services(
    service_store, embed_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.main as main

    built: list[Services] = []
    real_build = main.build_services

    def build(settings: Settings) -> Services:  # the real loader, with the session's embedder
        built.append(real_build(settings, embed_model=embed_model))
        return built[-1]

    monkeypatch.setattr(main, "build_services", build)
    settings = service_settings(service_store, llm_backend="extractive")
    app = create_app(settings)
    async for client in open_client(app):
        assert app.state.ready and app.state.services is built[0]
        assert (await client.get("/health")).json()["ready"] is True
    assert app.state.ready is False
    assert len(built) == 1


def test_uvicorn_factory_import_string() -> None:
    from uvicorn.importer import import_from_string

    factory = import_from_string("app.main:create_app")
    assert callable(factory) and factory is create_app


# --- /chat ----------------------------------------------------------------------------------------
async def test_chat_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat", json=ask())
    assert response.status_code == 200
    result = AnswerResult.model_validate(response.json())
    assert not result.refused and result.backend == "extractive"
    assert result.sources and result.citations
    source_ids = {s.paper_id for s in result.sources}
    assert {c.paper_id for c in result.citations} <= source_ids
    assert "[1]" in result.answer
    assert any("quantiz" in s.title.lower() for s in result.sources)


async def test_chat_stream_event_sequence(client: httpx.AsyncClient, all_titles: list[str]) -> None:
    response = await client.post("/chat", json=ask(stream=True))
    assert response.status_code == 200
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done"
    assert names.count("sources") == 1 and names.count("done") == 1
    assert set(names[1:-1]) == {"delta"}, names
    sources = events[0][1]
    done = AnswerResult.model_validate(events[-1][1])
    assert [s["paper_id"] for s in sources] == [s.paper_id for s in done.sources]
    source_titles = {s["title"] for s in sources}
    assert {c.title for c in done.citations} <= source_titles
    assert done.citations, "the extractive answer cites its sources"
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed.strip() == done.answer.strip()
    # No paper outside the retrieved sources is named in the answer.
    for title in all_titles:
        if title not in source_titles and len(title) > 20:
            assert title not in done.answer, title


async def test_chat_follow_up_uses_history(client: httpx.AsyncClient) -> None:
    first = (await client.post("/chat", json=ask())).json()
    follow_up = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first["answer"]},
            {"role": "user", "content": "Which of them handles outliers?"},
        ]
    }
    response = await client.post("/chat", json=follow_up)
    assert response.status_code == 200
    result = response.json()
    assert not result["refused"] and result["citations"]
    # concat condensing: the query joins the previous question to the follow-up
    assert "quantize vision transformers" in result["query"]


async def test_chat_refuses_off_topic(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat", json=ask(OFF_TOPIC))
    result = response.json()
    assert response.status_code == 200
    assert result["refused"] is True and result["citations"] == [] and result["sources"] == []
    events = sse_events(await client.post("/chat", json=ask(OFF_TOPIC, stream=True)))
    assert [name for name, _ in events] == ["sources", "done"]
    assert events[0][1] == [] and events[1][1]["refused"] is True


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
async def test_chat_top_k_and_mode(client: httpx.AsyncClient, mode: str) -> None:
    result = (await client.post("/chat", json=ask(top_k=2, mode=mode))).json()
    assert result["mode"] == mode
    assert 1 <= len(result["sources"]) <= 2


# --- /papers, /search ------------------------------------------------------------------------------
async def test_paper_by_id(client: httpx.AsyncClient, extractive_services: Services) -> None:
    hit = (await client.get("/search", params={"q": QUESTION, "k": 1})).json()["results"][0]
    response = await client.get(f"/papers/{hit['paper_id']}")
    assert response.status_code == 200
    paper = response.json()
    assert paper["paper_id"] == hit["paper_id"] and paper["title"] == hit["title"]
    stored = extractive_services.papers.get(ids=[hit["paper_id"]], include=["documents"])
    assert paper["abstract"] == stored["documents"][0]
    assert hit["passage"][:60] in paper["abstract"]
    assert paper["source"] and paper["n_chunks"] >= 1
    assert "content_hash" not in paper["metadata"]


@pytest.mark.parametrize("paper_id", ["nope", "arxiv:hep-th/9901001", "t-0000000000000000"])
async def test_paper_404(client: httpx.AsyncClient, paper_id: str) -> None:
    response = await client.get(f"/papers/{paper_id}")
    assert response.status_code == 404
    assert paper_id in response.json()["detail"] and "no paper" in response.json()["detail"]


async def test_search(client: httpx.AsyncClient) -> None:
    response = await client.get("/search", params={"q": QUESTION, "k": 3, "mode": "hybrid"})
    assert response.status_code == 200
    body = response.json()
    assert body["covered"] is True and body["top_similarity"] >= body["relevance_floor"]
    assert body["mode"] == "hybrid" and len(body["results"]) == 3
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    for result in body["results"]:
        assert result["title"] and result["paper_id"] and result["passage"]
        assert result["score"] > 0
    assert any(r["similarity"] is not None and r["similarity"] > 0.3 for r in body["results"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)

    bm25 = (await client.get("/search", params={"q": QUESTION, "mode": "bm25"})).json()
    assert bm25["mode"] == "bm25" and len(bm25["results"]) == 5  # settings.top_k

    off = (await client.get("/search", params={"q": OFF_TOPIC})).json()
    assert off["covered"] is False and off["top_similarity"] < off["relevance_floor"]


@pytest.mark.parametrize(
    "params",
    [{}, {"q": ""}, {"q": "   "}, {"q": "x", "k": 0}, {"q": "x", "k": 51}, {"q": "x", "k": "many"},
     {"q": "x", "mode": "magic"}, {"q": "x" * 4001}],
)
async def test_search_bad_input(client: httpx.AsyncClient, params: dict) -> None:
    response = await client.get("/search", params=params)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


# --- bad input ---------------------------------------------------------------------------------------
USER = {"role": "user", "content": "What is post-training quantization?"}
BAD_CHAT_BODIES = {
    "empty question": ask(""),
    "whitespace question": ask(" \n\t "),
    "no messages": {"messages": []},
    "messages missing": {"stream": True},
    "too many messages": {"messages": [USER] * 21},
    "message too long": ask("x" * 4001),
    "earlier message too long": {"messages": [{"role": "assistant", "content": "y" * 4001}, USER]},
    "unknown role": {"messages": [{"role": "tool", "content": "hi"}, USER]},
    "last message from assistant": {"messages": [USER, {"role": "assistant", "content": "ok"}]},
    "last message from system": {"messages": [USER, {"role": "system", "content": "ok"}]},
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
async def test_chat_bad_input_is_4xx(client: httpx.AsyncClient, case: str, stream: bool) -> None:
    body = BAD_CHAT_BODIES[case]
    if stream and isinstance(body, dict) and "stream" not in body:
        body = {**body, "stream": True}
    response = await client.post("/chat", json=body)
    assert response.status_code in (400, 422), (case, response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail, case
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "content, content_type",
    [(b"{not json", "application/json"), (b"", "application/json"), (b"messages=hi", "application/x-www-form-urlencoded"),
     (b"\xff\xfe\x00", "application/json")],
)
async def test_chat_non_json_body(client: httpx.AsyncClient, content: bytes, content_type: str) -> None:
    response = await client.post("/chat", content=content, headers={"content-type": content_type})
    assert response.status_code in (400, 422), response.text
    assert isinstance(response.json()["detail"], str)


async def test_error_messages_are_specific(client: httpx.AsyncClient) -> None:
    cases = {
        "too many messages: 21": {"messages": [USER] * 21},
        "too long: 4001 characters": ask("x" * 4001),
        "messages[0].role": {"messages": [{"role": "tool", "content": "hi"}, USER]},
        "must be from the user": {"messages": [USER, {"role": "assistant", "content": "ok"}]},
        "is empty": ask("   "),
        "top_k": ask(top_k=99),
        "not valid JSON": None,
    }
    for expected, body in cases.items():
        if body is None:
            response = await client.post("/chat", content=b"{", headers={"content-type": "application/json"})
        else:
            response = await client.post("/chat", json=body)
        assert expected in response.json()["detail"], (expected, response.json())


BAD_OPENAI_BODIES = {
    "empty question": {"model": "paperqa", "messages": [{"role": "user", "content": "  "}]},
    "no messages": {"model": "paperqa", "messages": []},
    "unknown role": {"model": "paperqa", "messages": [{"role": "wizard", "content": "hi"}]},
    "last from assistant": {"model": "paperqa", "messages": [USER, {"role": "assistant", "content": "x"}]},
    "too many messages": {"model": "paperqa", "messages": [USER] * 21},
    "too long": {"model": "paperqa", "messages": [{"role": "user", "content": "x" * 4001}]},
    "image part": {"model": "paperqa", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
    "temperature out of range": {"model": "paperqa", "messages": [USER], "temperature": 9},
    "top_k out of range": {"model": "paperqa", "messages": [USER], "top_k": 0},
}


@pytest.mark.parametrize("case", list(BAD_OPENAI_BODIES))
async def test_openai_bad_input_is_4xx(client: httpx.AsyncClient, case: str) -> None:
    response = await client.post("/v1/chat/completions", json=BAD_OPENAI_BODIES[case])
    assert response.status_code in (400, 422), (case, response.text)
    body = response.json()
    assert isinstance(body["detail"], str) and body["error"]["message"] == body["detail"]


async def test_body_over_limit_is_413(client: httpx.AsyncClient, extractive_services: Services) -> None:
    limit = extractive_services.settings.max_body_bytes
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
    response = await client.post("/chat", content=b" " * (limit - 10), headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_chunked_body_over_limit_is_413_on_a_real_server(extractive_server: LiveServer, extractive_services: Services) -> None:
    """A chunked upload (no Content-Length) is counted as it arrives and cut at the limit."""
    limit = extractive_services.settings.max_body_bytes

    def body():
        yield b"{" + b" " * (limit + 100) + b"}"

    with httpx.Client(timeout=30) as http:
        response = http.post(f"{extractive_server.url}/chat", content=body(),
                             headers={"content-type": "application/json"})
    assert response.status_code == 413


# --- failures inside the pipeline ----------------------------------------------------------------
class BusyAnswerer:
    """Stands in for the Answerer when the LLM refuses more work."""

    backend_name = "local"

    async def answer(self, messages, **_: object) -> AnswerResult:
        raise LLMBusy("The model is busy (5 requests running or waiting); retry in a moment.")

    async def events(self, messages, **_: object):
        raise LLMBusy("The model is busy (5 requests running or waiting); retry in a moment.")
        yield  # pragma: no cover  (makes this an async generator)


class BrokenAnswerer:
    """Sends its sources, then fails with an unexpected exception."""

    backend_name = "local"

    async def answer(self, messages, **_: object) -> AnswerResult:
        raise RuntimeError("secret internals /etc/passwd")

    async def events(self, messages, **_: object):
        yield SourcesEvent([])
        yield DeltaEvent("partial ")
        raise RuntimeError("secret internals /etc/passwd")


@pytest.fixture
async def busy_client(extractive_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    services = dataclasses.replace(extractive_services, answerer=BusyAnswerer())
    async for c in open_client(create_app(services=services)):
        yield c


@pytest.fixture
async def broken_client(extractive_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    services = dataclasses.replace(extractive_services, answerer=BrokenAnswerer())
    async for c in open_client(create_app(services=services)):
        yield c


async def test_llm_busy_is_503(busy_client: httpx.AsyncClient) -> None:
    response = await busy_client.post("/chat", json=ask())
    assert response.status_code == 503
    assert "busy" in response.json()["detail"] and response.headers["retry-after"]
    response = await busy_client.post("/v1/chat/completions", json={"model": "paperqa", **ask()})
    assert response.status_code == 503 and "busy" in response.json()["error"]["message"]


async def test_llm_busy_in_stream_is_an_error_event(busy_client: httpx.AsyncClient) -> None:
    response = await busy_client.post("/chat", json=ask(stream=True))
    assert response.status_code == 200
    events = sse_events(response)
    assert events == [("error", {"message": "The model is busy (5 requests running or waiting); retry in a moment."})]


async def test_exception_mid_stream_is_an_error_event(broken_client: httpx.AsyncClient) -> None:
    response = await broken_client.post("/chat", json=ask(stream=True))
    assert response.status_code == 200
    events = sse_events(response)
    assert [name for name, _ in events] == ["sources", "delta", "error"]
    assert "secret" not in response.text and "Traceback" not in response.text
    response = await broken_client.post("/chat", json=ask())
    assert response.status_code == 500 and "secret" not in response.text
    assert response.json()["detail"].startswith("internal error")

    response = await broken_client.post("/v1/chat/completions", json={"model": "paperqa", "stream": True, **ask()})
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(lines[-2][6:])["error"]["message"] and lines[-1] == "data: [DONE]"
    assert "secret" not in response.text


# --- the OpenAI-compatible API through the official client ------------------------------------------
@pytest.fixture(scope="module")
def openai_client(extractive_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{extractive_server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_models(openai_client: openai.OpenAI) -> None:
    assert [m.id for m in openai_client.models.list()] == ["paperqa"]


def test_openai_client_non_stream(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="paperqa", messages=[{"role": "user", "content": QUESTION}], max_tokens=50, temperature=0
    )
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    text = choice.message.content
    answer, _, appendix = text.partition("\n\nSources:\n")
    citations = completion.model_extra["citations"]
    assert citations and answer
    assert appendix.splitlines() == [f"[{c['marker']}] {c['title']}" for c in citations]


def test_openai_client_stream(openai_client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    whole = openai_client.chat.completions.create(model="paperqa", messages=messages)
    stream = openai_client.chat.completions.create(
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


def test_openai_client_follow_up_and_extras(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="anything",
        messages=[
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": "Several papers do [1]."},
            {"role": "user", "content": "Which one adds noise?"},
        ],
        extra_body={"top_k": 3, "mode": "hybrid"},
    )
    assert completion.model == "paperqa"
    assert 1 <= len(completion.model_extra["citations"]) <= 3


def test_openai_client_bad_input(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        openai_client.chat.completions.create(model="paperqa", messages=[{"role": "user", "content": " "}])
    assert "empty" in str(raised.value)
    with pytest.raises(openai.UnprocessableEntityError):
        openai_client.chat.completions.create(
            model="paperqa", messages=[{"role": "user", "content": " "}], stream=True
        )


def test_openai_raw_stream_format(extractive_server: LiveServer) -> None:
    with httpx.Client(timeout=60) as http:
        response = http.post(f"{extractive_server.url}/v1/chat/completions",
                             json={"model": "paperqa", "stream": True, **ask()})
    assert response.status_code == 200
    blocks = [b for b in response.text.split("\n\n") if b.strip() and not b.startswith(":")]
    assert all(b.startswith("data: ") for b in blocks)
    assert blocks[-1] == "data: [DONE]"
    chunks = [json.loads(b[6:]) for b in blocks[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["citations"] and chunks[-2]["choices"][0]["delta"]["content"].endswith(
        chunks[-2]["citations"][-1]["title"]
    )


# --- client disconnects ---------------------------------------------------------------------------------
class SlowAnswerer:
    """A long answer, one piece every 50 ms; records whether its generator was closed."""

    backend_name = "local"

    def __init__(self) -> None:
        self.pieces = 0
        self.closed = threading.Event()

    async def events(self, messages, **_: object):
        try:
            yield SourcesEvent([])
            for i in range(2000):
                await asyncio.sleep(0.05)
                self.pieces += 1
                yield DeltaEvent(f"piece {i} ")
            yield DoneEvent(AnswerResult(answer="", mode="hybrid", backend="local", query="q"))
        finally:
            self.closed.set()


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
def test_client_disconnect_stops_generation(extractive_services: Services, path: str) -> None:
    slow = SlowAnswerer()
    app = create_app(services=dataclasses.replace(extractive_services, answerer=slow))
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


def test_server_survives_disconnects(extractive_server: LiveServer) -> None:
    """Several clients hang up mid-stream; the server then answers normally."""
    with httpx.Client(base_url=extractive_server.url, timeout=30) as http:
        for _ in range(3):
            with http.stream("POST", "/chat", json=ask(stream=True)) as response:
                events = iter_sse_lines(response.iter_lines())
                assert next(events)[0] == "sources"
        response = http.post("/chat", json=ask(stream=True))
        names = [name for name, _ in parse_sse(response.text)]
        assert names[0] == "sources" and names[-1] == "done"
        assert http.post("/chat", json=ask()).status_code == 200
