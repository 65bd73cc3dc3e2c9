"""Fakes of the project's own interfaces, for the fast tier (``make test-fast``): no model loads.

- :class:`HashingEmbedding`: a LlamaIndex ``BaseEmbedding`` that hashes content words (stopwords
  dropped, crudely stemmed) into a unit vector: texts sharing words are close, texts sharing none
  have cosine 0; deterministic on every CPU.
- :func:`count_words`: a stand-in for the embedder's wordpiece counter (one piece per word/sign).
- :class:`ScriptedBackend`: a :class:`app.answering.llm.ChatBackend` whose replies are given by the
  test (a string, a function of the messages, or an exception), streamed word by word.
- :func:`fake_services`: the real store, retriever and answering pipeline over a small temporary
  Chroma store built by the real ingestion, with the two fakes above plugged in.

The real parts (MiniLM, SmolLM2, ``chroma run``, llama.cpp's server) are tested in the slow tier;
these fakes make the contract tests of HTTP, errors and events fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding

from app.answering.llm import Message, Usage
from app.core.settings import Settings
from app.core.text import terms
from app.services import Services, build_services

DIM = 256
WORD = re.compile(r"[a-z0-9]+")
TOKEN = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> list[int]:
    """One "wordpiece" per word or sign: a deterministic stand-in for the real tokenizer."""
    return [len(t) for t in TOKEN.findall(text)]


def hashed_vector(text: str) -> list[float]:
    # Strict like the real tokenizer, which refuses a lone surrogate (it cannot be encoded).
    text.encode("utf-8")
    vector = [0.0] * DIM
    for word in sorted(terms(text)):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "little") % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class HashingEmbedding(BaseEmbedding):
    """Bag of hashed words, L2-normalised (cosine = word overlap)."""

    model_name: str = "hashing-fake"

    def _get_query_embedding(self, query: str) -> list[float]:
        return hashed_vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return hashed_vector(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return hashed_vector(query)


Reply = str | Exception | Callable[[list[Message]], str]


class ScriptedBackend:
    """A chat backend that says what the test scripted.

    ``reply`` is used for every call unless ``replies`` (consumed in order) has items left; a reply
    may be a string, a function of the messages, or an exception to raise before any text. With
    ``fail_after_words`` and ``error``, the stream sends that many words of the reply, then raises
    ``error`` (a model that fails mid-answer). ``delay_s`` is waited before each word.
    """

    name = "openai"

    def __init__(
        self,
        reply: Reply = "",
        replies: Sequence[Reply] = (),
        *,
        model: str = "scripted",
        fail_after_words: int | None = None,
        error: Exception | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.model = model
        self.reply, self.replies = reply, list(replies)
        self.fail_after_words, self.error, self.delay_s = fail_after_words, error, delay_s
        self.calls: list[list[Message]] = []
        self.closed = False

    def _next(self, messages: list[Message]) -> Reply:
        self.calls.append(list(messages))
        reply = self.replies.pop(0) if self.replies else self.reply
        return reply(messages) if callable(reply) and not isinstance(reply, Exception) else reply

    async def complete(self, messages: list[Message], usage: Usage) -> str:
        reply = self._next(messages)
        if isinstance(reply, Exception):
            raise reply
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        usage.prompt_tokens, usage.completion_tokens = 10, len(reply.split())
        return reply

    async def stream(self, messages: list[Message], usage: Usage) -> AsyncIterator[str]:
        reply = self._next(messages)
        if isinstance(reply, Exception):
            raise reply
        for i, word in enumerate(re.findall(r"\S+\s*", reply)):
            if self.error is not None and i == self.fail_after_words:
                raise self.error
            await asyncio.sleep(self.delay_s)
            yield word
        if self.error is not None:
            raise self.error
        usage.prompt_tokens, usage.completion_tokens = 10, len(reply.split())

    async def aclose(self) -> None:
        self.closed = True


# --- a small real store ------------------------------------------------------------------------
FAKE_PAPERS: list[dict[str, Any]] = [
    {
        "id": "vit-ptq",
        "title": "Post-Training Quantization for Vision Transformers",
        "abstract": "We quantize vision transformers after training with a small calibration set. "
        "Eight-bit weights and activations keep top-1 accuracy within 0.5 points on ImageNet.",
        "url": "https://example.org/vit-ptq",
    },
    {
        "id": "repq",
        "title": "RepQ-ViT: Scale Reparameterization for Post-Training Quantization of Vision Transformers",
        "abstract": "RepQ-ViT decouples quantization and inference with scale reparameterization. "
        "Post-LayerNorm activations get per-channel scales; post-Softmax activations log2 quantizers.",
    },
    {
        "id": "linformer",
        "title": "Linformer: Self-Attention with Linear Complexity",
        "abstract": "Self-attention can be approximated by a low-rank matrix. Linformer projects keys and values "
        "to a fixed length, so attention costs linear time and memory in the sequence length.",
    },
    {
        "id": "lidar-mae",
        "title": "Masked Autoencoder for Self-Supervised Pre-training on Lidar Point Clouds",
        "abstract": "We mask voxels of lidar point clouds and train an autoencoder to reconstruct them. "
        "Masking 70 percent of the voxels gives the best detection accuracy after fine-tuning.",
    },
    {
        "id": "speech-ctc",
        "title": "Streaming Speech Recognition with Transformer Transducers",
        "abstract": "A transformer transducer recognises speech in a streaming fashion with limited look-ahead. "
        "Word error rate on LibriSpeech is 2.4 percent on test-clean.",
    },
    {
        "id": "graph-mol",
        "title": "Graph Neural Networks for Molecule Property Prediction",
        "abstract": "Graph neural networks predict the properties of molecules from their structure.",
    },
]


def write_corpus(folder: Path, papers: Sequence[dict[str, Any]] = FAKE_PAPERS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fake.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in papers) + "\n", encoding="utf-8")
    return path


def fake_settings(build: Callable[..., Settings], folder: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "chroma_path": folder / "chroma",
        "collection": "fake_papers",
        "corpus_paths": [write_corpus(folder)],
        # The logistic model's weights are fitted to MiniLM; hashed-word cosines (a question sharing
        # no word scores 0) get the plain rule: covered from a dense similarity of 0.2.
        "coverage_model": "rules",
        "relevance_floor": 0.2,
        # Hashed-word vectors of a sentence and its paraphrase are less alike than MiniLM's.
        "claim_min_similarity": 0.3,
        "llm_backend": "extractive",
    }
    values.update(overrides)
    return build(**values)


def fake_services(settings: Settings, backend: ScriptedBackend | None = None) -> Services:
    """The real pipeline over ``settings``' store (ingested first, with the fakes)."""
    from ingest.pipeline import ingest

    embed = HashingEmbedding()
    ingest(settings, progress=False, embed_model=embed, count_tokens=count_words)
    return build_services(settings, embed_model=embed, backend=backend, load_llm=False)


# --- engines that fail in ways the real pipeline cannot be made to ---------------------------------
class BusyEngine:
    """Stands in for the query engine when every request is refused as busy (raised, not a fallback)."""

    backend_name = "local"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def answer(self, messages: Any, **_: object) -> Any:
        raise self.error

    async def events(self, messages: Any, **_: object) -> AsyncIterator[Any]:
        raise self.error
        yield  # pragma: no cover  (makes this an async generator)


class BrokenEngine:
    """Sends its sources and a piece of text, then fails with an unexpected exception."""

    backend_name = "local"
    SECRET = "secret internals /etc/passwd"

    async def answer(self, messages: Any, **_: object) -> Any:
        raise RuntimeError(self.SECRET)

    async def events(self, messages: Any, **_: object) -> AsyncIterator[Any]:
        from app.answering.types import DeltaEvent, SourcesEvent

        yield SourcesEvent([])
        yield DeltaEvent("partial ")
        raise RuntimeError(self.SECRET)


class SlowEngine:
    """A long answer, one piece every 50 ms; records whether its generator was closed."""

    backend_name = "local"

    def __init__(self) -> None:
        import threading

        self.pieces = 0
        self.closed = threading.Event()

    async def events(self, messages: Any, **_: object) -> AsyncIterator[Any]:
        from app.answering.types import AnswerResult, DeltaEvent, DoneEvent, SourcesEvent

        try:
            yield SourcesEvent([])
            for i in range(2000):
                await asyncio.sleep(0.05)
                self.pieces += 1
                yield DeltaEvent(f"piece {i} ")
            yield DoneEvent(AnswerResult(answer="", mode="hybrid", backend="local", query="q"))
        finally:
            self.closed.set()


def with_backend(services: Services, backend: Any, **settings_overrides: object) -> Services:
    """The same store and retriever, answered by ``backend`` (e.g. a :class:`ScriptedBackend`)."""
    import dataclasses

    from app.answering.engine import PaperQAQueryEngine
    from app.answering.pipeline import Answerer

    settings = (
        services.settings.model_copy(update=settings_overrides) if settings_overrides else services.settings
    )
    answerer = Answerer(
        settings, services.retriever, backend, services.prompts, services.engine.answerer.evidence
    )
    return dataclasses.replace(
        services, settings=settings, backend=backend, engine=PaperQAQueryEngine(answerer=answerer)
    )


def with_engine(services: Services, engine: Any) -> Services:
    """The same services with another query engine (one of the failing engines above)."""
    import dataclasses

    return dataclasses.replace(services, engine=engine)
