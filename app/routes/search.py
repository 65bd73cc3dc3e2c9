"""``GET /search``: retrieval only (no LLM): the papers a question finds, with their best passage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.conversation import invalid
from app.deps import AnswererDep, SettingsDep
from app.schemas import TOP_K_MAX, ErrorBody, SearchHit, SearchResponse
from app.settings import RetrievalMode

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchResponse, responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def search(
    answerer: AnswererDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, description="the question or keywords")],
    k: Annotated[int | None, Query(ge=1, le=TOP_K_MAX, description="papers to return")] = None,
    mode: Annotated[RetrievalMode | None, Query(description="dense, bm25 or hybrid")] = None,
) -> SearchResponse:
    query = q.strip()
    if not query:
        raise invalid("q: the query is empty")
    if len(query) > settings.max_message_chars:
        raise invalid(f"q: too long ({len(query)} characters, at most {settings.max_message_chars})")
    retrieval = await answerer.retrieve([query], mode, k)
    return SearchResponse(
        query=query,
        mode=retrieval.mode,
        top_similarity=retrieval.top_similarity,
        relevance_floor=settings.relevance_floor,
        covered=answerer.is_covered(retrieval),
        results=[
            SearchHit(
                rank=rank,
                paper_id=hit.paper_id,
                title=hit.title,
                score=hit.score,
                similarity=hit.best_dense,
                passage=hit.passages[0].text if hit.passages else "",
                url=str(hit.metadata["url"]) if hit.metadata.get("url") else None,
            )
            for rank, hit in enumerate(retrieval.hits, start=1)
        ],
    )
