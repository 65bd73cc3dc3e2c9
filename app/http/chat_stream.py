"""The pipeline's events as Server-Sent Events for ``POST /chat``.

``sources`` (JSON list of sources) first, then ``delta`` events (``{"text": ...}``), then ``done``
(the :class:`~app.answering.types.AnswerResult`). ``error`` (``{"message": ...}``) reports a
failure: from the pipeline (the LLM failed mid-way; ``done`` still follows with an extractive
answer), or raised here (then the stream ends after it, with no traceback sent).

When the client goes away, sse-starlette cancels the task consuming this generator, or closes it;
either way the pipeline's generator is closed too (``aclosing``), which stops generation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

from sse_starlette import ServerSentEvent

from app.answering.engine import PaperQAQueryEngine
from app.answering.types import DeltaEvent, DoneEvent, ErrorEvent, SourcesEvent
from app.core.settings import RetrievalMode
from app.http.errors import sse_error
from app.retrieval.queries import Turn


def sse(event: str, payload: object) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=json.dumps(payload, ensure_ascii=False))


async def chat_events(
    engine: PaperQAQueryEngine,
    messages: Sequence[Turn],
    top_k: int | None,
    mode: RetrievalMode | None,
) -> AsyncIterator[ServerSentEvent]:
    try:
        async with aclosing(engine.events(messages, top_k=top_k, mode=mode, stream=True)) as events:
            async for event in events:
                if isinstance(event, SourcesEvent):
                    yield sse("sources", [s.model_dump(mode="json") for s in event.sources])
                elif isinstance(event, DeltaEvent):
                    if event.text:
                        yield sse("delta", {"text": event.text})
                elif isinstance(event, ErrorEvent):
                    yield sse("error", {"message": event.message})
                elif isinstance(event, DoneEvent):
                    yield sse("done", event.result.model_dump(mode="json"))
    except Exception as exc:  # every failure, known or not, ends the stream with one error event
        yield sse("error", sse_error(exc))
