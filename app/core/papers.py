"""Look up one paper by id in the ``<collection>__papers`` collection (whole abstract + metadata)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class StoredPaper(BaseModel):
    """One paper as the store holds it: title, whole abstract, metadata (``GET /papers/{id}``)."""

    paper_id: str
    title: str
    abstract: str
    url: str | None = None
    authors: str | None = None
    date: str | None = None
    categories: str | None = None
    source: str | None = None
    n_chunks: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


_KNOWN = ("title", "url", "authors", "date", "categories", "source", "n_chunks")
_INTERNAL = ("content_hash",)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def get_paper(papers_collection: Any, paper_id: str) -> StoredPaper | None:
    """The paper, or None when no record has that id. Blocking: call it from a worker thread."""
    found = papers_collection.get(ids=[paper_id], include=["documents", "metadatas"])
    if not found["ids"]:
        return None
    metadata: dict[str, Any] = dict((found["metadatas"] or [None])[0] or {})
    abstract = (found["documents"] or [""])[0] or ""
    n_chunks = metadata.get("n_chunks")
    return StoredPaper(
        paper_id=found["ids"][0],
        title=str(metadata.get("title", "")),
        abstract=abstract,
        url=_text(metadata.get("url")),
        authors=_text(metadata.get("authors")),
        date=_text(metadata.get("date") or metadata.get("update_date")),
        categories=_text(metadata.get("categories")),
        source=_text(metadata.get("source")),
        n_chunks=int(n_chunks) if isinstance(n_chunks, int | float) else None,
        metadata={k: v for k, v in metadata.items() if k not in _KNOWN and k not in _INTERNAL},
    )
