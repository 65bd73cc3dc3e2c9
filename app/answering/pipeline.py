"""Question in, cited answer out: condense -> retrieve -> coverage -> generate -> check citations.

:meth:`Answerer.events` is the one pipeline; it yields the events of :mod:`app.answering.types`.
:meth:`Answerer.answer` runs the same pipeline without streaming (one ``complete`` call).
:class:`app.answering.engine.PaperQAQueryEngine` puts it behind LlamaIndex's query-engine interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from starlette.concurrency import run_in_threadpool

from app.answering.citations import CitationStream, finalize
from app.answering.condense import condense, weights_for
from app.answering.context import build_messages, build_sources, count_tokens, make_citations
from app.answering.deadline import within_deadline
from app.answering.extractive import extractive_answer
from app.answering.llm import ChatBackend, Usage
from app.answering.prompts import Prompts
from app.answering.types import (
    AnswerResult,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    SourcesEvent,
    Timings,
    TokenUsage,
)
from app.core.errors import LLMError
from app.core.settings import RetrievalMode, Settings
from app.core.store import store_errors
from app.retrieval.coverage import Coverage, CoverageModel, coverage_of, suggestions_for
from app.retrieval.queries import Turn
from app.retrieval.search import PaperRetriever
from app.retrieval.types import RetrievalResult

log = logging.getLogger(__name__)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


class Answerer:
    """Loaded once; safe to share between concurrent requests."""

    def __init__(
        self,
        settings: Settings,
        retriever: PaperRetriever,
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

    @property
    def model_name(self) -> str | None:
        return self.backend.model if self.backend else None

    async def queries(self, messages: Sequence[Turn]) -> list[str]:
        """The retrieval queries of a conversation (the service's condensing rule)."""
        return await condense(messages, self.settings, self.backend, self.prompts)

    async def retrieve(
        self, queries: Sequence[str], mode: RetrievalMode | None, top_k: int | None
    ) -> RetrievalResult:
        with store_errors(self.settings):
            return await run_in_threadpool(
                self.retriever.search, list(queries), mode, top_k, weights_for(queries, self.settings)
            )

    def coverage(self, retrieval: RetrievalResult) -> Coverage:
        """The service's coverage decision (the same function the evaluation calls)."""
        return coverage_of(retrieval, CoverageModel.from_settings(self.settings))

    async def events(
        self,
        messages: Sequence[Turn],
        *,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        stream: bool = True,
    ) -> AsyncGenerator[Event, None]:
        started = time.perf_counter()
        timings = Timings()
        queries = await self.queries(messages)
        timings.condense_ms = _ms(started)

        t0 = time.perf_counter()
        retrieval = await self.retrieve(queries, mode, top_k)
        timings.retrieve_ms = _ms(t0)
        base = {"mode": retrieval.mode, "query": queries[-1], "model": self.model_name}

        coverage = self.coverage(retrieval)
        if not coverage.covered:
            yield SourcesEvent([])
            timings.total_ms = _ms(started)
            yield DoneEvent(
                AnswerResult(
                    answer=self.prompts.no_answer,
                    refused=True,
                    coverage=coverage.reason,
                    suggestions=suggestions_for(retrieval, self.settings.suggestions),
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
                    # Closed explicitly when the consumer goes away: that stops generation.
                    pieces = within_deadline(self.backend.stream(llm_messages, usage), deadline)
                    async with aclosing(pieces):
                        async for delta in pieces:
                            if timings.first_token_ms is None:
                                timings.first_token_ms = _ms(started)
                            parts.append(delta)
                            clean = checker.feed(delta)
                            if clean:
                                yield DeltaEvent(clean)
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
                coverage=coverage.reason,
                dropped_citations=final.dropped,
                fallback_reason=fallback,
                usage=token_usage(usage, llm_messages, raw, backend),
                timings=timings,
                **base,
            )
        )

    async def answer(
        self,
        messages: Sequence[Turn],
        *,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
    ) -> AnswerResult:
        result: AnswerResult | None = None
        async for event in self.events(messages, top_k=top_k, mode=mode, stream=False):
            if isinstance(event, DoneEvent):
                result = event.result
        if result is None:  # pragma: no cover - events() always ends with DoneEvent
            raise RuntimeError("the answer pipeline ended without a result")
        return result


def token_usage(usage: Usage, messages: Sequence[Turn], raw: str, backend: str) -> TokenUsage:
    """The backend's own counts when it gave them, else tiktoken's; none for extractive answers."""
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
