"""Ingestion of the bundled corpus: ours (torch and ONNX int8) against LlamaIndex's plain
``VectorStoreIndex.from_documents`` with the same embedding model and Chroma.

``python -m bench.ingest`` runs each variant in a fresh process (so peak memory is its own), then
a re-ingest of the unchanged corpus, and scores retrieval on the dev question set for each store.

Figures per variant: seconds for the ingest call (model already loaded), papers/s, peak RSS,
chunks, chunks whose embedded text exceeds the 256-wordpiece window (silently truncated), and
hit@5 / MRR@10 on the dev set (answerable questions, the service's own fusion and grouping).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from app.core import offline
from app.core.settings import EMBED_WINDOW, Settings
from bench.common import WORK_DIR, peak_rss_mib, run_json, save

VARIANTS = ("plain", "ours-torch", "ours-onnx-int8")
COMMAND = "python -m bench.ingest"


def bundled_papers(settings: Settings):
    from ingest.parsers import corpus_files, read_file
    from ingest.pipeline import IngestSummary, dedupe

    summary = IngestSummary()
    records = (r for path in corpus_files(settings.corpus_paths) for r in read_file(path))
    return list(dedupe(records, summary))


def retrieval_quality(settings: Settings, embed_model) -> dict[str, float]:
    """hit@5 and MRR@10 on the answerable dev questions, through the service's retriever."""
    from app.core.store import get_collections, make_client
    from app.retrieval.queries import query_weights, standalone_queries
    from app.retrieval.search import PaperRetriever
    from eval.metrics import hit_at_k, mrr_at_k
    from eval.questions import load_questions

    chunks, _ = get_collections(make_client(settings), settings.collection)
    retriever = PaperRetriever(settings, embed_model, chunks)
    hits, mrrs = [], []
    for question in load_questions("dev"):
        if not question.answerable:
            continue
        queries = standalone_queries(question.messages)
        weights = query_weights(queries, settings.followup_raw_weight, settings.followup_full_weight_terms)
        ranked = [h.title for h in retriever.search(queries, top_k=10, weights=weights).hits]
        hits.append(hit_at_k(ranked, question.gold_titles, 5))
        mrrs.append(mrr_at_k(ranked, question.gold_titles, 10))
    return {
        "dev_hit@5": sum(hits) / len(hits),
        "dev_mrr@10": sum(mrrs) / len(mrrs),
        "dev_questions": len(hits),
    }


def worker(variant: str, store: Path) -> dict:
    """One variant in this process; prints one JSON line."""
    backend = "onnx-int8" if variant == "ours-onnx-int8" else "torch"  # set both: defaults change
    settings = Settings(_env_file=None, chroma_path=store, collection="bench", embed_backend=backend)
    import chromadb  # noqa: F401  (imported before the clock for every variant)

    from app.core.embeddings import load_embed_model, load_wordpiece_counter

    t = time.perf_counter()
    if variant == "plain":
        # LlamaIndex's defaults: what a user gets from the docs (batch size 10, the model's window).
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        from app.core.embeddings import embed_model_path

        embed_model = HuggingFaceEmbedding(model_name=embed_model_path(settings), device="cpu")
    else:
        embed_model = load_embed_model(settings)
    load_s = time.perf_counter() - t
    count_tokens = load_wordpiece_counter(settings)
    papers = bundled_papers(settings)

    if variant == "plain":
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from app.core.store import chroma_settings

        client = chromadb.PersistentClient(path=str(store), settings=chroma_settings())
        collection = client.get_or_create_collection("plain", embedding_function=None)
        documents = [Document(text=f"{p.title}\n{p.abstract}", metadata={"title": p.title}) for p in papers]
        t = time.perf_counter()
        VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(
                vector_store=ChromaVectorStore(chroma_collection=collection)
            ),
            embed_model=embed_model,
        )
        seconds = time.perf_counter() - t
        # What the plain pipeline embedded: its node texts (title inside) plus "title: ..." metadata.
        got = collection.get(include=["documents", "metadatas"])
        texts = [
            f"title: {m.get('title', '')}\n\n{d}"
            for d, m in zip(got["documents"], got["metadatas"], strict=True)
        ]
        chunks = len(texts)
        over = sum(1 for text in texts if len(count_tokens(text)) + 2 > EMBED_WINDOW)
        quality: dict[str, float] = {}
    else:
        from ingest.pipeline import ingest

        t = time.perf_counter()
        summary = ingest(settings, progress=False, embed_model=embed_model, count_tokens=count_tokens)
        seconds = time.perf_counter() - t
        chunks = summary.chunks
        from app.core.store import get_collections, make_client

        got = get_collections(make_client(settings), settings.collection)[0].get(
            include=["documents", "metadatas"]
        )
        over = sum(
            1
            for doc, meta in zip(got["documents"], got["metadatas"], strict=True)
            if len(count_tokens(f"{meta['title']}\n{doc}")) + 2 > EMBED_WINDOW
        )
        quality = retrieval_quality(settings, embed_model)
    return {
        "variant": variant,
        "papers": len(papers),
        "model_load_s": round(load_s, 2),
        "ingest_s": round(seconds, 2),
        "papers_per_s": round(len(papers) / seconds, 1),
        "chunks": chunks,
        "chunks_over_window": over,
        "peak_rss_mib": round(peak_rss_mib()),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in quality.items()},
    }


def reingest_worker(store: Path, backend: str) -> dict:
    """Re-running on the unchanged corpus: the whole command, as a user waits for it."""
    import subprocess

    env = {"PAPERQA_CHROMA_PATH": str(store), "PAPERQA_COLLECTION": "bench", "PAPERQA_EMBED_BACKEND": backend}
    import os

    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "--quiet"], env={**os.environ, **env}, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    line = done.stdout.strip().splitlines()[0]
    return {"command_wall_s": round(wall, 2), "summary": line}


def main(argv: list[str] | None = None) -> int:
    offline.configure()  # before chromadb / transformers are first imported
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--worker", choices=VARIANTS)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (the best is kept)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.store)))
        return 0

    results = []
    for variant in VARIANTS:
        runs = []
        for _ in range(args.repeat):
            store = WORK_DIR / f"ingest-{variant}"
            shutil.rmtree(store, ignore_errors=True)
            runs.append(run_json(["-m", "bench.ingest", "--worker", variant, "--store", str(store)]))
        best = min(runs, key=lambda r: r["ingest_s"])
        best["runs_ingest_s"] = [r["ingest_s"] for r in runs]
        results.append(best)
        print(json.dumps(best))
    plain = next(r for r in results if r["variant"] == "plain")
    for r in results:
        r["speedup_vs_plain"] = round(plain["ingest_s"] / r["ingest_s"], 2)
    reingest = reingest_worker(WORK_DIR / "ingest-ours-onnx-int8", "onnx-int8")
    print(json.dumps(reingest))
    save("ingest", {"variants": results, "reingest_unchanged": reingest}, f"{COMMAND} --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
