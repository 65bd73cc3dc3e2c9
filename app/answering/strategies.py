"""The three answer strategies (``PAPERQA_ANSWER_STRATEGY``), each checked sentence by sentence.

- ``extract`` (no model): the answer is the evidence, paper by paper (:mod:`app.answering.compose`);
- ``compose``: the same layout, but for each paper the model turns its evidence into one sentence
  answering the question (one short prompt per paper, ``prompts/compose.md``); a sentence that
  fails the claim check is replaced by the paper's evidence;
- ``generate``: one model call over every source's evidence (``prompts/answer.md``), streamed; each
  sentence is checked as soon as it is complete, before the user sees it, and a reply cut by the
  token limit is trimmed to its last complete sentence.

Every strategy yields the answer's text in pieces that have passed the claim check
(:class:`ClaimChecker`); markers are source numbers (``[n]`` = the n-th source), renumbered by
:func:`app.answering.citations.finalize` afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from app.answering.citations import canonical_markers
from app.answering.claims import (
    AnswerSentence,
    Verdict,
    answer_sentences,
    claim_content,
    judge,
    text_similarity,
    trim_to_complete,
    without_markers,
)
from app.answering.compose import layout, paper_line, short_name, third_person
from app.answering.context import build_messages, count_tokens
from app.answering.deadline import within_deadline
from app.answering.evidence import PaperEvidence, cosine
from app.answering.llm import ChatBackend, Usage
from app.answering.prompts import Prompts
from app.answering.types import Source, UnsupportedSentence
from app.core.errors import LLMError
from app.core.settings import Settings
from app.core.text import sentence_spans
from app.retrieval.queries import Turn

Embed = Callable[[list[str]], list[list[float]]]
log = logging.getLogger(__name__)


class ClaimChecker:
    """Checks answer sentences against the papers they cite (``[n]`` = ``evidence[n - 1]``)."""

    def __init__(self, evidence: Sequence[PaperEvidence], embed: Embed, min_similarity: float) -> None:
        self.evidence = list(evidence)
        self._embed = embed
        self.min_similarity = min_similarity

    def verdicts(self, sentences: Sequence[AnswerSentence]) -> list[Verdict]:
        """One verdict per sentence (one embedding call for all). Blocking."""
        texts = [claim_content(s.text, self._names(s)) for s in sentences]
        vectors = self._embed(texts) if texts else []
        out = []
        for sentence, vector, text in zip(sentences, vectors, texts, strict=True):
            cited = [self.evidence[m - 1] for m in sentence.markers if 1 <= m <= len(self.evidence)]
            similarity = max((cosine(vector, v) for e in cited for v in e.vectors), default=None)
            if similarity is not None:  # a near copy of an evidence sentence is as close as it gets
                copied = text_similarity(text, [x.text for e in cited for x in e.sentences])
                similarity = max(similarity, copied)
            texts_cited = [f"{e.title}\n{e.abstract}" for e in cited]
            out.append(judge(sentence, len(self.evidence), texts_cited, similarity, self.min_similarity))
        return out

    def _names(self, sentence: AnswerSentence) -> list[str]:
        """The titles and short names of the papers a sentence cites."""
        cited = [self.evidence[m - 1] for m in sentence.markers if 1 <= m <= len(self.evidence)]
        return [n for e in cited for n in (e.title, short_name(e.title))]

    def check_text(self, text: str) -> list[tuple[AnswerSentence, Verdict]]:
        sentences = answer_sentences(text)
        return list(zip(sentences, self.verdicts(sentences), strict=True))


@dataclass
class AnswerContext:
    """What a strategy needs, and what it reports back (``unsupported``, ``trimmed``, ``usage``)."""

    question: str
    messages: Sequence[Turn]
    sources: list[Source]
    evidence: list[PaperEvidence]  # evidence[i] is sources[i]
    selected: list[int]  # source numbers the code-laid answers cover, in order
    checker: ClaimChecker
    prompts: Prompts
    settings: Settings
    usage: Usage = field(default_factory=Usage)
    unsupported: list[UnsupportedSentence] = field(default_factory=list)
    trimmed: bool = False
    counted_by: str = "none"  # who counted ``usage``: the backend, tiktoken, or nobody
    dropped_markers: int = 0  # citations of no retrieved paper, removed
    used_lines: set[int] = field(default_factory=set)

    def count(self, usage: Usage, prompt: Sequence[Turn], reply: str) -> None:
        """Add one model call's tokens: the backend's own counts, else tiktoken's."""
        if usage.prompt_tokens is not None and usage.completion_tokens is not None:
            counted = (usage.prompt_tokens, usage.completion_tokens)
            self.counted_by = "backend" if self.counted_by != "tiktoken" else "tiktoken"
        else:
            counted = (sum(count_tokens(m["content"]) for m in prompt), count_tokens(reply))
            self.counted_by = "tiktoken"
        self.usage.prompt_tokens = (self.usage.prompt_tokens or 0) + counted[0]
        self.usage.completion_tokens = (self.usage.completion_tokens or 0) + counted[1]

    def extract_line(self, number: int) -> str:
        """The evidence of source ``number`` as an answer line (the extract form)."""
        return paper_line(self.evidence[number - 1], number)


async def _checked_line(ctx: AnswerContext, line: str, fallback: str | None) -> str:
    """``line`` if every sentence passes; else ``fallback`` (reported), else the passing sentences."""
    results = await run_in_threadpool(ctx.checker.check_text, line)
    failed = [(s, v) for s, v in results if not v.supported]
    if not failed:
        return line
    if fallback is not None and fallback != line:
        for sentence, verdict in failed:
            ctx.unsupported.append(
                UnsupportedSentence(
                    sentence=sentence.text, reason=verdict.reason, action="replaced", replacement=fallback
                )
            )
        return await _checked_line(ctx, fallback, None)
    for sentence, verdict in failed:
        ctx.unsupported.append(
            UnsupportedSentence(sentence=sentence.text, reason=verdict.reason, action="dropped")
        )
    return " ".join(s.text for s, v in results if v.supported)


async def extract(ctx: AnswerContext) -> AsyncGenerator[str, None]:
    """The evidence, paper by paper (no model)."""
    lines = [ctx.extract_line(n) for n in ctx.selected]
    prefix = "- " if len(lines) > 1 else ""
    for index, line in enumerate(lines):
        checked = await _checked_line(ctx, line, None)
        if checked:
            yield ("\n" if index else "") + prefix + checked


def first_sentence(reply: str) -> str:
    """The model's first sentence, without any citation or list marker it added."""
    text = without_markers(reply.strip().lstrip("-*• ").strip())
    spans = sentence_spans(text)
    return text[spans[0][0] : spans[0][1]] if spans else ""


async def compose(ctx: AnswerContext, backend: ChatBackend, deadline: float) -> AsyncGenerator[str, None]:
    """Paper by paper: the model writes one sentence from the paper's evidence; a sentence that
    fails the claim check is replaced by the evidence itself."""
    prefix = "- " if len(ctx.selected) > 1 else ""
    for index, number in enumerate(ctx.selected):
        evidence = ctx.evidence[number - 1]
        prompt = ctx.prompts.compose.format(
            question=ctx.question,
            name=short_name(evidence.title),
            evidence=" ".join(third_person(s.text) for s in evidence.evidence),
        )
        if ctx.settings.debug:
            log.info("prompt: %s", json.dumps(prompt, ensure_ascii=False))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        usage = Usage()
        turns: list[Turn] = [{"role": "user", "content": prompt}]
        reply = await asyncio.wait_for(backend.complete(turns, usage), remaining)
        ctx.count(usage, turns, reply)
        sentence = first_sentence(reply)
        fallback = ctx.extract_line(number)
        line = paper_line(evidence, number, [sentence]) if sentence else fallback
        checked = await _checked_line(ctx, line, fallback)
        if checked:
            yield ("\n" if index else "") + prefix + checked


async def generate(
    ctx: AnswerContext, backend: ChatBackend, deadline: float, stream: bool = True
) -> AsyncGenerator[str, None]:
    """One model call over every source's evidence. Sentences are released once complete and
    checked; a failing one becomes its cited paper's evidence (once per paper) or is dropped."""
    messages = build_messages(ctx.prompts, ctx.sources, ctx.messages)
    if ctx.settings.debug:  # whole prompts only when debugging (PAPERQA_DEBUG)
        log.info("prompt: %s", json.dumps(messages, ensure_ascii=False))
    n_sources = len(ctx.sources)
    pending = ""
    usage = Usage()
    raw: list[str] = []

    async def release(text: str) -> AsyncGenerator[str, None]:
        for sentence in answer_sentences(text):
            normalised, dropped = canonical_markers(sentence.text, n_sources)
            ctx.dropped_markers += dropped
            if not without_markers(normalised):
                continue
            for checked, verdict in await run_in_threadpool(ctx.checker.check_text, normalised):
                if verdict.supported:
                    yield checked.text + " "
                    continue
                cited = [m for m in checked.markers if 1 <= m <= n_sources]
                replacement = None
                if cited and cited[0] not in ctx.used_lines:
                    replacement = ctx.extract_line(cited[0])
                    ctx.used_lines.add(cited[0])
                    # The cited paper's own evidence, checked too before it is streamed (an
                    # abstract may quote a title planted in it).
                    checks = (
                        await run_in_threadpool(ctx.checker.check_text, replacement) if replacement else []
                    )
                    if not all(v.supported for _, v in checks):
                        replacement = None
                ctx.unsupported.append(
                    UnsupportedSentence(
                        sentence=sentence.text,
                        reason=verdict.reason,
                        action="replaced" if replacement else "dropped",
                        replacement=replacement,
                    )
                )
                if replacement:
                    yield replacement + " "

    if stream:
        pieces = within_deadline(backend.stream(messages, usage), deadline)
        async with aclosing(pieces):
            async for delta in pieces:
                raw.append(delta)
                pending += delta
                spans = sentence_spans(pending)
                if len(spans) > 1:  # every sentence but the last is complete
                    cut = spans[-1][0]
                    async for piece in release(pending[:cut]):
                        yield piece
                    pending = pending[cut:]
    else:
        remaining = max(deadline - time.monotonic(), 0.001)
        pending = await asyncio.wait_for(backend.complete(messages, usage), remaining)
        raw.append(pending)
    ctx.count(usage, messages, "".join(raw))
    tail, cut = trim_to_complete(pending)
    if cut:
        ctx.trimmed = True
        dropped = pending.strip()[len(tail) :].strip()
        if dropped:
            ctx.unsupported.append(
                UnsupportedSentence(
                    sentence=dropped, reason="cut off mid-sentence by the token limit", action="dropped"
                )
            )
    async for piece in release(tail):
        yield piece


STRATEGIES = ("extract", "compose", "generate")


def resolve_strategy(settings: Settings, backend_name: str) -> str:
    """``auto``: the default the evaluation picked for each backend (docs/evaluation.md)."""
    if settings.answer_strategy != "auto":
        return settings.answer_strategy
    if backend_name == "extractive":
        return "extract"
    return DEFAULT_STRATEGY.get(backend_name, "generate")


# Chosen by `make eval` on dev (docs/evaluation.md, "Answer strategies"); `openai` is a strong model
# behind OPENAI_BASE_URL, which the evaluation here cannot run: generate, the one call it is for.
DEFAULT_STRATEGY = {"local": "extract", "openai": "generate"}

__all__ = [
    "STRATEGIES",
    "AnswerContext",
    "ClaimChecker",
    "LLMError",
    "compose",
    "extract",
    "generate",
    "layout",
    "resolve_strategy",
]
