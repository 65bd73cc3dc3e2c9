"""The MCP server (app/mcp), through the official MCP Python client.

Over streamable HTTP (fast tier, no model): the real app at ``/mcp`` on a live uvicorn server on
127.0.0.1, over the small store of the hashing embedder (``contract_services``): the tools and
their schemas, structured results checked against the store, refusals, tool errors, and the app's
API key and rate limit applying to ``/mcp``. Over stdio (slow tier): ``python -m app.mcp`` as a
subprocess over a small store built with the real ingestion and the bundled embedder.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from app.core.errors import LLMBusy, StoreUnavailable
from app.core.settings import Settings
from app.http.app import create_app
from app.services import Services
from tests.fakes import FAKE_PAPERS, BrokenEngine, BusyEngine, HashingEmbedding, with_engine
from tests.helpers import LiveServer

QUESTION = "Which papers quantize vision transformers after training?"
OFF_TOPIC = "What is the best recipe for chocolate chip cookies?"
TOOLS = {"search_papers", "ask", "get_paper"}
PAPERS = {p["id"]: p for p in FAKE_PAPERS}
BOUND_S = 60.0  # no test waits longer than this on anything
KEY = "test-key-123"


# --- helpers ------------------------------------------------------------------------------------
@asynccontextmanager
async def connected(url: str, key: str | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session to ``url``/mcp (with ``Authorization: Bearer key``)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with anyio.fail_after(BOUND_S):
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(BOUND_S)) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=BOUND_S) as session,
        ):
            await session.initialize()
            yield session


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def tool_error(result: CallToolResult) -> str:
    """The message of a tool error (``isError``), checked to carry no traceback."""
    assert result.is_error, result
    message = text_of(result)
    assert message and "Traceback" not in message and 'File "' not in message, message
    return message


def errors_in(exc: BaseException) -> list[BaseException]:
    """``exc`` and, for an exception group (the client's task groups raise them), what it holds."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in errors_in(inner)]
    return [exc]


def with_settings(services: Services, **overrides: object) -> Settings:
    return services.settings.model_copy(update=overrides)


@pytest.fixture(scope="module")
def server(contract_services: Services) -> Iterator[LiveServer]:
    with LiveServer(create_app(services=contract_services)) as live:
        yield live


# --- the tools over HTTP --------------------------------------------------------------------------
async def test_tools_are_listed_with_descriptions_and_schemas(server: LiveServer) -> None:
    async with connected(server.url) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
    search = tools["search_papers"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["type"] == "string"
    k = search["properties"]["k"]
    assert (k["type"], k["default"], k["minimum"], k["maximum"]) == ("integer", 5, 1, 50)
    ask = tools["ask"].input_schema
    assert ask["required"] == ["question"]
    history = ask["properties"]["history"]
    assert {"type": "array", "items": {"type": "string"}} in history["anyOf"] and history["default"] is None
    assert tools["get_paper"].input_schema["required"] == ["id"]
    assert {"answer", "citations", "refused", "suggestions"} <= set(tools["ask"].output_schema["properties"])
    assert {"covered", "results", "suggestions"} <= set(tools["search_papers"].output_schema["properties"])
    assert {"paper_id", "title", "abstract"} <= set(tools["get_paper"].output_schema["properties"])


async def test_search_papers_finds_what_get_search_finds(server: LiveServer) -> None:
    async with connected(server.url) as session:
        found = structured(await session.call_tool("search_papers", {"query": QUESTION, "k": 3}))
    via_http = httpx.get(f"{server.url}/search", params={"q": QUESTION, "k": 3}, timeout=BOUND_S).json()
    assert found["covered"] is True and found["suggestions"] == []
    assert found["coverage"] == via_http["coverage"] and found["mode"] == via_http["mode"]
    results = found["results"]
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1)) and 1 <= len(results) <= 3
    assert [r["paper_id"] for r in results] == [r["paper_id"] for r in via_http["results"]]
    assert results[0]["title"].startswith("Post-Training Quantization")
    for r in results:
        assert r["title"] == PAPERS[r["paper_id"]]["title"]
        assert r["passage"] and r["passage"] in PAPERS[r["paper_id"]]["abstract"]
    assert results[0]["url"] == "https://example.org/vit-ptq"


async def test_search_papers_says_when_the_corpus_does_not_cover_the_query(server: LiveServer) -> None:
    async with connected(server.url) as session:
        found = structured(await session.call_tool("search_papers", {"query": OFF_TOPIC}))
    assert found["covered"] is False and found["coverage"]
    assert 1 <= len(found["suggestions"]) <= 3
    assert {s["paper_id"] for s in found["suggestions"]} <= set(PAPERS)


async def test_ask_answers_with_citations_from_the_store(server: LiveServer) -> None:
    async with connected(server.url) as session:
        result = structured(await session.call_tool("ask", {"question": QUESTION}))
    assert result["refused"] is False and result["backend"] == "extractive"
    assert result["fallback_reason"] is None and result["suggestions"] == []
    citations = result["citations"]
    assert citations and [c["number"] for c in citations] == list(range(1, len(citations) + 1))
    for c in citations:
        paper = PAPERS[c["paper_id"]]  # a paper of the store...
        assert c["title"] == paper["title"]  # ...with its own title
        assert f"[{c['number']}]" in result["answer"]
        assert c["evidence"] and all(sentence in paper["abstract"] for sentence in c["evidence"])
    assert citations[0]["paper_id"] == "vit-ptq"


async def test_ask_takes_earlier_questions_for_a_follow_up(server: LiveServer) -> None:
    async with connected(server.url) as session:
        result = structured(
            await session.call_tool("ask", {"question": "How accurate are they?", "history": [QUESTION]})
        )
    assert result["refused"] is False
    assert {"vit-ptq", "repq"} & {c["paper_id"] for c in result["citations"]}


async def test_ask_refuses_an_out_of_scope_question_with_suggestions(server: LiveServer) -> None:
    async with connected(server.url) as session:
        result = structured(await session.call_tool("ask", {"question": OFF_TOPIC}))
    assert result["refused"] is True and result["citations"] == [] and result["answer"]
    assert 1 <= len(result["suggestions"]) <= 3
    assert {s["paper_id"] for s in result["suggestions"]} <= set(PAPERS)
    assert all(s["title"] == PAPERS[s["paper_id"]]["title"] for s in result["suggestions"])


async def test_get_paper_returns_the_whole_abstract(server: LiveServer) -> None:
    async with connected(server.url) as session:
        paper = structured(await session.call_tool("get_paper", {"id": "linformer"}))
        via_http = httpx.get(f"{server.url}/papers/linformer", timeout=BOUND_S).json()
    assert paper == via_http
    assert paper["title"] == PAPERS["linformer"]["title"]
    assert paper["abstract"] == PAPERS["linformer"]["abstract"]


async def test_an_unknown_paper_is_a_tool_error_that_says_what_to_do(server: LiveServer) -> None:
    async with connected(server.url) as session:
        message = tool_error(await session.call_tool("get_paper", {"id": "no-such-paper"}))
    assert "no paper with id 'no-such-paper'" in message and "search_papers" in message


async def test_bad_arguments_are_tool_errors(server: LiveServer) -> None:
    async with connected(server.url) as session:
        assert "question is empty" in tool_error(await session.call_tool("ask", {"question": "  "}))
        too_long = "word " * 1000
        assert "too long" in tool_error(await session.call_tool("search_papers", {"query": too_long}))
        assert "k" in tool_error(await session.call_tool("search_papers", {"query": QUESTION, "k": 0}))
        assert tool_error(await session.call_tool("get_paper", {}))  # the id is missing
        history = ["an earlier question"] * 30  # more than PAPERQA_MAX_MESSAGES
        assert "history is too long" in tool_error(
            await session.call_tool("ask", {"question": QUESTION, "history": history})
        )


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (BusyEngine(StoreUnavailable("the embedded store timed out")), "the paper store is unavailable"),
        (BusyEngine(LLMBusy("2 answers are being written and 4 wait; retry in a moment")), "retry"),
        (BrokenEngine(), "the tool failed on the server; please retry"),
    ],
)
async def test_failures_become_tool_errors_without_internals(
    contract_services: Services, engine: Any, expected: str
) -> None:
    with LiveServer(create_app(services=with_engine(contract_services, engine))) as live:
        async with connected(live.url) as session:
            message = tool_error(await session.call_tool("ask", {"question": QUESTION}))
    assert expected in message
    assert BrokenEngine.SECRET not in message


async def test_a_service_without_its_store_says_so_per_call(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started without an index: /mcp still answers, and each tool says why it cannot work."""
    import app.http.app as http_app

    real_build = http_app.build_services
    monkeypatch.setattr(http_app, "build_services", lambda s: real_build(s, embed_model=HashingEmbedding()))
    settings = settings_factory(collection="never_built", store_retry_s=60, llm_backend="extractive")
    with LiveServer(create_app(settings)) as live:
        async with connected(live.url) as session:
            assert {t.name for t in (await session.list_tools()).tools} == TOOLS
            message = tool_error(await session.call_tool("search_papers", {"query": QUESTION}))
    assert "the service is not ready" in message and "python -m ingest" in message


# --- the app's guards apply to /mcp ------------------------------------------------------------------
def initialize_body() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw-httpx", "version": "0"},
        },
    }


MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


async def test_mcp_needs_the_api_key_when_one_is_set(contract_services: Services) -> None:
    settings = with_settings(contract_services, api_key=KEY)
    with LiveServer(create_app(settings, contract_services)) as live:
        with httpx.Client(base_url=live.url, timeout=BOUND_S) as http:
            refused = http.post("/mcp", json=initialize_body(), headers=MCP_HEADERS)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            wrong = http.post(
                "/mcp", json=initialize_body(), headers={**MCP_HEADERS, "Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401
        with pytest.raises(Exception) as failed:
            async with connected(live.url):  # the client gets the 401 and fails
                pass
        assert any(isinstance(e, MCPError) for e in errors_in(failed.value)), failed.value
        async with connected(live.url, key=KEY) as session:
            assert {t.name for t in (await session.list_tools()).tools} == TOOLS
            paper = structured(await session.call_tool("get_paper", {"id": "vit-ptq"}))
    assert paper["paper_id"] == "vit-ptq"


async def test_the_rate_limit_applies_to_mcp(contract_services: Services) -> None:
    settings = with_settings(contract_services, rate_limit_per_minute=5)
    with LiveServer(create_app(settings, contract_services)) as live:
        # initialize and its notification are 2 requests, list_tools 1, and each call 1.
        async with connected(live.url) as session:
            await session.list_tools()
            structured(await session.call_tool("get_paper", {"id": "vit-ptq"}))
            structured(await session.call_tool("get_paper", {"id": "repq"}))
            with pytest.raises(MCPError):
                await session.call_tool("get_paper", {"id": "linformer"})
        over = httpx.post(f"{live.url}/mcp", json=initialize_body(), headers=MCP_HEADERS, timeout=BOUND_S)
    assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1


async def test_mcp_refuses_a_foreign_host_or_origin_on_loopback(server: LiveServer) -> None:
    """DNS rebinding: a page on another site must not reach the local service through its browser."""
    with httpx.Client(base_url=server.url, timeout=BOUND_S) as http:
        ok = http.post("/mcp", json=initialize_body(), headers=MCP_HEADERS)
        assert ok.status_code == 200 and ok.json()["result"]["serverInfo"]["name"] == "paperqa-lite"
        host = http.post("/mcp", json=initialize_body(), headers={**MCP_HEADERS, "Host": "evil.example"})
        assert host.status_code == 421
        origin = http.post(
            "/mcp", json=initialize_body(), headers={**MCP_HEADERS, "Origin": "http://evil.example"}
        )
        assert origin.status_code == 403


async def test_mcp_takes_post_only_and_opens_no_stream(server: LiveServer) -> None:
    """Stateless JSON: a GET must not open an SSE stream that never ends (it would hold shutdown)."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for method in ("GET", "DELETE"):
            response = http.request(method, "/mcp", headers={"Accept": "text/event-stream"})
            assert response.status_code == 405 and response.headers["allow"] == "POST", method


async def test_mcp_answers_503_outside_the_lifespan(contract_services: Services) -> None:
    app = create_app(services=contract_services)  # lifespan not run
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/mcp", json=initialize_body(), headers=MCP_HEADERS)
    assert response.status_code == 503 and "retry" in response.json()["detail"]


# --- stdio: python -m app.mcp ------------------------------------------------------------------------
STDIO_COLLECTION = "mcp_stdio"


@asynccontextmanager
async def stdio_session(env: dict[str, str], cwd: Path, bound_s: float) -> AsyncIterator[ClientSession]:
    """``python -m app.mcp`` as a subprocess, and an initialized client session to it; its stderr
    is printed if anything fails."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "app.mcp"], env=env, cwd=str(cwd))
    log_path = cwd / "mcp-server.log"
    with log_path.open("w", encoding="utf-8") as errlog:
        try:
            with anyio.fail_after(bound_s):
                async with (
                    stdio_client(params, errlog=errlog) as (read, write),
                    ClientSession(read, write, read_timeout_seconds=bound_s) as session,
                ):
                    await session.initialize()
                    yield session
        except BaseException:
            print(log_path.read_text(encoding="utf-8")[-5000:], file=sys.stderr)
            raise


def stdio_env(clean_env: Callable[..., dict[str, str]], project_dir: Path, **settings: str) -> dict[str, str]:
    """The subprocess's environment: none of the developer's PAPERQA_* settings, offline."""
    return clean_env(
        PYTHONPATH=str(project_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        PAPERQA_LLM_BACKEND="extractive",
        **settings,
    )


async def test_stdio_server_without_an_index_says_what_to_do(
    tmp_path: Path, clean_env: Callable[..., dict[str, str]], project_dir: Path
) -> None:
    """No model is loaded: the store is checked first. The handshake still works, and every call
    says what is wrong (and tries again, so ingesting meanwhile needs no restart)."""
    env = stdio_env(
        clean_env, project_dir, PAPERQA_CHROMA_PATH=str(tmp_path / "empty"), PAPERQA_COLLECTION="none"
    )
    async with stdio_session(env, tmp_path, BOUND_S) as session:
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        first = tool_error(await session.call_tool("ask", {"question": QUESTION}))
        again = tool_error(await session.call_tool("get_paper", {"id": "vit-ptq"}))
    assert "python -m ingest" in first and "python -m ingest" in again


async def test_the_stdio_loader_tries_again_after_a_failed_load(contract_services: Services) -> None:
    from app.mcp.stdio import ServicesLoader

    outcomes: list[Any] = [StoreUnavailable("no index yet; run python -m ingest"), contract_services]

    def build(settings: Settings) -> Services:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    loader = ServicesLoader(contract_services.settings, build)
    loader.start()
    with pytest.raises(StoreUnavailable):
        await loader()
    assert await loader() is contract_services and await loader() is contract_services
    assert outcomes == []


def small_store(folder: Path, embed_model: Any, count_tokens: Any, build_settings: Any) -> list[dict]:
    """A few real papers, ingested with the real ingestion and the bundled embedder."""
    from ingest.pipeline import ingest
    from tests.corpus_tools import real_papers, write_jsonl

    # Six papers on post-training quantization of vision transformers (what QUESTION asks), six others.
    quantization = [p for p in real_papers() if "post-training quantization" in p.title.lower()][:6]
    papers = quantization + [p for p in real_papers() if "quantiz" not in p.abstract.lower()][:6]
    records = [{"id": p.id, "title": p.title, "abstract": p.abstract} for p in papers]
    corpus = write_jsonl(folder / "small.jsonl", records)
    settings = build_settings(chroma_path=folder / "chroma", collection=STDIO_COLLECTION)
    summary = ingest(settings, [corpus], embed_model=embed_model, count_tokens=count_tokens, progress=False)
    assert summary.new == len(records), summary.render()
    return records


@pytest.mark.slow
async def test_stdio_server_serves_the_three_tools(
    tmp_path: Path,
    embed_model: Any,
    count_tokens: Any,
    build_settings: Any,
    clean_env: Callable[..., dict[str, str]],
    project_dir: Path,
) -> None:
    records = small_store(tmp_path, embed_model, count_tokens, build_settings)
    titles = {r["id"]: r["title"] for r in records}
    env = stdio_env(
        clean_env,
        project_dir,
        PAPERQA_CHROMA_PATH=str(tmp_path / "chroma"),
        PAPERQA_COLLECTION=STDIO_COLLECTION,
    )
    async with stdio_session(env, tmp_path, 3 * BOUND_S) as session:  # it loads the embedder first
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        found = structured(await session.call_tool("search_papers", {"query": QUESTION}))
        answer = structured(await session.call_tool("ask", {"question": QUESTION}))
        first = found["results"][0]["paper_id"]
        paper = structured(await session.call_tool("get_paper", {"id": first}))
        missing = tool_error(await session.call_tool("get_paper", {"id": "nope"}))
    assert found["covered"] is True and {r["paper_id"] for r in found["results"]} <= set(titles)
    assert answer["refused"] is False and answer["citations"]
    for c in answer["citations"]:
        assert c["title"] == titles[c["paper_id"]] and c["evidence"]
    assert paper["title"] == titles[first] and paper["abstract"]
    assert "no paper with id 'nope'" in missing
