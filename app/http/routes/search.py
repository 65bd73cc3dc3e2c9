"""``GET /search``: retrieval only (no LLM): the papers a question finds, with their best passage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.core.errors import InvalidRequest
from app.core.settings import RetrievalMode
from app.core.store import store_errors
from app.core.text import clean_text, is_blank
from app.http.deps import RetrieverDep, SettingsDep
from app.http.schemas import TOP_K_MAX, ErrorBody, SearchHit, SearchResponse
from app.retrieval.coverage import CoverageModel, coverage_of, suggestions_for

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
    with store_errors(settings):
        retrieval = await run_in_threadpool(retriever.search, [query], mode, k)
    coverage = coverage_of(retrieval, CoverageModel.from_settings(settings))
    return SearchResponse(
        query=query,
        mode=retrieval.mode,
        top_similarity=retrieval.top_similarity,
        relevance_floor=settings.relevance_floor,
        covered=coverage.covered,
        coverage=coverage.reason,
        suggestions=[] if coverage.covered else suggestions_for(retrieval, settings.suggestions),
        results=[
            SearchHit(
                rank=rank,
                paper_id=hit.paper_id,
                title=hit.title,
                score=hit.score,
                similarity=hit.best_dense,
                passage=hit.passages[0].text if hit.passages else "",
                url=hit.url,
            )
            for rank, hit in enumerate(retrieval.hits, start=1)
        ],
    )
