"""What retrieval promises on the bundled corpus, asserted with margins that hold on any x86-64 CPU.

The int8 embedder's vectors differ slightly between CPUs (ONNX Runtime's int8 kernels with or
without AVX-512 VNNI), so no test here depends on an exact rank that a 1 % change in a similarity
could move. What is checked is either CPU independent (HNSW against an exact search over the very
same stored vectors) or has a wide margin on every machine measured (see docs/reliability.md,
"Tests and the CPU").
"""

from __future__ import annotations

import numpy as np
import pytest

from app.core.store import get_collections, make_client
from app.retrieval.queries import query_weights, standalone_queries
from eval.questions import load_questions

pytestmark = pytest.mark.slow


def test_vector_index_finds_what_an_exact_search_finds(bundled_index, embed_model) -> None:
    """The dense side's candidates contain the exact nearest chunks (HNSW is approximate).

    Over the 190 dev and test questions, at the shipped ``ef_search`` (300): the nearest chunk of all
    but at most 2 (1 %), and 99 % of their exact top 10. HNSW builds its graph in parallel, so two
    builds of one corpus differ: one build missed the nearest chunk of one out-of-scope question
    (0.995), another none. Chroma's default breadth (ef 100) misses 4 (0.979) and 1.9 % of the
    top 10, and fails this test; so does ef 10 (19 missed)."""
    settings = bundled_index.settings
    chunks, _ = get_collections(make_client(settings), settings.collection)
    stored = chunks.get(include=["embeddings"])
    ids, vectors = np.array(stored["ids"]), np.array(stored["embeddings"])
    questions = [q.question for name in ("dev", "test") for q in load_questions(name)]
    queries = [embed_model.get_query_embedding(q) for q in questions]
    found = chunks.query(query_embeddings=queries, n_results=settings.candidate_k, include=[])["ids"]
    missed_nearest, shares = [], []
    for question, query, hnsw in zip(questions, queries, found, strict=True):
        exact = ids[np.argsort(-(vectors @ np.asarray(query)))[:10]]
        if exact[0] not in hnsw:
            missed_nearest.append(question)
        shares.append(len(set(exact) & set(hnsw)) / 10)
    assert len(missed_nearest) <= 2, missed_nearest  # 1 %
    assert sum(shares) / len(shares) >= 0.99


def test_vague_follow_up_leans_on_its_context(bundled_index) -> None:
    """ "What does it mask?" after a question about the lidar paper keeps that paper among the first
    three. Before the raw question's weight was scaled by its content words, the paper was third
    on one CPU and fourth on another, by a fused-score margin of 1 %; now it leads the fourth paper
    by about 10 % on both (int8 and fp32)."""
    messages = [
        {"role": "user", "content": "Which paper applies masked autoencoders to lidar point clouds?"},
        {
            "role": "assistant",
            "content": "Masked Autoencoder for Self-Supervised Pre-training on Lidar Point Clouds [1].",
        },
        {"role": "user", "content": "What does it mask?"},
    ]
    settings = bundled_index.settings
    queries = standalone_queries(messages)
    weights = query_weights(queries, settings.followup_raw_weight, settings.followup_full_weight_terms)
    hits = bundled_index.retriever.search(queries, "hybrid", 5, weights).hits
    ranks = [i for i, hit in enumerate(hits, 1) if "Lidar" in hit.title]
    assert ranks and ranks[0] <= 3, [h.title for h in hits]
    fourth = hits[3].score
    assert hits[ranks[0] - 1].score >= fourth * 1.05, [(h.title, h.score) for h in hits]
