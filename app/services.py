"""Everything loaded once at start, built from the settings: store, embedder, retriever, LLM, engine.

The composition root: the FastAPI lifespan, ``python -m app.ask`` and the evaluation build their
services here, so all three run the very same pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.answering.engine import PaperQAQueryEngine
from app.answering.evidence import EvidenceFinder
from app.answering.llm import ChatBackend, make_backend
from app.answering.pipeline import Answerer
from app.answering.prompts import Prompts, load_prompts
from app.core import lexicon
from app.core.embeddings import embedding_identity, load_embed_model
from app.core.settings import Settings
from app.core.store import check_layout, get_collections, make_client
from app.core.store_gate import StoreGate
from app.retrieval.lexical import LexicalIndex, StateReader
from app.retrieval.search import PaperRetriever


@dataclass
class Services:
    settings: Settings
    client: Any
    chunks: Any
    papers: Any
    retriever: PaperRetriever
    backend: ChatBackend | None
    prompts: Prompts
    engine: PaperQAQueryEngine
    gate: StoreGate | None = None
    embed_model_name: str = ""
    load_seconds: dict[str, float] = field(default_factory=dict)

    async def aclose(self) -> None:
        self.engine.close()
        if self.gate is not None:
            self.gate.close()
        if self.backend is not None:
            await self.backend.aclose()


def _state_reader(client: Any, settings: Settings, gate: StoreGate) -> StateReader:
    """The chunk collection's BM25 state as the store says now (a fresh read, through the gate)."""

    def read() -> tuple[str | None, str | None]:
        fresh = gate.call(client.get_collection, settings.collection, embedding_function=None)
        return lexicon.store_state(fresh)

    return read


def build_services(
    settings: Settings, embed_model: Any = None, backend: ChatBackend | None = None, load_llm: bool = True
) -> Services:
    """Load in order of what fails fastest: prompts, store, embedder, retriever, then the LLM."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    prompts = load_prompts(settings.prompts_dir)
    client = make_client(settings, timeout_s=settings.store_timeout_s)
    chunks, papers = get_collections(client, settings.collection)
    check_layout(chunks, settings, writing=False)
    # From here on every store call goes through the gate: bounded, with a deadline per call.
    gate = StoreGate(settings)
    chunks, papers = gate.guard(chunks), gate.guard(papers)
    seconds["store"] = time.perf_counter() - t
    t = time.perf_counter()
    embed_model = embed_model or load_embed_model(settings)
    seconds["embedder"] = time.perf_counter() - t
    t = time.perf_counter()
    lexical = LexicalIndex(settings, chunks, read_state=_state_reader(client, settings, gate))
    retriever = PaperRetriever(settings, embed_model, chunks, lexical=lexical)
    seconds["retriever"] = time.perf_counter() - t
    t = time.perf_counter()
    if backend is None and load_llm:
        backend = make_backend(settings)
    seconds["llm"] = time.perf_counter() - t
    evidence = EvidenceFinder(settings, papers, embed_model, retriever.lexical)
    engine = PaperQAQueryEngine(answerer=Answerer(settings, retriever, backend, prompts, evidence))
    return Services(
        settings,
        client,
        chunks,
        papers,
        retriever,
        backend,
        prompts,
        engine,
        gate=gate,
        embed_model_name=embedding_identity(settings),
        load_seconds=seconds,
    )
