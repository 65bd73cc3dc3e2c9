"""The Chroma store: one client (embedded on disk, or a server over HTTP) and two collections.

- ``<collection>``: one record per chunk (embedding, chunk text, metadata with ``paper_id``, ``title``);
- ``<collection>__papers``: one record per paper (whole abstract, ``content_hash``), for look-ups and
  incremental ingestion. Paper records are only ever read by id, never searched: a new store gives
  them a one-number placeholder vector (:data:`PAPER_PLACEHOLDER_VECTOR`) so that Chroma's vector
  index of this collection costs nothing (it is loaded into memory on the first read of the
  collection: 1.5 KiB a paper with MiniLM vectors); a store written before keeps its first-chunk
  vectors (:func:`paper_vectors_are_placeholders` tells them apart).

No embedding function is ever given to Chroma: we always pass embeddings ourselves, so Chroma's
default embedding function (which downloads a model) never runs and no embedding-function config is
sent to a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.core import offline
from app.core.embeddings import embedding_identity
from app.core.errors import LayoutMismatch, StoreUnavailable
from app.core.settings import Settings

__all__ = [
    "LAYOUT_KEYS",
    "PAPERS_SUFFIX",
    "PAPER_PLACEHOLDER_VECTOR",
    "StoreUnavailable",
    "apply_search_config",
    "check_layout",
    "chroma_settings",
    "delete_collections",
    "get_collections",
    "heartbeat",
    "iter_records",
    "layout_metadata",
    "make_client",
    "paper_vectors_are_placeholders",
    "store_errors",
    "where",
]

PAPERS_SUFFIX = "__papers"
# Written into the chunk collection's metadata: what the vectors and chunks were made with.
LAYOUT_KEYS = ("paperqa_chunk_size", "paperqa_chunk_overlap", "paperqa_embed_model", "paperqa_schema")
# What a reader depends on: the query embedder must be the one that made the vectors.
READ_KEYS = ("paperqa_embed_model", "paperqa_schema")
SCHEMA_VERSION = 1
PAPER_PLACEHOLDER_VECTOR = [1.0]


def chroma_settings() -> Any:
    """Chroma's client settings: no telemetry, no reset over the API."""
    offline.configure()
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def where(settings: Settings) -> str:
    if settings.uses_chroma_server:
        return f"Chroma server at {settings.chroma_host}:{settings.chroma_port}"
    return f"Chroma store at {settings.chroma_path}"


def make_client(settings: Settings, timeout_s: float | None = None):
    """``HttpClient`` when a Chroma server host is configured, else ``PersistentClient`` on disk.

    ``timeout_s`` bounds each request to a server (Chroma's own client waits forever), so a hung
    server makes requests fail with :class:`StoreUnavailable` instead of hanging them.
    """
    offline.configure()
    import chromadb

    try:
        if settings.uses_chroma_server:
            client = chromadb.HttpClient(
                host=settings.chroma_host,
                port=settings.chroma_port,
                ssl=settings.chroma_ssl,
                settings=chroma_settings(),
            )
            if timeout_s is not None:
                _bound_requests(client, timeout_s)
            return client
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings())
    except Exception as exc:
        raise StoreUnavailable(
            f"Cannot open the {where(settings)}: {exc}. Check PAPERQA_CHROMA_HOST/PORT (is the server "
            "up?) or PAPERQA_CHROMA_PATH."
        ) from exc


def _bound_requests(client, timeout_s: float) -> None:
    """Give the HTTP session under Chroma's ``HttpClient`` a timeout (it has none by default)."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout_s)


def _failures() -> tuple[type[BaseException], ...]:
    """What a store call raises when the store is down or broken (not a bug of ours)."""
    import httpx
    from chromadb.errors import ChromaError

    return (httpx.TransportError, ConnectionError, TimeoutError, ChromaError)


@contextmanager
def store_errors(settings: Settings) -> Iterator[None]:
    """Turn a failed store call (server down, timed out, broken) into :class:`StoreUnavailable`."""
    try:
        yield
    except StoreUnavailable:
        raise
    except _failures() as exc:
        hint = (
            "is the server up? PAPERQA_CHROMA_HOST/PORT"
            if settings.uses_chroma_server
            else "PAPERQA_CHROMA_PATH"
        )
        raise StoreUnavailable(
            f"the {where(settings)} failed ({type(exc).__name__}: {str(exc)[:200]}); {hint}"
        ) from exc


def heartbeat(client, settings: Settings, timeout_s: float) -> str | None:
    """None when the store answers a heartbeat within ``timeout_s``, else why not. Blocking."""
    if not settings.uses_chroma_server:
        try:
            client.heartbeat()
        except Exception as exc:
            return f"the {where(settings)} failed: {exc}"
        return None
    import httpx

    scheme = "https" if settings.chroma_ssl else "http"
    url = f"{scheme}://{settings.chroma_host}:{settings.chroma_port}/api/v2/heartbeat"
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"the {where(settings)} does not answer ({type(exc).__name__}: {exc})"
    if response.status_code != 200:
        return f"the {where(settings)} answered its heartbeat with HTTP {response.status_code}"
    return None


def layout_metadata(settings: Settings) -> dict[str, Any]:
    return {
        "paperqa_chunk_size": settings.chunk_size,
        "paperqa_chunk_overlap": settings.chunk_overlap,
        "paperqa_embed_model": embedding_identity(settings),
        "paperqa_schema": SCHEMA_VERSION,
    }


def check_layout(chunks: Any, settings: Settings, writing: bool) -> None:
    """The one layout rule, at ingestion (``writing``: every layout key must match, so a store never
    mixes chunkings) and at serve time (the embedder and schema must match: query vectors made
    another way than the stored ones would make the results noise). Raises StoreUnavailable."""
    stored = chunks.metadata or {}
    wanted = layout_metadata(settings)
    keys = LAYOUT_KEYS if writing else READ_KEYS
    mismatched = [
        f"{key.removeprefix('paperqa_')} {stored.get(key)!r} (the settings give {wanted[key]!r})"
        for key in keys
        if key in stored and stored.get(key) != wanted[key]
    ]
    if mismatched:
        raise LayoutMismatch(
            f"The index {settings.collection!r} was built with other settings: "
            + ", ".join(mismatched)
            + ". Set PAPERQA_CHUNK_SIZE / PAPERQA_CHUNK_OVERLAP / PAPERQA_EMBED_BACKEND / "
            "PAPERQA_EMBED_MODEL_PATH to match, rebuild it with `python -m ingest --reset`, or use "
            "another PAPERQA_COLLECTION."
        )


def get_collections(client, name: str, create_with: dict[str, Any] | None = None):
    """The (chunks, papers) collections. With ``create_with`` they are created if missing."""
    if create_with is not None:
        chunks = client.get_or_create_collection(
            name, metadata={"hnsw:space": "cosine", **create_with}, embedding_function=None
        )
        papers = client.get_or_create_collection(
            name + PAPERS_SUFFIX, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )
        return chunks, papers
    try:
        chunks = client.get_collection(name, embedding_function=None)
        papers = client.get_collection(name + PAPERS_SUFFIX, embedding_function=None)
    except Exception as exc:
        raise StoreUnavailable(
            f"No index named {name!r} in the store ({exc}). Build it first: python -m ingest"
        ) from exc
    return chunks, papers


def paper_vectors_are_placeholders(papers: Any) -> bool:
    """Whether the paper records get :data:`PAPER_PLACEHOLDER_VECTOR` (a new or empty collection,
    or one whose records have it) or, in a store written before, their first chunk's vector (a
    collection's vectors all have one dimension, so the stored one decides)."""
    got = papers.get(limit=1, include=["embeddings"])
    embeddings = got.get("embeddings")
    if embeddings is None or len(embeddings) == 0:
        return True
    return len(embeddings[0]) == len(PAPER_PLACEHOLDER_VECTOR)


def apply_search_config(chunks, settings: Settings) -> None:
    """Give the chunk collection's HNSW index the configured search breadth (``ef_search``).

    Chroma's collections made from metadata report ``ef_search`` 100 yet searched far narrower
    until it was set explicitly: on the bundled corpus, the dense side missed the true nearest
    chunk of one dev question in 110 (docs/evaluation.md, "Dense recall"). Setting it is cheap and
    takes effect for every client that opens the collection afterwards. Called by ingestion.
    """
    chunks.modify(configuration={"hnsw": {"ef_search": settings.hnsw_ef_search}})


def delete_collections(client, name: str) -> None:
    for collection in (name, name + PAPERS_SUFFIX):
        try:
            client.delete_collection(collection)
        except Exception:  # missing is fine: we are resetting
            pass


def iter_records(collection, include: list[str], where: dict | None = None, page: int = 2000):
    """Page through a collection (a 100k-paper store is never fetched in one call)."""
    offset = 0
    while True:
        batch = collection.get(include=include, where=where, limit=page, offset=offset)
        ids = batch["ids"]
        if not ids:
            return
        for i, record_id in enumerate(ids):
            yield {
                "id": record_id,
                **{key: (batch[key][i] if batch.get(key) is not None else None) for key in include},
            }
        if len(ids) < page:
            return
        offset += page
