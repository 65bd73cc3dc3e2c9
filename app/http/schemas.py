"""Request and response bodies of the HTTP API (pydantic models; they also make the OpenAPI docs).

Checks that need no settings live here (types, roles, ``top_k`` range, a non-blank question).
The limits that come from the settings (number of messages, characters per message) are checked by
:func:`app.http.conversation.check_conversation`, since a model cannot see the settings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.answering.types import AnswerResult, Citation, Source
from app.core.papers import StoredPaper as Paper
from app.core.settings import RetrievalMode
from app.retrieval.queries import question_problem
from app.retrieval.types import Suggestion

Role = Literal["system", "user", "assistant"]
TOP_K_MAX = 50  # same bound as Settings.top_k


# --- /chat -------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


class ChatRequest(BaseModel):
    """A conversation: earlier turns first, the question to answer last (``role: user``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": "Which papers quantize vision transformers after training?",
                        }
                    ],
                    "stream": False,
                }
            ]
        },
    )

    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    top_k: int | None = Field(None, ge=1, le=TOP_K_MAX)
    mode: RetrievalMode | None = None

    @field_validator("messages")
    @classmethod
    def _last_is_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        problem = question_problem([(m.role, m.content) for m in messages])
        if problem:
            raise ValueError(problem)
        return messages


class StreamError(BaseModel):
    """Data of the SSE ``error`` event."""

    message: str


class StreamDelta(BaseModel):
    """Data of the SSE ``delta`` event."""

    text: str


# --- /v1/chat/completions ----------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    # "developer" is what newer OpenAI clients send instead of "system".
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        if any(part.type != "text" for part in self.content):
            raise ValueError("only text content parts are supported")
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI request. ``max_tokens``/``temperature`` are accepted and ignored (the service's
    settings decide); ``top_k`` and ``mode`` may be sent as extra fields (``extra_body``)."""

    model_config = ConfigDict(extra="allow")

    model: str = "paperqa"
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_k: int | None = Field(None, ge=1, le=TOP_K_MAX)
    mode: RetrievalMode | None = None

    def plain_messages(self) -> list[ChatMessage]:
        """As :class:`ChatMessage` (``developer`` read as ``system``); raises ValueError."""
        out: list[ChatMessage] = []
        for message in self.messages:
            role = "system" if message.role == "developer" else message.role
            out.append(ChatMessage(role=role, content=message.text()))
        problem = question_problem([(m.role, m.content) for m in out])
        if problem:
            raise ValueError(problem)
        return out


# --- /papers, /search, /health -----------------------------------------------------------------
class SearchHit(BaseModel):
    rank: int
    paper_id: str
    title: str
    score: float
    similarity: float | None = None
    passage: str
    url: str | None = None


class SearchResponse(BaseModel):
    query: str
    mode: RetrievalMode
    top_similarity: float
    relevance_floor: float
    covered: bool
    coverage: str = Field(description="why the corpus covers the query (named, similar, terms), or why not")
    suggestions: list[Suggestion] = Field(
        default_factory=list, description="when not covered: the closest papers (not an answer)"
    )
    results: list[SearchHit]


class Health(BaseModel):
    ready: bool
    papers: int | None = None
    chunks: int | None = None
    embedding_model: str | None = None
    llm_backend: str | None = None
    llm_model: str | None = None
    collection: str | None = None
    store: Literal["embedded", "server"] | None = None


class ErrorBody(BaseModel):
    detail: Any


class LLMFailure(BaseModel):
    """503 from ``POST /chat`` when the configured LLM failed: the reason, and an extractive answer."""

    detail: str
    fallback: AnswerResult


__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatRequest",
    "Citation",
    "ErrorBody",
    "Health",
    "LLMFailure",
    "Paper",
    "SearchHit",
    "SearchResponse",
    "Source",
    "StreamDelta",
    "StreamError",
]
