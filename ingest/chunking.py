"""Papers to chunks that fit the embedder's window, with the title part of what is embedded.

LlamaIndex's ``SentenceSplitter`` does the splitting. It is given the embedder's own wordpiece
tokenizer, so ``chunk_size`` is counted in the very units the 256-wordpiece window is measured in,
and it subtracts the embedded metadata (the title) from each chunk's budget, so that
``title + chunk + [CLS] + [SEP]`` never exceeds the window. ``tests/test_chunking.py`` proves it on
the whole bundled corpus.
"""

from __future__ import annotations

from collections.abc import Callable

from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import TextNode

from app.core.chunks import (
    METADATA_TEMPLATE,
    TEXT_TEMPLATE,
    chunk_id,
    chunk_metadata,
    embed_text,
    hidden_keys,
)
from app.core.records import Paper

__all__ = ["TitleTooLong", "check_title", "chunk_paper", "embed_text", "make_splitter"]


def make_splitter(
    count_tokens: Callable[[str], list[int]], chunk_size: int, chunk_overlap: int
) -> SentenceSplitter:
    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        tokenizer=count_tokens,
        include_metadata=True,
        include_prev_next_rel=False,
    )


# A title must leave at least this many wordpieces of each chunk for the abstract.
MIN_TEXT_TOKENS = 16


class TitleTooLong(ValueError):
    """The title alone nearly fills a chunk: the record is reported and skipped."""


def check_title(paper: Paper, count_tokens: Callable[[str], list[int]], chunk_size: int) -> None:
    length = len(count_tokens(paper.title))
    if length > chunk_size - MIN_TEXT_TOKENS:
        raise TitleTooLong(
            f"title is {length} wordpieces, too long for chunks of {chunk_size} (title and abstract "
            f"swapped?); skipped. A larger PAPERQA_CHUNK_SIZE would take it"
        )


def chunk_paper(paper: Paper, splitter: SentenceSplitter) -> list[TextNode]:
    """Chunks of the abstract, each embedded with the title (call :func:`check_title` first)."""
    metadata = chunk_metadata(paper)
    hidden = hidden_keys(metadata)
    document = Document(
        text=paper.abstract,
        id_=paper.id,
        metadata=metadata,
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=hidden,
        metadata_template=METADATA_TEMPLATE,
        text_template=TEXT_TEMPLATE,
        metadata_seperator="\n",
    )
    nodes = splitter.get_nodes_from_documents([document])
    chunks: list[TextNode] = []
    for index, node in enumerate(nodes):
        assert isinstance(node, TextNode)  # SentenceSplitter makes text nodes
        node.id_ = chunk_id(paper, index)
        node.metadata["chunk_index"] = index
        node.metadata["n_chunks"] = len(nodes)
        node.excluded_embed_metadata_keys = [*hidden, "chunk_index", "n_chunks"]
        node.excluded_llm_metadata_keys = [*hidden, "chunk_index", "n_chunks"]
        node.relationships = {}
        chunks.append(node)
    return chunks
