"""What retrieval returns: passages (chunks), papers (hits grouped per paper), and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.core.settings import RetrievalMode


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    paper_id: str
    title: str
    text: str
    score: float  # fused score (RRF), higher is better
    dense: float | None = None  # cosine similarity with the query, when the dense side saw it
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PaperHit:
    paper_id: str
    title: str
    score: float
    passages: tuple[Passage, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def best_dense(self) -> float | None:
        values = [p.dense for p in self.passages if p.dense is not None]
        return max(values) if values else None

    @property
    def url(self) -> str | None:
        return str(self.metadata["url"]) if self.metadata.get("url") else None


@dataclass(frozen=True)
class RetrievalResult:
    hits: list[PaperHit]
    mode: RetrievalMode
    queries: list[str]
    top_similarity: float  # best dense cosine over the whole collection, for the relevance floor
