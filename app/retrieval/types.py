"""What retrieval returns: passages (chunks), papers (hits grouped per paper), and the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

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
class CoverageSignals:
    """What the coverage decision reads (see :mod:`app.retrieval.coverage`)."""

    dense: float = 0.0
    share: float = 0.0
    bm25: float = 0.0
    absent: float = 1.0
    dense_gap: float = 0.0
    named: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["named"] = list(self.named)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}


@dataclass(frozen=True)
class RetrievalResult:
    hits: list[PaperHit]
    mode: RetrievalMode
    queries: list[str]
    top_similarity: float  # best dense cosine over the whole collection, for the relevance floor
    signals: CoverageSignals = field(default_factory=CoverageSignals)  # for the coverage decision
    # A follow-up's other queries (its raw text) each on their own: the decision may also read them.
    query_signals: tuple[CoverageSignals, ...] = ()


class Suggestion(BaseModel):
    """A paper close to a question the corpus does not cover: offered, not cited, not an answer."""

    paper_id: str
    title: str
    score: float  # fused retrieval score, higher is closer
    similarity: float | None = None  # cosine similarity with the question, when known
    url: str | None = None
