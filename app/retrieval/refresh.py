"""Keep the BM25 index in step with the store, so papers ingested while the service runs become
searchable without a restart.

The dense side needs nothing (it queries Chroma). The BM25 index is built by ingestion and
persisted (:mod:`app.core.lexicon`); every ``index_refresh_s`` seconds this task reads its small
``CURRENT`` pointer and the collection's metadata, and when either changed it loads the new index
(memory-mapped) or drops one that no longer matches the store (:meth:`PaperRetriever.reload_bm25`).
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
            if not await run_in_threadpool(retriever.bm25_changed):
                continue
            loaded = await run_in_threadpool(retriever.reload_bm25)
            status = retriever.lexical.status
            log.info(
                "BM25 index %s (%s): %d chunks, %d papers",
                status.status,
                status.detail,
                loaded,
                retriever.n_papers,
            )
        except Exception as exc:  # the store is down, say: keep the old index, try again later
            log.warning(
                "BM25 index refresh failed (%s: %s); retrying in %g s", type(exc).__name__, exc, interval_s
            )
