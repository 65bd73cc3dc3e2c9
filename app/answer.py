"""Question in, cited answer out: condense -> retrieve -> relevance floor -> generate -> check citations.

:meth:`Answerer.events` is the one pipeline. It yields, in order: a :class:`SourcesEvent` (what was
retrieved), :class:`DeltaEvent` text pieces (already citation-checked), at most one
:class:`ErrorEvent` (the LLM failed mid-way; an extractive answer follows), and a final
:class:`DoneEvent` with the structured :class:`AnswerResult`. :meth:`Answerer.answer` runs the same
pipeline without streaming (one ``complete`` call) and returns the result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.citations import CitationStream, finalize
from app.extractive import extractive_answer, terms
from app.llm import ChatBackend, LLMBusy, LLMError, Message, Usage
from app.prompts import Prompts
from app.retrieval import PaperHit, RetrievalResult, Retriever
from app.settings import RetrievalMode, Settings
from app.store import store_errors

log = logging.getLogger(__name__)

HISTORY_CHARS = 400  # each earlier turn shown to the model is cut to this


# --- results ----------------------------------------------------------------------------------
class Source(BaseModel):
    """A retrieved paper as numbered in the prompt."""

    n: int
    paper_id: str
    title: str
    passage: str
    score: float
    similarity: float | None = None
    url: str | None = None


class Citation(BaseModel):
    """A source the answer cites; ``marker`` is the ``[n]`` used in the answer text."""

    marker: int
    paper_id: str
    title: str
    passage: str
    score: float
    url: str | None = None


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    counted_by: Literal["backend", "tiktoken", "none"] = "none"


class Timings(BaseModel):
    condense_ms: float = 0.0
    retrieve_ms: float = 0.0
    generate_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0


class AnswerResult(BaseModel):
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    refused: bool = False
    mode: RetrievalMode
    backend: str
    model: str | None = None
    query: str
    dropped_citations: int = 0
    fallback_reason: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    timings: Timings = Field(default_factory=Timings)


@dataclass(frozen=True)
class SourcesEvent:
    sources: list[Source]


@dataclass(frozen=True)
class DeltaEvent:
    text: str


@dataclass(frozen=True)
class ErrorEvent:
    message: str


@dataclass(frozen=True)
class DoneEvent:
    result: AnswerResult


Event = SourcesEvent | DeltaEvent | ErrorEvent | DoneEvent


# --- pure helpers -----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _encoding():
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def truncate_tokens(text: str, budget: int) -> str:
    tokens = _encoding().encode(text, disallowed_special=())
    if len(tokens) <= budget:
        return text
    return _encoding().decode(tokens[: max(budget, 0)]).rstrip() + " …"


def build_sources(hits: Sequence[PaperHit], budget: int) -> list[Source]:
    """Number the papers and fit their best passages into ``budget`` tiktoken tokens in all.

    Each source gets an equal share, so a long first passage cannot crowd out the others; a
    source that would get almost nothing is left out rather than shown as a stub.
    """
    if not hits:
        return []
    share = budget // len(hits)
    sources: list[Source] = []
    for hit in hits:
        header = count_tokens(f"[{len(sources) + 1}] {hit.title}: ")
        room = share - header
        if room < 24:
            continue
        passage = " … ".join(p.text for p in hit.passages)
        sources.append(
            Source(
                n=len(sources) + 1,
                paper_id=hit.paper_id,
                title=hit.title,
                passage=truncate_tokens(passage, room),
                score=hit.score,
                similarity=hit.best_dense,
                url=str(hit.metadata["url"]) if hit.metadata.get("url") else None,
            )
        )
    return sources


def render_sources(sources: Sequence[Source]) -> str:
    return "\n\n".join(f"[{s.n}] {s.title}: {s.passage}" for s in sources)


def standalone_queries(messages: Sequence[Message]) -> list[str]:
    """The raw last question first, then (for a follow-up) the previous user turn joined to it.

    Retrieval fuses both rankings, so a follow-up can never lose what the raw question finds.
    """
    question = messages[-1]["content"].strip()
    earlier = [m["content"].strip() for m in messages[:-1] if m["role"] == "user"]
    if not earlier:
        return [question]
    return [question, f"{earlier[-1]} {question}"]


def query_weights(queries: Sequence[str], raw_weight: float, full_weight_terms: int) -> list[float]:
    """Fusion weights of ``standalone_queries``: alone, the question counts fully; in a follow-up
    its raw text counts ``raw_weight``, scaled down when it says little by itself.

    A vague follow-up ("What does it mask?": one content word) leans on its context: with fewer
    than ``full_weight_terms`` content words its raw rankings count proportionally less, so they
    cannot outvote the standalone question that names the topic.
    """
    if len(queries) == 1:
        return [1.0]
    own = len(terms(queries[0]))
    share = 1.0 if full_weight_terms <= 0 else min(1.0, own / full_weight_terms)
    return [raw_weight * share] + [1.0] * (len(queries) - 1)


def render_history(messages: Sequence[Message]) -> str:
    return "\n".join(
        f"{m['role']}: {m['content'][:HISTORY_CHARS]}" for m in messages if m["role"] != "system"
    )


def build_messages(
    prompts: Prompts, sources: Sequence[Source], messages: Sequence[Message]
) -> list[Message]:
    history = [
        {"role": m["role"], "content": m["content"][:HISTORY_CHARS]}
        for m in messages[:-1][-2:]
        if m["role"] in ("user", "assistant")
    ]
    user = prompts.answer.format(
        sources=render_sources(sources), question=messages[-1]["content"].strip()
    )
    return [{"role": "system", "content": prompts.system}, *history, {"role": "user", "content": user}]


def make_citations(sources: Sequence[Source], cited: Sequence[int]) -> list[Citation]:
    return [
        Citation(
            marker=marker,
            paper_id=sources[index].paper_id,
            title=sources[index].title,
            passage=sources[index].passage,
            score=sources[index].score,
            url=sources[index].url,
        )
        for marker, index in enumerate(cited, start=1)
    ]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


# --- the pipeline -----------------------------------------------------------------------------
class Answerer:
    """Loaded once; safe to share between concurrent requests."""

    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        backend: ChatBackend | None,
        prompts: Prompts,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.backend = backend
        self.prompts = prompts

    @property
    def backend_name(self) -> str:
        return self.backend.name if self.backend else "extractive"

    async def _condense(self, messages: Sequence[Message]) -> list[str]:
        queries = standalone_queries(messages)
        if (
            len(queries) == 1
            or self.settings.condense_mode == "off"
            or self.settings.condense_mode == "concat"
            or self.backend is None
        ):
            return queries[:1] if self.settings.condense_mode == "off" else queries
        prompt = self.prompts.condense.format(
            history=render_history(messages[:-1]), question=messages[-1]["content"].strip()
        )
        try:
            async with asyncio.timeout(self.settings.llm_timeout_s):
                rewritten = await self.backend.complete([{"role": "user", "content": prompt}], Usage())
        except (LLMError, TimeoutError):
            return queries
        rewritten = rewritten.strip().splitlines()[0].strip() if rewritten.strip() else ""
        # The raw question stays first: the rewrite can add to retrieval, never replace it.
        return [queries[0], rewritten] if rewritten else queries

    def query_weights(self, queries: Sequence[str]) -> list[float]:
        """The raw question counts fully alone; beside its standalone form, it counts less."""
        return query_weights(
            queries, self.settings.followup_raw_weight, self.settings.followup_full_weight_terms
        )

    async def retrieve(
        self, queries: Sequence[str], mode: RetrievalMode | None, top_k: int | None
    ) -> RetrievalResult:
        with store_errors(self.settings):
            return await run_in_threadpool(
                self.retriever.search, list(queries), mode, top_k, self.query_weights(queries)
            )

    def is_covered(self, retrieval: RetrievalResult) -> bool:
        return bool(retrieval.hits) and retrieval.top_similarity >= self.settings.relevance_floor

    async def events(
        self,
        messages: Sequence[Message],
        *,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        stream: bool = True,
    ) -> AsyncIterator[Event]:
        started = time.perf_counter()
        timings = Timings()
        queries = await self._condense(messages)
        timings.condense_ms = _ms(started)

        t0 = time.perf_counter()
        retrieval = await self.retrieve(queries, mode, top_k)
        timings.retrieve_ms = _ms(t0)
        base = {"mode": retrieval.mode, "query": queries[-1], "model": self._model_name()}

        if not self.is_covered(retrieval):
            yield SourcesEvent([])
            timings.total_ms = _ms(started)
            yield DoneEvent(
                AnswerResult(
                    answer=self.prompts.no_answer,
                    refused=True,
                    backend="none",
                    timings=timings,
                    **base,
                )
            )
            return

        sources = build_sources(retrieval.hits, self.settings.context_token_budget)
        yield SourcesEvent(sources)
        titles = [s.title for s in sources]
        question = messages[-1]["content"].strip()

        t0 = time.perf_counter()
        raw, usage, fallback, backend = "", Usage(), None, self.backend_name
        llm_messages = build_messages(self.prompts, sources, messages)
        if self.settings.debug:  # whole prompts only when debugging (PAPERQA_DEBUG)
            log.info("prompt: %s", json.dumps(llm_messages, ensure_ascii=False))
        if self.backend is not None:
            checker = CitationStream(len(sources))
            parts: list[str] = []
            deadline = time.monotonic() + self.settings.llm_timeout_s
            try:
                if stream:
                    # The deadline is applied to each wait for the model, never across a yield:
                    # time spent by the consumer (e.g. a slow client) is not the model's.
                    pieces = self.backend.stream(llm_messages, usage)
                    try:
                        while True:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                raise TimeoutError
                            try:
                                delta = await asyncio.wait_for(anext(pieces), remaining)
                            except StopAsyncIteration:
                                break
                            if timings.first_token_ms is None:
                                timings.first_token_ms = _ms(started)
                            parts.append(delta)
                            clean = checker.feed(delta)
                            if clean:
                                yield DeltaEvent(clean)
                    finally:
                        await pieces.aclose()
                    tail = checker.close()
                    if tail:
                        yield DeltaEvent(tail)
                else:
                    parts.append(
                        await asyncio.wait_for(
                            self.backend.complete(llm_messages, usage), self.settings.llm_timeout_s
                        )
                    )
                raw = "".join(parts)
                if not raw.strip():
                    fallback = "the model returned an empty reply"
            except TimeoutError:
                fallback = f"the model did not finish within {self.settings.llm_timeout_s:g} s"
            except LLMError as exc:  # LLMBusy included
                fallback = str(exc)
            if fallback is not None:
                backend = "extractive"
                if stream:
                    yield ErrorEvent(f"{fallback}; showing an extractive answer instead")
        if backend == "extractive":
            raw = extractive_answer(question, [s.passage for s in sources])
        timings.generate_ms = _ms(t0)

        final = finalize(raw, titles, [s.passage for s in sources])
        if backend == "extractive" and stream:
            yield DeltaEvent(final.text)
        timings.total_ms = _ms(started)
        yield DoneEvent(
            AnswerResult(
                answer=final.text,
                citations=make_citations(sources, final.cited),
                sources=sources,
                backend=backend,
                dropped_citations=final.dropped,
                fallback_reason=fallback,
                usage=self._usage(usage, llm_messages, raw, backend),
                timings=timings,
                **base,
            )
        )

    def _model_name(self) -> str | None:
        return self.backend.model if self.backend else None

    @staticmethod
    def _usage(usage: Usage, messages: Sequence[Message], raw: str, backend: str) -> TokenUsage:
        if backend == "extractive":
            return TokenUsage(counted_by="none")
        if usage.prompt_tokens is not None and usage.completion_tokens is not None:
            return TokenUsage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.prompt_tokens + usage.completion_tokens,
                counted_by="backend",
            )
        prompt = sum(count_tokens(m["content"]) for m in messages)
        completion = count_tokens(raw)
        return TokenUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            counted_by="tiktoken",
        )

    async def answer(
        self,
        messages: Sequence[Message],
        *,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
    ) -> AnswerResult:
        result: AnswerResult | None = None
        async for event in self.events(messages, top_k=top_k, mode=mode, stream=False):
            if isinstance(event, DoneEvent):
                result = event.result
        assert result is not None  # events() always ends with DoneEvent
        return result
