"""Fusion and grouping as pure functions, tested without a model.

LlamaIndex's ``QueryFusionRetriever`` fuses one query's dense and BM25 rankings (reciprocal rank
fusion, k = 60). :func:`rrf` is kept for what it cannot do: weights per query (a follow-up's raw
text counts less than its standalone form; docs/evaluation.md, "Fusion") and an ``rrf_k`` other
than 60.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.retrieval.types import PaperHit, Passage


def rrf(
    ranked_lists: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion: ``sum w / (k + rank)`` over the lists an id appears in."""
    scores: dict[str, float] = {}
    for index, ranking in enumerate(ranked_lists):
        weight = 1.0 if weights is None else weights[index]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def group_by_paper(passages: Sequence[Passage], top_k: int, per_paper: int) -> list[PaperHit]:
    """One hit per paper, scored by its best passage, with its best ``per_paper`` passages."""
    by_paper: dict[str, list[Passage]] = {}
    for passage in sorted(passages, key=lambda p: p.score, reverse=True):
        by_paper.setdefault(passage.paper_id, []).append(passage)
    hits = [
        PaperHit(
            paper_id=paper_id,
            title=group[0].title,
            score=group[0].score,
            passages=tuple(group[:per_paper]),
            metadata=group[0].metadata,
        )
        for paper_id, group in by_paper.items()
    ]
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[:top_k]


def dense_gap(paper_cosines: dict[str, float], others: int = 4) -> float:
    """How far the closest paper stands out: its best cosine minus the mean best cosine of the
    next ``others`` papers (missing ones count 0). A question the corpus answers tends to have one
    paper well above the rest; one it lacks, many papers about equally (un)related."""
    ranked = sorted(paper_cosines.values(), reverse=True)
    if not ranked:
        return 0.0
    rest = ranked[1 : 1 + others] + [0.0] * max(0, others - len(ranked) + 1)
    return ranked[0] - sum(rest) / others


def cosine_from_chroma(similarity: float) -> float:
    """LlamaIndex's Chroma store reports ``exp(-distance)``; cosine distance is ``1 - cos``."""
    return 1.0 + math.log(max(similarity, 1e-12))
