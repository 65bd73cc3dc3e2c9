"""Request and response bodies of the HTTP API (pydantic models; they also make the OpenAPI docs).

Checks that need no settings live here (types, roles, ``top_k`` range, a non-blank question).
The limits that come from the settings (number of messages, characters per message) are checked by
:func:`app.http.conversation.check_conversation`, since a model cannot see the settings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from app.answering.types import AnswerResult, Citation, Source
from app.core.papers import StoredPaper as Paper
from app.core.settings import TOP_K_MAX, RetrievalMode, Settings
from app.core.text import NON_BLANK, clean_text
from app.retrieval.findings import SearchHit
from app.retrieval.queries import question_problem
from app.retrieval.types import Suggestion

Role = Literal["system", "user", "assistant"]
MAX_CONTENT_PARTS = 8  # text parts of one OpenAI message
# Read by :func:`request_schemas` and the app's OpenAPI document; the settings decide the real values.
DEFAULT_LIMITS = Settings.model_construct()


def _integral(value: Any) -> Any:
    """JSON Schema counts ``5.0`` as an integer (a number with no fraction): so does the service."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integers as JSON Schema means them, strict otherwise (no strings, no booleans, no 2.5).
# (The schema is spelled out: pydantic 2 writes the bounds of a validated int as "ge"/"le".)
TopK = Annotated[
    int,
    BeforeValidator(_integral),
    Ge(1),
    Le(TOP_K_MAX),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": TOP_K_MAX}),
]
Positive = Annotated[
    int, BeforeValidator(_integral), Ge(1), WithJsonSchema({"type": "integer", "minimum": 1})
]


def clean_strings(value: Any) -> Any:
    """Every string in a parsed JSON body, cleaned (:func:`app.core.text.clean_text`): JSON may carry
    a lone surrogate (``"\\ud800"``) or a NUL that no tokenizer, store or log accepts."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_strings(k): clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_strings(v) for v in value]
    return value


class StrictModel(BaseModel):
    """Part of a request body. Types are strict (``"stream": 0`` is not a boolean, ``"top_k": "5"``
    not an integer)."""

    model_config = ConfigDict(strict=True)


class RequestModel(StrictModel):
    """A whole request body: its strings (nested ones included) are cleaned once, before any other
    check, the same way on every route."""

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        return clean_strings(data)


# --- JSON Schema of the conversation rules -----------------------------------------------------
# Pydantic cannot say "every user message is non-blank, and there is one": these fragments state
# it in the OpenAPI document, with the limits of the running service (``request_schemas``); the
# rule itself is enforced by ``question_problem`` and ``app.http.conversation``.
def _text(max_chars: int, non_blank: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_chars}
    if non_blank:
        schema["pattern"] = NON_BLANK
    return schema


def chat_messages_schema(max_messages: int, max_chars: int) -> dict[str, Any]:
    def message(roles: list[str], non_blank: bool) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"role": {"enum": roles}, "content": _text(max_chars, non_blank)},
            "required": ["role", "content"],
            "additionalProperties": False,
        }

    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_messages,
        "items": {"anyOf": [message(["user"], True), message(["system", "assistant"], False)]},
        "contains": {"type": "object", "properties": {"role": {"const": "user"}}, "required": ["role"]},
        "description": "The conversation, oldest first. The question is the last `user` message "
        "(messages after it are ignored); every `user` message has some text (not only whitespace "
        "or control characters).",
    }


def openai_messages_schema(max_messages: int, max_chars: int) -> dict[str, Any]:
    def parts(non_blank: bool) -> dict[str, Any]:
        part = {
            "type": "object",
            "properties": {"type": {"const": "text"}, "text": _text(max_chars, False)},
            "required": ["type", "text"],
        }
        schema: dict[str, Any] = {"type": "array", "maxItems": MAX_CONTENT_PARTS, "items": part}
        if non_blank:
            schema["minItems"] = 1
            schema["contains"] = {"properties": {"text": {"pattern": NON_BLANK}}, "required": ["text"]}
        return schema

    user = {
        "type": "object",
        "properties": {
            "role": {"const": "user"},
            "content": {"anyOf": [_text(max_chars, True), parts(True)]},
        },
        "required": ["role", "content"],
    }
    other = {
        "type": "object",
        "properties": {
            "role": {"enum": ["system", "developer", "assistant"]},
            "content": {"anyOf": [_text(max_chars, False), parts(False), {"type": "null"}]},
        },
        "required": ["role"],
    }
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_messages,
        "items": {"anyOf": [user, other]},
        "contains": {"type": "object", "properties": {"role": {"const": "user"}}, "required": ["role"]},
        "description": "As OpenAI's, text only. The question is the last `user` message (messages "
        "after it are ignored); every `user` message has some text; a content list has at most "
        f"{MAX_CONTENT_PARTS} text parts, each within the length limit.",
    }


def request_schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """The ``messages`` schema of each request body, with ``settings``' limits."""
    return {
        "ChatRequest": chat_messages_schema(settings.max_messages, settings.max_message_chars),
        "ChatCompletionRequest": openai_messages_schema(settings.max_messages, settings.max_message_chars),
    }


# --- /chat -------------------------------------------------------------------------------------
class ChatMessage(StrictModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


class ChatRequest(RequestModel):
    """A conversation and how to answer it. The whole body is at most ``PAPERQA_MAX_BODY_BYTES``
    (413 past it)."""

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

    messages: Annotated[
        list[ChatMessage],
        WithJsonSchema(chat_messages_schema(DEFAULT_LIMITS.max_messages, DEFAULT_LIMITS.max_message_chars)),
    ] = Field(min_length=1)
    stream: bool = Field(False, description="answer as a `text/event-stream` (see the 200 response)")
    top_k: TopK | None = Field(None, description="papers to retrieve")
    mode: RetrievalMode | None = Field(None, description="retrieval mode (default: the service's)")

    @field_validator("messages")
    @classmethod
    def _has_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
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
class ContentPart(StrictModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class OpenAIMessage(StrictModel):
    model_config = ConfigDict(extra="allow")

    # "developer" is what newer OpenAI clients send instead of "system".
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)] | None = None

    def strings(self) -> list[str]:
        """The texts this message carries (the content, or each part's text)."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [self.content]
        return [part.text for part in self.content]

    def text(self) -> str:
        return "".join(self.strings())


class StreamOptions(StrictModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(RequestModel):
    """The OpenAI request. ``max_tokens``/``temperature`` are accepted and ignored (the service's
    settings decide); ``top_k`` and ``mode`` may be sent as extra fields (``extra_body``). The whole
    body is at most ``PAPERQA_MAX_BODY_BYTES`` (413 past it)."""

    model_config = ConfigDict(extra="allow")

    model: str = "paperqa"
    messages: Annotated[
        list[OpenAIMessage],
        WithJsonSchema(openai_messages_schema(DEFAULT_LIMITS.max_messages, DEFAULT_LIMITS.max_message_chars)),
    ] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_k: TopK | None = None
    mode: RetrievalMode | None = None

    @field_validator("messages")
    @classmethod
    def _has_a_question(cls, messages: list[OpenAIMessage]) -> list[OpenAIMessage]:
        problem = question_problem([(m.role, m.text()) for m in messages])
        if problem:
            raise ValueError(problem)
        return messages

    def plain_messages(self) -> list[ChatMessage]:
        """As :class:`ChatMessage` (``developer`` read as ``system``, parts joined)."""
        return [
            ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
            for m in self.messages
        ]


# --- /papers, /search, /health -----------------------------------------------------------------
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


class LexicalIndexHealth(BaseModel):
    """The persisted BM25 index against the store: ``ok``; ``updating`` (an ingestion run is
    changing the store, or was stopped before it finished: the last complete index is used);
    ``stale`` or ``missing`` (not used: searches are dense-only until `python -m ingest` builds it)."""

    status: Literal["ok", "updating", "stale", "missing"]
    detail: str
    version: str | None = None


class Health(BaseModel):
    ready: bool
    papers: int | None = None
    chunks: int | None = None
    embedding_model: str | None = None
    llm_backend: str | None = None
    llm_model: str | None = None
    collection: str | None = None
    store: Literal["embedded", "server"] | None = None
    lexical_index: LexicalIndexHealth | None = None


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
