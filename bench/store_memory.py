"""Where an embedded store's memory goes: ``python -m bench.store_memory [STORE] [--collection C]``.

Opens the embedded Chroma at STORE (default: the 100k store ``bench.scale --papers 100000
--approx-vectors`` built) in a fresh process and prints the process's anonymous RSS after each
step: the client, opening both collections, one ``get`` by id on the paper records, one on the
chunks, one dense query, then the persisted BM25 index loaded as a service instance loads it. Chroma loads a collection's segments (its HNSW vector index included) on
the first read of that collection, whatever the read: this is what an in-process store adds to a
service instance, and what a ``chroma run`` server holds instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.core import offline
from bench.common import WORK_DIR

COMMAND = "python -m bench.store_memory"
DEFAULT_STORE = WORK_DIR / "scale-100000-approx" / "chroma"


def anon_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    offline.configure()
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("store", nargs="?", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--collection", default="scale")
    args = parser.parse_args(argv)
    if not args.store.exists():
        print(f"error: no store at {args.store}: build it with python -m bench.scale first", file=sys.stderr)
        return 2
    import numpy as np

    from app.core.settings import Settings
    from app.core.store import get_collections, make_client

    steps: list[tuple[str, float]] = [("python + numpy", anon_rss_mib())]
    settings = Settings(_env_file=None, chroma_path=args.store, collection=args.collection)
    client = make_client(settings)
    steps.append(("chroma client", anon_rss_mib()))
    chunks, papers = get_collections(client, args.collection)
    steps.append(("both collections opened", anon_rss_mib()))
    some = papers.get(limit=1, include=[])["ids"]
    papers.get(ids=some, include=["documents"])
    steps.append((f"paper records read ({papers.count()} papers)", anon_rss_mib()))
    chunks.get(ids=["no-such-chunk"], include=["documents"])
    steps.append((f"chunks read ({chunks.count()} chunks)", anon_rss_mib()))
    chunks.query(query_embeddings=[np.full(384, 1 / np.sqrt(384), dtype=np.float32)], n_results=5)
    steps.append(("a dense query", anon_rss_mib()))
    from app.core import lexicon

    pointer = lexicon.current(settings, args.collection)
    if pointer is not None:
        loaded = lexicon.load(settings, args.collection, pointer)
        steps.append((f"BM25 index loaded ({len(loaded.rows)} rows, memory-mapped)", anon_rss_mib()))
    previous = 0.0
    for name, mib in steps:
        print(f"{name:45s} {mib:8.0f} MiB  (+{mib - previous:.0f})")
        previous = mib
    print(json.dumps({"store": str(args.store), "steps": {n: round(m) for n, m in steps}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
