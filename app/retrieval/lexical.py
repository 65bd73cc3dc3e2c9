"""The BM25 side: LlamaIndex's ``BM25Retriever`` (bm25s) over every chunk of the store.

Built from the chunks the store holds (text and metadata), rebuilt when the store changes
(:mod:`app.retrieval.refresh`); searches keep using the old index while a new one is built.
"""

from __future__ import annotations

import threading
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from app.core.chunks import stored_chunk_node
from app.core.store import iter_records


class LexicalIndex:
    """Thread-safe: bm25s keeps per-call state on its retriever, so searches take a lock."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self._lock = threading.Lock()
        self._bm25: Any = None
        self.n_chunks = 0
        self.n_papers = 0
        self.reload()

    def reload(self) -> int:
        """Rebuild from the store; the new index replaces the old one at once. Returns its chunks."""
        from llama_index.retrievers.bm25 import BM25Retriever

        nodes: list[BaseNode] = [
            stored_chunk_node(record["id"], record["documents"] or "", record["metadatas"])
            for record in iter_records(self._collection, include=["documents", "metadatas"])
        ]
        bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10) if nodes else None
        papers = len({n.metadata.get("paper_id") for n in nodes})
        with self._lock:
            self._bm25, self.n_chunks, self.n_papers = bm25, len(nodes), papers
        return len(nodes)

    def search(self, query: str, k: int) -> list[NodeWithScore]:
        """The ``k`` best chunks with a positive BM25 score."""
        with self._lock:
            if self._bm25 is None or not query.strip():
                return []
            self._bm25.similarity_top_k = max(1, min(k, self.n_chunks))
            hits = self._bm25.retrieve(QueryBundle(query_str=query))
        return [h for h in hits if (h.score or 0.0) > 0.0]

    def retriever(self, k: int) -> BaseRetriever:
        """This index as a LlamaIndex retriever returning ``k`` chunks."""
        return _LexicalRetriever(self, k)


class _LexicalRetriever(BaseRetriever):
    def __init__(self, index: LexicalIndex, k: int) -> None:
        super().__init__()
        self._index, self._k = index, k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._index.search(query_bundle.query_str, self._k)
