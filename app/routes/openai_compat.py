"""An OpenAI-compatible face: ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from app.conversation import check_conversation, invalid
from app.deps import AnswererDep, SettingsDep
from app.errors import llm_failed
from app.openai_format import MODEL_ID, completion, completion_chunks
from app.schemas import ChatCompletionRequest, ErrorBody

router = APIRouter(prefix="/v1", tags=["openai"])

PING_S = 10


@router.post(
    "/chat/completions",
    responses={
        200: {"description": "`chat.completion` (JSON) or `chat.completion.chunk` SSE lines, then "
              "`data: [DONE]`", "content": {"text/event-stream": {}}},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, answerer: AnswererDep, settings: SettingsDep
):
    try:
        plain = body.plain_messages()
    except ValueError as exc:
        raise invalid(str(exc)) from None
    messages = check_conversation(plain, settings)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(
            completion_chunks(answerer, messages, body.top_k, body.mode, include_usage),
            ping=PING_S,
            sep="\n",
        )
    result = await answerer.answer(messages, top_k=body.top_k, mode=body.mode)
    if result.fallback_reason is not None and answerer.backend is not None:
        return llm_failed(request, result, completion(result))
    return completion(result)


@router.get("/models")
async def models() -> dict:
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": int(time.time()), "owned_by": "paperqa-lite"}],
    }
