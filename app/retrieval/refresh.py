"""Keep the BM25 index in step with the store, so papers ingested while the service runs become
searchable without a restart.

The dense side needs nothing (it queries Chroma); the BM25 index is built in memory at start. Every
``index_refresh_s`` seconds one cheap ``count()`` is compared with what the index holds, and when
they differ the index is rebuilt in a worker thread and swapped in (:meth:`PaperRetriever.reload_bm25`).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from app.retrieval.search import PaperRetriever

log = logging.getLogger(__name__)


async def refresh_index(retriever: PaperRetriever, interval_s: float) -> None:
    """Runs until cancelled (at shutdown); ``interval_s <= 0`` returns at once (refresh off)."""
    if interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            stored = await run_in_threadpool(retriever.stored_chunks)
            if stored == retriever.n_chunks:
                continue
            log.info("the store has %d chunks, the BM25 index %d: rebuilding it", stored, retriever.n_chunks)
            loaded = await run_in_threadpool(retriever.reload_bm25)
            log.info("BM25 index rebuilt: %d chunks, %d papers", loaded, retriever.n_papers)
        except Exception as exc:  # the store is down, say: keep the old index, try again later
            log.warning(
                "BM25 index refresh failed (%s: %s); retrying in %g s", type(exc).__name__, exc, interval_s
            )
