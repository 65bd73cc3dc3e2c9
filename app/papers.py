"""Look up one paper by id in the ``<collection>__papers`` collection (whole abstract + metadata)."""

from __future__ import annotations

from typing import Any

from app.schemas import Paper

_KNOWN = ("title", "url", "authors", "date", "categories", "source", "n_chunks")
_INTERNAL = ("content_hash",)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def get_paper(papers_collection, paper_id: str) -> Paper | None:
    """The paper, or None when no record has that id. Blocking: call it from a worker thread."""
    found = papers_collection.get(ids=[paper_id], include=["documents", "metadatas"])
    if not found["ids"]:
        return None
    metadata: dict[str, Any] = dict((found["metadatas"] or [None])[0] or {})
    abstract = (found["documents"] or [""])[0] or ""
    n_chunks = metadata.get("n_chunks")
    return Paper(
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
