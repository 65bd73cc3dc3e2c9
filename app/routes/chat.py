"""``POST /chat``: a cited answer to the last message of a conversation, as JSON or as SSE."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from app.answer import AnswerResult
from app.conversation import check_conversation
from app.deps import AnswererDep, SettingsDep
from app.errors import llm_failed
from app.schemas import ChatRequest, ErrorBody, LLMFailure
from app.sse import chat_events

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
async def chat(request: Request, body: ChatRequest, answerer: AnswererDep, settings: SettingsDep):
    messages = check_conversation(body.messages, settings)
    if body.stream:
        return EventSourceResponse(
            chat_events(answerer, messages, body.top_k, body.mode), ping=PING_S
        )
    result = await answerer.answer(messages, top_k=body.top_k, mode=body.mode)
    if result.fallback_reason is not None and answerer.backend is not None:
        return llm_failed(request, result, result.model_dump(mode="json"))
    return result
