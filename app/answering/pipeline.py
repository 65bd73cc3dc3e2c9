"""Question in, cited answer out: condense -> retrieve -> coverage -> evidence -> answer (a
strategy, every sentence checked) -> citations.

:meth:`Answerer.events` is the one pipeline; it yields the events of :mod:`app.answering.types`.
:meth:`Answerer.answer` runs the same pipeline without streaming (one ``complete`` call).
:class:`app.answering.engine.PaperQAQueryEngine` puts it behind LlamaIndex's query-engine interface.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.answering.citations import Finalized, finalize, tidy
from app.answering.claims import AnswerSentence, PaperNames, Verdict, names_verdict
from app.answering.compose import papers_to_read, select_papers
from app.answering.condense import condense, context_for, weights_for
from app.answering.context import make_citations, sources_from_evidence
from app.answering.evidence import EvidenceFinder, PaperEvidence
from app.answering.followups import about_previous, previous_papers
from app.answering.llm import ChatBackend
from app.answering.prompts import Prompts
from app.answering.strategies import (
    AnswerContext,
    ClaimChecker,
    Embed,
    compose,
    extract,
    generate,
    resolve_strategy,
)
from app.answering.types import (
    AnswerResult,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    SourcesEvent,
    Timings,
    TokenUsage,
    UnsupportedSentence,
)
from app.core.errors import LLMError
from app.core.names import NameIndex
from app.core.settings import RetrievalMode, Settings
from app.core.store import store_errors
from app.retrieval.coverage import Coverage, CoverageModel, coverage_of, suggestions_for
from app.retrieval.queries import Turn
from app.retrieval.search import PaperRetriever
from app.retrieval.types import RetrievalResult

log = logging.getLogger(__name__)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


class NamedClaimChecker(ClaimChecker):
    """The claim check, and first: a sentence names no paper but the ones it cites
    (:func:`app.answering.claims.names_verdict`: the corpus's names, the sources' titles, any
    title-like name, "X et al.", unless the cited abstract itself holds it). Every strategy checks
    its sentences with this before the user sees them (the streamed ones included), and the
    pipeline checks the finished answer with it again; a failing sentence is replaced or dropped
    and reported in ``unsupported``."""

    def __init__(
        self,
        evidence: Sequence[PaperEvidence],
        embed: Embed,
        min_similarity: float,
        names: NameIndex | None,
    ) -> None:
        super().__init__(evidence, embed, min_similarity)
        self.names = PaperNames.of(
            names, [e.title for e in self.evidence], [e.abstract for e in self.evidence]
        )

    def verdicts(self, sentences: Sequence[AnswerSentence]) -> list[Verdict]:
        named = [self._names_verdict(s) for s in sentences]
        rest = iter(super().verdicts([s for s, v in zip(sentences, named, strict=True) if v is None]))
        return [v if v is not None else next(rest) for v in named]

    def _names_verdict(self, sentence: AnswerSentence) -> Verdict | None:
        cited = [self.evidence[m - 1] for m in sentence.markers if 1 <= m <= len(self.evidence)]
        if not cited:  # the claim check's own first rule: it cites no retrieved paper
            return None
        return names_verdict(sentence.text, [f"{e.title}\n{e.abstract}" for e in cited], self.names)


class Answerer:
    """Loaded once; safe to share between concurrent requests."""

    def __init__(
        self,
        settings: Settings,
        retriever: PaperRetriever,
        backend: ChatBackend | None,
        prompts: Prompts,
        evidence: EvidenceFinder,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.backend = backend
        self.prompts = prompts
        self.evidence = evidence

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
        self,
        queries: Sequence[str],
        mode: RetrievalMode | None,
        top_k: int | None,
        messages: Sequence[Turn] = (),
    ) -> RetrievalResult:
        """Search with ``queries``; a conversation's ``messages`` add their ranking-only queries
        (:func:`app.answering.condense.context_for`)."""
        context = context_for(messages, self.settings) if messages else []
        with store_errors(self.settings):
            return await run_in_threadpool(
                self.retriever.search,
                list(queries),
                mode,
                top_k,
                weights_for(queries, self.settings),
                context,
            )

    def _papers_to_read(self, messages: Sequence[Turn]) -> int:
        question = str(messages[-1]["content"]) if messages else ""
        return papers_to_read(question, self.settings.top_k, self.settings.top_k_many)

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
        retrieval = await self.retrieve(queries, mode, top_k or self._papers_to_read(messages), messages)
        timings.retrieve_ms = _ms(t0)
        base = {"mode": retrieval.mode, "query": queries[-1], "model": self.model_name}

        coverage = self.coverage(retrieval)
        question = messages[-1]["content"].strip()
        previous = previous_papers(
            messages, self.retriever.lexical.names, [(h.paper_id, h.title) for h in retrieval.hits]
        )
        if not coverage.covered and about_previous(question, previous, [h.paper_id for h in retrieval.hits]):
            coverage = Coverage(True, "follow-up")  # about the paper just discussed, found again
        if not coverage.covered:
            yield SourcesEvent([])
            timings.total_ms = _ms(started)
            yield DoneEvent(
                self._refusal(retrieval, coverage.reason, backend="none", timings=timings, **base)
            )
            return

        t0 = time.perf_counter()
        found = await self.find_evidence(question, retrieval)
        strategy = resolve_strategy(self.settings, self.backend_name) if self.backend else "extract"
        chosen = select_papers(
            question,
            found,
            retrieval.signals.named,
            self.settings.answer_paper_ratio,
            self.settings.answer_paper_ratio_default,
            previous,
            self.settings.followup_focus_ratio,
        )
        order = list(range(len(found)))
        if strategy != "generate":
            # The papers a code-laid answer covers come first, so its markers run 1..k as written.
            order = [found.index(e) for e in chosen] + [i for i, e in enumerate(found) if e not in chosen]
        evidence = [found[i] for i in order]
        sources = sources_from_evidence(
            evidence, [retrieval.hits[i] for i in order], self.settings.context_token_budget
        )
        yield SourcesEvent(sources)
        selected = [order.index(found.index(e)) + 1 for e in chosen]
        checker = NamedClaimChecker(
            evidence, self.embed_texts, self.settings.claim_min_similarity, self.retriever.lexical.names
        )
        ctx = AnswerContext(
            question, messages, sources, evidence, selected, checker, self.prompts, self.settings
        )
        backend_name = self.backend_name if strategy != "extract" else "extractive"
        fallback: str | None = None
        parts: list[str] = []
        deadline = time.monotonic() + self.settings.llm_timeout_s
        if self.settings.debug:  # whole prompts only when debugging (PAPERQA_DEBUG)
            log.info("question: %s; strategy %s; sources %s", question, strategy, [s.title for s in sources])
        try:
            pieces = self._run_strategy(strategy, ctx, deadline, stream)
            async with aclosing(pieces):
                async for piece in pieces:
                    if timings.first_token_ms is None:
                        timings.first_token_ms = _ms(started)
                    parts.append(piece)
                    if stream:
                        yield DeltaEvent(piece)
            if strategy != "extract" and not "".join(parts).strip() and not ctx.unsupported:
                fallback = "the model returned an empty reply"
        except TimeoutError:
            fallback = f"the model did not finish within {self.settings.llm_timeout_s:g} s"
        except LLMError as exc:  # LLMBusy included
            fallback = str(exc)
        if fallback is not None or not "".join(parts).strip():
            if fallback is not None:
                backend_name = "extractive"
                if stream:
                    yield ErrorEvent(f"{fallback}; showing an extractive answer instead")
            if fallback is not None:  # the model failed: the evidence, as the extract strategy lays it out
                ctx.unsupported, ctx.trimmed, strategy = [], False, "extract"
            # else the model wrote nothing that passed the check (all reported): its papers' evidence
            parts = [piece async for piece in extract(ctx)]
            if stream:
                yield DeltaEvent("".join(parts))
        timings.generate_ms = _ms(t0)

        # Whole abstracts: a title quoted in one but naming no source is never repeated (finalize).
        final = finalize("".join(parts).strip(), [s.title for s in sources], [e.abstract for e in evidence])
        text, cited, dropped = await self._final_check(final, ctx)
        timings.total_ms = _ms(started)
        if not text.strip():
            # Not one sentence passed the claim check, not even the evidence: never an empty answer
            # presented as one; a refusal that says so, the papers found offered as suggestions
            # (the sources read stay listed, as the stream already sent them).
            yield DoneEvent(
                self._refusal(
                    retrieval,
                    "no sentence of the papers found passed the claim check",
                    sources=sources,
                    backend=backend_name,
                    strategy=strategy,
                    unsupported=ctx.unsupported,
                    fallback_reason=fallback,
                    usage=token_usage(ctx, strategy, backend_name),
                    timings=timings,
                    **base,
                )
            )
            return
        yield DoneEvent(
            AnswerResult(
                answer=text,
                citations=make_citations(sources, cited),
                sources=sources,
                backend=backend_name,
                coverage=coverage.reason,
                dropped_citations=final.dropped + dropped + ctx.dropped_markers,
                strategy=strategy,
                unsupported=ctx.unsupported,
                trimmed=ctx.trimmed,
                fallback_reason=fallback,
                usage=token_usage(ctx, strategy, backend_name),
                timings=timings,
                **base,
            )
        )

    def _refusal(self, retrieval: RetrievalResult, reason: str, **fields: Any) -> AnswerResult:
        """The refused answer: the no-answer text, why, and the closest papers as suggestions."""
        return AnswerResult(
            answer=self.prompts.no_answer,
            refused=True,
            coverage=reason,
            suggestions=suggestions_for(retrieval, self.settings.suggestions),
            **fields,
        )

    async def find_evidence(self, question: str, retrieval: RetrievalResult) -> list[PaperEvidence]:
        """The evidence of every retrieved paper (abstracts from the store, sentence embeddings)."""
        with store_errors(self.settings):
            return await run_in_threadpool(self.evidence.find, question, retrieval.hits)

    def embed_texts(self, texts: list[str]) -> list[list[float]]:
        return self.evidence.embed(texts)

    def _run_strategy(
        self, strategy: str, ctx: AnswerContext, deadline: float, stream: bool
    ) -> AsyncGenerator[str, None]:
        if strategy == "extract" or self.backend is None:
            return extract(ctx)
        if strategy == "compose":
            return compose(ctx, self.backend, deadline)
        return generate(ctx, self.backend, deadline, stream=stream)

    async def _final_check(self, final: Finalized, ctx: AnswerContext) -> tuple[str, list[int], int]:
        """The finished answer checked once more, sentence by sentence, with its final numbering
        (``[m]`` is source ``final.cited[m - 1]``): nothing reaches the user unchecked, whatever
        the title scrubbing did to the text. A sentence that fails now is dropped and reported."""
        renumbered = re.sub(
            r"\[(\d+)\]",
            lambda m: (
                f"[{final.cited[int(m.group(1)) - 1] + 1}]" if 0 < int(m.group(1)) <= len(final.cited) else ""
            ),
            final.text,
        )
        results = await run_in_threadpool(ctx.checker.check_text, renumbered)
        failed = [(s, v) for s, v in results if not v.supported]
        if not failed:
            return final.text, final.cited, 0
        keep = renumbered
        for sentence, verdict in failed:
            ctx.unsupported.append(
                UnsupportedSentence(sentence=sentence.text, reason=verdict.reason, action="dropped")
            )
            keep = keep.replace(sentence.text, "")
        again = finalize(tidy(keep), [s.title for s in ctx.sources], [])
        return again.text, again.cited, again.dropped

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


def token_usage(ctx: AnswerContext, strategy: str, backend: str) -> TokenUsage:
    """The model's tokens over the answer's calls (the backend's counts, else tiktoken's); none
    when no model wrote the answer."""
    usage = ctx.usage
    if backend == "extractive" or usage.prompt_tokens is None:
        return TokenUsage(counted_by="none")
    prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
    counted_by = "backend" if ctx.counted_by == "backend" else "tiktoken"
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        counted_by=counted_by,
    )
