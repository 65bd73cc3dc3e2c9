"""Where a search's time goes: the stages of ``PaperRetriever.search`` timed from outside.

:func:`timed_stages` wraps the functions a search calls (for the duration of a ``with`` block only)
with a timer each; :meth:`StageTimes.summary` gives each stage's p50/p95/mean per search. Stages
nest: ``dense`` holds ``chroma_query`` (the store call: HTTP to a Chroma server and its search);
``bm25_side`` holds ``bm25_scoring``, ``bm25_top`` (picking the best) and ``bm25_chunk_read``;
``fusion`` holds both sides (one question, hybrid: LlamaIndex's fusion retriever);
``coverage_terms`` is the lexical coverage signals. Used by ``python -m bench.scale``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from bench.common import percentile


class StageTimes:
    def __init__(self) -> None:
        self.searches: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None

    def begin(self) -> None:
        self._current = defaultdict(float)

    def end(self, total_ms: float) -> None:
        if self._current is not None:
            self._current["total"] = total_ms
            self.searches.append(dict(self._current))
        self._current = None

    def add(self, stage: str, ms: float) -> None:
        if self._current is not None:
            self._current[stage] += ms

    def summary(self) -> dict[str, dict[str, float]]:
        stages = sorted({s for search in self.searches for s in search})
        out = {}
        for stage in stages:
            values = [search.get(stage, 0.0) for search in self.searches]
            out[stage] = {
                "p50_ms": round(percentile(values, 50), 2),
                "p95_ms": round(percentile(values, 95), 2),
                "mean_ms": round(sum(values) / len(values), 2),
            }
        return out


def _timed(times: StageTimes, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times.add(stage, (time.perf_counter() - t) * 1000)

    return wrapper


@contextlib.contextmanager
def timed_stages() -> Iterator[StageTimes]:
    """Time the stages of every search made inside the block (``times.begin()``/``end()`` around
    each search)."""
    from chromadb.api.models.Collection import Collection

    from app.retrieval import lexical, search

    times = StageTimes()
    targets: list[tuple[Any, str, str]] = [
        (search.PaperRetriever, "_embed", "embed_query"),
        (search.DenseRetriever, "_retrieve", "dense"),
        (Collection, "query", "chroma_query"),
        (lexical._LexicalRetriever, "_retrieve", "bm25_side"),
        (lexical.LexicalIndex, "_scores", "bm25_scoring"),
        (lexical, "top_rows", "bm25_top"),
        (lexical.LexicalIndex, "_chunks", "bm25_chunk_read"),
        (search, "_fuse_one_query", "fusion"),
        (search.PaperRetriever, "named_papers", "named_papers"),
        (lexical.LexicalIndex, "term_evidence", "coverage_terms"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
    try:
        for (owner, name, stage), (_, _, original) in zip(targets, originals, strict=True):
            setattr(owner, name, _timed(times, stage, original))
        yield times
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
