"""Ingestion with the embedding on Ray (``ingest/distributed.py``): 1 and 2 workers against the
plain ``ingest()``, on this machine, into a ``chroma run`` server on 127.0.0.1.

``python -m bench.ray_ingest [--papers 300] [--repeat 1]`` (needs the ray extra). Each variant runs
in a fresh process on the first ``--papers`` distinct papers of the bundled corpus, into a new
collection of one Chroma server; the Ray variants start their own local Ray (loopback only).

Figures per variant: ``ingest_s`` with the model(s) loaded (plain: the ``ingest()`` call; Ray: the
run minus Ray's start-up and the workers' model loads, ``startup_s``), papers/s, and for Ray where
the driver's time went (read, chunk, write, waiting) and the workers' embedding seconds.

Then the two bounds on what one driver and one Chroma server can feed, measured alone:
``driver``: read, dedupe, skip-check and chunk (what the driver does per paper besides writing);
``writes``: the same batches written again into a new collection with ingest()'s own write
(``_store_batch``: chunks, paper records, stale sweep), with the vectors already computed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from app.core import offline
from app.core.settings import Settings
from bench.common import WORK_DIR, peak_rss_mib, run_json, save

COMMAND = "python -m bench.ray_ingest"
VARIANTS = ("plain", "ray-1", "ray-2")
WORK = WORK_DIR / "ray-ingest"


def settings_for(host: str, port: int, collection: str) -> Settings:
    # chroma_path only places what lives beside the store (the BM25 index): under WORK.
    return Settings(
        _env_file=None,
        chroma_host=host,
        chroma_port=port,
        collection=collection,
        chroma_path=WORK / "unused-chroma-path",
    )


def write_corpus(n: int) -> Path:
    from bench.ingest import bundled_papers

    papers = bundled_papers(Settings(_env_file=None))[:n]
    if len(papers) < n:
        raise SystemExit(f"the bundled corpus has {len(papers)} distinct papers, fewer than {n}")
    path = WORK / f"corpus-{n}.jsonl"
    path.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers),
        encoding="utf-8",
    )
    return path


def worker(variant: str, settings: Settings, corpus: Path) -> dict:
    """One variant in this process; returns its figures."""
    import chromadb  # noqa: F401  (imported before the clock for every variant)

    from app.core.embeddings import load_embed_model, load_wordpiece_counter

    count_tokens = load_wordpiece_counter(settings)
    load = os.getloadavg()[0]
    if variant == "plain":
        from ingest.pipeline import ingest

        t = time.perf_counter()
        embed_model = load_embed_model(settings)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        summary = ingest(
            settings, [corpus], embed_model=embed_model, count_tokens=count_tokens, progress=False
        )
        seconds = time.perf_counter() - t
        extra: dict = {"model_load_s": round(load_s, 2)}
    else:
        from ingest.distributed import ingest_on_ray

        workers = int(variant.split("-")[1])
        t = time.perf_counter()
        ray_summary = ingest_on_ray(
            settings, [corpus], workers=workers, count_tokens=count_tokens, progress=False
        )
        run_s = time.perf_counter() - t
        seconds = run_s - ray_summary.startup_s
        summary = ray_summary
        extra = {
            "workers": ray_summary.workers,
            "batches": ray_summary.batches,
            "run_s": round(run_s, 2),
            "startup_s": round(ray_summary.startup_s, 2),
            "papers_per_s_with_startup": round(ray_summary.papers / run_s, 1),
            "driver_read_s": round(ray_summary.read_s, 2),
            "driver_chunk_s": round(ray_summary.chunk_s, 2),
            "driver_write_s": round(ray_summary.write_s, 2),
            "driver_wait_s": round(ray_summary.wait_s, 2),
            "workers_embed_s": round(ray_summary.embed_s, 2),
            "restarts": ray_summary.restarts,
        }
    assert summary.new == summary.papers, summary.render()
    return {
        "variant": variant,
        "papers": summary.papers,
        "chunks": summary.chunks,
        "ingest_s": round(seconds, 2),
        "papers_per_s": round(summary.papers / seconds, 1),
        "load_average_before": round(load, 2),
        "driver_peak_rss_mib": round(peak_rss_mib()),
        **extra,
    }


def bounds(settings: Settings, source: str, corpus: Path) -> dict:
    """The driver's rate (read and chunk) and the Chroma server's write rate, each alone."""
    from app.core.embeddings import load_wordpiece_counter
    from app.core.store import get_collections, iter_records, make_client
    from ingest.parsers import ReadLimits
    from ingest.pipeline import (
        PAPERS_PER_BATCH,
        IngestSummary,
        _batched,
        _chunk_batch,
        _ChunkTools,
        _open_store,
        _records_from,
        _store_batch,
        _to_write,
        dedupe,
    )

    tools = _ChunkTools(settings, load_wordpiece_counter(settings))
    tools.splitter  # noqa: B018  (llama-index imported before the clock)
    client = make_client(settings)
    store = _open_store(settings, client, reset=False)
    stored_hash = store.stored_hash
    summary = IngestSummary()

    t = time.perf_counter()
    papers = dedupe(_records_from([corpus], None, ReadLimits.from_settings(settings), summary), summary)
    todos = [
        _to_write(batch, stored_hash, tools.count_tokens, settings.chunk_size, summary)
        for batch in _batched(papers, PAPERS_PER_BATCH)
    ]
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    chunked = [_chunk_batch(todo, tools.splitter) for todo in todos]
    for chunked_batch in chunked:
        chunked_batch.texts()
    chunk_s = time.perf_counter() - t
    n_papers = sum(len(b.papers) for b in chunked)

    source_chunks, _ = get_collections(client, source)
    vector_of = {r["id"]: r["embeddings"] for r in iter_records(source_chunks, include=["embeddings"])}
    t = time.perf_counter()
    n_chunks = sum(_store_batch(b, [vector_of[n.id_] for n in b.nodes], store) for b in chunked)
    write_s = time.perf_counter() - t
    return {
        "papers": n_papers,
        "chunks": n_chunks,
        "driver_read_s": round(read_s, 2),
        "driver_chunk_s": round(chunk_s, 2),
        "driver_read_chunk_papers_per_s": round(n_papers / (read_s + chunk_s), 1),
        "chroma_write_s": round(write_s, 2),
        "chroma_write_papers_per_s": round(n_papers / write_s, 1),
        "chroma_write_chunks_per_s": round(n_chunks / write_s, 1),
        # One driver reads and chunks on its main thread while its writer thread writes (the store's
        # work is the server's): its ceiling, whatever the workers, is the slower of the two.
        "driver_ceiling_papers_per_s": round(n_papers / max(read_s + chunk_s, write_s), 1),
        "driver_ceiling_serial_papers_per_s": round(n_papers / (read_s + chunk_s + write_s), 1),
    }


def main(argv: list[str] | None = None) -> int:
    offline.configure()  # before chromadb / transformers are first imported
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--papers", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (the best is kept)")
    parser.add_argument("--worker", choices=(*VARIANTS, "bounds"))
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--collection")
    parser.add_argument("--source", help="bounds: the collection whose vectors are written again")
    parser.add_argument("--corpus", type=Path)
    args = parser.parse_args(argv)
    if args.worker:
        settings = settings_for(args.host, args.port, args.collection)
        if args.worker == "bounds":
            result = bounds(settings, args.source, args.corpus)
        else:
            result = worker(args.worker, settings, args.corpus)
        print(json.dumps(result))
        return 0

    from bench.processes import chroma_server

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    corpus = write_corpus(args.papers)
    results: list[dict] = []
    with chroma_server(WORK / "chroma-data", WORK / "chroma.log") as chroma:

        def run(worker_args: list[str]) -> dict:
            base = ["-m", "bench.ray_ingest", "--host", chroma.host, "--port", str(chroma.port)]
            return run_json([*base, "--corpus", str(corpus), *worker_args], timeout=1800)

        for variant in VARIANTS:
            runs = [
                run(["--worker", variant, "--collection", f"{variant.replace('-', '')}_{i}"])
                for i in range(args.repeat)
            ]
            best = min(runs, key=lambda r: r["ingest_s"])
            best["runs_ingest_s"] = [r["ingest_s"] for r in runs]
            results.append(best)
            print(json.dumps(best), flush=True)
        measured = run(["--worker", "bounds", "--collection", "rewrite", "--source", "ray2_0"])
        print(json.dumps(measured), flush=True)
    plain = next(r for r in results if r["variant"] == "plain")
    for r in results:
        r["speedup_vs_plain"] = round(plain["ingest_s"] / r["ingest_s"], 2)
    save(
        "ray_ingest",
        {"papers": args.papers, "variants": results, "bounds": measured},
        f"{COMMAND} --papers {args.papers} --repeat {args.repeat}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
