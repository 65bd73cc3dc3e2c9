"""The limits on a conversation that come from the settings, and its conversion for the pipeline.

Types, roles and "the last message is a non-blank user question" are checked by the request
models (:mod:`app.http.schemas`, which call :func:`app.retrieval.queries.question_problem`).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.errors import InvalidRequest
from app.core.settings import Settings
from app.http.schemas import ChatMessage
from app.retrieval.queries import Turn


def check_conversation(messages: Sequence[ChatMessage], settings: Settings) -> list[Turn]:
    """The messages as turns for the pipeline, or :class:`InvalidRequest` (422) naming the problem."""
    if len(messages) > settings.max_messages:
        raise InvalidRequest(
            f"too many messages: {len(messages)} (at most {settings.max_messages}); "
            "send only the recent part of the conversation"
        )
    for index, message in enumerate(messages):
        if len(message.content) > settings.max_message_chars:
            raise InvalidRequest(
                f"messages[{index}] is too long: {len(message.content)} characters "
                f"(at most {settings.max_message_chars})"
            )
    return [{"role": m.role, "content": m.content} for m in messages]
