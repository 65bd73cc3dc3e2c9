"""The embedder's runtime on the bundled corpus's chunks: where ingestion time goes.

``python -m bench.embedder`` chunks the bundled corpus with the shipped settings, then embeds every
chunk with each variant (backend, ONNX export path, batch size) in this process, one after the
other, and reports seconds, wordpieces per second and the cosine to the torch embeddings (first 300
chunks). It also times the other stages of an ingest: chunking and the Chroma writes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from app.core import offline
from app.core.settings import Settings
from bench.common import WORK_DIR, save

COMMAND = "python -m bench.embedder"
# (name, backend, onnx export attention path, batch size)
VARIANTS = [
    ("torch b32", "torch", "", 32),
    ("torch b4", "torch", "", 4),
    ("onnx-int8 sdpa-export b32", "onnx-int8", "sdpa", 32),
    ("onnx-int8 sdpa-export b4", "onnx-int8", "sdpa", 4),
    ("onnx-int8 eager-export b32", "onnx-int8", "eager", 32),
    ("onnx-int8 eager-export b8", "onnx-int8", "eager", 8),
    ("onnx-int8 eager-export b4 (shipped)", "onnx-int8", "eager", 4),
]


def model_for(settings: Settings, backend: str, attention: str, batch: int):
    from app.core.embeddings import embed_model_path, load_embed_model
    from app.core.onnx_embed import OnnxMiniLM, export_int8

    if backend == "torch":
        return load_embed_model(
            settings.model_copy(update={"embed_backend": "torch", "embed_batch_size": batch})
        )
    path = embed_model_path(settings)
    onnx_path = export_int8(Path(path), settings.model_cache_dir, attention=attention)
    return OnnxMiniLM(model_dir=path, onnx_path=str(onnx_path), onnx_batch_size=batch, embed_batch_size=2048)


def main(argv: list[str] | None = None) -> int:
    offline.configure()  # before chromadb / transformers are first imported
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--variants", nargs="*", help="names to run (default: all)")
    args = parser.parse_args(argv)
    from app.core.embeddings import load_wordpiece_counter
    from bench.ingest import bundled_papers
    from ingest.chunking import chunk_paper, embed_text, make_splitter

    settings = Settings(_env_file=None)
    count_tokens = load_wordpiece_counter(settings)
    papers = bundled_papers(settings)
    t = time.perf_counter()
    splitter = make_splitter(count_tokens, settings.chunk_size, settings.chunk_overlap)
    nodes = [n for p in papers for n in chunk_paper(p, splitter)]
    chunking_s = time.perf_counter() - t
    texts = [embed_text(n) for n in nodes]
    wordpieces = sum(len(count_tokens(x)) + 2 for x in texts)
    print(f"{len(texts)} chunks, {wordpieces} wordpieces, chunking {chunking_s:.2f} s", flush=True)

    # The Chroma write of the same chunks into a fresh embedded store (random vectors: the cost of
    # the write does not depend on their values).
    import chromadb

    from app.core.store import chroma_settings

    store = WORK_DIR / "embedder-write"
    import shutil

    shutil.rmtree(store, ignore_errors=True)
    client = chromadb.PersistentClient(path=str(store), settings=chroma_settings())
    collection = client.get_or_create_collection(
        "write-bench", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    vectors = np.random.default_rng(0).standard_normal((len(texts), 384)).astype(np.float32)
    t = time.perf_counter()
    for start in range(0, len(texts), 256):
        collection.upsert(
            ids=[n.id_ for n in nodes[start : start + 256]],
            documents=texts[start : start + 256],
            embeddings=vectors[start : start + 256],
        )
    write_s = time.perf_counter() - t
    reference = None
    rows = []
    for name, backend, attention, batch in VARIANTS:
        if args.variants and name not in args.variants:
            continue
        model = model_for(settings, backend, attention, batch)
        model.get_text_embedding_batch(texts[:8])  # warm-up
        t = time.perf_counter()
        vectors = np.asarray(model.get_text_embedding_batch(texts))
        seconds = time.perf_counter() - t
        if reference is None and backend == "torch":
            reference = vectors[:300]
        cos = (vectors[:300] * reference).sum(axis=1) if reference is not None else None
        row = {
            "variant": name,
            "seconds": round(seconds, 2),
            "wordpieces_per_s": round(wordpieces / seconds),
            "cos_to_torch_mean": None if cos is None else round(float(cos.mean()), 4),
            "cos_to_torch_min": None if cos is None else round(float(cos.min()), 4),
        }
        print(row, flush=True)
        rows.append(row)
        del model

    result = {
        "chunks": len(texts),
        "wordpieces": wordpieces,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "chunking_s": round(chunking_s, 2),
        "chroma_write_s": round(write_s, 2),
        "variants": rows,
    }
    save("embedder", result, COMMAND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
