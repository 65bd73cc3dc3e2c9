"""``POST /chat``: a cited answer to the last message of a conversation, as JSON or as SSE."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from app.answering.types import AnswerResult
from app.http.chat_stream import chat_events
from app.http.conversation import check_conversation
from app.http.deps import EngineDep, SettingsDep
from app.http.errors import llm_failed, llm_fell_back
from app.http.schemas import ChatRequest, ErrorBody, LLMFailure

router = APIRouter(tags=["chat"])

PING_S = 10


@router.post(
    "/chat",
    response_model=AnswerResult,
    responses={
        200: {
            "description": "The answer (JSON), or with `stream: true` an SSE stream of `sources`, "
            "`delta`..., `done` (and `error`) events.",
            "content": {"text/event-stream": {}},
        },
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {
            "model": LLMFailure | ErrorBody,
            "description": "the LLM failed or is busy (`fallback` holds an extractive answer), or "
            "the store is unavailable",
        },
    },
)
async def chat(request: Request, body: ChatRequest, engine: EngineDep, settings: SettingsDep) -> Any:
    messages = check_conversation(body.messages, settings)
    if body.stream:
        return EventSourceResponse(chat_events(engine, messages, body.top_k, body.mode), ping=PING_S)
    result = await engine.answer(messages, top_k=body.top_k, mode=body.mode)
    if llm_fell_back(result):
        return llm_failed(request, result, result.model_dump(mode="json"))
    return result
