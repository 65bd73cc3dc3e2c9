"""The MCP server: three tools (``search_papers``, ``ask``, ``get_paper``) over the services.

:func:`build_server` takes a *provider* of the services rather than the services themselves: the
HTTP app loads them in its lifespan (and may be not ready yet, or never, if the store is down), and
``python -m app.mcp`` loads them in the background so the client's handshake is answered at once.
The provider returns the ready services or raises a :class:`~app.core.errors.PaperQAError` saying
why not.

Every :class:`~app.core.errors.PaperQAError` a tool meets becomes a tool error (``isError: true``)
carrying its user-facing message; anything unexpected is logged with its traceback and reported
as one generic sentence. A client never sees a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from app.core.errors import PaperQAError, StoreUnavailable
from app.core.papers import StoredPaper
from app.core.settings import TOP_K_MAX
from app.mcp import tools
from app.mcp.results import AskResult, SearchPapersResult
from app.services import Services

log = logging.getLogger(__name__)

SERVER_NAME = "paperqa-lite"
ServicesProvider = Callable[[], Awaitable[Services]]
T = TypeVar("T")

UNEXPECTED = "the tool failed on the server; please retry (the server log has the details)"

INSTRUCTIONS = (
    "Answers research questions from the abstracts of the indexed papers, with citations that were "
    "checked against those abstracts. Use ask for a question (it refuses, and suggests the closest "
    "papers, when the indexed papers do not cover it), search_papers to see which papers match a "
    "topic, and get_paper for one paper's whole abstract and metadata."
)
SEARCH_PAPERS = (
    "Find the indexed research papers that match a query (retrieval only, no answer is written). "
    "Returns the papers in rank order (paper_id, title, score, the best-matching passage, url) and "
    "whether the indexed papers cover the query at all (covered, coverage); when they do not, "
    "suggestions lists the closest papers, which do not answer it."
)
ASK = (
    "Answer a research question from the abstracts of the indexed papers, with citations. Every "
    "sentence of the answer cites a paper with a marker [n]; citations lists each cited paper "
    "(number, paper_id, title, url) with the sentences of its abstract the claim rests on (evidence). "
    "When the indexed papers do not cover the question, refused is true, answer says so, and "
    "suggestions lists the closest papers (they are not an answer). For a follow-up question, pass "
    "the earlier questions in history. If the language model fails, the answer is extracted from "
    "the abstracts instead and fallback_reason says why."
)
GET_PAPER = (
    "Get one indexed paper by its paper_id: title, whole abstract, url, authors, date, categories "
    "and other metadata. An id that is not in the index is a not-found error."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


class NotReady(PaperQAError):
    """The services are not loaded (yet): starting, stopping, or the store cannot be reached."""

    status = 503
    retry_after_s = 5


def user_message(exc: PaperQAError) -> str:
    """What a client is told about a failure (the same words as the HTTP API's errors)."""
    if isinstance(exc, StoreUnavailable):
        return f"the paper store is unavailable: {exc}"
    return str(exc)


async def reported(tool: str, services: ServicesProvider, work: Callable[[Services], Awaitable[T]]) -> T:
    """``work`` over the services; a failure becomes a :class:`ToolError` with a message for the user."""
    try:
        return await work(await services())
    except PaperQAError as exc:
        log.info("tool %s failed: %s", tool, exc)
        raise ToolError(user_message(exc)) from None
    except Exception:
        log.exception("tool %s failed unexpectedly", tool)
        raise ToolError(UNEXPECTED) from None


@contextmanager
def root_logging_kept() -> Iterator[None]:
    """``MCPServer()`` calls ``logging.basicConfig``; the service configures its own logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def build_server(services: ServicesProvider) -> MCPServer:
    """The MCP server with its three tools; ``services()`` gives the loaded services per call."""
    with root_logging_kept():
        server: MCPServer = MCPServer(SERVER_NAME, title="paperqa-lite", instructions=INSTRUCTIONS)

    @server.tool(title="Search the indexed papers", description=SEARCH_PAPERS, annotations=READ_ONLY)
    async def search_papers(
        query: Annotated[str, Field(description="the question or keywords to search for")],
        k: Annotated[int, Field(ge=1, le=TOP_K_MAX, description="how many papers to return")] = 5,
    ) -> SearchPapersResult:
        return await reported("search_papers", services, lambda s: tools.search_papers(s, query, k))

    @server.tool(title="Answer a research question with citations", description=ASK, annotations=READ_ONLY)
    async def ask(
        question: Annotated[str, Field(description="the research question to answer")],
        history: Annotated[
            list[str] | None,
            Field(description="earlier questions of the same conversation, oldest first, for a follow-up"),
        ] = None,
    ) -> AskResult:
        return await reported("ask", services, lambda s: tools.ask(s, question, history or []))

    @server.tool(title="Get one paper", description=GET_PAPER, annotations=READ_ONLY)
    async def get_paper(
        id: Annotated[str, Field(description="the paper_id, as search_papers or ask's citations give it")],
    ) -> StoredPaper:
        return await reported("get_paper", services, lambda s: tools.lookup_paper(s, id))

    return server
