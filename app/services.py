"""Everything loaded once at start, built from the settings: store, embedder, retriever, LLM.

Used by the FastAPI lifespan, the ``ask`` command and the evaluation scripts, so all three run the
very same pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.answer import Answerer
from app.embeddings import embedding_identity, load_embed_model
from app.llm import ChatBackend, make_backend
from app.prompts import Prompts, load_prompts
from app.retrieval import Retriever
from app.settings import Settings
from app.store import StoreUnavailable, get_collections, make_client


@dataclass
class Services:
    settings: Settings
    client: object
    chunks: object
    papers: object
    retriever: Retriever
    backend: ChatBackend | None
    prompts: Prompts
    answerer: Answerer
    embed_model_name: str = ""
    load_seconds: dict[str, float] = field(default_factory=dict)

    async def aclose(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()


def build_services(settings: Settings, embed_model=None, backend: ChatBackend | None = None,
                   load_llm: bool = True) -> Services:
    """Load in order of what fails fastest: prompts, store, embedder, retriever, then the LLM."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    prompts = load_prompts(settings.prompts_dir)
    client = make_client(settings, timeout_s=settings.store_timeout_s)
    chunks, papers = get_collections(client, settings.collection)
    check_embedding(chunks, settings)
    seconds["store"] = time.perf_counter() - t
    t = time.perf_counter()
    embed_model = embed_model or load_embed_model(settings)
    seconds["embedder"] = time.perf_counter() - t
    t = time.perf_counter()
    retriever = Retriever(settings, embed_model, chunks)
    seconds["retriever"] = time.perf_counter() - t
    t = time.perf_counter()
    if backend is None and load_llm:
        backend = make_backend(settings)
    seconds["llm"] = time.perf_counter() - t
    answerer = Answerer(settings, retriever, backend, prompts)
    return Services(settings, client, chunks, papers, retriever, backend, prompts, answerer,
                    embed_model_name=embedding_identity(settings), load_seconds=seconds)


def check_embedding(chunks, settings: Settings) -> None:
    """Refuse to query a store with vectors made by another embedder: results would be noise."""
    stored = (chunks.metadata or {}).get("paperqa_embed_model")
    wanted = embedding_identity(settings)
    if stored is not None and stored != wanted:
        raise StoreUnavailable(
            f"The index {settings.collection!r} was built with embeddings {stored!r}, but the settings "
            f"give {wanted!r}. Set PAPERQA_EMBED_BACKEND / PAPERQA_EMBED_MODEL_PATH to match, or "
            "rebuild it: python -m ingest --reset"
        )
