"""The limits on a conversation that come from the settings, and its conversion for the pipeline."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException, status

from app.llm import Message
from app.schemas import ChatMessage
from app.settings import Settings


def invalid(message: str) -> HTTPException:
    """A 422 whose ``detail`` is one readable sentence."""
    return HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=message)


def check_conversation(messages: Sequence[ChatMessage], settings: Settings) -> list[Message]:
    """The messages as plain dicts for :class:`app.answer.Answerer`, or a 422 naming the problem.

    Types, roles, a user question last and non-blank are checked by the request models already.
    """
    if len(messages) > settings.max_messages:
        raise invalid(
            f"too many messages: {len(messages)} (at most {settings.max_messages}); "
            "send only the recent part of the conversation"
        )
    for index, message in enumerate(messages):
        if len(message.content) > settings.max_message_chars:
            raise invalid(
                f"messages[{index}] is too long: {len(message.content)} characters "
                f"(at most {settings.max_message_chars})"
            )
    if not messages or messages[-1].role != "user" or not messages[-1].content.strip():
        raise invalid("the last message must be a non-empty question from the user")
    return [{"role": m.role, "content": m.content} for m in messages]
