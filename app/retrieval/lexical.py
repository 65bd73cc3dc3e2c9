"""The BM25 side: the index ingestion persisted (:mod:`app.core.lexicon`, memory-mapped), searched
with bm25s exactly as LlamaIndex's ``BM25Retriever`` would, the chunks it finds read back from the
store; plus what the coverage decision reads from the same index (:meth:`LexicalIndex.term_evidence`)
and the names the titles give their papers (:class:`~app.core.names.NameIndex`, persisted with it).

Nothing here builds the index: a service instance loads it at start and reloads it when ingestion
swaps in a new one (:mod:`app.retrieval.refresh`). An index that does not match the store is not
used, and ``/health`` says why (:attr:`LexicalIndex.status`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from app.core import lexicon
from app.core.chunks import stored_chunk_node
from app.core.names import NameIndex
from app.core.settings import Settings


@dataclass(frozen=True)
class TermEvidence:
    """How much of a question's own vocabulary the index (and each of some papers) holds.

    Terms are BM25's (stopwords dropped, stemmed) and weighted by their BM25 IDF; a term no chunk
    holds gets the highest IDF there is, since it is as rare as a term can be.

    - ``absent``: the IDF-weighted share of the question's terms that no chunk holds at all;
    - ``share[paper]``: the IDF-weighted share of the question's terms found in that paper's chunks;
    - ``bm25[paper]``: the paper's best chunk BM25 score over the most the question's terms could
      score (each term's IDF: BM25's term-frequency part tends to 1), so 0 to 1.
    """

    terms: tuple[str, ...] = ()
    absent: float = 1.0
    share: dict[str, float] = field(default_factory=dict)
    bm25: dict[str, float] = field(default_factory=dict)


def _idf(df: int, n_docs: int) -> float:
    """BM25's (Lucene) inverse document frequency."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


StateReader = Callable[[], tuple[str | None, str | None]]


def locate(postings: Any, rows: Any) -> tuple[Any, Any]:
    """Which of ``rows`` a term's postings (sorted row ids, as bm25s stores them) hold, and where:
    ``(held, at)`` with ``postings[at[i]] == rows[i]`` where ``held[i]``. A binary search per row,
    not a scan of the postings (a common term's run is 100k rows long at 100k papers, a million at
    1M). ``rows`` are cast to the postings' type first: a search across types would copy the
    whole run (that copy was most of the coverage signals' cost at a million papers)."""
    import numpy as np

    rows = np.asarray(rows).astype(postings.dtype, copy=False)
    if len(postings) == 0:
        return np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=np.int64)
    at = np.minimum(np.searchsorted(postings, rows), len(postings) - 1)
    return postings[at] == rows, at


def top_rows(scores: Any, k: int) -> Any:
    """The rows of the ``k`` highest positive ``scores``, best first, ties by row: what a full
    ``argpartition`` gives, without partitioning every row. A sample's ``k``-th highest score is at
    most the true ``k``-th highest, so every row of the top ``k`` is at or above it; only those
    rows are ranked (the sample is one row in ``n / (512 k)``, so about the best 1/512 of the rows:
    a few thousand of 1.9 M chunks at a million papers, not all of them)."""
    import numpy as np

    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    floor = 0.0
    sample = scores[:: max(1, n // (512 * k))]
    if len(sample) > k:
        floor = float(np.partition(sample, len(sample) - k)[len(sample) - k])
    candidates = np.flatnonzero(scores >= floor) if floor > 0 else np.flatnonzero(scores > 0)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return candidates[order]


class LexicalIndex:
    """Thread-safe: bm25s keeps per-call state while scoring, so searches take a lock."""

    def __init__(self, settings: Settings, collection: Any, read_state: StateReader | None = None) -> None:
        self._settings = settings
        self._collection = collection
        self._read_state = read_state or (lambda: lexicon.store_state(collection))
        self._lock = threading.Lock()
        self._stem = lexicon.stemmer()
        self._loaded: lexicon.Loaded | None = None
        self.status = lexicon.Status("missing", "not loaded yet")
        self.reload()

    @property
    def n_chunks(self) -> int:
        return len(self._loaded.rows) if self._loaded else 0

    @property
    def n_papers(self) -> int:
        return self._loaded.rows.n_papers if self._loaded else 0

    @property
    def names(self) -> NameIndex:
        return self._loaded.names if self._loaded else NameIndex()

    @property
    def version(self) -> str | None:
        return self._loaded.version if self._loaded else None

    def _current(self) -> tuple[dict[str, Any] | None, lexicon.Status]:
        """The persisted index's pointer and how it stands against the store now (cheap: a small
        file and the collection's metadata)."""
        pointer = lexicon.current(self._settings, self._settings.collection)
        return pointer, lexicon.status_of(pointer, *self._read_state())

    def check(self) -> lexicon.Status:
        return self._current()[1]

    def reload(self) -> int:
        """Load the persisted index when it matches the store and is not the one loaded already;
        drop it when it does not match. Returns the chunks it holds."""
        pointer, status = self._current()
        if not status.usable:
            with self._lock:
                self._loaded = None
        elif pointer is not None and (self._loaded is None or self._loaded.version != pointer["version"]):
            loaded = lexicon.load(self._settings, self._settings.collection, pointer)
            with self._lock:
                self._loaded = loaded
        self.status = status
        return self.n_chunks

    def _chunks(self, ids: Sequence[str]) -> dict[str, Any]:
        """The stored chunks of ``ids`` as nodes (one store call)."""
        if not ids:
            return {}
        got = self._collection.get(ids=list(ids), include=["documents", "metadatas"])
        return {
            chunk_id: stored_chunk_node(chunk_id, document or "", metadata)
            for chunk_id, document, metadata in zip(
                got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False
            )
        }

    def search(self, query: str, k: int) -> list[NodeWithScore]:
        """The ``k`` best chunks with a positive BM25 score: bm25s's scores for the query's terms (as
        LlamaIndex's ``BM25Retriever`` asks for them), the best ``k`` picked by :func:`top_rows`."""
        loaded = self._loaded
        if loaded is None or loaded.bm25 is None or not query.strip():
            return []
        index = loaded.bm25
        terms = lexicon.tokenize_query(query, self._stem)
        words = {i: w for w, i in terms.vocab.items()}
        ids = tuple(index.get_tokens_ids([words[i] for i in terms.ids[0]]))
        scores = self._scores(loaded, ids)
        rows = top_rows(scores, k)
        found = [(loaded.rows.chunk_id(int(r)), float(scores[r])) for r in rows]
        nodes = self._chunks([chunk_id for chunk_id, _ in found])
        return [NodeWithScore(node=nodes[c], score=score) for c, score in found if c in nodes]

    def _scores(self, loaded: lexicon.Loaded, ids: tuple[int, ...]) -> Any:
        """Every chunk's BM25 score for the terms ``ids`` (bm25s's own sum over their postings)."""
        import numpy as np

        if not ids:
            return np.zeros(int(loaded.bm25.scores["num_docs"]), dtype=np.float32)
        with self._lock:  # bm25s may keep state while scoring
            return loaded.bm25.get_scores_from_ids(list(ids))

    def first_chunk(self, paper_id: str) -> Any:
        """The first stored chunk of a paper as a node (for a named paper retrieval missed), or None."""
        loaded = self._loaded
        rows = loaded.rows.rows_of(paper_id) if loaded else None
        if loaded is None or rows is None or len(rows) == 0:
            return None
        chunk_id = loaded.rows.chunk_id(int(rows[0]))
        return self._chunks([chunk_id]).get(chunk_id)

    def term_evidence(self, query: str, paper_ids: Sequence[str]) -> TermEvidence:
        """See :class:`TermEvidence`. Cheap: reads only the postings of the question's terms."""
        import bm25s
        import numpy as np

        loaded = self._loaded
        if loaded is None or loaded.bm25 is None:
            return TermEvidence()
        index = loaded.bm25
        tokens = bm25s.tokenize(
            query, stopwords="en", stemmer=self._stem, return_ids=False, show_progress=False
        )[0]
        terms = tuple(dict.fromkeys(t for t in tokens if t))
        if not terms:
            return TermEvidence()
        n_docs = int(index.scores["num_docs"])
        indptr, indices = index.scores["indptr"], index.scores["indices"]
        ids: dict[str, int | None] = {t: index.vocab_dict.get(t) for t in terms}
        postings: dict[str, Any] = {}
        idf: dict[str, float] = {}
        for term, tid in ids.items():
            if tid is None or tid + 1 >= len(indptr):
                postings[term], idf[term] = None, _idf(0, n_docs)
                continue
            postings[term] = indices[indptr[tid] : indptr[tid + 1]]
            idf[term] = _idf(len(postings[term]), n_docs)
        total = sum(idf.values())
        absent = sum(idf[t] for t, p in postings.items() if p is None or len(p) == 0) / total
        data = index.scores["data"]
        share: dict[str, float] = {}
        best: dict[str, float] = {}
        for paper_id in paper_ids:
            rows = loaded.rows.rows_of(paper_id)
            if rows is None or len(rows) == 0:
                continue
            # The paper's chunks' BM25 scores, read from the terms' postings at its rows only
            # (scoring every chunk cost up to ~25 ms at a million papers): the same float32 sums,
            # in the same order, as bm25s's scores of every chunk.
            row_scores = np.zeros(len(rows), dtype=data.dtype)
            found = 0.0
            for term, run in postings.items():
                if run is None or len(run) == 0:
                    continue
                held, at = locate(run, rows)
                if held.any():
                    found += idf[term]
                    row_scores[held] += data[indptr[ids[term]] + at[held]]
            share[paper_id] = found / total
            best[paper_id] = float(row_scores.max()) / total  # lucene BM25: no score for absent terms
        return TermEvidence(terms=terms, absent=absent, share=share, bm25=best)

    # --- the index's view of text (app.answering.evidence.Analyzer) ---------------------------------
    def tokens(self, text: str) -> list[str]:
        """BM25's terms of ``text``: stopwords dropped, stemmed."""
        import bm25s

        if self._loaded is None:
            return []
        return [
            t
            for t in bm25s.tokenize(
                text, stopwords="en", stemmer=self._stem, return_ids=False, show_progress=False
            )[0]
            if t
        ]

    def idf(self, token: str) -> float:
        """BM25's IDF of a term; a term no chunk holds gets the highest there is."""
        loaded = self._loaded
        if loaded is None or loaded.bm25 is None:
            return 0.0
        index = loaded.bm25
        n_docs = int(index.scores["num_docs"])
        indptr = index.scores["indptr"]
        tid = index.vocab_dict.get(token)
        df = 0 if tid is None or tid + 1 >= len(indptr) else int(indptr[tid + 1] - indptr[tid])
        return _idf(df, n_docs)

    def retriever(self, k: int) -> BaseRetriever:
        """This index as a LlamaIndex retriever returning ``k`` chunks."""
        return _LexicalRetriever(self, k)


class _LexicalRetriever(BaseRetriever):
    def __init__(self, index: LexicalIndex, k: int) -> None:
        super().__init__()
        self._index, self._k = index, k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._index.search(query_bundle.query_str, self._k)
