"""What the MCP tools return: pydantic models, so every result is structured content with a schema.

``get_paper`` returns :class:`app.core.papers.StoredPaper` as it is (the same body as
``GET /papers/{id}``); suggestions are :class:`app.retrieval.types.Suggestion`, as everywhere else.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.core.settings import RetrievalMode
from app.retrieval.findings import SearchHit
from app.retrieval.types import Suggestion


class SearchPapersResult(BaseModel):
    """The papers a query finds, and whether the corpus covers the query at all."""

    query: str
    mode: RetrievalMode
    covered: bool = Field(description="whether the indexed papers cover the query")
    coverage: str = Field(description="why the corpus covers the query (named, signals...), or why not")
    suggestions: list[Suggestion] = Field(
        default_factory=list, description="when not covered: the closest papers (they do not answer it)"
    )
    results: list[SearchHit]


class CitedPaper(BaseModel):
    """A paper the answer cites: ``[number]`` in the answer text refers to it."""

    number: int = Field(description="the [n] marker used in the answer text")
    paper_id: str = Field(description="pass it to get_paper for the whole abstract")
    title: str
    url: str | None = None
    evidence: list[str] = Field(
        default_factory=list, description="the sentences of the paper's abstract behind the citation"
    )


class AskResult(BaseModel):
    """A cited answer, or a refusal with the closest papers."""

    answer: str = Field(description="the checked answer with [n] citation markers, or the refusal text")
    citations: list[CitedPaper] = Field(default_factory=list)
    refused: bool = Field(False, description="true when the indexed papers do not cover the question")
    coverage: str = Field("", description="why the question is covered, or why not")
    suggestions: list[Suggestion] = Field(
        default_factory=list, description="when refused: the closest papers (not an answer, not citations)"
    )
    strategy: str = Field("", description="how the answer was written: extract, compose or generate")
    backend: str = Field(description="what wrote the answer: extractive, local, openai, or none (refused)")
    fallback_reason: str | None = Field(
        None,
        description="set when the language model failed: why, and the answer is the extractive one instead",
    )
