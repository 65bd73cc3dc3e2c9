"""The three tools' work, over loaded :class:`~app.services.Services`: search, answer, look up.

The same calls as the HTTP routes (``GET /search``, ``POST /chat``, ``GET /papers/{id}``): the
retriever, the coverage decision and the suggestions of :mod:`app.retrieval.coverage`, the answer
engine, :func:`app.core.papers.get_paper`, each store call wrapped in :func:`app.core.store.store_errors`.
Failures are :class:`~app.core.errors.PaperQAError`\\ s; :mod:`app.mcp.server` turns them into tool
errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from app.answering.types import AnswerResult
from app.core.errors import InvalidRequest, NotFound
from app.core.papers import StoredPaper, get_paper
from app.core.settings import TOP_K_MAX, Settings
from app.core.store import store_errors
from app.core.text import clean_text, is_blank
from app.mcp.results import AskResult, CitedPaper, SearchPapersResult
from app.retrieval.findings import find_papers
from app.retrieval.queries import Turn, question_problem
from app.services import Services


def _text(value: str, what: str, settings: Settings) -> str:
    """``value`` cleaned (:func:`clean_text`) and stripped, or :class:`InvalidRequest` naming ``what``."""
    text = clean_text(value).strip()
    if is_blank(text):
        raise InvalidRequest(f"{what} is empty")
    if len(text) > settings.max_message_chars:
        raise InvalidRequest(
            f"{what} is too long: {len(text)} characters (at most {settings.max_message_chars})"
        )
    return text


async def search_papers(services: Services, query: str, k: int) -> SearchPapersResult:
    """Retrieval only (no LLM), like ``GET /search``."""
    settings = services.settings
    query = _text(query, "query", settings)
    if not 1 <= k <= TOP_K_MAX:
        raise InvalidRequest(f"k must be between 1 and {TOP_K_MAX} (got {k})")
    found = await run_in_threadpool(find_papers, services.retriever, settings, query, None, k)
    return SearchPapersResult(
        query=query,
        mode=found.retrieval.mode,
        covered=found.coverage.covered,
        coverage=found.coverage.reason,
        suggestions=found.suggestions,
        results=found.hits,
    )


def conversation(question: str, history: Sequence[str], settings: Settings) -> list[Turn]:
    """The earlier questions (oldest first) and the question as user turns, within the limits of
    ``POST /chat`` (``PAPERQA_MAX_MESSAGES``, ``PAPERQA_MAX_MESSAGE_CHARS``)."""
    if len(history) + 1 > settings.max_messages:
        raise InvalidRequest(
            f"history is too long: {len(history)} earlier questions (at most {settings.max_messages - 1}); "
            "send only the recent ones"
        )
    earlier = [clean_text(h).strip() for h in history]
    turns: list[Turn] = [
        {"role": "user", "content": _text(h, f"history[{i}]", settings)} for i, h in enumerate(earlier) if h
    ]
    turns.append({"role": "user", "content": _text(question, "question", settings)})
    problem = question_problem([(t["role"], t["content"]) for t in turns])  # the rule of POST /chat
    if problem:
        raise InvalidRequest(problem)
    return turns


def ask_result(result: AnswerResult) -> AskResult:
    """The parts of an :class:`AnswerResult` an assistant needs: the text, what it cites, why."""
    return AskResult(
        answer=result.answer,
        citations=[
            CitedPaper(
                number=c.marker,
                paper_id=c.paper_id,
                title=c.title,
                url=c.url,
                evidence=[span.text for span in c.evidence],
            )
            for c in result.citations
        ],
        refused=result.refused,
        coverage=result.coverage,
        suggestions=result.suggestions,
        strategy=result.strategy,
        backend=result.backend,
        fallback_reason=result.fallback_reason,
    )


async def ask(services: Services, question: str, history: Sequence[str]) -> AskResult:
    """A cited answer, like ``POST /chat`` (not streamed). When the configured LLM fails, the
    result is the extractive answer, with ``fallback_reason`` saying why."""
    turns = conversation(question, history, services.settings)
    return ask_result(await services.engine.answer(turns))


async def lookup_paper(services: Services, paper_id: str) -> StoredPaper:
    """One paper's title, whole abstract and metadata, like ``GET /papers/{id}``."""
    settings = services.settings
    paper_id = clean_text(paper_id).strip()
    if not paper_id:
        raise InvalidRequest("id is empty: give a paper_id from search_papers or from a citation of ask")
    with store_errors(settings):
        found = await run_in_threadpool(get_paper, services.papers, paper_id)
    if found is None:
        raise NotFound(
            f"no paper with id {paper_id!r} in collection {settings.collection!r}; "
            "use a paper_id from search_papers or from a citation of ask"
        )
    return found
