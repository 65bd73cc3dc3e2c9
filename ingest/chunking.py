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
from llama_index.core.schema import MetadataMode, TextNode

from ingest.records import Paper

# Only the title is embedded (and shown to the LLM) with each chunk; the rest is for display.
EMBEDDED_KEYS = ("title",)
METADATA_TEMPLATE = "{value}"
TEXT_TEMPLATE = "{metadata_str}\n{content}"


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


def chunk_metadata(paper: Paper) -> dict[str, str | int | float | bool]:
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
    hidden = [key for key in metadata if key not in EMBEDDED_KEYS]
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
        node.id_ = chunk_id(paper, index)
        node.metadata["chunk_index"] = index
        node.metadata["n_chunks"] = len(nodes)
        node.excluded_embed_metadata_keys = [*hidden, "chunk_index", "n_chunks"]
        node.excluded_llm_metadata_keys = [*hidden, "chunk_index", "n_chunks"]
        node.relationships = {}
        chunks.append(node)
    return chunks


def embed_text(node: TextNode) -> str:
    """Exactly what the embedder sees for a chunk: the title, a newline, the chunk."""
    return node.get_content(metadata_mode=MetadataMode.EMBED)
