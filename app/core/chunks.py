"""The chunk format both sides agree on: what a stored chunk holds and how it is rendered.

Ingestion writes chunks in this format (``ingest.chunking``); retrieval reads them back as
LlamaIndex nodes (:func:`stored_chunk_node`). Only the title is embedded (and shown to the LLM)
with each chunk; the rest of the metadata is for display and bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.schema import MetadataMode, TextNode

from app.core.records import MetadataValue, Paper

EMBEDDED_KEYS = ("title",)
METADATA_TEMPLATE = "{value}"
TEXT_TEMPLATE = "{metadata_str}\n{content}"
# Metadata of a chunk that is public (shown with search hits and citations).
PUBLIC_METADATA = ("url", "authors", "date", "categories", "source", "doi")


def chunk_metadata(paper: Paper) -> dict[str, MetadataValue]:
    return {
        **paper.metadata,
        "title": paper.title,
        "paper_id": paper.id,
        "source": paper.source,
        "content_hash": paper.content_hash,
    }


def chunk_id(paper: Paper, index: int) -> str:
    """Deterministic, and new for a new version of the paper (so a changed paper's chunks are new)."""
    return f"{paper.id}#{paper.content_hash[:12]}#{index}"


def hidden_keys(metadata: Mapping[str, Any]) -> list[str]:
    return [key for key in metadata if key not in EMBEDDED_KEYS]


def stored_chunk_node(chunk_id_: str, text: str, metadata: Mapping[str, Any] | None) -> TextNode:
    """A chunk read back from the store, rendered exactly as it was embedded (title, newline, text).

    Metadata keys are sorted, so the same chunk read by two retrievers has the same node hash
    (LlamaIndex's fusion matches nodes by hash).
    """
    meta = dict(sorted((metadata or {}).items()))
    hidden = hidden_keys(meta)
    return TextNode(
        id_=chunk_id_,
        text=text,
        metadata=meta,
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=hidden,
        metadata_template=METADATA_TEMPLATE,
        text_template=TEXT_TEMPLATE,
    )


def embed_text(node: TextNode) -> str:
    """Exactly what the embedder sees for a chunk: the title, a newline, the chunk."""
    return node.get_content(metadata_mode=MetadataMode.EMBED)
