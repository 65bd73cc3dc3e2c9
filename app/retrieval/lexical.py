"""The BM25 side: LlamaIndex's ``BM25Retriever`` (bm25s) over every chunk of the store, plus what
the coverage decision reads from the same index (:meth:`LexicalIndex.term_evidence`) and the
names the titles give their papers (:class:`~app.retrieval.names.NameIndex`).

Built from the chunks the store holds (text and metadata), rebuilt when the store changes
(:mod:`app.retrieval.refresh`); searches keep using the old index while a new one is built.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from app.core.chunks import stored_chunk_node
from app.core.store import iter_records
from app.retrieval.names import NameIndex


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


@dataclass(frozen=True)
class _Built:
    retriever: Any  # llama_index BM25Retriever, or None for an empty store
    rows_by_paper: dict[str, list[int]]
    names: NameIndex
    n_chunks: int
    n_papers: int


def _idf(df: int, n_docs: int) -> float:
    """BM25's (Lucene) inverse document frequency."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


class LexicalIndex:
    """Thread-safe: bm25s keeps per-call state on its retriever, so searches take a lock."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self._lock = threading.Lock()
        self._built = _Built(None, {}, NameIndex(), 0, 0)
        self.reload()

    @property
    def n_chunks(self) -> int:
        return self._built.n_chunks

    @property
    def n_papers(self) -> int:
        return self._built.n_papers

    @property
    def names(self) -> NameIndex:
        return self._built.names

    def reload(self) -> int:
        """Rebuild from the store; the new index replaces the old one at once. Returns its chunks."""
        from llama_index.retrievers.bm25 import BM25Retriever

        nodes: list[BaseNode] = [
            stored_chunk_node(record["id"], record["documents"] or "", record["metadatas"])
            for record in iter_records(self._collection, include=["documents", "metadatas"])
        ]
        bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10) if nodes else None
        rows_by_paper: dict[str, list[int]] = {}
        titles: dict[str, str] = {}
        texts: dict[str, list[str]] = {}
        for row, node in enumerate(nodes):
            paper_id = str(node.metadata.get("paper_id", node.node_id))
            rows_by_paper.setdefault(paper_id, []).append(row)
            titles.setdefault(paper_id, str(node.metadata.get("title", "")))
            texts.setdefault(paper_id, []).append(node.get_content())
        names = NameIndex.build(titles, {pid: " ".join(parts) for pid, parts in texts.items()})
        built = _Built(bm25, rows_by_paper, names, len(nodes), len(rows_by_paper))
        with self._lock:
            self._built = built
        return built.n_chunks

    def search(self, query: str, k: int) -> list[NodeWithScore]:
        """The ``k`` best chunks with a positive BM25 score."""
        with self._lock:
            built = self._built
            if built.retriever is None or not query.strip():
                return []
            built.retriever.similarity_top_k = max(1, min(k, built.n_chunks))
            hits = built.retriever.retrieve(QueryBundle(query_str=query))
        return [h for h in hits if (h.score or 0.0) > 0.0]

    def first_chunk(self, paper_id: str) -> Any:
        """The first stored chunk of a paper as a node (for a named paper retrieval missed), or None."""
        built = self._built
        rows = built.rows_by_paper.get(paper_id)
        if built.retriever is None or not rows:
            return None
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        node = metadata_dict_to_node(built.retriever.corpus[rows[0]])
        return stored_chunk_node(node.node_id, node.get_content(), node.metadata)

    def term_evidence(self, query: str, paper_ids: Sequence[str]) -> TermEvidence:
        """See :class:`TermEvidence`. Cheap: reads only the postings of the question's terms."""
        import bm25s
        import numpy as np

        built = self._built
        if built.retriever is None:
            return TermEvidence()
        retriever = built.retriever
        index = retriever.bm25
        tokens = bm25s.tokenize(
            query, stopwords="en", stemmer=retriever.stemmer, return_ids=False, show_progress=False
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
        known = [tid for tid in ids.values() if tid is not None and tid + 1 < len(indptr)]
        with self._lock:  # bm25s may keep state while scoring
            scores = index.get_scores_from_ids(known) if known else np.zeros(n_docs)
        share: dict[str, float] = {}
        best: dict[str, float] = {}
        for paper_id in paper_ids:
            rows = built.rows_by_paper.get(paper_id)
            if not rows:
                continue
            row_array = np.asarray(rows)
            found = sum(
                idf[t] for t, p in postings.items() if p is not None and bool(np.isin(row_array, p).any())
            )
            share[paper_id] = found / total
            best[paper_id] = float(scores[row_array].max()) / total
        return TermEvidence(terms=terms, absent=absent, share=share, bm25=best)

    # --- the index's view of text (app.answering.evidence.Analyzer) ---------------------------------
    def tokens(self, text: str) -> list[str]:
        """BM25's terms of ``text``: stopwords dropped, stemmed."""
        import bm25s

        built = self._built
        if built.retriever is None:
            return []
        return [
            t
            for t in bm25s.tokenize(
                text, stopwords="en", stemmer=built.retriever.stemmer, return_ids=False, show_progress=False
            )[0]
            if t
        ]

    def idf(self, token: str) -> float:
        """BM25's IDF of a term; a term no chunk holds gets the highest there is."""
        built = self._built
        if built.retriever is None:
            return 0.0
        index = built.retriever.bm25
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
