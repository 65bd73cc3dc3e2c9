"""The OpenAI chat-completions wire format, for ``/v1/chat/completions``.

The answer text gets the cited titles appended (``\\n\\nSources:\\n[1] Title``), so a plain OpenAI
client shows them; the structured citations are also in an extra top-level ``citations`` field
(non-stream) or on the last content chunk (stream).

Streaming is append-only, but the checked final answer can differ from the streamed text (a
title that names no retrieved paper is removed at the end, and when the model fails mid-way an
extractive answer replaces it). So at the end the rest of the final answer is sent when the streamed
text is its beginning, and otherwise the checked answer is sent in full after a short note.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from sse_starlette import ServerSentEvent

from app.answering.engine import PaperQAQueryEngine
from app.answering.types import AnswerResult, DeltaEvent, DoneEvent, ErrorEvent
from app.core.settings import RetrievalMode
from app.http.errors import openai_error
from app.retrieval.queries import Turn

MODEL_ID = "paperqa"
REVISED_NOTE = "\n\n[Checked answer: the text above was revised]\n"


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


SUGGESTIONS_HEADING = "Closest papers in the index (they do not answer the question):"


def sources_appendix(result: AnswerResult) -> str:
    """The cited titles under "Sources:", each with the evidence sentences behind it, or for a
    refusal the closest papers (not as sources)."""
    if result.refused and result.suggestions:
        lines = [f"- {s.title}" for s in result.suggestions]
        return f"\n\n{SUGGESTIONS_HEADING}\n" + "\n".join(lines)
    if not result.citations:
        return ""
    lines = []
    for c in result.citations:
        lines.append(f"[{c.marker}] {c.title}")
        lines += [f'    evidence: "{e.text}"' for e in c.evidence]
    return "\n\nSources:\n" + "\n".join(lines)


def suggestions_of(result: AnswerResult) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json") for s in result.suggestions]


def usage_of(result: AnswerResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "total_tokens": result.usage.total_tokens,
    }


def citations_of(result: AnswerResult) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in result.citations]


def completion(result: AnswerResult) -> dict[str, Any]:
    """A ``chat.completion`` object, plus ``citations`` and a few paperqa fields."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": result.answer + sources_appendix(result),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_of(result),
        "citations": citations_of(result),
        "refused": result.refused,
        "suggestions": suggestions_of(result),
    }


class ChunkMaker:
    """``chat.completion.chunk`` objects sharing one id and creation time."""

    def __init__(self) -> None:
        self.id = completion_id()
        self.created = int(time.time())

    def chunk(
        self,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": MODEL_ID,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            **extra,
        }

    def usage_chunk(self, result: AnswerResult) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": MODEL_ID,
            "choices": [],
            "usage": usage_of(result),
        }


def _data(payload: dict[str, Any] | str) -> ServerSentEvent:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return ServerSentEvent(data=text, sep="\n")  # OpenAI's own framing: "data: ...\n\n"


def closing_text(streamed: str, result: AnswerResult, notice: str | None) -> str:
    """What to send after the streamed text so that the reader ends with the checked answer."""
    sent = streamed.strip()  # the checked answer is stripped; the stream may not be
    if notice is None and result.answer.startswith(sent):
        rest = result.answer[len(sent) :]
    else:
        note = REVISED_NOTE if notice is None else f"\n\n[{notice}]\n"
        rest = (note if streamed.strip() else "") + result.answer
    return rest + sources_appendix(result)


async def completion_chunks(
    engine: PaperQAQueryEngine,
    messages: Sequence[Turn],
    top_k: int | None,
    mode: RetrievalMode | None,
    include_usage: bool = False,
) -> AsyncIterator[ServerSentEvent]:
    maker = ChunkMaker()
    yield _data(maker.chunk({"role": "assistant", "content": ""}))
    streamed: list[str] = []
    notice: str | None = None
    try:
        async with aclosing(engine.events(messages, top_k=top_k, mode=mode, stream=True)) as events:
            async for event in events:
                if isinstance(event, DeltaEvent) and event.text:
                    streamed.append(event.text)
                    yield _data(maker.chunk({"content": event.text}))
                elif isinstance(event, ErrorEvent):
                    notice = event.message
                elif isinstance(event, DoneEvent):
                    result = event.result
                    text = closing_text("".join(streamed), result, notice)
                    if text:
                        yield _data(
                            maker.chunk(
                                {"content": text},
                                citations=citations_of(result),
                                suggestions=suggestions_of(result),
                            )
                        )
                    yield _data(maker.chunk({}, finish_reason="stop"))
                    if include_usage:
                        yield _data(maker.usage_chunk(result))
    except Exception as exc:  # every failure, known or not, is one OpenAI error object
        yield _data(openai_error(exc))
    yield _data("[DONE]")
