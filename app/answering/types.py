"""What an answer is made of: sources, citations, usage, timings, the result, and the stream events.

The pipeline yields, in order: a :class:`SourcesEvent` (what was retrieved), :class:`DeltaEvent`
text pieces (already citation-checked), at most one :class:`ErrorEvent` (the LLM failed mid-way; an
extractive answer follows), and a final :class:`DoneEvent` with the structured :class:`AnswerResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from app.core.settings import RetrievalMode
from app.retrieval.types import Suggestion


class EvidenceSpan(BaseModel):
    """A sentence of a paper's abstract that answers the question: ``abstract[start:end] == text``."""

    text: str
    start: int
    end: int


class UnsupportedSentence(BaseModel):
    """A sentence the claim check refused (app/answering/claims.py), and what was done with it."""

    sentence: str
    reason: str
    action: Literal["replaced", "dropped"]
    replacement: str | None = None


class Source(BaseModel):
    """A retrieved paper as numbered in the prompt, with the evidence found in its abstract."""

    n: int
    paper_id: str
    title: str
    passage: str
    score: float
    similarity: float | None = None
    url: str | None = None
    evidence: list[EvidenceSpan] = Field(default_factory=list)


class Citation(BaseModel):
    """A source the answer cites; ``marker`` is the ``[n]`` used in the answer text."""

    marker: int
    paper_id: str
    title: str
    passage: str
    score: float
    url: str | None = None
    evidence: list[EvidenceSpan] = Field(default_factory=list)  # the sentences behind the citation


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
    coverage: str = ""  # why the question is covered ("named", "similar", "terms") or why not
    suggestions: list[Suggestion] = Field(default_factory=list)  # only when refused
    mode: RetrievalMode
    backend: str
    model: str | None = None
    query: str
    dropped_citations: int = 0
    strategy: str = ""  # how the answer was written: extract, compose or generate
    unsupported: list[UnsupportedSentence] = Field(default_factory=list)
    trimmed: bool = False  # the model's reply was cut mid-sentence and trimmed to a whole one
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
