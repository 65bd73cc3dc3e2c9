"""Find the papers for a question: dense (Chroma) and BM25 over the same chunks, fused, per paper.

Everything is a LlamaIndex retriever: :class:`DenseRetriever` wraps a ``VectorIndexRetriever``
over ``ChromaVectorStore`` (scores as cosine similarity), the BM25 side is
:class:`~app.retrieval.lexical.LexicalIndex`, a question's two rankings are fused by LlamaIndex's
``QueryFusionRetriever`` (reciprocal rank fusion), and :class:`PaperRetriever` groups the fused
chunks per paper. A follow-up's queries are fused with per-query weights, which the LlamaIndex
fusion cannot do; :func:`app.retrieval.fusion.rrf` does that (docs/evaluation.md, "Fusion").

The relevance floor reads the best dense cosine similarity between the question and any chunk; the
coverage decision also reads how far the closest paper stands out (:func:`~app.retrieval.fusion.dense_gap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from app.core.chunks import PUBLIC_METADATA, stored_chunk_node
from app.core.names import asks_about
from app.core.settings import RetrievalMode, Settings
from app.retrieval.coverage import CoverageSignals
from app.retrieval.fusion import cosine_from_chroma, dense_gap, group_by_paper, rrf
from app.retrieval.lexical import LexicalIndex
from app.retrieval.types import PaperHit, Passage, RetrievalResult

LLAMA_INDEX_RRF_K = 60  # the k QueryFusionRetriever's reciprocal rank fusion uses
EVIDENCE_PAPERS = 3  # the coverage decision reads the lexical evidence of this many top papers


class DenseRetriever(BaseRetriever):
    """One search's dense side; remembers the cosine similarity of every chunk it returned."""

    def __init__(self, index: Any, k: int) -> None:
        super().__init__()
        self._index, self._k = index, k
        self.cosines: dict[str, float] = {}
        self.paper_cosines: dict[str, float] = {}  # best cosine per paper among the candidates

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._index.as_retriever(similarity_top_k=self._k).retrieve(query_bundle)
        out = []
        for hit in hits:
            cosine = cosine_from_chroma(hit.score or 0.0)
            node = stored_chunk_node(hit.node.node_id, hit.node.get_content(), hit.node.metadata)
            self.cosines[node.node_id] = max(cosine, self.cosines.get(node.node_id, -1.0))
            paper = str(node.metadata.get("paper_id", node.node_id))
            self.paper_cosines[paper] = max(cosine, self.paper_cosines.get(paper, -1.0))
            out.append(NodeWithScore(node=node, score=cosine))
        return out

    def absorb(self, other: DenseRetriever) -> None:
        """Take in what another search's dense side found (the best cosine of each chunk and paper)."""
        for mine, theirs in ((self.cosines, other.cosines), (self.paper_cosines, other.paper_cosines)):
            for key, cosine in theirs.items():
                mine[key] = max(cosine, mine.get(key, -1.0))


def _fuse_one_query(
    dense: DenseRetriever, lexical: BaseRetriever, bundle: QueryBundle, k: int
) -> list[NodeWithScore]:
    """LlamaIndex's own reciprocal rank fusion of one question's dense and BM25 rankings."""
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.retrievers.fusion_retriever import FUSION_MODES

    fusion = QueryFusionRetriever(
        [dense, lexical],
        llm=MockLLM(),  # never called: num_queries=1 generates no extra queries
        mode=FUSION_MODES.RECIPROCAL_RANK,
        num_queries=1,
        use_async=False,
        similarity_top_k=2 * k,
    )
    return fusion.retrieve(bundle)


class PaperRetriever(BaseRetriever):
    """Loaded once (FastAPI lifespan); thread-safe for concurrent searches.

    As a LlamaIndex retriever, ``retrieve(question)`` returns one node per paper (its best chunk,
    scored by fusion). :meth:`search` is the service's call: several queries with weights, a mode,
    and the similarity the relevance floor needs.
    """

    def __init__(
        self,
        settings: Settings,
        embed_model: Any,
        chunks_collection: Any,
        lexical: LexicalIndex | None = None,
    ) -> None:
        from llama_index.core import VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        super().__init__()
        self._settings = settings
        self._embed_model = embed_model
        self._collection = chunks_collection
        store = ChromaVectorStore(chroma_collection=chunks_collection)
        self._index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        self.lexical = lexical if lexical is not None else LexicalIndex(settings, chunks_collection)

    @property
    def embed_model(self) -> Any:
        """The query embedder (the evidence of answers uses the same model)."""
        return self._embed_model

    @property
    def n_chunks(self) -> int:
        return self.lexical.n_chunks

    @property
    def n_papers(self) -> int:
        return self.lexical.n_papers

    def reload_bm25(self) -> int:
        """Load the BM25 index ingestion persisted, if it changed (the dense side queries Chroma:
        nothing to do). Never builds it."""
        return self.lexical.reload()

    def bm25_changed(self) -> bool:
        """Whether the persisted index or its match with the store changed since the last load
        (cheap: a small file and the collection's metadata). Blocking."""
        status = self.lexical.check()
        return status != self.lexical.status or (status.usable and status.version != self.lexical.version)

    # --- LlamaIndex ------------------------------------------------------------------------------
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self.search([query_bundle.query_str])
        out = []
        for hit in result.hits:
            best = hit.passages[0]
            node = TextNode(
                id_=best.chunk_id,
                text=best.text,
                metadata={"paper_id": hit.paper_id, "title": hit.title, **hit.metadata},
            )
            out.append(NodeWithScore(node=node, score=hit.score))
        return out

    # --- the service's search ----------------------------------------------------------------------
    def search(
        self,
        queries: Sequence[str],
        mode: RetrievalMode | None = None,
        top_k: int | None = None,
        weights: Sequence[float] | None = None,
        context: Sequence[tuple[str, float]] = (),
    ) -> RetrievalResult:
        """Fuse the rankings of every query (weighted, e.g. a follow-up's raw text counts less).

        ``context`` (query, weight): queries that only rank, e.g. a follow-up joined to the answer
        before it (:func:`app.answering.condense.context_for`). They add their rankings to the
        fusion but nothing to the coverage signals or the names asked for: the answer's own words
        are the corpus's, and would make any follow-up look covered."""
        mode = mode or self._settings.retrieval_mode
        top_k = top_k or self._settings.top_k
        k = max(self._settings.candidate_k, top_k)
        weight_of = {q.strip(): w for q, w in zip(queries, weights or [1.0] * len(queries), strict=True)}
        queries = [q for q in dict.fromkeys(q.strip() for q in queries) if q]
        dense = DenseRetriever(self._index, k)
        lexical = self.lexical.retriever(k)
        own: dict[str, DenseRetriever] = {}  # each query's own dense side (a follow-up has two)
        nodes: dict[str, TextNode] = {}
        scores: dict[str, float]
        context = [(q.strip(), w) for q, w in context if q.strip() and q.strip() not in queries and w > 0]
        llama_fusion = (
            mode == "hybrid"
            and len(queries) == 1
            and not context
            and self._settings.rrf_k == LLAMA_INDEX_RRF_K
        )
        if llama_fusion:
            bundle = QueryBundle(query_str=queries[0], embedding=self._embed(queries[0]))
            fused = _fuse_one_query(dense, lexical, bundle, k)
            scores = {h.node.node_id: float(h.score or 0.0) for h in fused}
            nodes = {h.node.node_id: h.node for h in fused}  # type: ignore[misc]
        else:
            rankings: list[list[str]] = []
            list_weights: list[float] = []
            # The queries, then the ranking-only context: its cosines stay out of ``dense``.
            searches = [(q, weight_of.get(q, 1.0), True) for q in queries] + [
                (q, w, False) for q, w in context
            ]
            for query, weight, counted in searches:
                bundle = QueryBundle(query_str=query, embedding=self._embed(query))
                sides = []
                if counted or mode in ("dense", "hybrid"):
                    side = DenseRetriever(self._index, k)
                    dense_hits = side.retrieve(bundle)  # a query's always: the floor reads the similarity
                    if counted:
                        own[query] = side
                        dense.absorb(side)
                    if mode in ("dense", "hybrid"):
                        sides.append(dense_hits)
                if mode in ("bm25", "hybrid"):
                    sides.append(lexical.retrieve(bundle))
                for listing in sides:
                    rankings.append([h.node.node_id for h in listing])
                    list_weights.append(weight)
                    nodes.update({h.node.node_id: h.node for h in listing})  # type: ignore[misc]
            scores = rrf(rankings, self._settings.rrf_k, list_weights)
        passages = [
            Passage(
                chunk_id=node_id,
                paper_id=str(node.metadata.get("paper_id", node_id)),
                title=str(node.metadata.get("title", "")),
                text=node.text,
                score=score,
                dense=dense.cosines.get(node_id),
                metadata={key: node.metadata[key] for key in PUBLIC_METADATA if key in node.metadata},
            )
            for node_id, score in scores.items()
            if (node := nodes.get(node_id)) is not None
        ]
        ranked = group_by_paper(passages, len(passages), self._settings.passages_per_paper)
        named = self.named_papers(queries)
        hits = self._named_first(ranked, named, top_k)
        papers = [h.paper_id for h in hits[:EVIDENCE_PAPERS]]
        signals = self._signals(queries[-1], dense, papers, named)  # dense: the best cosine of all
        alone = tuple(self._signals(q, own[q], papers, named) for q in queries[:-1] if q in own)
        return RetrievalResult(
            hits=hits,
            mode=mode,
            queries=queries,
            top_similarity=signals.dense,
            signals=signals,
            query_signals=alone,
        )

    def _signals(
        self, query: str, dense: DenseRetriever, papers: Sequence[str], named: Sequence[str]
    ) -> CoverageSignals:
        """The coverage signals of ``query`` over what ``dense`` found and the ``papers`` ranked first."""
        evidence = self.lexical.term_evidence(query, papers)
        return CoverageSignals(
            dense=max(max(dense.cosines.values(), default=0.0), 0.0),
            share=max(evidence.share.values(), default=0.0),
            bm25=max(evidence.bm25.values(), default=0.0),
            absent=evidence.absent,
            dense_gap=dense_gap(dense.paper_cosines),
            named=tuple(named),
        )

    def named_papers(self, queries: Sequence[str]) -> list[str]:
        """The papers the question asks for by name ("What is Linformer?"), in match order; a name
        merely mentioned among other things does not count (:func:`app.core.names.asks_about`)."""
        if not self._settings.coverage_names:
            return []
        found: list[str] = []
        for query in queries:
            for match in self.lexical.names.match(query):
                if asks_about(query, match, self._settings.name_question_max_terms):
                    found.extend(match.paper_ids)
        return list(dict.fromkeys(found))

    def _named_first(self, ranked: list[PaperHit], named: Sequence[str], top_k: int) -> list[PaperHit]:
        """The named papers first (all of them, when several share the name), then the rest."""
        if not named:
            return ranked[:top_k]
        by_id = {hit.paper_id: hit for hit in ranked}
        first: list[PaperHit] = []
        for paper_id in named:
            hit = by_id.get(paper_id) or self._hit_for(paper_id)
            if hit is not None:
                first.append(hit)
        rest = [hit for hit in ranked if hit.paper_id not in set(named)]
        return (first + rest)[: max(top_k, len(first))]

    def _hit_for(self, paper_id: str) -> PaperHit | None:
        """A hit for a named paper that retrieval did not find (its first chunk, scored 0)."""
        node = self.lexical.first_chunk(paper_id)
        if node is None:
            return None
        passage = Passage(
            chunk_id=node.node_id,
            paper_id=paper_id,
            title=str(node.metadata.get("title", "")),
            text=node.text,
            score=0.0,
            metadata={key: node.metadata[key] for key in PUBLIC_METADATA if key in node.metadata},
        )
        return PaperHit(paper_id, passage.title, 0.0, (passage,), passage.metadata)

    def _embed(self, query: str) -> list[float]:
        return list(self._embed_model.get_query_embedding(query))


__all__ = ["DenseRetriever", "PaperHit", "PaperRetriever", "Passage", "RetrievalResult"]
