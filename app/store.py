"""The Chroma store: one client (embedded on disk, or a server over HTTP) and two collections.

- ``<collection>``: one record per chunk (embedding, chunk text, metadata with ``paper_id``, ``title``);
- ``<collection>__papers``: one record per paper (whole abstract, ``content_hash``), for look-ups and
  incremental ingestion.

No embedding function is ever given to Chroma: we always pass embeddings ourselves, so Chroma's
default embedding function (which downloads a model) never runs and no embedding-function config is
sent to a server.
"""

from __future__ import annotations

from typing import Any

from app.settings import Settings

PAPERS_SUFFIX = "__papers"
# Written into the chunk collection's metadata; ingestion refuses to mix configurations.
LAYOUT_KEYS = ("paperqa_chunk_size", "paperqa_chunk_overlap", "paperqa_embed_model", "paperqa_schema")
SCHEMA_VERSION = 1


class StoreUnavailable(RuntimeError):
    """The Chroma store cannot be reached or has no index yet; the message says what to do."""


def _chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def make_client(settings: Settings):
    """``HttpClient`` when a Chroma server host is configured, else ``PersistentClient`` on disk."""
    import chromadb

    try:
        if settings.uses_chroma_server:
            return chromadb.HttpClient(
                host=settings.chroma_host,
                port=settings.chroma_port,
                ssl=settings.chroma_ssl,
                settings=_chroma_settings(),
            )
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=_chroma_settings())
    except Exception as exc:
        where = (
            f"Chroma server at {settings.chroma_host}:{settings.chroma_port}"
            if settings.uses_chroma_server
            else f"Chroma store at {settings.chroma_path}"
        )
        raise StoreUnavailable(
            f"Cannot open the {where}: {exc}. Check PAPERQA_CHROMA_HOST/PORT (is the server up?) "
            "or PAPERQA_CHROMA_PATH."
        ) from exc


def layout_metadata(settings: Settings, embed_model: str) -> dict[str, Any]:
    return {
        "paperqa_chunk_size": settings.chunk_size,
        "paperqa_chunk_overlap": settings.chunk_overlap,
        "paperqa_embed_model": embed_model,
        "paperqa_schema": SCHEMA_VERSION,
    }


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
