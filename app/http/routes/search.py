"""``GET /search``: retrieval only (no LLM): the papers a question finds, with their best passage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.core.errors import InvalidRequest
from app.core.settings import TOP_K_MAX, RetrievalMode
from app.core.text import clean_text, is_blank
from app.http.deps import RetrieverDep, SettingsDep
from app.http.schemas import ErrorBody, SearchResponse
from app.retrieval.findings import find_papers

router = APIRouter(tags=["search"])


@router.get(
    "/search", response_model=SearchResponse, responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
)
async def search(
    retriever: RetrieverDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, description="the question or keywords")],
    k: Annotated[int | None, Query(ge=1, le=TOP_K_MAX, description="papers to return")] = None,
    mode: Annotated[RetrievalMode | None, Query(description="dense, bm25 or hybrid")] = None,
) -> SearchResponse:
    if len(q) > settings.max_message_chars:
        raise InvalidRequest(f"q: too long ({len(q)} characters, at most {settings.max_message_chars})")
    query = clean_text(q).strip()
    if is_blank(query):
        raise InvalidRequest("q: the query is empty (only whitespace or control characters)")
    found = await run_in_threadpool(find_papers, retriever, settings, query, mode, k)
    return SearchResponse(
        query=query,
        mode=found.retrieval.mode,
        top_similarity=found.retrieval.top_similarity,
        relevance_floor=settings.relevance_floor,
        covered=found.coverage.covered,
        coverage=found.coverage.reason,
        suggestions=found.suggestions,
        results=found.hits,
    )
