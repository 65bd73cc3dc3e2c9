"""A search as its callers show it (``GET /search`` and the MCP tool ``search_papers``): the papers
found, each with its best passage, whether the corpus covers the query, and, when it does not, the
closest papers. One function, so the two faces cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from app.core.settings import RetrievalMode, Settings
from app.core.store import store_errors
from app.retrieval.coverage import Coverage, CoverageModel, coverage_of, suggestions_for
from app.retrieval.search import PaperRetriever
from app.retrieval.types import RetrievalResult, Suggestion


class SearchHit(BaseModel):
    """One paper a search found, with its best-matching passage."""

    rank: int = Field(description="1 is the best match")
    paper_id: str = Field(description="the paper's id (GET /papers/{id}; the MCP tool get_paper)")
    title: str
    score: float = Field(description="fused retrieval score, higher is closer")
    similarity: float | None = Field(None, description="cosine similarity with the query, when known")
    passage: str = Field(description="the passage of the abstract that matched best")
    url: str | None = None


@dataclass(frozen=True)
class Findings:
    retrieval: RetrievalResult
    coverage: Coverage
    suggestions: list[Suggestion]  # empty when the corpus covers the query
    hits: list[SearchHit]


def find_papers(
    retriever: PaperRetriever, settings: Settings, query: str, mode: RetrievalMode | None, k: int | None
) -> Findings:
    """Retrieve, decide coverage, pick suggestions. Blocking; store failures become
    :class:`~app.core.errors.StoreUnavailable`."""
    with store_errors(settings):
        retrieval = retriever.search([query], mode, k)
    coverage = coverage_of(retrieval, CoverageModel.from_settings(settings))
    return Findings(
        retrieval=retrieval,
        coverage=coverage,
        suggestions=[] if coverage.covered else suggestions_for(retrieval, settings.suggestions),
        hits=[
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
