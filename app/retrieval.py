"""Find the papers for a question: dense (Chroma) and BM25 over the same chunks, fused, per paper.

LlamaIndex does the searching: a ``VectorIndexRetriever`` over ``ChromaVectorStore`` and a
``BM25Retriever`` (bm25s) over the chunks read from the same collection at start. The fusion
(reciprocal rank fusion over every query and retriever) and the grouping per paper are small pure
functions here, so they are tested without a model.

Relevance floor: the best dense cosine similarity between the question and any chunk. Below
``relevance_floor`` the corpus is taken not to cover the question.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.settings import RetrievalMode, Settings
from app.store import iter_records


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    paper_id: str
    title: str
    text: str
    score: float  # fused score (RRF), higher is better
    dense: float | None = None  # cosine similarity with the query, when the dense side saw it
    metadata: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PaperHit:
    paper_id: str
    title: str
    score: float
    passages: tuple[Passage, ...]
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def best_dense(self) -> float | None:
        values = [p.dense for p in self.passages if p.dense is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class RetrievalResult:
    hits: list[PaperHit]
    mode: RetrievalMode
    queries: list[str]
    top_similarity: float  # best dense cosine over the whole collection, for the relevance floor


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


def group_by_paper(
    passages: Sequence[Passage], top_k: int, per_paper: int
) -> list[PaperHit]:
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


def cosine_from_chroma(similarity: float) -> float:
    """LlamaIndex's Chroma store reports ``exp(-distance)``; cosine distance is ``1 - cos``."""
    return 1.0 + math.log(max(similarity, 1e-12))


_PUBLIC_METADATA = ("url", "authors", "date", "categories", "source", "doi")


class Retriever:
    """Loaded once (FastAPI lifespan); thread-safe for concurrent searches."""

    def __init__(self, settings: Settings, embed_model, chunks_collection) -> None:
        from llama_index.core import VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self._settings = settings
        self._embed_model = embed_model
        self._collection = chunks_collection
        store = ChromaVectorStore(chroma_collection=chunks_collection)
        self._index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        self._bm25_lock = threading.Lock()
        self._bm25, self.n_chunks, self.n_papers = self._load_bm25()

    def reload_bm25(self) -> int:
        """Rebuild the BM25 index from the store (papers added since start); returns its chunks.

        The dense side needs no reload: it queries Chroma. Searches keep using the old BM25 index
        while the new one is built, then the new one replaces it at once.
        """
        bm25, n_chunks, n_papers = self._load_bm25()
        with self._bm25_lock:
            self._bm25, self.n_chunks, self.n_papers = bm25, n_chunks, n_papers
        return n_chunks

    def stored_chunks(self) -> int:
        """How many chunks the store holds now (cheap: one count). Blocking."""
        return self._collection.count()

    def _load_bm25(self):
        from llama_index.core.schema import TextNode
        from llama_index.retrievers.bm25 import BM25Retriever

        from ingest.chunking import METADATA_TEMPLATE, TEXT_TEMPLATE

        nodes = []
        for record in iter_records(self._collection, include=["documents", "metadatas"]):
            metadata = record["metadatas"] or {}
            hidden = [k for k in metadata if k != "title"]
            nodes.append(
                TextNode(
                    id_=record["id"],
                    text=record["documents"] or "",
                    metadata=metadata,
                    excluded_embed_metadata_keys=hidden,
                    excluded_llm_metadata_keys=hidden,
                    metadata_template=METADATA_TEMPLATE,
                    text_template=TEXT_TEMPLATE,
                )
            )
        bm25 = (
            BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=self._settings.candidate_k)
            if nodes
            else None
        )
        return bm25, len(nodes), len({n.metadata.get("paper_id") for n in nodes})

    def _dense(self, embedding: list[float], k: int):
        from llama_index.core.schema import QueryBundle

        retriever = self._index.as_retriever(similarity_top_k=k)
        return retriever.retrieve(QueryBundle(query_str="", embedding=embedding))

    def _sparse(self, query: str, k: int):
        from llama_index.core.schema import QueryBundle

        with self._bm25_lock:  # bm25s keeps per-call state on the retriever
            if self._bm25 is None:
                return []
            self._bm25.similarity_top_k = min(k, self.n_chunks)
            return self._bm25.retrieve(QueryBundle(query_str=query))

    def search(
        self,
        queries: Sequence[str],
        mode: RetrievalMode | None = None,
        top_k: int | None = None,
        weights: Sequence[float] | None = None,
    ) -> RetrievalResult:
        """Fuse the rankings of every query (weighted, e.g. a follow-up's raw text counts half)."""
        mode = mode or self._settings.retrieval_mode
        top_k = top_k or self._settings.top_k
        k = max(self._settings.candidate_k, top_k)
        weight_of = dict(zip(queries, weights or [1.0] * len(queries), strict=True))
        queries = [q for q in dict.fromkeys(q.strip() for q in queries) if q]
        weight_of = {q.strip(): w for q, w in weight_of.items()}
        rankings: list[list[str]] = []
        list_weights: list[float] = []
        seen: dict[str, object] = {}
        dense_of: dict[str, float] = {}
        top_similarity = 0.0
        for query in queries:
            embedding = self._embed_model.get_query_embedding(query)
            dense = self._dense(embedding, k)
            for hit in dense:
                cosine = cosine_from_chroma(hit.score or 0.0)
                dense_of[hit.node.node_id] = max(cosine, dense_of.get(hit.node.node_id, -1.0))
                top_similarity = max(top_similarity, cosine)
            if mode in ("dense", "hybrid"):
                rankings.append([h.node.node_id for h in dense])
                list_weights.append(weight_of.get(query, 1.0))
                seen.update({h.node.node_id: h.node for h in dense})
            if mode in ("bm25", "hybrid"):
                sparse = [h for h in self._sparse(query, k) if (h.score or 0.0) > 0.0]
                rankings.append([h.node.node_id for h in sparse])
                list_weights.append(weight_of.get(query, 1.0))
                seen.update({h.node.node_id: h.node for h in sparse})
        fused = rrf(rankings, self._settings.rrf_k, list_weights)
        passages = [
            Passage(
                chunk_id=node_id,
                paper_id=str(node.metadata.get("paper_id", node_id)),
                title=str(node.metadata.get("title", "")),
                text=node.text,
                score=score,
                dense=dense_of.get(node_id),
                metadata={k2: node.metadata[k2] for k2 in _PUBLIC_METADATA if k2 in node.metadata},
            )
            for node_id, score in fused.items()
            if (node := seen[node_id]) is not None
        ]
        hits = group_by_paper(passages, top_k, self._settings.passages_per_paper)
        return RetrievalResult(hits=hits, mode=mode, queries=queries, top_similarity=top_similarity)
