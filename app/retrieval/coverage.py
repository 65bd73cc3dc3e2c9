"""Does the corpus cover a question? One function, shared by the service and the evaluation."""

from __future__ import annotations

from app.retrieval.types import RetrievalResult


def is_covered(retrieval: RetrievalResult, relevance_floor: float) -> bool:
    """Covered when something was found and the best dense similarity clears the floor."""
    return bool(retrieval.hits) and retrieval.top_similarity >= relevance_floor
