"""An OpenAI-compatible face: ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from app.http.conversation import openai_conversation
from app.http.deps import EngineDep, SettingsDep
from app.http.errors import llm_failed, llm_fell_back
from app.http.openai_format import MODEL_ID, completion, completion_chunks
from app.http.schemas import ChatCompletionRequest, ErrorBody

router = APIRouter(prefix="/v1", tags=["openai"])

PING_S = 10


@router.post(
    "/chat/completions",
    responses={
        200: {
            "description": "`chat.completion` (JSON) or `chat.completion.chunk` SSE lines, then "
            "`data: [DONE]`",
            "content": {"text/event-stream": {}},
        },
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, engine: EngineDep, settings: SettingsDep
) -> Any:
    messages = openai_conversation(body, settings)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(
            completion_chunks(engine, messages, body.top_k, body.mode, include_usage),
            ping=PING_S,
            sep="\n",
        )
    result = await engine.answer(messages, top_k=body.top_k, mode=body.mode)
    if llm_fell_back(result):
        return llm_failed(request, result, completion(result))
    return completion(result)


@router.get("/models")
async def models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": MODEL_ID, "object": "model", "created": int(time.time()), "owned_by": "paperqa-lite"}
        ],
    }
