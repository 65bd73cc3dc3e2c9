"""Scale: a synthetic corpus built from the real abstracts (shuffled sentences, new titles) at 10k,
100k and 1M papers. Ingest time, disk size, memory over the run (does it grow with the corpus?),
start-up cost of the retriever, retrieval p50/p95 and RSS; and the Chroma client/server path. The
service (``python -m app``) is started three times on the store: start to ready, RSS, and
``GET /search`` p50/p95 over HTTP (40 dev questions a run, the first 5 of each run left out). The
hybrid searches are also run once more with each stage timed (:mod:`bench.stages`).

``python -m bench.scale --papers 10000`` (add ``--server`` for a ``chroma run`` server on loopback).

``--approx-vectors`` (for 100k on a 2-core machine, where embedding every chunk would take hours):
every sentence of the bundled corpus is embedded once with the real model, and a synthetic chunk's
vector is the normalised mean of its sentences' vectors (a chunk with no known sentence is embedded
for real). Everything else (chunking, Chroma writes, the HNSW and BM25 indexes, the queries, which
are embedded for real) is the real pipeline; the ingest time then excludes the model's forward pass
(and the chunker's wordpiece counts are cached, as the synthetic abstracts repeat sentences), and
the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.core import offline
from app.core.settings import Settings
from bench.common import RESULTS_DIR, WORK_DIR, peak_rss_mib, percentile, save
from bench.processes import chroma_server
from bench.stages import timed_stages

COMMAND = "python -m bench.scale"


def synthetic_corpus(path: Path, n: int, seed: int = 7) -> Path:
    """``n`` papers: each abstract a shuffle of sentences from 2-3 real abstracts, a new title."""
    from app.core.text import split_sentences
    from bench.ingest import bundled_papers

    papers = bundled_papers(Settings(_env_file=None))
    sentences = [split_sentences(p.abstract) for p in papers]
    title_words = [w for p in papers for w in p.title.replace(":", " ").split() if len(w) > 3]
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            picks = rng.sample(range(len(papers)), rng.choice((2, 3)))
            pool = [s for k in picks for s in sentences[k]]
            rng.shuffle(pool)
            abstract = " ".join(pool[: rng.randint(5, 10)])
            title = " ".join(rng.sample(title_words, rng.randint(5, 9))) + f" ({i})"
            out.write(json.dumps({"id": f"syn-{i}", "title": title, "abstract": abstract}) + "\n")
    return path


def dir_size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def sentence_mean_model(settings: Settings):
    """A LlamaIndex embedding: mean of cached real sentence vectors (see ``--approx-vectors``)."""
    import numpy as np
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from app.core.embeddings import load_embed_model
    from app.core.text import split_sentences
    from bench.ingest import bundled_papers

    real = load_embed_model(settings)
    sentences = sorted({s for p in bundled_papers(settings) for s in split_sentences(p.abstract)})
    cache = dict(zip(sentences, np.asarray(real.get_text_embedding_batch(sentences)), strict=True))

    class SentenceMean(BaseEmbedding):
        exact: int = 0
        approx: int = 0

        def _vector(self, text: str) -> list[float]:
            body = text.split("\n", 1)[-1]  # the title line is new in every synthetic paper
            known = [cache[s] for s in split_sentences(body) if s in cache]
            if not known:
                self.exact += 1
                return real.get_text_embedding(text)
            self.approx += 1
            mean = np.mean(known, axis=0)
            return (mean / np.linalg.norm(mean)).tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._vector(text)

        def _get_query_embedding(self, query: str) -> list[float]:
            return real.get_query_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return SentenceMean(model_name="sentence-mean", embed_batch_size=256)


def approx_ingest_worker(corpus: Path) -> int:
    """``python -m ingest``'s work with :func:`sentence_mean_model` (settings from the environment)."""
    from functools import lru_cache

    from app.core.embeddings import load_wordpiece_counter
    from ingest.pipeline import ingest

    settings = Settings(_env_file=None)
    model = sentence_mean_model(settings)
    # Synthetic abstracts reuse the bundled corpus's sentences: the splitter's wordpiece counts are
    # cached (same counts, fewer tokenizer calls), another reason these ingest times are not a real corpus's.
    count_tokens = lru_cache(maxsize=200_000)(load_wordpiece_counter(settings))
    summary = ingest(settings, paths=[corpus], embed_model=model, count_tokens=count_tokens, progress=False)
    print(summary.render())
    print(json.dumps({"approx_chunks": model.approx, "exact_chunks": model.exact}))
    return 0


def ingest_subprocess(corpus: Path, env: dict[str, str], approx: bool = False) -> dict:
    """Run ``python -m ingest`` and sample its RSS every second (memory over the run)."""
    started = time.perf_counter()
    command = (
        [sys.executable, "-m", "bench.scale", "--approx-ingest-worker", str(corpus)]
        if approx
        else [sys.executable, "-m", "ingest", str(corpus), "--quiet"]
    )
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        while process.poll() is None:
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        samples.append((round(time.perf_counter() - started, 1), int(line.split()[1]) / 1024))
            except OSError:
                return
            time.sleep(1.0)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = process.communicate()
    thread.join(timeout=2)
    if process.returncode != 0:
        raise RuntimeError(err[-4000:])
    seconds = time.perf_counter() - started
    rss = [mib for _, mib in samples]
    quarter = max(1, len(rss) // 4)
    lines = out.strip().splitlines()
    return {
        "wall_s": round(seconds, 1),
        "summary": lines[0],
        **(json.loads(lines[-1]) if approx else {}),
        "rss_peak_mib": round(max(rss)) if rss else None,
        "rss_first_quarter_max_mib": round(max(rss[:quarter])) if rss else None,
        "rss_last_quarter_max_mib": round(max(rss[-quarter:])) if rss else None,
        "rss_samples": len(rss),
    }


def retrieval_latency(settings: Settings, queries: list[str]) -> dict:
    from app.core.embeddings import load_embed_model
    from app.core.store import get_collections, make_client
    from app.retrieval.search import PaperRetriever

    embed_model = load_embed_model(settings)
    t = time.perf_counter()
    chunks, papers = get_collections(make_client(settings), settings.collection)
    retriever = PaperRetriever(settings, embed_model, chunks)
    load_s = time.perf_counter() - t
    for query in queries[:5]:
        retriever.search([query])
    results = {}
    for mode in ("dense", "bm25", "hybrid"):
        times = []
        for query in queries:
            t = time.perf_counter()
            retriever.search([query], mode=mode)
            times.append((time.perf_counter() - t) * 1000)
        results[mode] = {"p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1)}
    with timed_stages() as stages:  # the hybrid searches again, each stage timed (bench.stages)
        for query in queries:
            stages.begin()
            t = time.perf_counter()
            retriever.search([query], mode="hybrid")
            stages.end((time.perf_counter() - t) * 1000)
    return {
        "retriever_load_s": round(load_s, 1),
        "chunks": retriever.n_chunks,
        "papers": papers.count(),
        "latency": results,
        "hybrid_stages": stages.summary(),
        "rss_after_mib": round(peak_rss_mib()),
    }


def load_result(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def service_startup(env: dict[str, str], work: Path, queries: list[str], runs: int = 3) -> dict:
    """``python -m app`` on the store just built (extractive answers: the LLM's load is measured by
    bench.startup): process start to ``/health`` ready, and its RSS when ready and after searches.
    The BM25 index is loaded (memory-mapped), never built, by the service."""
    import httpx

    from bench.processes import service

    starts, ready_rss, after_rss, lexical = [], [], [], None
    search_ms: list[float] = []  # GET /search over HTTP, the first 5 of each run left out (warm-up)
    for run in range(runs):
        t = time.perf_counter()
        with service(
            {**env, "PAPERQA_LLM_BACKEND": "extractive"}, log_path=work / f"service-{run}.log", hermetic=True
        ) as process:
            starts.append(time.perf_counter() - t)
            ready_rss.append(process.rss_mib() or 0.0)
            with httpx.Client(base_url=process.url, timeout=60) as http:
                lexical = http.get("/health").json().get("lexical_index")
                for i, query in enumerate(queries[:40]):
                    t = time.perf_counter()
                    http.get("/search", params={"q": query}).raise_for_status()
                    if i >= 5:
                        search_ms.append((time.perf_counter() - t) * 1000)
            after_rss.append(process.rss_mib() or 0.0)
    return {
        "ready_s": [round(x, 2) for x in starts],
        "ready_s_median": round(sorted(starts)[len(starts) // 2], 2),
        "rss_ready_mib": [round(x) for x in ready_rss],
        "rss_after_40_searches_mib": [round(x) for x in after_rss],
        "lexical_index": lexical,
        "search_http_ms": {
            "n": len(search_ms),
            "p50": round(percentile(search_ms, 50), 1),
            "p95": round(percentile(search_ms, 95), 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    offline.configure()  # before chromadb / transformers are first imported
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--papers", type=int, default=10000)
    parser.add_argument("--server", action="store_true", help="through a chroma run server on 127.0.0.1")
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument(
        "--approx-vectors",
        action="store_true",
        help="chunk vectors from cached sentence vectors (no forward pass per chunk)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure again on the store a previous run built (its ingestion figures are kept)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish a run that was stopped during ingestion: ingest the same corpus into its store "
        "again (papers already written are skipped), then measure; its ingestion figures are not "
        "reported (the run was cut)",
    )
    parser.add_argument("--approx-ingest-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.approx_ingest_worker:
        return approx_ingest_worker(args.approx_ingest_worker)
    name = (
        f"scale-{args.papers}"
        + ("-server" if args.server else "")
        + ("-approx" if args.approx_vectors else "")
    )
    work = WORK_DIR / name
    store = work / "chroma"
    previous = load_result(name) if args.reuse else None
    if args.reuse and (previous is None or not store.exists()):
        print(f"error: nothing to reuse: run {COMMAND} without --reuse first", file=sys.stderr)
        return 2
    corpus = work / "corpus.jsonl"
    if args.resume and not (store.exists() and corpus.exists()):
        print(f"error: nothing to resume in {work}: run {COMMAND} without --resume", file=sys.stderr)
        return 2
    if previous is None and not args.resume:
        shutil.rmtree(work, ignore_errors=True)
        corpus = synthetic_corpus(corpus, args.papers)
    env = {
        "PAPERQA_COLLECTION": "scale",
        "PAPERQA_EMBED_BACKEND": args.backend,
        "PAPERQA_CHROMA_PATH": str(store),
    }
    server = None
    if args.server:
        server = chroma_server(store, work / "chroma-server.log").start()
        env.update({"PAPERQA_CHROMA_HOST": "127.0.0.1", "PAPERQA_CHROMA_PORT": str(server.port)})
    try:
        if args.resume:
            ingest_stats = {**ingest_subprocess(corpus, env, approx=args.approx_vectors), "resumed": True}
        elif previous is None:
            ingest_stats = ingest_subprocess(corpus, env, approx=args.approx_vectors)
        else:
            ingest_stats = {**previous["ingest"], "reused_from": previous.get("measured_at")}
        print(ingest_stats)
        settings = Settings(
            _env_file=None,
            collection="scale",
            embed_backend=args.backend,
            chroma_path=store,
            chroma_host=env.get("PAPERQA_CHROMA_HOST", ""),
            chroma_port=int(env.get("PAPERQA_CHROMA_PORT", "8000")),
        )
        from eval.questions import load_questions

        queries = [q.question for q in load_questions("dev")] * 2
        latency = retrieval_latency(settings, queries)
        print(latency)
        startup = service_startup(env, work, queries)
        print(startup)
    finally:
        if server is not None:
            server.stop()
    save(
        name,
        {
            "papers": args.papers,
            "store": "server" if args.server else "embedded",
            "embed_backend": args.backend,
            "vectors": "sentence-mean approximation" if args.approx_vectors else "embedded",
            "ingest": ingest_stats,
            "disk_mib": round(dir_size_mib(store)),
            "retrieval": latency,
            "service": startup,
        },
        f"{COMMAND} --papers {args.papers}"
        + (" --server" if args.server else "")
        + (" --approx-vectors" if args.approx_vectors else "")
        + (" --reuse" if args.reuse else "")
        + (" --resume" if args.resume else ""),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
